// A small msgpack codec for the npc bridge, with the limits a network peer needs.
//
// Why our own and not MessagePack-CSharp: no dependency to vendor into a Unity project and
// it compiles with plain mcs. If you already use MessagePack-CSharp, decode with
// MessagePackSecurity.UntrustedData (it bounds depth and hash collisions) and map types as
// below; see docs/engines.md.
//
// Types: IDictionary (string keys) <-> map (decoded as Dictionary<string, object>),
// IList / arrays -> array (decoded as List<object>), string <-> str, integers -> int
// (decoded as long), float/double -> float64 (decoded as double; float32 accepted), bool,
// null <-> nil, byte[] <-> bin. Refused (MsgPackException): NaN/Infinity, ext/timestamp,
// 0xc1, invalid UTF-8, non-string keys, uint64 > long.MaxValue, trailing bytes, frames over
// maxBytes, nesting over maxDepth, container headers claiming more items than the frame holds.
using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace NpcAgent.Bridge
{
    public class MsgPackException : Exception
    {
        public MsgPackException(string message) : base(message) { }
    }

    public static class MsgPack
    {
        public const int DefaultMaxBytes = 65536;
        public const int DefaultMaxDepth = 32;
        static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        // ---------------------------------------------------------------- encoding

        public static byte[] Encode(object value, int maxDepth = DefaultMaxDepth)
        {
            var stream = new MemoryStream();
            Write(stream, value, 0, maxDepth);
            return stream.ToArray();
        }

        static void Write(MemoryStream s, object v, int depth, int maxDepth)
        {
            if (depth > maxDepth) throw new MsgPackException("nesting deeper than " + maxDepth);
            if (v == null) { s.WriteByte(0xc0); return; }
            if (v is bool) { s.WriteByte((bool)v ? (byte)0xc3 : (byte)0xc2); return; }
            if (v is string) { WriteStr(s, (string)v); return; }
            if (v is byte[]) { var b = (byte[])v; WriteLen(s, b.Length, -1, 0, 0xc4, 0xc5, 0xc6); s.Write(b, 0, b.Length); return; }
            if (v is double || v is float)
            {
                double d = Convert.ToDouble(v);
                if (double.IsNaN(d) || double.IsInfinity(d)) throw new MsgPackException("NaN and Infinity cannot be sent");
                s.WriteByte(0xcb); WriteBE(s, (ulong)BitConverter.DoubleToInt64Bits(d), 8); return;
            }
            if (v is ulong)
            {
                ulong u = (ulong)v;
                if (u > long.MaxValue) throw new MsgPackException("integer above the int64 range");
                WriteInt(s, (long)u); return;
            }
            if (v is long || v is int || v is short || v is sbyte || v is byte || v is ushort || v is uint)
            {
                WriteInt(s, Convert.ToInt64(v)); return;
            }
            var dict = v as IDictionary;
            if (dict != null)
            {
                WriteLen(s, dict.Count, 0x80, 15, -1, 0xde, 0xdf);
                foreach (DictionaryEntry e in dict)
                {
                    var key = e.Key as string;
                    if (key == null) throw new MsgPackException("map keys must be strings");
                    WriteStr(s, key);
                    Write(s, e.Value, depth + 1, maxDepth);
                }
                return;
            }
            var list = v as IList;
            if (list != null)
            {
                WriteLen(s, list.Count, 0x90, 15, -1, 0xdc, 0xdd);
                foreach (var item in list) Write(s, item, depth + 1, maxDepth);
                return;
            }
            throw new MsgPackException("cannot encode a " + v.GetType().Name);
        }

        static void WriteStr(MemoryStream s, string text)
        {
            byte[] raw = StrictUtf8.GetBytes(text);
            WriteLen(s, raw.Length, 0xa0, 31, 0xd9, 0xda, 0xdb);
            s.Write(raw, 0, raw.Length);
        }

        static void WriteLen(MemoryStream s, int n, int fixBase, int fixMax, int c8, int c16, int c32)
        {
            if (fixBase >= 0 && n <= fixMax) s.WriteByte((byte)(fixBase | n));
            else if (c8 >= 0 && n <= 0xff) { s.WriteByte((byte)c8); s.WriteByte((byte)n); }
            else if (n <= 0xffff) { s.WriteByte((byte)c16); WriteBE(s, (ulong)n, 2); }
            else { s.WriteByte((byte)c32); WriteBE(s, (ulong)n, 4); }
        }

        static void WriteInt(MemoryStream s, long n)
        {
            if (n >= 0)
            {
                if (n <= 0x7f) s.WriteByte((byte)n);
                else if (n <= 0xff) { s.WriteByte(0xcc); s.WriteByte((byte)n); }
                else if (n <= 0xffff) { s.WriteByte(0xcd); WriteBE(s, (ulong)n, 2); }
                else if (n <= 0xffffffffL) { s.WriteByte(0xce); WriteBE(s, (ulong)n, 4); }
                else { s.WriteByte(0xcf); WriteBE(s, (ulong)n, 8); }
            }
            else if (n >= -32) s.WriteByte((byte)(n & 0xff));
            else if (n >= sbyte.MinValue) { s.WriteByte(0xd0); s.WriteByte((byte)(n & 0xff)); }
            else if (n >= short.MinValue) { s.WriteByte(0xd1); WriteBE(s, (ulong)n, 2); }
            else if (n >= int.MinValue) { s.WriteByte(0xd2); WriteBE(s, (ulong)n, 4); }
            else { s.WriteByte(0xd3); WriteBE(s, (ulong)n, 8); }
        }

        static void WriteBE(MemoryStream s, ulong v, int width)
        {
            for (int i = width - 1; i >= 0; i--) s.WriteByte((byte)(v >> (8 * i)));
        }

        // ---------------------------------------------------------------- decoding

        public static object Decode(byte[] data, int maxBytes = DefaultMaxBytes, int maxDepth = DefaultMaxDepth)
        {
            if (data == null || data.Length == 0) throw new MsgPackException("empty frame");
            if (data.Length > maxBytes) throw new MsgPackException("frame of " + data.Length + " bytes exceeds " + maxBytes);
            var r = new Reader(data, maxDepth);
            object value = r.Read(0);
            if (r.Pos != data.Length) throw new MsgPackException((data.Length - r.Pos) + " trailing bytes after the value");
            return value;
        }

        sealed class Reader
        {
            readonly byte[] b;
            readonly int maxDepth;
            public int Pos;

            public Reader(byte[] data, int depth) { b = data; maxDepth = depth; }

            void Need(int n)
            {
                if (n < 0 || Pos + n > b.Length) throw new MsgPackException("truncated at byte " + Pos);
            }

            ulong UInt(int width)
            {
                Need(width);
                ulong x = 0;
                for (int i = 0; i < width; i++) x = (x << 8) | b[Pos + i];
                Pos += width;
                return x;
            }

            public object Read(int depth)
            {
                if (depth > maxDepth) throw new MsgPackException("nesting deeper than " + maxDepth);
                Need(1);
                int c = b[Pos++];
                if (c <= 0x7f) return (long)c;
                if (c >= 0xe0) return (long)(c - 256);
                if (c >= 0xa0 && c <= 0xbf) return Str(c & 0x1f);
                if (c >= 0x90 && c <= 0x9f) return Array(c & 0x0f, depth);
                if (c >= 0x80 && c <= 0x8f) return Map(c & 0x0f, depth);
                switch (c)
                {
                    case 0xc0: return null;
                    case 0xc2: return false;
                    case 0xc3: return true;
                    case 0xc4: return Bin((long)UInt(1));
                    case 0xc5: return Bin((long)UInt(2));
                    case 0xc6: return Bin((long)UInt(4));
                    case 0xca: return Finite(BitConverter.ToSingle(BitConverter.GetBytes((uint)UInt(4)), 0));
                    case 0xcb: return Finite(BitConverter.Int64BitsToDouble((long)UInt(8)));
                    case 0xcc: return (long)UInt(1);
                    case 0xcd: return (long)UInt(2);
                    case 0xce: return (long)UInt(4);
                    case 0xcf:
                        ulong u = UInt(8);
                        if (u > long.MaxValue) throw new MsgPackException("uint64 above the int64 range");
                        return (long)u;
                    case 0xd0: return (long)(sbyte)UInt(1);
                    case 0xd1: return (long)(short)UInt(2);
                    case 0xd2: return (long)(int)UInt(4);
                    case 0xd3: return (long)UInt(8);
                    case 0xd9: return Str((long)UInt(1));
                    case 0xda: return Str((long)UInt(2));
                    case 0xdb: return Str((long)UInt(4));
                    case 0xdc: return Array((long)UInt(2), depth);
                    case 0xdd: return Array((long)UInt(4), depth);
                    case 0xde: return Map((long)UInt(2), depth);
                    case 0xdf: return Map((long)UInt(4), depth);
                    case 0xc1: throw new MsgPackException("reserved byte 0xc1");
                    default: throw new MsgPackException("ext/timestamp type 0x" + c.ToString("x2") + " not supported");
                }
            }

            static double Finite(double d)
            {
                if (double.IsNaN(d) || double.IsInfinity(d)) throw new MsgPackException("NaN/Infinity refused");
                return d;
            }

            byte[] Bin(long n)
            {
                if (n > b.Length - Pos) throw new MsgPackException("bin longer than the frame");
                var raw = new byte[n];
                Buffer.BlockCopy(b, Pos, raw, 0, (int)n);
                Pos += (int)n;
                return raw;
            }

            string Str(long n)
            {
                if (n > b.Length - Pos) throw new MsgPackException("str longer than the frame");
                string s;
                try { s = StrictUtf8.GetString(b, Pos, (int)n); }
                catch (ArgumentException) { throw new MsgPackException("invalid UTF-8 in a string"); }
                Pos += (int)n;
                return s;
            }

            List<object> Array(long n, int depth)
            {
                // Every item takes at least one byte: refuse lying headers before allocating.
                if (n > b.Length - Pos) throw new MsgPackException("array of " + n + " items exceeds the frame");
                var list = new List<object>((int)n);
                for (long i = 0; i < n; i++) list.Add(Read(depth + 1));
                return list;
            }

            Dictionary<string, object> Map(long n, int depth)
            {
                if (n * 2 > b.Length - Pos) throw new MsgPackException("map of " + n + " entries exceeds the frame");
                var map = new Dictionary<string, object>((int)n);
                for (long i = 0; i < n; i++)
                {
                    var key = Read(depth + 1) as string;
                    if (key == null) throw new MsgPackException("map key is not a string");
                    map[key] = Read(depth + 1);
                }
                return map;
            }
        }
    }
}
