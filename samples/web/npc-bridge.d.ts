// Types of npc-bridge.js: the npcagent bridge protocol v1 (docs/protocol.md), game side.

export declare const SUBPROTOCOL: "npc-bridge.v1";
export declare const PROTOCOL_VERSION: 1;
export declare const FATAL_CLOSE_CODES: readonly number[];

export type NpcState = "idle" | "thinking" | "acting" | "speaking";
export type SpeechEndReason = "done" | "interrupted" | "cancelled";

export interface NpcEntry {
  npc: string;
  character: string;
  state?: Record<string, unknown>;
}

export interface Welcome {
  t: "welcome";
  proto: number;
  session: string;
  resume_token: string;
  runtime: string;
  limits: Record<string, number>;
  missing: string[];
  pending: string[];
}

export interface Call {
  t: "call";
  id: string;
  npc: string;
  cap: string;
  args: Record<string, unknown>;
  mode: "call" | "fire";
  deadline_ms: number;
}

export interface Cancel { t: "cancel"; id: string; reason: string }
export interface Say { t: "say"; npc: string; stream: string; text: string }
export interface SayEnd { t: "say_end"; npc: string; stream: string; reason: SpeechEndReason }
export interface Status { t: "status"; npc: string; state: NpcState }
export interface ErrorFrame { t: "error"; id?: string; code: string; message: string; retryable: boolean }

export type RuntimeMessage = Welcome | Call | Cancel | Say | SayEnd | Status | ErrorFrame;

export interface Result {
  t: "result";
  id: string;
  ok: boolean;
  data?: unknown;
  error?: { code: string; message: string };
}

/** A handler: resolve with the result data; throw GameCallError for a game error. */
export type CallHandler = (call: Call, signal: AbortSignal) => unknown | Promise<unknown>;

export interface NpcBridgeOptions {
  /** Game name sent in hello (a resumed session must keep it). Default "web". */
  game?: string;
  /** Sent in hello (browsers cannot set an Authorization header). */
  token?: string | null;
  /** Declared capabilities; default: the names with a handler (undeclared with a default handler). */
  capabilities?: string[];
  /** NPCs declared in every hello (spawn() adds to them). */
  npcs?: NpcEntry[];
  /** Reconnect and resume after a drop. Default true. */
  reconnect?: boolean;
  /** Backoff [first, max] in ms, doubling with jitter. Default [50, 2000]. */
  backoffMs?: [number, number];
  /** Give up after this many failed reconnects in a row. Default: never. */
  maxAttempts?: number | null;
  /** Finished results remembered by call id. Default 4096. */
  cacheSize?: number;
  /** No welcome within this many ms closes the attempt. Default 10000. */
  openTimeoutMs?: number;
  /** A WebSocket constructor (default: globalThis.WebSocket, else the `ws` package). */
  WebSocket?: unknown;
  /**
   * Decode msgpack floats that hold whole numbers (3.0) as `Number` objects, so that sending
   * them back keeps them floats (JavaScript has one number type). Default false: plain numbers.
   */
  preserveFloats?: boolean;
  /** Where warnings go. Default console. */
  logger?: Pick<Console, "warn" | "error">;
}

/** Encode one value as msgpack the way the client does (Number objects become float64). */
export declare function encode(value: unknown): Uint8Array;
/** A number sent as a msgpack float even when it is whole (3 -> 3.0). */
export declare function float64(value: number): Number;

export declare class GameCallError extends Error {
  constructor(code: string, message: string);
  code: string;
}

export declare class BridgeError extends Error {
  constructor(code: string, message: string, extra?: { closeCode?: number });
  code: string;
  closeCode?: number;
}

export declare class SpeechStream implements AsyncIterable<string> {
  readonly npc: string;
  readonly stream: string;
  /** The text so far. */
  readonly text: string;
  readonly deltas: string[];
  /** null until say_end. */
  readonly reason: SpeechEndReason | string | null;
  /** Resolves with the end reason. */
  readonly done: Promise<string>;
  [Symbol.asyncIterator](): AsyncIterator<string>;
}

export interface Disconnect { code: number; reason: string }

export interface EventMap {
  welcome: Welcome;
  reconnect: Welcome;
  call: Call;
  cancel: Cancel;
  say: Say;
  say_end: SayEnd;
  status: Status;
  error: ErrorFrame;
  message: RuntimeMessage;
  speech: SpeechStream;
  disconnect: Disconnect;
  failure: BridgeError;
}

export declare class NpcBridge {
  constructor(url: string, options?: NpcBridgeOptions);
  readonly url: string;
  game: string;
  token: string | null;
  welcome: Welcome | null;
  readonly session: string | null;
  connected: boolean;
  closed: boolean;
  executions: number;
  connections: number;
  failure: BridgeError | null;
  /** Last status of each NPC. */
  readonly statuses: Map<string, NpcState>;

  handle(cap: string, fn: CallHandler): this;
  handleDefault(fn: CallHandler): this;
  on<K extends keyof EventMap>(type: K, fn: (value: EventMap[K]) => void): () => void;
  onSpeech(fn: (speech: SpeechStream) => void): () => void;
  speech(): AsyncIterable<SpeechStream>;
  messages<K extends keyof EventMap>(...types: K[]): AsyncIterable<EventMap[K]>;
  waitFor<K extends keyof EventMap>(
    type: K,
    predicate?: (value: EventMap[K]) => boolean,
    timeoutMs?: number,
  ): Promise<EventMap[K]>;

  connect(): Promise<Welcome>;
  close(): Promise<void>;
  drop(): void;

  spawn(npc: string, character: string, state?: Record<string, unknown>): boolean;
  despawn(npc: string): boolean;
  event(npc: string, kind: string, data: Record<string, unknown>, ttlMs?: number): boolean;
  hear(npc: string, speaker: string, text: string): boolean;
  progress(id: string, data: unknown): boolean;
  sendRaw(frame: Record<string, unknown>): boolean;
}
