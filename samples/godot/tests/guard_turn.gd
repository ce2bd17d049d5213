extends SceneTree
# A full NPC turn in a real (headless) Godot against `npc serve samples/village`:
#
#   NPC_BRIDGE_URL=ws://127.0.0.1:8765 godot3-server --path samples/godot -s res://tests/guard_turn.gd
#
# Spawns the guard of the demo scene, says the password ("oak") within its earshot, lets the
# runtime call openGate (the guard walks to the gate and opens it), and waits for speech.
# Prints NPC-TEST PASS and exits 0, or NPC-TEST FAIL and exits 1.

var demo
var bridge
var guard
var gate
var said = []
var said_after_open = []
var statuses = []
var opened = false
var asked = false


func _init():
	var scene = load("res://demo/gate_demo.tscn")
	if scene == null:
		_fail("cannot load res://demo/gate_demo.tscn")
		return
	demo = scene.instance()
	bridge = demo.get_node("NpcBridge")
	guard = demo.get_node("World/Guard")
	gate = demo.get_node("Gate")
	bridge.connect("connected", self, "_on_connected")
	bridge.connect("speech_ended", self, "_on_speech")
	bridge.connect("status_changed", self, "_on_status")
	bridge.connect("bridge_error", self, "_on_error")
	guard.connect("gate_opened", self, "_on_gate_opened")
	root.call_deferred("add_child", demo)
	create_timer(30.0).connect("timeout", self, "_on_timeout")


func _on_connected(session, welcome):
	print("NPC-TEST connected: session %s, missing %s" % [session, str(welcome.get("missing"))])
	if not asked:
		asked = true
		bridge.hear(guard.npc_id, "player", "Good evening. The password is oak.")


func _on_status(npc, state):
	statuses.append(state)


func _on_error(code, message, call_id):
	print("NPC-TEST bridge error %s: %s" % [code, message])


func _on_gate_opened():
	opened = true
	print("NPC-TEST gate opened by the guard at ", guard.here)


func _on_speech(npc, stream, text, reason):
	print("NPC-TEST %s says (%s): %s" % [npc, reason, text])
	said.append(text)
	if opened:
		said_after_open.append(text)
	if opened and said_after_open.size() > 0 and reason == "done":
		if not gate.is_open:
			_fail("the gate is not open")
			return
		print("NPC-TEST PASS guard turn: said %s; statuses %s" % [str(said), str(statuses)])
		bridge.close(1000, "test done")
		quit(0)


func _on_timeout():
	_fail("timed out: opened=%s said=%s statuses=%s" % [opened, str(said), str(statuses)])


func _fail(why):
	print("NPC-TEST FAIL ", why)
	quit(1)
