#!/usr/bin/env node
// The conformance harness for npc-bridge.js: the kit capabilities of
// `npc bridge conformance` (bridge/conformance.py) implemented on the client, so the kit can
// grade this client like any engine plugin.
//
//   npc bridge conformance --port 8799 &
//   node samples/web/conformance.js ws://127.0.0.1:8799 [token]
//
// Exits 0 once the kit closed the session (kitClose), 1 if the connection failed.
import { GameCallError, NpcBridge } from "./npc-bridge.js";

export const KIT_CAPABILITIES = [
  "kitEcho", "kitCount", "kitSleep", "kitEmit", "kitSpeech", "kitClose", "kitUnimplemented",
];

/**
 * Connect a harness to the kit at `url`; resolves when the kit's kitClose closed it.
 * @param {string} url
 * @param {{token?: string, npc?: string, WebSocket?: unknown}} [options]
 */
export async function runHarness(url, options = {}) {
  const npc = options.npc ?? "kit-npc";
  const bridge = new NpcBridge(url, {
    game: "npc-bridge.js-harness",
    token: options.token ?? null,
    capabilities: KIT_CAPABILITIES,
    npcs: [{ npc, character: "kit" }],
    preserveFloats: true, // kitEcho must give 3.0 back as a float, not as 3
    reconnect: false,
    WebSocket: options.WebSocket,
  });
  let counter = 0;
  /** @type {Map<string, import("./npc-bridge.js").SpeechStream>} */
  const streams = new Map();
  bridge.onSpeech((speech) => streams.set(speech.stream, speech));
  bridge.handle("kitEcho", (call) => call.args);
  bridge.handle("kitCount", () => ({ count: ++counter }));
  bridge.handle("kitSleep", (call, signal) => {
    const ms = Number(call.args.ms);
    if (!Number.isFinite(ms) || ms < 0) throw new GameCallError("BAD_INPUT", "ms must be a number >= 0");
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        counter += 1;
        resolve({ slept: call.args.ms });
      }, ms);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(signal.reason);
      });
    });
  });
  bridge.handle("kitEmit", (call) => {
    bridge.event(npc, String(call.args.kind), call.args.data ?? {});
    return { sent: call.args.kind };
  });
  bridge.handle("kitSpeech", (call) => {
    const entry = streams.get(String(call.args.stream));
    return {
      text: entry ? entry.text : null, // a stream's text and reason are up to date synchronously
      reason: entry ? entry.reason : null,
      status: bridge.statuses.get(npc) ?? null,
    };
  });
  bridge.handle("kitClose", () => {
    setTimeout(() => bridge.close(), 0);
    return null;
  });
  const closed = new Promise((resolve) => bridge.on("disconnect", resolve));
  await bridge.connect();
  return await closed;
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const [url, token] = process.argv.slice(2);
  if (!url) {
    console.error("usage: node conformance.js ws://HOST:PORT [token]");
    process.exit(2);
  }
  runHarness(url, { token }).then(
    (ev) => {
      console.error(`harness: closed (${ev.code})`);
      process.exit(0);
    },
    (err) => {
      console.error(`harness: ${err.message}`);
      process.exit(1);
    },
  );
}
