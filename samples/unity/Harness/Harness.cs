// Console harness for the C# bridge client (no Unity needed), built with mono's mcs:
//
//   mcs -out:harness.exe samples/unity/Runtime/*.cs samples/unity/Harness/Harness.cs
//   mono harness.exe codec                      # msgpack codec self-test
//   mono harness.exe guard ws://127.0.0.1:8765  # a guard turn against `npc serve samples/village`
//   mono harness.exe conformance ws://...       # the kit's profile for `npc bridge conformance`
//
// Prints NPC-TEST PASS/FAIL lines; exit code 0 on success.
using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using NpcAgent.Bridge;

public static class Harness
{
    public static int Main(string[] args)
    {
        if (args.Length < 1) { Console.Error.WriteLine("usage: harness.exe codec | guard URL | conformance URL"); return 2; }
        string token = Environment.GetEnvironmentVariable("NPC_BRIDGE_TOKEN");
        try
        {
            if (args[0] == "codec") return CodecTest.Run();
            if (args.Length < 2) { Console.Error.WriteLine("missing URL"); return 2; }
            if (args[0] == "guard") return Guard(args[1], token).GetAwaiter().GetResult();
            if (args[0] == "conformance") return Conformance(args[1], token).GetAwaiter().GetResult();
        }
        catch (Exception e)
        {
            Console.WriteLine("NPC-TEST FAIL " + e);
            return 1;
        }
        Console.Error.WriteLine("unknown mode " + args[0]);
        return 2;
    }

    static Dictionary<string, object> Map(params object[] kv)
    {
        var map = new Dictionary<string, object>();
        for (int i = 0; i < kv.Length; i += 2) map[(string)kv[i]] = kv[i + 1];
        return map;
    }

    // A full guard turn: say the password, run openGate, receive speech.
    static async Task<int> Guard(string url, string token)
    {
        var client = new BridgeClient(url) { Game = "unity-harness", Token = token, Reconnect = false };
        var opened = new ManualResetEventSlim();
        var done = new TaskCompletionSource<bool>();
        var said = new List<string>();
        client.AddNpc("guard-1", "guard", Map("position", new List<object> { 0.0, 0.0, 36.0 }));
        client.Handle("openGate", call =>
        {
            Console.WriteLine("NPC-TEST openGate called (id " + call.Id + ")");
            opened.Set();
            call.Reply(Map("opened", true));
        });
        client.Handle("goToLocation", call => call.Reply(Map("arrived", true)));
        client.Handle("say", call => call.Reply());
        client.Handle("emote", call => call.Reply());
        client.Handle("wait", call => call.Reply(Map("waited", true)));
        client.SpeechEnded += (npc, stream, text, reason) =>
        {
            Console.WriteLine("NPC-TEST " + npc + " says (" + reason + "): " + text);
            lock (said) said.Add(text);
            if (opened.IsSet && reason == "done") done.TrySetResult(true);
        };
        string session = await client.ConnectAsync();
        Console.WriteLine("NPC-TEST connected: session " + session);
        await client.Hear("guard-1", "player", "Good evening. The password is oak.");
        var winner = await Task.WhenAny(done.Task, Task.Delay(30000));
        await client.CloseAsync();
        await Task.WhenAny(client.Finished, Task.Delay(5000));
        if (winner != done.Task)
        {
            Console.WriteLine("NPC-TEST FAIL timed out: opened=" + opened.IsSet + " said=" + string.Join(" | ", said));
            return 1;
        }
        Console.WriteLine("NPC-TEST PASS unity guard turn: " + string.Join(" | ", said));
        return 0;
    }

    // The conformance kit's profile (docs/engines.md) on the public client API.
    static async Task<int> Conformance(string url, string token)
    {
        var client = new BridgeClient(url) { Game = "unity-harness", Token = token, Reconnect = false };
        client.Capabilities = new List<string> { "kitEcho", "kitCount", "kitSleep", "kitEmit", "kitSpeech", "kitClose", "kitUnimplemented" };
        client.AddNpc("kit-npc", "guard");
        int counter = 0;
        bool closeAsked = false;
        var speech = new Dictionary<string, string>();
        var ended = new Dictionary<string, string>();
        var status = new Dictionary<string, string>();
        client.SpeechEnded += (npc, stream, text, reason) => { lock (speech) { speech[stream] = text; ended[stream] = reason; } };
        client.StatusChanged += (npc, state) => { lock (speech) status[npc] = state; };
        client.Handle("kitEcho", call => call.Reply(call.Args));
        client.Handle("kitCount", call => call.Reply(Map("count", (long)Interlocked.Increment(ref counter))));
        client.HandleAsync("kitSleep", async call =>
        {
            object ms;
            if (!call.Args.TryGetValue("ms", out ms) || !(ms is long)) throw new ArgumentException("ms must be an int");
            await Task.Delay((int)(long)ms, call.Cancelled);
            Interlocked.Increment(ref counter);
            return Map("slept", ms);
        });
        client.HandleAsync("kitEmit", async call =>
        {
            await client.SendEvent(call.Npc, (string)call.Args["kind"], (Dictionary<string, object>)call.Args["data"]);
            return Map("sent", true);
        });
        client.Handle("kitSpeech", call =>
        {
            string stream = call.Args["stream"] as string ?? "", text, reason, state;
            lock (speech)
            {
                speech.TryGetValue(stream, out text);
                ended.TryGetValue(stream, out reason);
                status.TryGetValue(call.Npc, out state);
            }
            call.Reply(Map("text", text, "reason", reason, "status", state));
        });
        client.Handle("kitClose", call => { closeAsked = true; call.Reply(); BridgeClient.Forget(client.CloseAsync()); });
        await client.ConnectAsync();
        var finished = await Task.WhenAny(client.Finished, Task.Delay(60000));
        Console.WriteLine("NPC-TEST harness finished (kitClose " + closeAsked + ", close " + client.CloseStatus + ")");
        return finished == client.Finished && closeAsked ? 0 : 1;
    }
}

static class CodecTest
{
    static readonly List<string> failures = new List<string>();

    static void Check(bool ok, string what) { if (!ok) failures.Add(what); }

    static string Hex(byte[] b) { return BitConverter.ToString(b).Replace("-", "").ToLowerInvariant(); }

    public static int Run()
    {
        object[] values = {
            null, true, false, 0L, 1L, 127L, 128L, 255L, 256L, 65535L, 65536L, 4294967295L, 4294967296L,
            -1L, -32L, -33L, -128L, -129L, -32768L, -32769L, -2147483648L, -2147483649L,
            1099511627776L, -1099511627776L, 1.5, -0.25, 1e300, "", "a", "Ünïcödé ✓ 🛡",
            new string('y', 300), new string('z', 70000),
        };
        foreach (var v in values)
        {
            byte[] enc = MsgPack.Encode(v);
            object dec = MsgPack.Decode(enc, 1 << 20);
            Check(Equals(v, dec), "round trip of " + (v ?? "null").ToString().Substring(0, Math.Min(30, (v ?? "null").ToString().Length)));
        }
        // msgpack.packb({"t": "hi", "n": [1, -1, 1.5, None, True]}, use_bin_type=True)
        var frame = new Dictionary<string, object> { { "t", "hi" }, { "n", new List<object> { 1L, -1L, 1.5, null, true } } };
        Check(Hex(MsgPack.Encode(frame)) == "82a174a26869a16e9501ffcb3ff8000000000000c0c3", "known bytes " + Hex(MsgPack.Encode(frame)));
        var nested = (Dictionary<string, object>)MsgPack.Decode(MsgPack.Encode(new Dictionary<string, object> { { "m", new Dictionary<string, object> { { "bin", new byte[] { 0, 255 } } } } }));
        Check(Hex((byte[])((Dictionary<string, object>)nested["m"])["bin"]) == "00ff", "bin in a map");
        var f32 = (List<object>)MsgPack.Decode(new byte[] { 0x92, 0xca, 0x3f, 0xc0, 0, 0, 0xcf, 0, 0, 1, 0, 0, 0, 0, 0 });
        Check((double)f32[0] == 1.5 && (long)f32[1] == 1099511627776L, "float32 / uint64");

        var bad = new Dictionary<string, byte[]> {
            { "truncated", new byte[] { 0x92, 0x01 } },
            { "trailing", new byte[] { 0x01, 0x02 } },
            { "huge map header", new byte[] { 0xdf, 0xff, 0xff, 0xff, 0xff } },
            { "huge array header", new byte[] { 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01 } },
            { "reserved 0xc1", new byte[] { 0xc1 } },
            { "int key", new byte[] { 0x81, 0x01, 0x01 } },
            { "invalid utf8", new byte[] { 0xa2, 0xc3, 0x28 } },
            { "surrogate", new byte[] { 0xa3, 0xed, 0xa0, 0x80 } },
            { "ext", new byte[] { 0xd4, 0x01, 0x00 } },
            { "timestamp", new byte[] { 0xd6, 0xff, 0, 0, 0, 0 } },
            { "nan", new byte[] { 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0 } },
            { "uint64 too big", new byte[] { 0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0 } },
            { "empty", new byte[0] },
            { "oversized", new byte[70000] },
        };
        var deep = new byte[2001];
        for (int i = 0; i < 2000; i++) deep[i] = 0x91;
        deep[2000] = 0x01;
        bad["2000-deep nesting"] = deep;
        foreach (var kv in bad)
        {
            bool refused = false;
            try { MsgPack.Decode(kv.Value); } catch (MsgPackException) { refused = true; }
            Check(refused, kv.Key + " accepted");
        }
        foreach (var v in new object[] { double.NaN, double.PositiveInfinity, new Dictionary<int, int> { { 1, 2 } } })
        {
            bool refused = false;
            try { MsgPack.Encode(v); } catch (MsgPackException) { refused = true; }
            Check(refused, "encoded " + v);
        }
        if (failures.Count == 0) { Console.WriteLine("NPC-TEST PASS codec"); return 0; }
        foreach (var f in failures) Console.WriteLine("NPC-TEST FAIL " + f);
        return 1;
    }
}
