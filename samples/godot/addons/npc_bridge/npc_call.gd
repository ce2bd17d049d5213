extends Reference
# One `call` from the runtime: answer it exactly once with reply() or fail(), now or later
# (after a yield, when the NPC arrives...). After a cancel, answers are dropped: the runtime
# has given up on this id; stop the action when `cancelled` fires.

signal cancelled(reason)

var id = ""
var npc = ""
var cap = ""
var args = {}
var mode = "call"  # "fire": the runtime does not wait; reply() only records the outcome
var deadline_ms = 0  # ms the runtime waits, counted from received_msec
var received_msec = 0
var answered = false
var is_cancelled = false
var cancel_reason = ""

var _client = null


func _init(client, msg):
	_client = weakref(client)
	id = msg.get("id", "")
	npc = msg.get("npc", "")
	cap = msg.get("cap", "")
	args = msg.get("args", {})
	mode = msg.get("mode", "call")
	deadline_ms = msg.get("deadline_ms", 0)
	received_msec = OS.get_ticks_msec()


func reply(data = null):
	_answer(true, data, "", "")


func fail(code, message = ""):
	_answer(false, null, str(code), str(message))


func progress(data):
	var client = _client.get_ref()
	if client != null and not answered and not is_cancelled and mode == "call":
		client._send({"t": "progress", "id": id, "data": data})


func ms_left():
	return deadline_ms - (OS.get_ticks_msec() - received_msec)


func _answer(ok, data, code, message):
	if answered or is_cancelled:
		return
	answered = true
	var client = _client.get_ref()
	if client != null:
		client._finish(self, ok, data, code, message)


func _cancel(reason):
	if answered or is_cancelled:
		return
	is_cancelled = true
	cancel_reason = reason
	emit_signal("cancelled", reason)
