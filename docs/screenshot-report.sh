#!/usr/bin/env bash
# Renders the report of the sample's password scenario to docs/report.png with Debian's
# headless Chromium (apt-get install chromium). Run from the repository root after the
# README's set-up command: bash docs/screenshot-report.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$here/.venv/bin/npc" sim "$here/samples/village" --scenario "${1:-password}" --report "$out/report" --quiet
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
  --user-data-dir="$out/profile" --window-size=1200,1500 \
  --screenshot="$here/docs/report.png" "file://$out/report/report.html" 2>/dev/null
echo "wrote docs/report.png"
