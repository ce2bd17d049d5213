// npc-bridge.js: the game side of the npcagent bridge (protocol v1, docs/protocol.md) for
// browsers and Node. One ES module, one dependency (@msgpack/msgpack); in Node without a
// global WebSocket it loads the `ws` package.
//
// What a conforming game must do, and how this client does it (docs/protocol.md section 3):
// - answer every `call` exactly once: handlers are async functions; their value (or a thrown
//   GameCallError) becomes the `result`;
// - never execute a call id twice: finished results are cached by id (bounded, across
//   reconnects); a repeated id gets the cached answer, an id still running is not restarted;
// - on `cancel`, abort the handler's AbortSignal and send nothing;
// - after a drop, reconnect with backoff and resume with the last welcome's resume_token;
//   answer `welcome.pending` from the cache, or DISCONNECTED for ids never received.
//
// Browsers cannot set headers on a websocket handshake, so the token travels in `hello`.

import { Decoder, Encoder } from "@msgpack/msgpack";

export const SUBPROTOCOL = "npc-bridge.v1";
export const PROTOCOL_VERSION = 1;

/** Close codes after which reconnecting is pointless (docs/protocol.md section 4). */
export const FATAL_CLOSE_CODES = Object.freeze([4001, 4003, 4009]);

/**
 * JavaScript has one number type, so a msgpack float that holds a whole number (3.0) would
 * come back as the int 3. Where that matters (echoing a value, a proxy, the conformance
 * kit), `preserveFloats` decodes such floats as `Number` objects and the encoder writes any
 * `Number` object as a float64. `float64(3)` asks for a float on the wire explicitly.
 */
class FloatEncoder extends Encoder {
  /** @param {any} object @param {number} depth */
  encodeObject(object, depth) {
    if (object instanceof Number) {
      // @ts-ignore: a method of Encoder (private in its typings)
      this.encodeNumberAsFloat(object.valueOf());
      return;
    }
    // @ts-ignore
    super.encodeObject(object, depth);
  }
}

class FloatDecoder extends Decoder {
  readF32() {
    // @ts-ignore
    const value = super.readF32();
    return Number.isInteger(value) ? new Number(value) : value;
  }

  readF64() {
    // @ts-ignore
    const value = super.readF64();
    return Number.isInteger(value) ? new Number(value) : value;
  }
}

const encoder = new FloatEncoder({ ignoreUndefined: true });

/** @param {any} value @returns {Uint8Array} */
export function encode(value) {
  return encoder.encode(value);
}

/**
 * A number sent as a msgpack float even when it is whole (3 -> 3.0).
 * @param {number} value
 * @returns {Number}
 */
export function float64(value) {
  return new Number(value);
}

/**
 * The error a capability handler throws to fail a call with a game error code of its own
 * (`LOCKED`, `BLOCKED`, ...). The message is shown to the model: write it for a reader.
 */
export class GameCallError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "GameCallError";
    this.code = code;
  }
}

/** A failure of the bridge itself: refused handshake, fatal close, not connected. */
export class BridgeError extends Error {
  /**
   * @param {string} code  a protocol error code (UNAUTHORIZED, DISCONNECTED, ...)
   * @param {string} message
   * @param {{closeCode?: number}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = "BridgeError";
    this.code = code;
    this.closeCode = extra.closeCode;
  }
}

/**
 * One speech stream of an NPC: `say` deltas until `say_end`. Iterate it with
 * `for await (const delta of stream)`, or await `stream.done` for the reason.
 */
export class SpeechStream {
  /**
   * @param {string} npc
   * @param {string} stream
   */
  constructor(npc, stream) {
    this.npc = npc;
    this.stream = stream;
    /** @type {string} the text so far */
    this.text = "";
    /** @type {string[]} */
    this.deltas = [];
    /** @type {string | null} done | interrupted | cancelled, once ended */
    this.reason = null;
    /** @type {Array<(r: IteratorResult<string>) => void>} */
    this._waiters = [];
    let resolve = /** @type {(reason: string) => void} */ (() => {});
    /** @type {Promise<string>} resolves with the end reason */
    this.done = new Promise((r) => {
      resolve = r;
    });
    this._resolve = resolve;
  }

  /** @param {string} text */
  _push(text) {
    this.text += text;
    this.deltas.push(text);
    for (const w of this._waiters.splice(0)) w({ value: text, done: false });
  }

  /** @param {string} reason */
  _end(reason) {
    if (this.reason !== null) return;
    this.reason = reason;
    this._resolve(reason);
    for (const w of this._waiters.splice(0)) w({ value: undefined, done: true });
  }

  /** @returns {AsyncIterator<string>} every delta, from the first one */
  [Symbol.asyncIterator]() {
    let index = 0;
    return {
      next: () => {
        if (index < this.deltas.length) {
          return Promise.resolve({ value: this.deltas[index++], done: false });
        }
        if (this.reason !== null) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this._waiters.push((r) => {
            if (!r.done) index++;
            resolve(r);
          });
        });
      },
    };
  }
}

/** A queue turned into an async iterator; ends when closed. */
class Channel {
  constructor(limit = 1024) {
    this.limit = limit;
    /** @type {any[]} */
    this.items = [];
    /** @type {Array<(r: IteratorResult<any>) => void>} */
    this.waiters = [];
    this.closed = false;
  }

  /** @param {any} item */
  push(item) {
    if (this.closed) return;
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter({ value: item, done: false });
      return;
    }
    this.items.push(item);
    if (this.items.length > this.limit) this.items.shift(); // keep the newest
  }

  close() {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w({ value: undefined, done: true });
  }

  [Symbol.asyncIterator]() {
    return {
      next: () => {
        if (this.items.length) return Promise.resolve({ value: this.items.shift(), done: false });
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.waiters.push(resolve));
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/** @returns {Promise<any>} a WebSocket constructor for this platform */
async function defaultWebSocket() {
  if (typeof globalThis.WebSocket === "function") return globalThis.WebSocket;
  // Node without a global WebSocket: the `ws` package. The specifier is held in a variable
  // so that bundlers for the browser do not try to pull it in.
  const name = "ws";
  const mod = await import(name);
  return mod.default ?? mod.WebSocket;
}

/**
 * @param {unknown} value
 * @returns {value is Record<string, any>}
 */
function isMap(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/**
 * The game side of the bridge.
 *
 * ```js
 * const bridge = new NpcBridge("ws://127.0.0.1:8765", { game: "my-game", token });
 * bridge.handle("openGate", async (call, signal) => ({ open: true }));
 * bridge.onSpeech(async (speech) => { for await (const d of speech) show(speech.npc, d); });
 * await bridge.connect();
 * bridge.spawn("guard-1", "guard");
 * bridge.event("guard-1", "heard", { speaker: "player", text: "Oak." });
 * ```
 */
export class NpcBridge {
  /**
   * @param {string} url  ws://host:port
   * @param {import("./npc-bridge").NpcBridgeOptions} [options]
   */
  constructor(url, options = {}) {
    this.url = url;
    this.game = options.game ?? "web";
    this.token = options.token ?? null;
    this.reconnect = options.reconnect ?? true;
    this.backoff = options.backoffMs ?? [50, 2000];
    this.maxAttempts = options.maxAttempts ?? null;
    this.cacheSize = options.cacheSize ?? 4096;
    this.openTimeoutMs = options.openTimeoutMs ?? 10000;
    this._WebSocket = options.WebSocket ?? null;
    this._logger = options.logger ?? console;
    this._decoder = options.preserveFloats ? new FloatDecoder() : new Decoder();
    /** @type {string[] | null} */
    this._capabilities = options.capabilities ? [...options.capabilities] : null;
    /** @type {Map<string, {npc: string, character: string, state?: Record<string, any>}>} */
    this._npcs = new Map();
    for (const n of options.npcs ?? []) this._npcs.set(n.npc, { ...n });
    /** @type {Map<string, Function>} */
    this._handlers = new Map();
    /** @type {Function | null} */
    this._defaultHandler = null;
    /** @type {Map<string, any>} call id -> result frame (a Map keeps insertion order) */
    this._cache = new Map();
    /** @type {Map<string, {call: any, abort: AbortController}>} */
    this._running = new Map();
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {Map<string, SpeechStream>} */
    this._streams = new Map();
    /** @type {Map<string, string>} npc -> idle | thinking | acting | speaking */
    this.statuses = new Map();
    /** @type {Set<Channel>} */
    this._channels = new Set();
    /** @type {any} */
    this._ws = null;
    /** @type {any} the last welcome */
    this.welcome = null;
    this.connected = false;
    this.closed = false;
    /** handler runs started (a cached answer does not count) */
    this.executions = 0;
    /** websocket connections opened */
    this.connections = 0;
    /** @type {BridgeError | null} */
    this.failure = null;
    this._timer = null;
    /** @type {Promise<any> | null} */
    this._firstWelcome = null;
  }

  // -- configuration ------------------------------------------------------------------------

  /**
   * Register the handler of a capability: `async (call, signal) => data`. Throw a
   * GameCallError to fail the call with your own code; `signal` aborts on `cancel`.
   * @param {string} cap
   * @param {(call: any, signal: AbortSignal) => any} fn
   * @returns {this}
   */
  handle(cap, fn) {
    this._handlers.set(cap, fn);
    return this;
  }

  /**
   * Handler for capabilities that have no handler of their own.
   * @param {(call: any, signal: AbortSignal) => any} fn
   * @returns {this}
   */
  handleDefault(fn) {
    this._defaultHandler = fn;
    return this;
  }

  /**
   * Listen to `welcome`, `call`, `cancel`, `say`, `say_end`, `status`, `error` (runtime
   * frames), `speech` (a new SpeechStream), `message` (every runtime frame), `disconnect`
   * (`{code, reason}`), `reconnect` (a welcome after a drop). Returns an unsubscribe function.
   * @param {string} type
   * @param {(value: any) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  /**
   * Call `fn(stream)` for each new speech stream.
   * @param {(speech: SpeechStream) => void} fn
   * @returns {() => void}
   */
  onSpeech(fn) {
    return this.on("speech", fn);
  }

  /**
   * Every new speech stream as an async iterator (ends when the bridge is closed).
   * @returns {AsyncIterable<SpeechStream>}
   */
  speech() {
    return this.messages("speech");
  }

  /**
   * Frames of the given types (default: every runtime frame) as an async iterator, from now
   * until the bridge is closed or the loop is left.
   * @param {...string} types
   * @returns {AsyncIterable<any>}
   */
  messages(...types) {
    const channel = new Channel();
    const wanted = types.length ? types : ["message"];
    const offs = wanted.map((t) => this.on(t, (m) => channel.push(m)));
    this._channels.add(channel);
    const self = this;
    return {
      [Symbol.asyncIterator]() {
        const inner = channel[Symbol.asyncIterator]();
        return {
          next: () => inner.next(),
          return: () => {
            for (const off of offs) off();
            self._channels.delete(channel);
            return inner.return();
          },
        };
      },
    };
  }

  /**
   * Resolve with the first value of `type` for which `predicate` is true.
   * @param {string} type
   * @param {(value: any) => boolean} [predicate]
   * @param {number} [timeoutMs]
   * @returns {Promise<any>}
   */
  waitFor(type, predicate = () => true, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new BridgeError("TIMEOUT", `no ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.on(type, (value) => {
        if (!predicate(value)) return;
        clearTimeout(timer);
        off();
        resolve(value);
      });
    });
  }

  // -- lifecycle ------------------------------------------------------------------------------

  /**
   * Open the connection and resolve with the first `welcome`. Rejects with a BridgeError if
   * the runtime refuses (4001 bad token, 4003 version) or cannot be reached.
   * @returns {Promise<any>}
   */
  connect() {
    if (this._firstWelcome) return this._firstWelcome;
    this.closed = false;
    this._firstWelcome = new Promise((resolve, reject) => {
      this._onFirst = { resolve, reject };
    });
    this._open(0);
    return this._firstWelcome;
  }

  /** Close for good (no reconnect); running handlers are aborted. */
  async close() {
    this.closed = true;
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
    for (const { abort } of this._running.values()) abort.abort();
    this._running.clear();
    const ws = this._ws;
    this._ws = null;
    this.connected = false;
    if (ws && ws.readyState <= 1) {
      await new Promise((resolve) => {
        ws.addEventListener("close", () => resolve(undefined));
        try {
          ws.close(1000, "bye");
        } catch {
          resolve(undefined);
        }
        setTimeout(() => resolve(undefined), 2000);
      });
    }
    for (const stream of this._streams.values()) stream._end("interrupted");
    this._streams.clear();
    for (const channel of this._channels) channel.close();
    this._channels.clear();
    if (this._onFirst) {
      this._onFirst.reject(new BridgeError("DISCONNECTED", "closed before the welcome"));
      this._onFirst = null;
    }
  }

  /** Cut the connection without a goodbye (tests; what a crash looks like). It reconnects. */
  drop() {
    const ws = this._ws;
    if (!ws) return;
    if (typeof ws.terminate === "function") ws.terminate();
    else ws.close(4000, "dropped");
  }

  /** @returns {string | null} the session id of the last welcome */
  get session() {
    return this.welcome ? this.welcome.session : null;
  }

  // -- game -> runtime --------------------------------------------------------------------------

  /**
   * An NPC appeared (or changed character/state). Remembered for reconnects.
   * @param {string} npc
   * @param {string} character
   * @param {Record<string, any>} [state]
   * @returns {boolean} whether it was sent now (else it goes with the next hello)
   */
  spawn(npc, character, state) {
    const entry = state === undefined ? { npc, character } : { npc, character, state };
    this._npcs.set(npc, entry);
    return this._send({ t: "spawn", ...entry });
  }

  /**
   * @param {string} npc
   * @returns {boolean}
   */
  despawn(npc) {
    this._npcs.delete(npc);
    this.statuses.delete(npc);
    return this._send({ t: "despawn", npc });
  }

  /**
   * Something the NPC perceived. Not queued while disconnected: a perception is only
   * worth something now.
   * @param {string} npc
   * @param {string} kind  heard | saw | state | any free-form kind
   * @param {Record<string, any>} data
   * @param {number} [ttlMs]
   * @returns {boolean} whether it was sent
   */
  event(npc, kind, data, ttlMs) {
    return this._send({ t: "event", npc, kind, data, ttl_ms: ttlMs });
  }

  /**
   * `heard {speaker, text}`: speech within the NPC's earshot.
   * @param {string} npc
   * @param {string} speaker
   * @param {string} text
   * @returns {boolean}
   */
  hear(npc, speaker, text) {
    return this.event(npc, "heard", { speaker, text });
  }

  /**
   * News about a running call.
   * @param {string} id
   * @param {any} data
   * @returns {boolean}
   */
  progress(id, data) {
    return this._send({ t: "progress", id, data });
  }

  /**
   * Send a frame as is (tools that speak the protocol by hand).
   * @param {Record<string, any>} frame
   * @returns {boolean}
   */
  sendRaw(frame) {
    return this._send(frame);
  }

  // -- internals ------------------------------------------------------------------------------

  /** @param {Record<string, any>} frame */
  _send(frame) {
    const ws = this._ws;
    if (!ws || !this.connected || ws.readyState !== 1) return false;
    ws.send(encode(frame));
    return true;
  }

  /** @param {any} ws @param {Record<string, any>} frame */
  _sendOn(ws, frame) {
    if (ws && ws.readyState === 1) ws.send(encode(frame));
  }

  /** @param {string} type @param {any} value */
  _emit(type, value) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(value);
      } catch (err) {
        this._logger.error?.(`npc-bridge: a ${type} listener failed`, err);
      }
    }
  }

  _hello() {
    /** @type {Record<string, any>} */
    const hello = { t: "hello", proto: PROTOCOL_VERSION, game: this.game };
    if (this.token !== null) hello.token = this.token;
    if (this.welcome) hello.resume = this.welcome.resume_token;
    const caps = this._declared();
    if (caps !== null) hello.capabilities = caps;
    hello.npcs = [...this._npcs.values()];
    return hello;
  }

  /** The explicit list, else the handled names; undeclared (null) with a default handler. */
  _declared() {
    if (this._capabilities) return this._capabilities;
    if (this._defaultHandler) return null;
    return [...this._handlers.keys()].sort();
  }

  /** @param {number} attempt */
  async _open(attempt) {
    if (this.closed) return;
    let WebSocketImpl;
    try {
      WebSocketImpl = this._WebSocket ?? (this._WebSocket = await defaultWebSocket());
    } catch (err) {
      this._fail(new BridgeError("INTERNAL", `no WebSocket implementation: ${err}`));
      return;
    }
    let ws;
    try {
      ws = new WebSocketImpl(this.url, SUBPROTOCOL);
    } catch (err) {
      this._fail(new BridgeError("BAD_INPUT", `cannot open ${this.url}: ${err}`));
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    this.connections += 1;
    let welcomed = false;
    const openTimer = setTimeout(() => {
      if (!welcomed) ws.close();
    }, this.openTimeoutMs);
    ws.onopen = () => {
      this._sendOn(ws, this._hello());
    };
    ws.onmessage = (/** @type {{data: any}} */ ev) => {
      const msg = this._decode(ev.data);
      if (msg === null) return;
      if (!welcomed) {
        if (msg.t !== "welcome") {
          this._emit("error", msg);
          return;
        }
        welcomed = true;
        clearTimeout(openTimer);
        attempt = 0;
        this._onWelcome(msg, ws);
        return;
      }
      this._dispatch(msg, ws);
    };
    ws.onerror = () => {}; // the close event follows and carries what we need
    ws.onclose = (/** @type {{code: number, reason: string}} */ ev) => {
      clearTimeout(openTimer);
      if (this._ws === ws) {
        this._ws = null;
        this.connected = false;
      }
      for (const stream of this._streams.values()) stream._end("interrupted");
      this._streams.clear();
      this._emit("disconnect", { code: ev.code, reason: ev.reason });
      if (this.closed) return;
      if (FATAL_CLOSE_CODES.includes(ev.code)) {
        const code = { 4001: "UNAUTHORIZED", 4003: "UNSUPPORTED_VERSION", 4009: "REPLACED" }[ev.code];
        this._fail(
          new BridgeError(code ?? "DISCONNECTED", `closed by the runtime: ${ev.code} ${ev.reason}`, {
            closeCode: ev.code,
          }),
        );
        return;
      }
      if (!this.welcome) {
        // Never connected: connect() reports it (a browser hides the HTTP status).
        this._fail(new BridgeError("DISCONNECTED", `no welcome from ${this.url} (close ${ev.code})`, {
          closeCode: ev.code,
        }));
        return;
      }
      if (!this.reconnect) return;
      const next = attempt + 1;
      if (this.maxAttempts !== null && next > this.maxAttempts) {
        this._fail(new BridgeError("DISCONNECTED", `gave up after ${this.maxAttempts} attempts`));
        return;
      }
      const [base, cap] = this.backoff;
      const delay = Math.min(base * 2 ** attempt, cap) * (0.5 + Math.random());
      this._timer = setTimeout(() => this._open(next), delay);
    };
  }

  /** @param {BridgeError} err */
  _fail(err) {
    this.failure = err;
    this.connected = false;
    this.closed = true;
    if (this._onFirst) {
      this._onFirst.reject(err);
      this._onFirst = null;
    }
    this._emit("failure", err);
    for (const channel of this._channels) channel.close();
    this._channels.clear();
  }

  /** @param {any} data */
  _decode(data) {
    if (typeof data === "string") {
      this._logger.warn?.("npc-bridge: ignored a text frame from the runtime");
      return null;
    }
    let msg;
    try {
      msg = this._decoder.decode(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
    } catch (err) {
      this._logger.warn?.("npc-bridge: ignored a frame that is not msgpack", err);
      return null;
    }
    if (!isMap(msg) || typeof msg.t !== "string") {
      this._logger.warn?.("npc-bridge: ignored a frame that is not a message map");
      return null;
    }
    return msg;
  }

  /** @param {any} welcome @param {any} ws */
  _onWelcome(welcome, ws) {
    const previous = this.welcome;
    this.welcome = welcome;
    if (previous && previous.session !== welcome.session) {
      // A new session: calls still running belong to the old one. The cache stays: the new
      // session may resend idempotent calls with the same ids.
      for (const { abort } of this._running.values()) abort.abort();
      this._running.clear();
    }
    this.connected = true;
    for (const id of Array.isArray(welcome.pending) ? welcome.pending : []) {
      const cached = this._cache.get(id);
      if (cached) this._sendOn(ws, cached);
      else if (!this._running.has(id)) {
        this._sendOn(ws, {
          t: "result",
          id,
          ok: false,
          error: { code: "DISCONNECTED", message: "the game never received this call" },
        });
      }
    }
    this._emit("welcome", welcome);
    this._emit("message", welcome);
    if (previous) this._emit("reconnect", welcome);
    if (this._onFirst) {
      this._onFirst.resolve(welcome);
      this._onFirst = null;
    }
  }

  /** @param {any} msg @param {any} ws */
  _dispatch(msg, ws) {
    switch (msg.t) {
      case "call":
        this._onCall(msg, ws);
        break;
      case "cancel": {
        const running = this._running.get(msg.id);
        if (running) {
          this._running.delete(msg.id);
          running.abort.abort(new BridgeError("CANCELLED", `cancelled: ${msg.reason}`));
          // Remembered, not sent: the id must never run again.
          this._remember(msg.id, {
            t: "result",
            id: msg.id,
            ok: false,
            error: { code: "CANCELLED", message: `cancelled by the runtime: ${msg.reason}` },
          });
        }
        break;
      }
      case "say": {
        const key = `${msg.npc}\u0000${msg.stream}`;
        let stream = this._streams.get(key);
        if (!stream) {
          stream = new SpeechStream(msg.npc, msg.stream);
          this._streams.set(key, stream);
          this._emit("speech", stream);
        }
        stream._push(String(msg.text ?? ""));
        break;
      }
      case "say_end": {
        const key = `${msg.npc}\u0000${msg.stream}`;
        let stream = this._streams.get(key);
        if (!stream) {
          // An end with no deltas (e.g. interrupted before the first one): still a stream.
          stream = new SpeechStream(msg.npc, msg.stream);
          this._emit("speech", stream);
        }
        this._streams.delete(key);
        stream._end(String(msg.reason ?? "done"));
        break;
      }
      case "status":
        this.statuses.set(msg.npc, msg.state);
        break;
      default:
        break;
    }
    this._emit(msg.t, msg);
    this._emit("message", msg);
  }

  /** @param {any} call @param {any} ws */
  _onCall(call, ws) {
    const id = call.id;
    const cached = this._cache.get(id);
    if (cached) {
      if (call.mode !== "fire") this._sendOn(ws, cached);
      return;
    }
    if (this._running.has(id)) return; // answered when it finishes
    const handler = this._handlers.get(call.cap) ?? this._defaultHandler;
    if (!handler) {
      const frame = {
        t: "result",
        id,
        ok: false,
        error: { code: "UNKNOWN_CAPABILITY", message: `the game has no handler for ${JSON.stringify(call.cap)}` },
      };
      this._remember(id, frame);
      if (call.mode !== "fire") this._sendOn(ws, frame);
      return;
    }
    this.executions += 1;
    const abort = new AbortController();
    const entry = { call, abort };
    this._running.set(id, entry);
    let value;
    try {
      value = handler(call, abort.signal);
    } catch (err) {
      value = Promise.reject(err);
    }
    Promise.resolve(value).then(
      (data) => this._finish(entry, { t: "result", id, ok: true, data }),
      (err) => {
        // A handler that rejects because it was cancelled is not a failure worth a log.
        if (this._running.get(id) === entry) this._finish(entry, this._errorFrame(id, call.cap, err));
      },
    );
  }

  /** @param {string} id @param {string} cap @param {any} err */
  _errorFrame(id, cap, err) {
    if (err instanceof GameCallError || (err && typeof err.code === "string" && err.name === "GameCallError")) {
      return { t: "result", id, ok: false, error: { code: err.code, message: String(err.message) } };
    }
    this._logger.error?.(`npc-bridge: handler for ${cap} failed`, err);
    return {
      t: "result",
      id,
      ok: false,
      error: { code: "INTERNAL", message: `handler failed: ${err && err.message ? err.message : String(err)}` },
    };
  }

  /** @param {{call: any, abort: AbortController}} entry @param {Record<string, any>} frame */
  _finish(entry, frame) {
    const id = entry.call.id;
    if (this._running.get(id) !== entry) return; // cancelled, or its session is gone
    this._running.delete(id);
    try {
      encode(frame);
    } catch (err) {
      // The handler returned something msgpack cannot carry (a function, a symbol, a cycle).
      frame = this._errorFrame(id, entry.call.cap, new Error(`result not encodable: ${err}`));
    }
    this._remember(id, frame);
    if (entry.call.mode === "fire") return;
    this._send(frame); // on the current connection: the call may have survived a resume
  }

  /** @param {string} id @param {Record<string, any>} frame */
  _remember(id, frame) {
    this._cache.set(id, frame);
    if (this._cache.size > this.cacheSize) {
      const oldest = this._cache.keys().next().value;
      if (oldest !== undefined) this._cache.delete(oldest);
    }
  }
}
