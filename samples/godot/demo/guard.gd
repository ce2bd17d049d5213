extends Node2D
# The gate guard: walks and opens the gate when the runtime asks.
#
# Each capability handler receives an NpcCall and answers it with reply()/fail(), at once or
# when the action is over (arrival). A cancel (timeout, interrupted turn) stops the walk.

signal gate_opened
signal spoke(text)

const SPEED = 10.0  # metres per second
const GATE = Vector2(0, 40)  # (x, z) in metres: the village's north gate
const PIXELS_PER_METRE = 8.0

export var npc_id = "guard-1"
export var character = "guard"
export var start = Vector2(0, 36)

var bridge
var gate
var here = Vector2()
var _walk = null  # {"call": NpcCall, "target": Vector2, "then": "" or "open"}


func attach(b, g):
	bridge = b
	gate = g
	here = start
	_place()
	bridge.add_npc(npc_id, character, {"position": [here.x, 0, here.y]})
	bridge.register("goToLocation", self, "_go_to_location")
	bridge.register("openGate", self, "_open_gate")
	bridge.register("wait", self, "_wait")
	bridge.register("say", self, "_say")
	bridge.register("emote", self, "_emote")


func _go_to_location(call):
	var x = call.args.get("x")
	var z = call.args.get("z")
	if not (typeof(x) in [TYPE_INT, TYPE_REAL] and typeof(z) in [TYPE_INT, TYPE_REAL]):
		call.fail("BAD_ARGS", "x and z must be numbers")
		return
	_start_walk(call, Vector2(x, z), "")


func _open_gate(call):
	if gate.is_open:
		call.reply({"opened": true, "already": true})
	elif here.distance_to(GATE) > 2.0:
		_start_walk(call, GATE - Vector2(0, 1.5), "open")
	else:
		_do_open(call)


func _wait(call):
	var seconds = call.args.get("seconds", 1)
	yield(get_tree().create_timer(float(seconds)), "timeout")
	if not call.is_cancelled:
		call.reply({"waited": seconds})


func _say(call):
	emit_signal("spoke", str(call.args.get("text", "")))
	call.reply()  # fire mode: recorded for the id cache, nothing is sent


func _emote(call):
	call.reply({"emote": call.args.get("kind")})


func _start_walk(call, target, then):
	if _walk != null:
		_walk.call.fail("INTERRUPTED", "a newer order replaced this walk")
	_walk = {"call": call, "target": target, "then": then}
	call.connect("cancelled", self, "_on_walk_cancelled", [call])


func _on_walk_cancelled(_reason, call):
	if _walk != null and _walk.call == call:
		_walk = null


func _process(delta):
	if _walk == null:
		return
	var target = _walk.target
	var step = SPEED * delta
	if here.distance_to(target) <= step:
		here = target
		var call = _walk.call
		var then = _walk.then
		_walk = null
		_place()
		bridge.send_event(npc_id, "state", {"position": [here.x, 0, here.y]})
		if then == "open":
			_do_open(call)
		else:
			call.reply({"arrived": true, "position": [here.x, here.y]})
	else:
		here += (target - here).normalized() * step
		_place()


func _do_open(call):
	gate.open()
	emit_signal("gate_opened")
	call.reply({"opened": true})


func _place():
	position = Vector2(here.x, -here.y) * PIXELS_PER_METRE


func _draw():
	draw_circle(Vector2(), 6, Color(0.2, 0.4, 0.9))
