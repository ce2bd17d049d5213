// The client's duties as a conforming game (docs/protocol.md section 3), against a scripted
// fake runtime on loopback: what the real runtime never does on purpose (duplicate ids,
// cancels, pending ids after a resume, fatal closes, bad frames).
import assert from "node:assert/strict";
import { test } from "node:test";
import { GameCallError, NpcBridge } from "../npc-bridge.js";
import { fakeRuntime, sleep } from "./helpers.js";

const quiet = { warn() {}, error() {} };

async function connected(fake, options = {}, welcome = {}) {
  const bridge = new NpcBridge(fake.url, { game: "g", backoffMs: [10, 50], logger: quiet, ...options });
  const connecting = bridge.connect();
  const conn = await fake.connection(0);
  await fake.frame(conn, (f) => f.t === "hello");
  fake.welcome(conn, welcome);
  await connecting;
  return { bridge, conn };
}

const call = (id, cap = "act", extra = {}) => ({
  t: "call", id, npc: "n1", cap, args: {}, mode: "call", deadline_ms: 5000, ...extra,
});

test("hello: subprotocol, token, declared capabilities and NPCs", async () => {
  const fake = await fakeRuntime();
  const { bridge, conn } = await connected(fake, {
    token: "secret",
    capabilities: ["openGate", "goToLocation"],
    npcs: [{ npc: "n1", character: "guard" }],
  });
  try {
    assert.equal(conn.protocol, "npc-bridge.v1");
    const hello = conn.frames[0];
    assert.equal(hello.t, "hello");
    assert.equal(hello.proto, 1);
    assert.equal(hello.game, "g");
    assert.equal(hello.token, "secret");
    assert.equal(hello.resume, undefined);
    assert.deepEqual(hello.capabilities, ["openGate", "goToLocation"]);
    assert.deepEqual(hello.npcs, [{ npc: "n1", character: "guard" }]);
    assert.ok(bridge.spawn("n2", "merchant", { position: { x: 1, z: 2 } }));
    const spawn = await fake.frame(conn, (f) => f.t === "spawn");
    assert.deepEqual(spawn, { t: "spawn", npc: "n2", character: "merchant", state: { position: { x: 1, z: 2 } } });
    assert.ok(bridge.event("n2", "saw", { what: "a wolf" }));
    const event = await fake.frame(conn, (f) => f.t === "event");
    assert.deepEqual(event, { t: "event", npc: "n2", kind: "saw", data: { what: "a wolf" } }, "no ttl_ms: null");
  } finally {
    await bridge.close();
    await fake.close();
  }
});

test("a call id is executed once; a resent id gets the cached result", async () => {
  const fake = await fakeRuntime();
  const { bridge, conn } = await connected(fake);
  let runs = 0;
  bridge.handle("act", async (c) => {
    runs += 1;
    return { n: runs, args: c.args };
  });
  try {
    fake.send(conn, call("c1"));
    await fake.frame(conn, (f) => f.t === "result" && f.id === "c1");
    fake.send(conn, call("c1"));
    await sleep(50);
    await fake.frame(conn, (f) => conn.frames.filter((g) => g.t === "result").length === 2);
    const results = conn.frames.filter((f) => f.t === "result");
    assert.equal(runs, 1);
    assert.equal(bridge.executions, 1);
    assert.deepEqual(results[0], { t: "result", id: "c1", ok: true, data: { n: 1, args: {} } });
    assert.deepEqual(results[1], results[0]);
  } finally {
    await bridge.close();
    await fake.close();
  }
});

test("an id still running is not started again and answered once", async () => {
  const fake = await fakeRuntime();
  const { bridge, conn } = await connected(fake);
  let runs = 0;
  let release;
  bridge.handle("act", async () => {
    runs += 1;
    await new Promise((r) => (release = r));
    return "done";
  });
  try {
    fake.send(conn, call("c1"));
    fake.send(conn, call("c1"));
    await sleep(50);
    release();
    await fake.frame(conn, (f) => f.t === "result");
    await sleep(30);
    assert.equal(runs, 1);
    assert.equal(conn.frames.filter((f) => f.t === "result").length, 1);
  } finally {
    await bridge.close();
    await fake.close();
  }
});

test("game errors, handler crashes and unknown capabilities become failed results", async () => {
  const fake = await fakeRuntime();
  const { bridge, conn } = await connected(fake);
  bridge.handle("locked", async () => {
    throw new GameCallError("LOCKED", "The gate is locked.");
  });
  bridge.handle("crash", () => {
    throw new TypeError("boom");
  });
  bridge.handle("weird", async () => () => 1); // a function cannot be sent
  try {
    fake.send(conn, call("a", "locked"));
    fake.send(conn, call("b", "crash"));
    fake.send(conn, call("c", "nope"));
    fake.send(conn, call("d", "weird"));
    const byId = async (id) => fake.frame(conn, (f) => f.t === "result" && f.id === id);
    assert.deepEqual((await byId("a")).error, { code: "LOCKED", message: "The gate is locked." });
    const b = await byId("b");
    assert.equal(b.ok, false);
    assert.equal(b.error.code, "INTERNAL");
    assert.match(b.error.message, /boom/);
    assert.equal((await byId("c")).error.code, "UNKNOWN_CAPABILITY");
    assert.equal((await byId("d")).error.code, "INTERNAL");
  } finally {
    await bridge.close();
    await fake.close();
  }
});

test("fire calls are run and not answered", async () => {
  const fake = await fakeRuntime();
  const { bridge, conn } = await connected(fake);
  let runs = 0;
  bridge.handle("emote", async () => {
    runs += 1;
    return "waved";
  });
  try {
    fake.send(conn, call("f1", "emote", { mode: "fire" }));
    fake.send(conn, call("f1", "emote", { mode: "fire" }));
    fake.send(conn, call("marker", "nope"));
    await fake.frame(conn, (f) => f.t === "result" && f.id === "marker");
    await sleep(30);
    assert.equal(runs, 1);
    assert.equal(conn.frames.filter((f) => f.t === "result" && f.id === "f1").length, 0);
  } finally {
    await bridge.close();
    await fake.close();
  }
});

test("cancel aborts the handler's signal; no answer, and the id never runs again", async () => {
  const fake = await fakeRuntime();
  const { bridge, conn } = await connected(fake);
  let runs = 0;
  let aborted = null;
  bridge.handle("walk", (c, signal) => {
    runs += 1;
    return new Promise((resolve, reject) => {
      signal.addEventListener("abort", () => {
        aborted = signal.reason;
        reject(signal.reason);
      });
    });
  });
  try {
    fake.send(conn, call("w1", "walk"));
    await sleep(30);
    fake.send(conn, { t: "cancel", id: "w1", reason: "timeout" });
    await sleep(30);
    assert.equal(aborted?.code, "CANCELLED");
    assert.equal(conn.frames.filter((f) => f.t === "result").length, 0, "nothing answered");
    fake.send(conn, call("w1", "walk"));
    const again = await fake.frame(conn, (f) => f.t === "result" && f.id === "w1");
    assert.equal(again.error.code, "CANCELLED");
    assert.equal(runs, 1);
  } finally {
    await bridge.close();
    await fake.close();
  }
});

test("resume: hello carries the token; pending ids answered from the cache or DISCONNECTED", async () => {
  const fake = await fakeRuntime();
  const { bridge, conn } = await connected(fake, {}, { session: "s1", resume_token: "r1" });
  let release;
  bridge.handle("act", async (c) => {
    if (c.id === "slow") await new Promise((r) => (release = r));
    return c.id;
  });
  try {
    fake.send(conn, call("done"));
    fake.send(conn, call("slow"));
    await fake.frame(conn, (f) => f.t === "result" && f.id === "done");
    conn.ws.terminate();
    const conn2 = await fake.connection(1);
    const hello = await fake.frame(conn2, (f) => f.t === "hello");
    assert.equal(hello.resume, "r1");
    const reconnected = bridge.waitFor("reconnect");
    fake.welcome(conn2, { session: "s1", resume_token: "r1", pending: ["done", "slow", "lost"] });
    await reconnected;
    const done = await fake.frame(conn2, (f) => f.t === "result" && f.id === "done");
    assert.deepEqual(done, { t: "result", id: "done", ok: true, data: "done" });
    const lost = await fake.frame(conn2, (f) => f.t === "result" && f.id === "lost");
    assert.equal(lost.error.code, "DISCONNECTED");
    assert.equal(conn2.frames.some((f) => f.t === "result" && f.id === "slow"), false);
    release();
    const slow = await fake.frame(conn2, (f) => f.t === "result" && f.id === "slow");
    assert.equal(slow.data, "slow");
    assert.equal(bridge.executions, 2);
  } finally {
    await bridge.close();
    await fake.close();
  }
});

test("a new session after the window: running calls are abandoned, the cache is kept", async () => {
  const fake = await fakeRuntime();
  const { bridge, conn } = await connected(fake, {}, { session: "s1", resume_token: "r1" });
  let runs = 0;
  let aborted = false;
  bridge.handle("act", async (c, signal) => {
    runs += 1;
    if (c.id === "slow") {
      await new Promise((r) => signal.addEventListener("abort", r));
      aborted = true;
    }
    return c.id;
  });
  try {
    fake.send(conn, call("done"));
    fake.send(conn, call("slow"));
    await fake.frame(conn, (f) => f.t === "result" && f.id === "done");
    conn.ws.terminate();
    const conn2 = await fake.connection(1);
    await fake.frame(conn2, (f) => f.t === "hello");
    fake.welcome(conn2, { session: "s2", resume_token: "r2" });
    await bridge.waitFor("reconnect");
    assert.equal(aborted, true);
    fake.send(conn2, call("done")); // an idempotent call resent with the same id
    const again = await fake.frame(conn2, (f) => f.t === "result" && f.id === "done");
    assert.equal(again.data, "done");
    assert.equal(runs, 2);
  } finally {
    await bridge.close();
    await fake.close();
  }
});

test("speech: deltas, say_end, callbacks and iterators; a drop interrupts open streams", async () => {
  const fake = await fakeRuntime();
  const { bridge, conn } = await connected(fake);
  const streams = [];
  bridge.onSpeech((s) => streams.push(s));
  const iterated = (async () => {
    for await (const speech of bridge.speech()) {
      const parts = [];
      for await (const d of speech) parts.push(d);
      return { parts, reason: speech.reason };
    }
  })();
  try {
    fake.send(conn, { t: "status", npc: "n1", state: "speaking" });
    fake.send(conn, { t: "say", npc: "n1", stream: "s1", text: "Halt! " });
    fake.send(conn, { t: "say", npc: "n1", stream: "s1", text: "Who goes there?" });
    fake.send(conn, { t: "say_end", npc: "n1", stream: "s1", reason: "done" });
    const got = await iterated;
    assert.deepEqual(got, { parts: ["Halt! ", "Who goes there?"], reason: "done" });
    assert.equal(streams[0].text, "Halt! Who goes there?");
    assert.equal(await streams[0].done, "done");
    assert.equal(bridge.statuses.get("n1"), "speaking");
    fake.send(conn, { t: "say", npc: "n1", stream: "s2", text: "Wai" });
    await bridge.waitFor("say", (m) => m.stream === "s2");
    conn.ws.terminate();
    assert.equal(await streams[1].done, "interrupted");
  } finally {
    await bridge.close();
    await fake.close();
  }
});

test("bad frames from the runtime are ignored; the connection goes on", async () => {
  const fake = await fakeRuntime();
  const { bridge, conn } = await connected(fake);
  bridge.handle("act", async () => 1);
  try {
    conn.ws.send("a text frame");
    conn.ws.send(Buffer.from([0xc1]));
    conn.ws.send(Buffer.from([0x93, 1, 2, 3])); // an array, not a map
    fake.send(conn, call("ok"));
    const result = await fake.frame(conn, (f) => f.t === "result" && f.id === "ok");
    assert.equal(result.ok, true);
    assert.equal(bridge.connected, true);
  } finally {
    await bridge.close();
    await fake.close();
  }
});

test("4009 (replaced) and 4003 are final: no reconnect, failure reported", async () => {
  for (const code of [4009, 4003]) {
    const fake = await fakeRuntime();
    const { bridge, conn } = await connected(fake);
    const failure = bridge.waitFor("failure");
    conn.ws.close(code, "bye");
    const err = await failure;
    assert.equal(err.closeCode, code);
    await sleep(100);
    assert.equal(fake.connections.length, 1, "no reconnect");
    await bridge.close();
    await fake.close();
  }
});

test("a runtime that never welcomes: connect() rejects", async () => {
  const fake = await fakeRuntime();
  const bridge = new NpcBridge(fake.url, { openTimeoutMs: 200, logger: quiet });
  try {
    await assert.rejects(bridge.connect(), (e) => e.code === "DISCONNECTED");
  } finally {
    await bridge.close();
    await fake.close();
  }
});

test("nothing listening: connect() rejects", async () => {
  const fake = await fakeRuntime();
  const url = fake.url;
  await fake.close();
  const bridge = new NpcBridge(url, { logger: quiet });
  await assert.rejects(bridge.connect(), (e) => e.code === "DISCONNECTED");
});

test("preserveFloats: a whole float goes back as a float; plain numbers otherwise", async () => {
  const { encode, float64 } = await import("../npc-bridge.js");
  const floats = (bytes) => [...bytes].filter((b) => b === 0xcb).length; // float64 markers
  assert.equal(floats(encode({ a: float64(3), b: 3 })), 1);
  for (const preserve of [true, false]) {
    const fake = await fakeRuntime();
    const { bridge, conn } = await connected(fake, { preserveFloats: preserve });
    let seen;
    bridge.handle("echo", (c) => {
      seen = c.args;
      return c.args;
    });
    try {
      const raw = new Promise((resolve) => conn.ws.once("message", (data) => resolve(data)));
      conn.ws.send(encode({ ...call("e", "echo"), args: { whole: float64(3), half: 0.5, int: 3 } }));
      const bytes = await raw;
      assert.equal(floats(bytes), preserve ? 2 : 1, "3.0 stays a float only with preserveFloats");
      assert.equal(seen.whole + 1, 4, "usable as a number either way");
      assert.equal(typeof seen.whole, preserve ? "object" : "number");
      assert.equal(typeof seen.int, "number");
    } finally {
      await bridge.close();
      await fake.close();
    }
  }
});
