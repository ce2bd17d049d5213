// The client against a real `npc serve samples/village` (offline model): the guard opens the
// gate when it hears "oak".
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { NpcBridge } from "../npc-bridge.js";
import { eventually, startServe } from "./helpers.js";

const TOKEN = "web-test-token";
const CAPS = ["goToLocation", "openGate", "say", "emote", "wait", "follow", "pickUp", "giveItem"];
let serve;

before(async () => {
  serve = await startServe({ token: TOKEN });
});

after(async () => {
  await serve?.stop();
});

/** A bridge with the village's capabilities and a guard; openGate answered by `openGate`. */
function villageBridge(npc, openGate, extra = {}) {
  const bridge = new NpcBridge(serve.url, {
    game: `node-test-${npc}`,
    token: TOKEN,
    capabilities: CAPS,
    npcs: [{ npc, character: "guard", state: { position: { x: 0, z: 40 } } }],
    backoffMs: [20, 200],
    ...extra,
  });
  bridge.handle("openGate", openGate);
  bridge.handleDefault(async () => ({ ok: true }));
  return bridge;
}

/** Collect everything the runtime sends about `npc` until a say_end with `until` in the text. */
function recordTurn(bridge, npc) {
  const seen = { calls: [], statuses: [], streams: [], ends: [] };
  bridge.on("call", (c) => c.npc === npc && seen.calls.push(c));
  bridge.on("status", (s) => s.npc === npc && seen.statuses.push(s.state));
  bridge.on("say_end", (e) => e.npc === npc && seen.ends.push(e.reason));
  bridge.onSpeech((s) => s.npc === npc && seen.streams.push(s));
  return seen;
}

/** Every finished line of `seen`. */
const finished = (seen) => seen.streams.filter((s) => s.reason !== null).map((s) => s.text);
const gateOpen = (seen) => finished(seen).some((t) => /gate is open/i.test(t));
const idle = (bridge, npc) => bridge.statuses.get(npc) === "idle";

test("a guard turn: heard 'oak' -> openGate -> answer -> speech", async () => {
  let opened = 0;
  const bridge = villageBridge("guard-1", async (call) => {
    opened += 1;
    assert.equal(call.cap, "openGate");
    assert.equal(call.mode, "call");
    return { open: true, already_open: false };
  });
  const seen = recordTurn(bridge, "guard-1");
  const welcome = await bridge.connect();
  try {
    assert.equal(welcome.proto, 1);
    assert.deepEqual(welcome.missing, []);
    assert.ok(bridge.hear("guard-1", "player", "Evening, guard. The password is oak."));
    await eventually(bridge, () => gateOpen(seen) && idle(bridge, "guard-1"), 15000, "the turn");
    const texts = finished(seen);
    assert.equal(opened, 1);
    assert.equal(bridge.executions, 1);
    assert.equal(seen.calls.length, 1);
    assert.ok(texts.some((t) => /oak/i.test(t)), texts.join(" | "));
    assert.ok(seen.streams.every((s) => s.deltas.length >= 1 && s.reason === "done"));
    // the speech arrived as deltas that add up to the line
    for (const s of seen.streams) assert.equal(s.deltas.join(""), s.text);
    assert.ok(seen.ends.length >= 2 && seen.ends.every((r) => r === "done"));
    for (const state of ["thinking", "acting", "speaking", "idle"]) {
      assert.ok(seen.statuses.includes(state), `status ${state} in ${seen.statuses}`);
    }
  } finally {
    await bridge.close();
  }
});

test("speech streams as async iterators", async () => {
  const bridge = villageBridge("guard-2", async () => ({ open: true, already_open: false }));
  await bridge.connect();
  try {
    const lines = [];
    const reader = (async () => {
      for await (const speech of bridge.speech()) {
        let text = "";
        for await (const delta of speech) text += delta;
        lines.push({ text, reason: await speech.done });
        if (/gate is open/i.test(text)) return;
      }
    })();
    bridge.hear("guard-2", "player", "oak");
    await reader;
    assert.ok(lines.length >= 2, JSON.stringify(lines));
    assert.ok(lines.every((l) => l.reason === "done" && l.text.length > 0));
  } finally {
    await bridge.close();
  }
});

test("a wrong token is refused with 4001 and no reconnect", async () => {
  const bridge = new NpcBridge(serve.url, { game: "node-bad", token: "wrong", capabilities: CAPS });
  await assert.rejects(bridge.connect(), (err) => err.code === "UNAUTHORIZED" && err.closeCode === 4001);
  assert.equal(bridge.connections, 1);
  assert.equal(bridge.closed, true);
});

test("resume after a drop keeps the session, its NPCs and a call in flight", async () => {
  let release;
  const released = new Promise((r) => {
    release = r;
  });
  let runs = 0;
  const bridge = villageBridge("guard-3", async () => {
    runs += 1;
    await released; // the gate takes its time: the connection drops meanwhile
    return { open: true, already_open: false };
  });
  const seen = recordTurn(bridge, "guard-3");
  const first = await bridge.connect();
  try {
    bridge.hear("guard-3", "player", "oak");
    await eventually(bridge, () => seen.calls.length === 1, 15000, "the openGate call");
    const resumed = bridge.waitFor("reconnect", () => true, 15000);
    bridge.drop();
    const welcome = await resumed;
    assert.equal(welcome.session, first.session, "same session after resume");
    assert.deepEqual(welcome.pending, [seen.calls[0].id], "the runtime still awaits the call");
    release();
    await eventually(bridge, () => gateOpen(seen) && idle(bridge, "guard-3"), 15000, "the turn");
    assert.equal(runs, 1, "the call ran once across the drop");
    assert.equal(bridge.connections, 2);
    assert.equal(seen.calls.length, 1);
  } finally {
    await bridge.close();
  }
});
