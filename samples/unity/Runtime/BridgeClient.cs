// The game side of the npc bridge (protocol v1, docs/protocol.md) in plain C#:
// System.Net.WebSockets.ClientWebSocket + MsgPack.cs. No Unity types here, so it compiles
// with mcs/csc and runs in a console harness; NpcAgentBehaviour.cs wraps it for Unity.
//
// What it guarantees (a conforming game, protocol.md section 3):
// - binary frames only; fragmented messages are reassembled up to MaxFrameBytes;
// - every call id runs at most once: results are cached by id (bounded, across reconnects),
//   a resent finished id gets the cached result, a resent running id is ignored;
// - a call with no handler is answered UNKNOWN_CAPABILITY at once;
// - cancel: NpcCall.Cancelled fires, later answers are dropped;
// - a dropped connection is retried with backoff and resumed (hello.resume).
//
// Threads: the receive loop runs on the thread pool. Handlers and events are invoked through
// `Dispatch` (inline by default); Unity must set it to enqueue onto the main thread.
using System;
using System.Collections.Generic;
using System.IO;
using System.Net.WebSockets;
using System.Threading;
using System.Threading.Tasks;

namespace NpcAgent.Bridge
{
    public sealed class NpcCall
    {
        public string Id { get; private set; }
        public string Npc { get; private set; }
        public string Cap { get; private set; }
        public string Mode { get; private set; }
        public long DeadlineMs { get; private set; }
        public Dictionary<string, object> Args { get; private set; }
        public CancellationToken Cancelled { get { return cts.Token; } }
        public bool IsCancelled { get { return cts.IsCancellationRequested; } }

        internal readonly CancellationTokenSource cts = new CancellationTokenSource();
        internal int answered;
        readonly BridgeClient client;

        internal NpcCall(BridgeClient client, Dictionary<string, object> msg)
        {
            this.client = client;
            Id = msg["id"] as string;
            Npc = BridgeClient.Str(msg, "npc");
            Cap = BridgeClient.Str(msg, "cap");
            Mode = BridgeClient.Str(msg, "mode") == "fire" ? "fire" : "call";
            object deadline;
            DeadlineMs = msg.TryGetValue("deadline_ms", out deadline) && deadline is long ? (long)deadline : 0;
            Args = (msg.ContainsKey("args") ? msg["args"] as Dictionary<string, object> : null) ?? new Dictionary<string, object>();
        }

        public void Reply(object data = null) { client.Finish(this, true, data, null, null); }

        public void Fail(string code, string message) { client.Finish(this, false, null, code, message); }

        public void Progress(object data)
        {
            if (answered == 0 && !IsCancelled && Mode == "call")
                client.SendMap(new Dictionary<string, object> { { "t", "progress" }, { "id", Id }, { "data", data } });
        }
    }

    public sealed class BridgeClient : IDisposable
    {
        public const string Subprotocol = "npc-bridge.v1";
        static readonly int[] FatalCloses = { 4001, 4003, 4009 };

        public string Url = "ws://127.0.0.1:8765";
        public string Game = "unity";
        public string Token;
        public bool TokenInHello;  // WebGL cannot set headers
        public bool Reconnect = true;
        public List<string> Capabilities;  // null: the names with a handler
        public int CacheSize = 4096;
        public int MaxFrameBytes = MsgPack.DefaultMaxBytes;
        public Action<Action> Dispatch = action => action();

        public string Session { get; private set; }
        public Dictionary<string, object> Welcome { get; private set; }
        public int? CloseStatus { get; private set; }
        public bool IsOpen { get { return open; } }
        public Task Finished { get { return finished.Task; } }

        public event Action<string> Connected;
        public event Action<int, string, bool> Disconnected;  // close code (-1 none), reason, will retry
        public event Action<string, string, string> SpeechDelta;  // npc, stream, text
        public event Action<string, string, string, string> SpeechEnded;  // npc, stream, text, reason
        public event Action<string, string> StatusChanged;  // npc, state
        public event Action<string, string, string> BridgeError;  // code, message, call id
        public event Action<NpcCall> CallCancelled;

        readonly object gate = new object();
        readonly Dictionary<string, Action<NpcCall>> handlers = new Dictionary<string, Action<NpcCall>>();
        readonly Dictionary<string, Dictionary<string, object>> npcs = new Dictionary<string, Dictionary<string, object>>();
        readonly Dictionary<string, byte[]> cache = new Dictionary<string, byte[]>();
        readonly Queue<string> cacheOrder = new Queue<string>();
        readonly Dictionary<string, NpcCall> running = new Dictionary<string, NpcCall>();
        readonly Dictionary<string, string> speech = new Dictionary<string, string>();
        readonly SemaphoreSlim sendLock = new SemaphoreSlim(1, 1);
        readonly TaskCompletionSource<bool> finished = new TaskCompletionSource<bool>();
        readonly Random random = new Random();
        ClientWebSocket ws;
        TaskCompletionSource<string> firstWelcome;
        string resumeToken;
        volatile bool open;
        volatile bool closing;

        public BridgeClient(string url) { Url = url; }

        // -- configuration

        public void Handle(string cap, Action<NpcCall> handler) { lock (gate) handlers[cap] = handler; }

        public void HandleAsync(string cap, Func<NpcCall, Task<object>> handler)
        {
            Handle(cap, call => handler(call).ContinueWith(t =>
            {
                if (t.IsCanceled || call.IsCancelled) return;
                if (t.IsFaulted) call.Fail("INTERNAL", t.Exception.GetBaseException().Message);
                else call.Reply(t.Result);
            }));
        }

        public void AddNpc(string npc, string character, Dictionary<string, object> state = null)
        {
            var entry = new Dictionary<string, object> { { "npc", npc }, { "character", character } };
            if (state != null) entry["state"] = state;
            lock (gate) npcs[npc] = entry;
            if (open)
            {
                var spawn = new Dictionary<string, object>(entry);
                spawn["t"] = "spawn";
                SendMap(spawn);
            }
        }

        public Task<bool> RemoveNpc(string npc)
        {
            lock (gate) npcs.Remove(npc);
            return SendMap(new Dictionary<string, object> { { "t", "despawn" }, { "npc", npc } });
        }

        public Task<bool> SendEvent(string npc, string kind, Dictionary<string, object> data, int ttlMs = -1)
        {
            var msg = new Dictionary<string, object> { { "t", "event" }, { "npc", npc }, { "kind", kind }, { "data", data } };
            if (ttlMs >= 0) msg["ttl_ms"] = ttlMs;
            return SendMap(msg);
        }

        public Task<bool> Hear(string npc, string speaker, string text)
        {
            return SendEvent(npc, "heard", new Dictionary<string, object> { { "speaker", speaker }, { "text", text } });
        }

        // -- lifecycle

        /// Connects, waits for the first welcome (returns the session id) and keeps the
        /// connection (and reconnections) running in the background until CloseAsync.
        public Task<string> ConnectAsync()
        {
            firstWelcome = new TaskCompletionSource<string>();
            closing = false;
            Task.Run(() => RunAsync());
            return firstWelcome.Task;
        }

        /// Deliberate close (1000): no reconnect; Finished completes when the socket is closed.
        public async Task CloseAsync()
        {
            closing = true;
            var socket = ws;
            if (socket == null) return;
            await sendLock.WaitAsync().ConfigureAwait(false);
            try
            {
                if (socket.State == WebSocketState.Open)
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception) { socket.Abort(); }
            finally { sendLock.Release(); }
        }

        public void Dispose() { closing = true; var socket = ws; if (socket != null) socket.Dispose(); }

        async Task RunAsync()
        {
            double delay = 0.05;
            while (!closing)
            {
                string reason = "closed";
                try { await SessionOnce().ConfigureAwait(false); delay = 0.05; }
                catch (Exception e) { reason = e.Message; }
                bool wasOpen = open;
                open = false;
                int code = CloseStatus ?? -1;
                bool retry = Reconnect && !closing && Array.IndexOf(FatalCloses, code) < 0;
                if (!wasOpen && Session == null && !retry)
                    firstWelcome.TrySetException(new WebSocketException("no welcome: " + reason));
                Fire(() => { var h = Disconnected; if (h != null) h(code, reason, retry); });
                if (!retry) break;
                await Task.Delay(TimeSpan.FromSeconds(delay * (0.5 + random.NextDouble()))).ConfigureAwait(false);
                delay = Math.Min(delay * 2, 2.0);
            }
            finished.TrySetResult(true);
        }

        async Task SessionOnce()
        {
            CloseStatus = null;
            var socket = new ClientWebSocket();
            socket.Options.AddSubProtocol(Subprotocol);
            if (!string.IsNullOrEmpty(Token) && !TokenInHello)
                socket.Options.SetRequestHeader("Authorization", "Bearer " + Token);
            await socket.ConnectAsync(new Uri(Url), CancellationToken.None).ConfigureAwait(false);
            ws = socket;
            if (socket.SubProtocol != Subprotocol)
            {
                socket.Abort();
                throw new WebSocketException("the server did not accept " + Subprotocol);
            }
            await SendRaw(MsgPack.Encode(Hello())).ConfigureAwait(false);
            var chunk = new byte[16384];
            var message = new MemoryStream();
            while (socket.State == WebSocketState.Open || socket.State == WebSocketState.CloseSent)
            {
                var got = await socket.ReceiveAsync(new ArraySegment<byte>(chunk), CancellationToken.None).ConfigureAwait(false);
                if (got.MessageType == WebSocketMessageType.Close)
                {
                    CloseStatus = (int?)got.CloseStatus;
                    if (socket.State == WebSocketState.CloseReceived)
                    {
                        try { await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None).ConfigureAwait(false); }
                        catch (Exception) { }
                    }
                    break;
                }
                // Reassemble fragments: one msgpack map may arrive in several frames.
                if (message.Length + got.Count > MaxFrameBytes)
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.MessageTooBig, "frame too big", CancellationToken.None).ConfigureAwait(false);
                    break;
                }
                message.Write(chunk, 0, got.Count);
                if (!got.EndOfMessage) continue;
                byte[] bytes = message.ToArray();
                message.SetLength(0);
                if (got.MessageType != WebSocketMessageType.Binary) continue;  // text: not ours
                Dictionary<string, object> msg;
                try { msg = MsgPack.Decode(bytes, Math.Max(MaxFrameBytes, MsgPack.DefaultMaxBytes)) as Dictionary<string, object>; }
                catch (MsgPackException) { continue; }
                if (msg != null && msg.ContainsKey("t")) await OnMessage(msg).ConfigureAwait(false);
            }
        }

        Dictionary<string, object> Hello()
        {
            var hello = new Dictionary<string, object> { { "t", "hello" }, { "proto", 1 }, { "game", Game } };
            if (!string.IsNullOrEmpty(Token) && TokenInHello) hello["token"] = Token;
            if (resumeToken != null) hello["resume"] = resumeToken;
            lock (gate)
            {
                var caps = Capabilities != null ? new List<string>(Capabilities) : new List<string>(handlers.Keys);
                hello["capabilities"] = caps;
                hello["npcs"] = new List<object>(npcs.Values);
            }
            return hello;
        }

        // -- runtime -> game

        async Task OnMessage(Dictionary<string, object> msg)
        {
            string t = Str(msg, "t");
            if (t == "welcome") await OnWelcome(msg).ConfigureAwait(false);
            else if (t == "call") await OnCall(msg).ConfigureAwait(false);
            else if (t == "cancel")
            {
                NpcCall call;
                lock (gate)
                {
                    if (running.TryGetValue(Str(msg, "id"), out call)) running.Remove(call.Id);
                }
                if (call != null)
                {
                    call.cts.Cancel();
                    Fire(() => { var h = CallCancelled; if (h != null) h(call); });
                }
            }
            else if (t == "say")
            {
                string npc = Str(msg, "npc"), stream = Str(msg, "stream"), text = Str(msg, "text");
                string key = npc + "\n" + stream, sofar;
                speech[key] = (speech.TryGetValue(key, out sofar) ? sofar : "") + text;
                Fire(() => { var h = SpeechDelta; if (h != null) h(npc, stream, text); });
            }
            else if (t == "say_end")
            {
                string npc = Str(msg, "npc"), stream = Str(msg, "stream"), reason = Str(msg, "reason");
                string key = npc + "\n" + stream, text;
                if (!speech.TryGetValue(key, out text)) text = "";
                speech.Remove(key);
                Fire(() => { var h = SpeechEnded; if (h != null) h(npc, stream, text, reason); });
            }
            else if (t == "status")
            {
                string npc = Str(msg, "npc"), state = Str(msg, "state");
                Fire(() => { var h = StatusChanged; if (h != null) h(npc, state); });
            }
            else if (t == "error")
            {
                string code = Str(msg, "code"), message = Str(msg, "message"), id = Str(msg, "id");
                Fire(() => { var h = BridgeError; if (h != null) h(code, message, id); });
            }
        }

        async Task OnWelcome(Dictionary<string, object> msg)
        {
            string session = Str(msg, "session");
            List<NpcCall> stale = new List<NpcCall>();
            lock (gate)
            {
                if (Session != null && session != Session)
                {
                    // A new session: running calls belong to the old one; the cache stays
                    // (the new session may resend idempotent calls with the same ids).
                    stale.AddRange(running.Values);
                    running.Clear();
                }
            }
            foreach (var call in stale) call.cts.Cancel();
            Session = session;
            Welcome = msg;
            resumeToken = Str(msg, "resume_token");
            object limits, maxFrame;
            if (msg.TryGetValue("limits", out limits) && limits is Dictionary<string, object>
                && ((Dictionary<string, object>)limits).TryGetValue("max_frame_bytes", out maxFrame) && maxFrame is long)
                MaxFrameBytes = (int)(long)maxFrame;
            open = true;
            object pending;
            if (msg.TryGetValue("pending", out pending) && pending is List<object>)
            {
                foreach (var item in (List<object>)pending)
                {
                    var id = item as string;
                    if (id == null) continue;
                    byte[] cached;
                    bool isRunning;
                    lock (gate) { cache.TryGetValue(id, out cached); isRunning = running.ContainsKey(id); }
                    if (cached != null) await SendRaw(cached).ConfigureAwait(false);
                    else if (!isRunning) await SendRaw(ResultFrame(id, false, null, "DISCONNECTED", "the game never received this call")).ConfigureAwait(false);
                }
            }
            firstWelcome.TrySetResult(session);
            Fire(() => { var h = Connected; if (h != null) h(session); });
        }

        async Task OnCall(Dictionary<string, object> msg)
        {
            string id = Str(msg, "id");
            if (id == "") return;
            byte[] cached;
            NpcCall call;
            Action<NpcCall> handler;
            lock (gate)
            {
                if (cache.TryGetValue(id, out cached)) { }
                else if (running.ContainsKey(id)) return;
                call = cached == null ? new NpcCall(this, msg) : null;
                if (call != null) running[id] = call;
                handlers.TryGetValue(Str(msg, "cap"), out handler);
            }
            if (cached != null)
            {
                if (Str(msg, "mode") != "fire") await SendRaw(cached).ConfigureAwait(false);
                return;
            }
            if (handler == null)
            {
                call.Fail("UNKNOWN_CAPABILITY", "the game has no handler for '" + call.Cap + "'");
                return;
            }
            Fire(() =>
            {
                try { handler(call); }
                catch (Exception e) { call.Fail("INTERNAL", "handler failed: " + e.Message); }
            });
        }

        internal void Finish(NpcCall call, bool ok, object data, string code, string message)
        {
            if (call.IsCancelled || Interlocked.Exchange(ref call.answered, 1) == 1) return;
            byte[] frame;
            try { frame = ResultFrame(call.Id, ok, data, code, message); }
            catch (MsgPackException e) { frame = ResultFrame(call.Id, false, null, "INTERNAL", "unencodable result: " + e.Message); }
            lock (gate)
            {
                running.Remove(call.Id);
                if (!cache.ContainsKey(call.Id)) cacheOrder.Enqueue(call.Id);
                cache[call.Id] = frame;
                while (cacheOrder.Count > CacheSize) cache.Remove(cacheOrder.Dequeue());
            }
            if (call.Mode != "fire" && open) Forget(SendRaw(frame));
        }

        static byte[] ResultFrame(string id, bool ok, object data, string code, string message)
        {
            var msg = new Dictionary<string, object> { { "t", "result" }, { "id", id }, { "ok", ok } };
            if (ok) msg["data"] = data;
            else msg["error"] = new Dictionary<string, object> { { "code", code }, { "message", message ?? "" } };
            return MsgPack.Encode(msg);
        }

        // -- sending

        internal Task<bool> SendMap(Dictionary<string, object> msg)
        {
            if (!open) return Task.FromResult(false);
            return SendRaw(MsgPack.Encode(msg));
        }

        async Task<bool> SendRaw(byte[] frame)
        {
            var socket = ws;
            if (socket == null || frame.Length > MaxFrameBytes) return false;
            await sendLock.WaitAsync().ConfigureAwait(false);
            try
            {
                if (socket.State != WebSocketState.Open) return false;
                await socket.SendAsync(new ArraySegment<byte>(frame), WebSocketMessageType.Binary, true, CancellationToken.None).ConfigureAwait(false);
                return true;
            }
            catch (Exception) { return false; }
            finally { sendLock.Release(); }
        }

        void Fire(Action action) { Dispatch(action); }

        /// Fire-and-forget: the send lock keeps the order, a failed send means the link is gone.
        internal static void Forget(Task task) { }

        internal static string Str(Dictionary<string, object> msg, string key)
        {
            object v;
            return msg.TryGetValue(key, out v) && v is string ? (string)v : "";
        }
    }
}
