// Test helpers: a real `npc serve` subprocess and a scripted fake runtime on loopback.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { decode, encode } from "@msgpack/msgpack";
import { WebSocketServer } from "ws";

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, "..", "..", "..");
export const VILLAGE = join(REPO, "samples", "village");

/** The Python that runs `npc`: $NPC_PYTHON, else the repo's .venv, else python3. */
export function python() {
  if (process.env.NPC_PYTHON) return process.env.NPC_PYTHON;
  const venv = join(REPO, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

/**
 * Start `npc serve samples/village --port 0 --no-http` with a fresh database and the token
 * in $NPC_BRIDGE_TOKEN; resolve once it prints its bridge URL.
 * @param {{token?: string, project?: string, extraArgs?: string[]}} [opts]
 */
export async function startServe(opts = {}) {
  const dir = mkdtempSync(join(tmpdir(), "npc-web-"));
  const args = [
    "-m", "runtime.cli", "serve", opts.project ?? VILLAGE,
    "--port", "0", "--no-http", "--model", "offline",
    "--db", join(dir, "npc.sqlite3"), "--log-level", "WARNING",
    ...(opts.extraArgs ?? []),
  ];
  const env = { ...process.env, NPC_BRIDGE_TOKEN: opts.token ?? "" };
  const child = spawn(python(), args, { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const url = await new Promise((resolveUrl, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`npc serve did not start:\n${stderr}`)), 20000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/bridge (ws:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`npc serve exited ${code}:\n${stderr}`));
    });
  });
  return {
    url,
    child,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A fake runtime: accepts websockets with the subprotocol, decodes every frame, and lets the
 * test script the answers. `connections` holds one record per accepted socket.
 */
export async function fakeRuntime() {
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    handleProtocols: (protocols) => (protocols.has("npc-bridge.v1") ? "npc-bridge.v1" : false),
  });
  await new Promise((r) => wss.once("listening", r));
  /** @type {Array<{ws: any, frames: any[], protocol: string, waiters: Array<() => void>}>} */
  const connections = [];
  /** @type {Array<(c: any) => void>} */
  const connectionWaiters = [];
  wss.on("connection", (ws) => {
    const conn = { ws, frames: [], protocol: ws.protocol, waiters: [] };
    connections.push(conn);
    ws.on("message", (data, isBinary) => {
      conn.frames.push(isBinary ? decode(data) : { text: String(data) });
      for (const w of conn.waiters.splice(0)) w();
    });
    for (const w of connectionWaiters.splice(0)) w();
  });
  const port = /** @type {any} */ (wss.address()).port;
  return {
    url: `ws://127.0.0.1:${port}`,
    connections,
    /** @returns {Promise<any>} connection number n (0-based), once it is made */
    connection(n) {
      return new Promise((r) => {
        const check = () => {
          if (!connections[n]) return false;
          r(connections[n]);
          return true;
        };
        const waiter = () => {
          if (!check()) connectionWaiters.push(waiter);
        };
        if (!check()) connectionWaiters.push(waiter);
      });
    },
    send(conn, frame) {
      conn.ws.send(encode(frame));
    },
    /** Wait until a frame matching `pred` arrived on `conn`. */
    async frame(conn, pred, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = conn.frames.find(pred);
        if (hit) return hit;
        if (Date.now() > deadline) throw new Error(`no matching frame; got ${JSON.stringify(conn.frames)}`);
        await new Promise((r) => {
          conn.waiters.push(r);
          setTimeout(r, 50);
        });
      }
    },
    welcome(conn, extra = {}) {
      this.send(conn, {
        t: "welcome", proto: 1, session: extra.session ?? "s1", resume_token: extra.resume_token ?? "tok1",
        runtime: "fake/0", limits: {}, missing: [], pending: extra.pending ?? [],
      });
    },
    close() {
      for (const c of wss.clients) c.terminate();
      return new Promise((r) => wss.close(() => r(undefined)));
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Resolve once `predicate()` holds: checked now and after every frame the bridge receives.
 * @param {any} bridge
 * @param {() => any} predicate
 * @param {number} [timeoutMs]
 * @param {string} [what]
 */
export function eventually(bridge, predicate, timeoutMs = 15000, what = "condition") {
  return new Promise((resolvePromise, reject) => {
    const first = predicate();
    if (first) {
      resolvePromise(first);
      return;
    }
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${what}`));
    }, timeoutMs);
    const off = bridge.on("message", () => {
      const value = predicate();
      if (!value) return;
      clearTimeout(timer);
      off();
      resolvePromise(value);
    });
  });
}
