extends Reference
# msgpack for the npc bridge, written for this project (Godot 3.x GDScript).
#
# Why not var2bytes: Godot's own serialisation is not msgpack. Why limits: frames come
# from the network; a header claiming 2^32 items or a 2000-deep nesting must cost nothing.
#
#   var r = Msgpack.encode({"t": "hello", "proto": 1})   # {"bytes": PoolByteArray, "error": ""}
#   var d = Msgpack.decode(bytes)                       # {"value": ..., "error": ""}
#
# Types: Dictionary (String keys only) <-> map, Array / Pool*Array -> array, String <-> str,
# int <-> int (all widths up to int64), float <-> float64 (float32 decoded), bool, null <-> nil,
# PoolByteArray <-> bin. Refused: NaN/Infinity, ext/timestamp, reserved 0xc1, invalid UTF-8,
# non-string map keys, uint64 above int64, trailing bytes, nesting deeper than max_depth.

const MAX_DEPTH = 32
const MAX_BYTES = 65536


static func encode(value, max_depth = MAX_DEPTH):
	var buf = StreamPeerBuffer.new()
	buf.big_endian = true
	var err = _enc(buf, value, 0, max_depth)
	if err != "":
		return {"bytes": PoolByteArray(), "error": err}
	return {"bytes": buf.data_array, "error": ""}


static func decode(bytes, max_bytes = MAX_BYTES, max_depth = MAX_DEPTH):
	if typeof(bytes) != TYPE_RAW_ARRAY:
		return {"value": null, "error": "decode expects a PoolByteArray"}
	if bytes.size() > max_bytes:
		return {"value": null, "error": "frame of %d bytes exceeds %d" % [bytes.size(), max_bytes]}
	if bytes.size() == 0:
		return {"value": null, "error": "empty frame"}
	var r = _Reader.new(bytes, max_depth)
	var value = r.read(0)
	if r.error == "" and r.pos != bytes.size():
		r.error = "%d trailing bytes after the value" % (bytes.size() - r.pos)
	if r.error != "":
		return {"value": null, "error": r.error}
	return {"value": value, "error": ""}


static func _enc(buf, v, depth, max_depth):
	if depth > max_depth:
		return "nesting deeper than %d levels" % max_depth
	var t = typeof(v)
	if t == TYPE_NIL:
		buf.put_u8(0xc0)
	elif t == TYPE_BOOL:
		buf.put_u8(0xc3 if v else 0xc2)
	elif t == TYPE_INT:
		_enc_int(buf, v)
	elif t == TYPE_REAL:
		if is_nan(v) or is_inf(v):
			return "NaN and Infinity cannot be sent"
		buf.put_u8(0xcb)
		buf.put_double(v)
	elif t == TYPE_STRING:
		var raw = v.to_utf8()
		_enc_len(buf, raw.size(), 0xa0, 31, 0xd9, 0xda, 0xdb)
		if raw.size() > 0:
			buf.put_data(raw)
	elif t == TYPE_RAW_ARRAY:
		_enc_len(buf, v.size(), -1, 0, 0xc4, 0xc5, 0xc6)
		if v.size() > 0:
			buf.put_data(v)
	elif t == TYPE_ARRAY or t == TYPE_INT_ARRAY or t == TYPE_REAL_ARRAY or t == TYPE_STRING_ARRAY:
		_enc_len(buf, v.size(), 0x90, 15, -1, 0xdc, 0xdd)
		for item in v:
			var err = _enc(buf, item, depth + 1, max_depth)
			if err != "":
				return err
	elif t == TYPE_DICTIONARY:
		_enc_len(buf, v.size(), 0x80, 15, -1, 0xde, 0xdf)
		for key in v:
			if typeof(key) != TYPE_STRING:
				return "map keys must be strings (got %s)" % str(key)
			_enc(buf, key, depth + 1, max_depth)
			var err = _enc(buf, v[key], depth + 1, max_depth)
			if err != "":
				return err
	elif t == TYPE_VECTOR2:
		return _enc(buf, [v.x, v.y], depth, max_depth)
	elif t == TYPE_VECTOR3:
		return _enc(buf, [v.x, v.y, v.z], depth, max_depth)
	else:
		return "cannot encode a value of Variant type %d" % t
	return ""


static func _enc_len(buf, n, fix_base, fix_max, c8, c16, c32):
	if fix_base >= 0 and n <= fix_max:
		buf.put_u8(fix_base | n)
	elif c8 >= 0 and n <= 0xff:
		buf.put_u8(c8)
		buf.put_u8(n)
	elif n <= 0xffff:
		buf.put_u8(c16)
		buf.put_u16(n)
	else:
		buf.put_u8(c32)
		buf.put_u32(n)


static func _enc_int(buf, n):
	if n >= 0:
		if n <= 0x7f:
			buf.put_u8(n)
		elif n <= 0xff:
			buf.put_u8(0xcc)
			buf.put_u8(n)
		elif n <= 0xffff:
			buf.put_u8(0xcd)
			buf.put_u16(n)
		elif n <= 0xffffffff:
			buf.put_u8(0xce)
			buf.put_u32(n)
		else:
			buf.put_u8(0xcf)
			buf.put_u64(n)
	elif n >= -32:
		buf.put_u8(n & 0xff)
	elif n >= -128:
		buf.put_u8(0xd0)
		buf.put_8(n)
	elif n >= -32768:
		buf.put_u8(0xd1)
		buf.put_16(n)
	elif n >= -2147483648:
		buf.put_u8(0xd2)
		buf.put_32(n)
	else:
		buf.put_u8(0xd3)
		buf.put_64(n)


class _Reader:
	var b
	var buf
	var pos = 0
	var size = 0
	var error = ""
	var max_depth = 32

	func _init(bytes, depth):
		b = bytes
		size = bytes.size()
		max_depth = depth
		buf = StreamPeerBuffer.new()
		buf.big_endian = true
		buf.data_array = bytes

	func fail(msg):
		if error == "":
			error = "%s (at byte %d)" % [msg, pos]
		return null

	func need(n):
		if pos + n > size:
			fail("truncated: %d more bytes needed" % (pos + n - size))
			return false
		return true

	func uint(n):
		var x = 0
		for i in range(n):
			x = (x << 8) | b[pos + i]
		pos += n
		return x

	func read(depth):
		if error != "":
			return null
		if depth > max_depth:
			return fail("nesting deeper than %d levels" % max_depth)
		if not need(1):
			return null
		var c = b[pos]
		pos += 1
		if c <= 0x7f:
			return c
		if c >= 0xe0:
			return c - 256
		if c >= 0xa0 and c <= 0xbf:
			return read_str(c & 0x1f)
		if c >= 0x90 and c <= 0x9f:
			return read_array(c & 0x0f, depth)
		if c >= 0x80 and c <= 0x8f:
			return read_map(c & 0x0f, depth)
		if c == 0xc0:
			return null
		if c == 0xc2:
			return false
		if c == 0xc3:
			return true
		if c == 0xc4 or c == 0xc5 or c == 0xc6:
			var w = [1, 2, 4][c - 0xc4]
			if not need(w):
				return null
			return read_bin(uint(w))
		if c == 0xca or c == 0xcb:
			var w = 4 if c == 0xca else 8
			if not need(w):
				return null
			buf.seek(pos)
			var f = buf.get_float() if w == 4 else buf.get_double()
			pos += w
			if is_nan(f) or is_inf(f):
				return fail("NaN/Infinity refused")
			return f
		if c >= 0xcc and c <= 0xce:
			var w = [1, 2, 4][c - 0xcc]
			if not need(w):
				return null
			return uint(w)
		if c == 0xcf or c == 0xd3:
			if not need(8):
				return null
			if c == 0xcf and b[pos] >= 0x80:
				return fail("uint64 above the int64 range")
			buf.seek(pos)
			var x = buf.get_64()
			pos += 8
			return x
		if c >= 0xd0 and c <= 0xd2:
			var w = [1, 2, 4][c - 0xd0]
			if not need(w):
				return null
			var x = uint(w)
			var half = 1 << (8 * w - 1)
			if x >= half:
				x -= half * 2
			return x
		if c >= 0xd9 and c <= 0xdb:
			var w = [1, 2, 4][c - 0xd9]
			if not need(w):
				return null
			return read_str(uint(w))
		if c == 0xdc or c == 0xdd:
			var w = 2 if c == 0xdc else 4
			if not need(w):
				return null
			return read_array(uint(w), depth)
		if c == 0xde or c == 0xdf:
			var w = 2 if c == 0xde else 4
			if not need(w):
				return null
			return read_map(uint(w), depth)
		if c == 0xc1:
			return fail("reserved byte 0xc1")
		return fail("ext/timestamp type 0x%x not supported" % c)

	func take(n):
		if n == 0:
			return PoolByteArray()
		var out = b.subarray(pos, pos + n - 1)
		pos += n
		return out

	func read_bin(n):
		if not need(n):
			return null
		return take(n)

	func read_str(n):
		if not need(n):
			return null
		var raw = take(n)
		for i in range(raw.size()):
			if raw[i] >= 0x80:
				if not utf8_ok(raw):
					return fail("invalid UTF-8 in a string")
				break
		return raw.get_string_from_utf8()

	func utf8_ok(raw):
		# Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
		var i = 0
		var n = raw.size()
		while i < n:
			var c = raw[i]
			if c < 0x80:
				i += 1
				continue
			var more = 0
			var cp = 0
			var least = 0
			if c >= 0xc2 and c <= 0xdf:
				more = 1
				cp = c & 0x1f
				least = 0x80
			elif c >= 0xe0 and c <= 0xef:
				more = 2
				cp = c & 0x0f
				least = 0x800
			elif c >= 0xf0 and c <= 0xf4:
				more = 3
				cp = c & 0x07
				least = 0x10000
			else:
				return false
			if i + more >= n:
				return false
			for k in range(1, more + 1):
				var cc = raw[i + k]
				if (cc & 0xc0) != 0x80:
					return false
				cp = (cp << 6) | (cc & 0x3f)
			if cp < least or cp > 0x10ffff or (cp >= 0xd800 and cp <= 0xdfff):
				return false
			i += more + 1
		return true


	func read_array(n, depth):
		# Every item takes at least one byte: a header claiming more than the frame holds
		# is refused before anything is allocated.
		if n > size - pos:
			return fail("array of %d items exceeds the frame" % n)
		var out = []
		for i in range(n):
			var v = read(depth + 1)
			if error != "":
				return null
			out.append(v)
		return out

	func read_map(n, depth):
		if n * 2 > size - pos:
			return fail("map of %d entries exceeds the frame" % n)
		var out = {}
		for i in range(n):
			var k = read(depth + 1)
			if error != "":
				return null
			if typeof(k) != TYPE_STRING:
				return fail("map key is not a string")
			var v = read(depth + 1)
			if error != "":
				return null
			out[k] = v
		return out
