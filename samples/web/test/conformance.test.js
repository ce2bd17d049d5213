// `npc bridge conformance` grades the client (through the harness in conformance.js).
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { test } from "node:test";
import { runHarness } from "../conformance.js";
import { python, REPO } from "./helpers.js";

const help = spawnSync(python(), ["-m", "runtime.cli", "bridge", "--help"], { cwd: REPO, encoding: "utf8" });
const hasKit = help.status === 0 && /conformance/.test(help.stdout + help.stderr);

test("the conformance kit passes every check", { skip: !hasKit && "npc bridge conformance is not available" }, async () => {
  const kit = spawn(
    python(),
    ["-m", "runtime.cli", "bridge", "conformance", "--port", "0", "--json", "--wait", "30", "--token", "kit-token"],
    { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  kit.stdout.on("data", (d) => (stdout += d));
  const exited = new Promise((r) => kit.on("exit", (code) => r(code)));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the kit did not start:\n${stderr}`)), 20000);
    kit.stderr.on("data", (d) => {
      stderr += d;
      const m = stderr.match(/listening on (ws:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  const closed = await runHarness(url, { token: "kit-token" });
  assert.equal(closed.code, 1000);
  const code = await exited;
  const report = JSON.parse(stdout);
  const failed = report.checks.filter((c) => c.status !== "pass");
  assert.deepEqual(failed, [], JSON.stringify(failed, null, 2));
  assert.equal(report.passed, true);
  assert.equal(code, 0);
});
