extends SceneTree
# Headless codec test: godot3-server --path samples/godot -s res://tests/msgpack_test.gd
# Byte vectors come from Python's msgpack (packb(use_bin_type=True)); prints NPC-TEST PASS/FAIL.

const Msgpack = preload("res://addons/npc_bridge/msgpack.gd")

var failures = []


func _init():
	_round_trips()
	_known_bytes()
	_refusals()
	if failures.empty():
		print("NPC-TEST PASS msgpack")
		quit(0)
	else:
		for f in failures:
			print("NPC-TEST FAIL ", f)
		quit(1)


func _check(cond, what):
	if not cond:
		failures.append(what)


func _round_trips():
	var values = [
		null, true, false, 0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296,
		-1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649,
		1099511627776, -1099511627776, 1.5, -0.25, 1e300, "", "a", "Ünïcödé ✓ 🛡",
		"x".repeat(40), "y".repeat(300), "z".repeat(70000), [], [1, [2, [3]]], {},
		{"k": "v", "n": {"deep": [true, null]}}, PoolByteArray([0, 1, 255]),
	]
	for v in values:
		var e = Msgpack.encode(v)
		_check(e.error == "", "encode %s: %s" % [str(v).left(40), e.error])
		var d = Msgpack.decode(e.bytes, 1 << 20)
		_check(d.error == "", "decode %s: %s" % [str(v).left(40), d.error])
		_check(typeof(d.value) == typeof(v), "type of %s" % str(v).left(40))
		_check(str(d.value) == str(v), "value of %s -> %s" % [str(v).left(40), str(d.value).left(40)])


func _known_bytes():
	# msgpack.packb({"t": "hi", "n": [1, -1, 1.5, None, True]}, use_bin_type=True)
	var expected = PoolByteArray([
		0x82, 0xa1, 0x74, 0xa2, 0x68, 0x69, 0xa1, 0x6e, 0x95, 0x01, 0xff,
		0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xc0, 0xc3])
	var e = Msgpack.encode({"t": "hi", "n": [1, -1, 1.5, null, true]})
	_check(e.bytes == expected, "bytes: %s" % str(e.bytes))
	# float32 1.5 and uint64 2^40 as Python might send them
	var d = Msgpack.decode(PoolByteArray([0x92, 0xca, 0x3f, 0xc0, 0, 0, 0xcf, 0, 0, 1, 0, 0, 0, 0, 0]))
	_check(d.error == "" and d.value[0] == 1.5 and d.value[1] == 1099511627776, "float32/uint64")


func _refusals():
	var bad = {
		"truncated": PoolByteArray([0x92, 0x01]),
		"trailing": PoolByteArray([0x01, 0x02]),
		"huge map header": PoolByteArray([0xdf, 0xff, 0xff, 0xff, 0xff]),
		"huge array header": PoolByteArray([0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]),
		"reserved 0xc1": PoolByteArray([0xc1]),
		"int key": PoolByteArray([0x81, 0x01, 0x01]),
		"invalid utf8": PoolByteArray([0xa2, 0xc3, 0x28]),
		"surrogate": PoolByteArray([0xa3, 0xed, 0xa0, 0x80]),
		"ext": PoolByteArray([0xd4, 0x01, 0x00]),
		"timestamp": PoolByteArray([0xd6, 0xff, 0, 0, 0, 0]),
		"nan": PoolByteArray([0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]),
		"uint64 too big": PoolByteArray([0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0]),
		"empty": PoolByteArray(),
	}
	for name in bad:
		var d = Msgpack.decode(bad[name])
		_check(d.error != "", "%s accepted" % name)
	var deep = PoolByteArray()
	for i in range(2000):
		deep.append(0x91)
	deep.append(0x01)
	_check(Msgpack.decode(deep).error != "", "2000-deep nesting accepted")
	var big = PoolByteArray()
	big.resize(70000)
	_check(Msgpack.decode(big).error != "", "oversized frame accepted")
	_check(Msgpack.encode({1: 2}).error != "", "int key encoded")
	_check(Msgpack.encode(NAN).error != "", "NaN encoded")
	_check(Msgpack.encode(INF).error != "", "Infinity encoded")
	var nest = []
	var cur = nest
	for i in range(40):
		var inner = []
		cur.append(inner)
		cur = inner
	_check(Msgpack.encode(nest).error != "", "40-deep encode accepted")
