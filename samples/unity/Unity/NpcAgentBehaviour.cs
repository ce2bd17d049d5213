// Unity-only: a MonoBehaviour that connects one NPC to the npc bridge and maps the runtime's
// `call`s to UnityEvents. Not part of the mcs build (it needs UnityEngine); everything it
// wraps (Runtime/BridgeClient.cs, Runtime/MsgPack.cs) is compiled and tested outside Unity.
//
// Setup: add to the NPC's GameObject, set Url / Npc Id / Character, add one Capability
// Binding per action (e.g. "openGate" -> Gate.Open(NpcCall)). Each listener answers with
// call.Reply(data) or call.Fail(code, message), now or later (a coroutine when the NPC
// arrives). Listeners and speech events run on the main thread: the client's callbacks are
// queued and drained in Update().
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using NpcAgent.Bridge;
using UnityEngine;
using UnityEngine.Events;

namespace NpcAgent.Unity
{
    [Serializable] public class NpcCallEvent : UnityEvent<NpcCall> { }
    [Serializable] public class SpeechEvent : UnityEvent<string> { }

    [Serializable]
    public class CapabilityBinding
    {
        public string capability;
        public NpcCallEvent onCall = new NpcCallEvent();
    }

    public class NpcAgentBehaviour : MonoBehaviour
    {
        public string url = "ws://127.0.0.1:8765";
        [Tooltip("Read from this environment variable; never stored in the scene.")]
        public string tokenEnv = "NPC_BRIDGE_TOKEN";
        public string npcId = "guard-1";
        public string character = "guard";
        public List<CapabilityBinding> capabilities = new List<CapabilityBinding>();
        public SpeechEvent onSpeechDelta = new SpeechEvent();
        public SpeechEvent onSpeechEnded = new SpeechEvent();
        public SpeechEvent onStatus = new SpeechEvent();

        readonly ConcurrentQueue<Action> mainThread = new ConcurrentQueue<Action>();
        BridgeClient client;

        public BridgeClient Client { get { return client; } }

        async void Start()
        {
            client = new BridgeClient(url)
            {
                Game = Application.productName,
                Token = Environment.GetEnvironmentVariable(tokenEnv),
                // WebGL cannot set headers: the token travels in hello instead.
                TokenInHello = Application.platform == RuntimePlatform.WebGLPlayer,
                Dispatch = action => mainThread.Enqueue(action),
            };
            foreach (var binding in capabilities)
            {
                var b = binding;
                client.Handle(b.capability, call => b.onCall.Invoke(call));
            }
            client.AddNpc(npcId, character, PositionState());
            client.SpeechDelta += (npc, stream, text) => { if (npc == npcId) onSpeechDelta.Invoke(text); };
            client.SpeechEnded += (npc, stream, text, reason) => { if (npc == npcId) onSpeechEnded.Invoke(text); };
            client.StatusChanged += (npc, state) => { if (npc == npcId) onStatus.Invoke(state); };
            try { await client.ConnectAsync(); }
            catch (Exception e) { Debug.LogWarning("npc bridge: " + e.Message); }
        }

        void Update()
        {
            Action action;
            while (mainThread.TryDequeue(out action)) action();
        }

        /// Something the NPC heard (a player or another NPC within earshot).
        public void Hear(string speaker, string text)
        {
            if (client != null) BridgeClient.Forget(client.Hear(npcId, speaker, text));
        }

        public void Perceive(string kind, Dictionary<string, object> data)
        {
            if (client != null) BridgeClient.Forget(client.SendEvent(npcId, kind, data));
        }

        Dictionary<string, object> PositionState()
        {
            var p = transform.position;  // msgpack has no Vector3: send [x, y, z] as doubles
            return new Dictionary<string, object> { { "position", new List<object> { (double)p.x, (double)p.y, (double)p.z } } };
        }

        async void OnDestroy()
        {
            if (client != null) await client.CloseAsync();
        }
    }
}
