extends Node
# NpcBridge: the game side of the npc bridge (protocol v1, docs/protocol.md) for Godot 3.x.
#
# Add it to your scene, set `url` (and `token`), declare NPCs with add_npc(), register
# capability handlers with register(cap, target, method) or list them in
# `signal_capabilities` and answer `call_received(call)`. The node polls its socket in
# _process (every frame: Godot's WebSocketClient does nothing unless polled).
#
# What it guarantees (a conforming game, protocol.md section 3):
# - binary frames only, one msgpack map each (msgpack.gd, with size and depth limits);
# - every call id runs at most once: results are cached by id (bounded, across reconnects),
#   a resent finished id gets the cached result, a resent running id is ignored;
# - a call with no handler is answered UNKNOWN_CAPABILITY at once (never left hanging);
# - cancel: the call's `cancelled` signal fires and later answers are dropped;
# - on a dropped connection it reconnects with backoff and resumes (hello.resume), answering
#   welcome.pending from the cache, or DISCONNECTED for ids it never received.

const Msgpack = preload("msgpack.gd")
const NpcCall = preload("npc_call.gd")

const SUBPROTOCOL = "npc-bridge.v1"
const PROTOCOL_VERSION = 1
const FATAL_CLOSES = [4001, 4003, 4009]  # unauthorized, bad version, replaced: do not retry

signal connected(session, welcome)
signal disconnected(code, reason, will_retry)
signal call_received(call)
signal call_cancelled(call)
signal speech_delta(npc, stream, text)
signal speech_ended(npc, stream, text, reason)
signal status_changed(npc, state)
signal bridge_error(code, message, call_id)

export var url = "ws://127.0.0.1:8765"
export var token = ""
export var token_in_hello = false  # for exports that cannot set headers (HTML5)
export var game = "godot"
export var capabilities = PoolStringArray()  # declared in hello; empty: the handled ones
export var signal_capabilities = PoolStringArray()  # answered via call_received
export var auto_connect = true
export var reconnect = true
export var backoff_min_s = 0.05
export var backoff_max_s = 2.0
export var cache_size = 4096

var session = ""
var welcome = {}
var close_code = -1
var close_reason = ""

var _ws = null
var _open = false
var _closing = false
var _npcs = {}
var _handlers = {}
var _cache = {}
var _cache_order = []
var _running = {}
var _speech = {}
var _resume_token = ""
var _retry_in = -1.0
var _delay = 0.05
var _max_frame = Msgpack.MAX_BYTES
var _graveyard = []  # sockets that closed during their own signal: freed on the next poll


func _ready():
	if auto_connect and url != "":
		connect_to_runtime()


func _process(delta):
	poll(delta)


# -- public API


func connect_to_runtime():
	_closing = false
	_delay = backoff_min_s
	_open_socket()


func close(code = 1000, reason = "bye"):
	# Deliberate close: no reconnect.
	_closing = true
	_retry_in = -1.0
	if _ws != null:
		close_code = code
		close_reason = reason
		_ws.disconnect_from_host(code, reason)


func is_open():
	return _open


func register(cap, target, method):
	# target.method(call) answers with call.reply(data) / call.fail(code, msg), now or later;
	# a non-null return value (not a yield) is sent as the reply.
	_handlers[cap] = [target, method]


func add_npc(npc, character, state = null):
	_npcs[npc] = {"npc": npc, "character": character}
	if state != null:
		_npcs[npc]["state"] = state
	if _open:
		var msg = {"t": "spawn", "npc": npc, "character": character}
		if state != null:
			msg["state"] = state
		_send(msg)


func remove_npc(npc):
	_npcs.erase(npc)
	if _open:
		_send({"t": "despawn", "npc": npc})


func send_event(npc, kind, data, ttl_ms = -1):
	var msg = {"t": "event", "npc": npc, "kind": kind, "data": data}
	if ttl_ms >= 0:
		msg["ttl_ms"] = ttl_ms
	return _send(msg)


func hear(npc, speaker, text):
	return send_event(npc, "heard", {"speaker": speaker, "text": text})


func declared_capabilities():
	if capabilities.size() > 0:
		return Array(capabilities)
	var names = _handlers.keys()
	for cap in signal_capabilities:
		if not cap in names:
			names.append(cap)
	names.sort()
	return names


func poll(delta = 0.0):
	_graveyard.clear()
	if _ws != null:
		_ws.poll()
	if _retry_in >= 0.0:
		_retry_in -= delta
		if _retry_in < 0.0:
			_open_socket()


# -- connection


func _open_socket():
	_retry_in = -1.0
	_ws = WebSocketClient.new()
	_ws.connect("connection_established", self, "_on_established")
	_ws.connect("connection_error", self, "_on_connection_error")
	_ws.connect("connection_closed", self, "_on_closed")
	_ws.connect("server_close_request", self, "_on_close_request")
	_ws.connect("data_received", self, "_on_data")
	close_code = -1
	close_reason = ""
	var headers = PoolStringArray()
	if token != "" and not token_in_hello:
		headers.append("Authorization: Bearer " + token)
	var err = _ws.connect_to_url(url, PoolStringArray([SUBPROTOCOL]), false, headers)
	if err != OK:
		_ws = null
		_lost("connect_to_url failed (%d)" % err)


func _on_established(protocol):
	if protocol != SUBPROTOCOL:
		push_warning("npc bridge: the server did not accept %s" % SUBPROTOCOL)
		_ws.disconnect_from_host(1002, "subprotocol")
		return
	_ws.get_peer(1).set_write_mode(WebSocketPeer.WRITE_MODE_BINARY)
	var hello = {"t": "hello", "proto": PROTOCOL_VERSION, "game": game}
	if token != "" and token_in_hello:
		hello["token"] = token
	if _resume_token != "":
		hello["resume"] = _resume_token
	hello["capabilities"] = declared_capabilities()
	hello["npcs"] = _npcs.values()
	_send_raw(hello)


func _on_close_request(code, reason):
	close_code = code
	close_reason = reason


func _on_connection_error():
	_lost("connection failed")


func _on_closed(_was_clean):
	_lost(close_reason)


func _lost(reason):
	var was_open = _open
	_open = false
	if _ws != null:
		_graveyard.append(_ws)  # still emitting the signal that brought us here
	_ws = null
	var retry = reconnect and not _closing and not close_code in FATAL_CLOSES
	if was_open or retry or _closing:
		emit_signal("disconnected", close_code, reason, retry)
	if retry:
		_retry_in = _delay * (0.5 + randf())
		_delay = min(_delay * 2.0, backoff_max_s)


func _send(msg):
	if not _open:
		return false
	return _send_raw(msg)


func _send_raw(msg):
	var enc = Msgpack.encode(msg)
	if enc.error != "":
		push_error("npc bridge: cannot encode %s: %s" % [msg.get("t"), enc.error])
		return false
	return _put(enc.bytes)


func _put(bytes):
	if _ws == null:
		return false
	if bytes.size() > _max_frame:
		push_error("npc bridge: frame of %d bytes exceeds %d" % [bytes.size(), _max_frame])
		return false
	return _ws.get_peer(1).put_packet(bytes) == OK


func _on_data():
	var peer = _ws.get_peer(1)
	while _ws != null and peer.get_available_packet_count() > 0:
		var packet = peer.get_packet()
		if peer.was_string_packet():
			push_warning("npc bridge: ignored a text frame from the runtime")
			continue
		var dec = Msgpack.decode(packet, max(_max_frame, Msgpack.MAX_BYTES))
		if dec.error != "":
			push_warning("npc bridge: ignored a bad frame: " + dec.error)
			continue
		var msg = dec.value
		if typeof(msg) != TYPE_DICTIONARY or typeof(msg.get("t")) != TYPE_STRING:
			push_warning("npc bridge: ignored a frame without a type")
			continue
		_dispatch(msg)


# -- runtime -> game


func _dispatch(msg):
	var t = msg["t"]
	if t == "welcome":
		_on_welcome(msg)
	elif t == "call":
		_on_call(msg)
	elif t == "cancel":
		var call = _running.get(_s(msg, "id"))
		if call != null:
			_running.erase(call.id)
			call._cancel(_s(msg, "reason"))
			emit_signal("call_cancelled", call)
	elif t == "say":
		var key = _s(msg, "npc") + "\n" + _s(msg, "stream")
		_speech[key] = _speech.get(key, "") + _s(msg, "text")
		emit_signal("speech_delta", _s(msg, "npc"), _s(msg, "stream"), _s(msg, "text"))
	elif t == "say_end":
		var key = _s(msg, "npc") + "\n" + _s(msg, "stream")
		var text = _speech.get(key, "")
		_speech.erase(key)
		emit_signal("speech_ended", _s(msg, "npc"), _s(msg, "stream"), text, _s(msg, "reason"))
	elif t == "status":
		emit_signal("status_changed", _s(msg, "npc"), _s(msg, "state"))
	elif t == "error":
		emit_signal("bridge_error", _s(msg, "code"), _s(msg, "message"), msg.get("id"))
		push_warning("npc bridge: %s %s" % [_s(msg, "code"), _s(msg, "message")])


func _s(msg, key):
	var v = msg.get(key, "")
	return v if typeof(v) == TYPE_STRING else ""


func _on_welcome(msg):
	var new_session = _s(msg, "session")
	if session != "" and new_session != session:
		# A new session: calls still running belong to the old one (keep the cache: the new
		# session may resend idempotent calls with the same ids).
		for call in _running.values():
			call._cancel("new session")
		_running.clear()
	session = new_session
	welcome = msg
	_resume_token = _s(msg, "resume_token")
	var limits = msg.get("limits", {})
	if typeof(limits) == TYPE_DICTIONARY and typeof(limits.get("max_frame_bytes")) == TYPE_INT:
		_max_frame = limits["max_frame_bytes"]
	_open = true
	_delay = backoff_min_s
	var pending = msg.get("pending", [])
	if typeof(pending) == TYPE_ARRAY:
		for id in pending:
			if _cache.has(id):
				_put(_cache[id])
			elif not _running.has(id):
				_send(_result_msg(id, false, null, "DISCONNECTED", "the game never received this call"))
	emit_signal("connected", session, msg)


func _on_call(msg):
	var id = _s(msg, "id")
	if id == "":
		return
	if _cache.has(id):
		if msg.get("mode", "call") != "fire":
			_put(_cache[id])
		return
	if _running.has(id):
		return
	var call = NpcCall.new(self, msg)
	_running[id] = call
	if _handlers.has(call.cap):
		var h = _handlers[call.cap]
		var ret = h[0].call(h[1], call)
		if ret != null and not (ret is GDScriptFunctionState) and not call.answered:
			call.reply(ret)
	elif call.cap in signal_capabilities:
		emit_signal("call_received", call)
	else:
		call.fail("UNKNOWN_CAPABILITY", "the game has no handler for '%s'" % call.cap)


func _result_msg(id, ok, data, code, message):
	if ok:
		return {"t": "result", "id": id, "ok": true, "data": data}
	return {"t": "result", "id": id, "ok": false, "error": {"code": code, "message": message}}


func _finish(call, ok, data, code, message):
	# Called by NpcCall.reply/fail: cache the answer by id, send it unless fire mode.
	_running.erase(call.id)
	var enc = Msgpack.encode(_result_msg(call.id, ok, data, code, message))
	if enc.error != "":
		enc = Msgpack.encode(_result_msg(call.id, false, null, "INTERNAL", "unencodable result: " + enc.error))
	_cache[call.id] = enc.bytes
	_cache_order.append(call.id)
	if _cache_order.size() > cache_size:
		_cache.erase(_cache_order.pop_front())
	if call.mode != "fire" and _open:
		_put(enc.bytes)
