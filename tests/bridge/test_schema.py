"""The JSON Schema engine authors read is generated from the models and committed current."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

from bridge import schema_json

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "docs" / "bridge-schema.json"


def test_committed_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_json(), (
        "docs/bridge-schema.json is stale: run `npc bridge schema -o docs/bridge-schema.json`"
    )


def test_schema_validates_examples() -> None:
    schema = json.loads(schema_json())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = {"t": "call", "id": "c1", "npc": "g", "cap": "go", "args": {}, "deadline_ms": 10}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "extra": 1})
    assert not validator.is_valid({"t": "status", "npc": "g", "state": "dancing"})


def test_cli_prints_schema() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "bridge", "schema"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == schema_json()
