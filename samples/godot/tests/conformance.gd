extends SceneTree
# The conformance harness for the NpcBridge addon (docs/engines.md, "conformance kit").
#
#   npc bridge conformance --port 8765 &
#   NPC_BRIDGE_URL=ws://127.0.0.1:8765 godot3-server --path samples/godot -s res://tests/conformance.gd
#
# Implements the kit's profile on top of the addon's public API only, then exits 0 once the
# kit closed the session with kitClose (the kit's own report says whether it passed).

const Bridge = preload("res://addons/npc_bridge/bridge_client.gd")
const PROFILE = ["kitEcho", "kitCount", "kitSleep", "kitEmit", "kitSpeech", "kitClose", "kitUnimplemented"]

var bridge
var counter = 0
var speech = {}
var ended = {}
var status = {}
var closing = false


func _init():
	bridge = Bridge.new()
	bridge.url = OS.get_environment("NPC_BRIDGE_URL")
	bridge.token = OS.get_environment("NPC_BRIDGE_TOKEN")
	bridge.game = "godot-harness"
	bridge.reconnect = false
	# Declared explicitly: kitUnimplemented is declared but has no handler on purpose.
	bridge.capabilities = PoolStringArray(PROFILE)
	bridge.add_npc("kit-npc", "guard")
	for cap in ["kitEcho", "kitCount", "kitSleep", "kitEmit", "kitSpeech", "kitClose"]:
		bridge.register(cap, self, "_" + cap)
	bridge.connect("speech_ended", self, "_on_speech_ended")
	bridge.connect("status_changed", self, "_on_status")
	bridge.connect("disconnected", self, "_on_disconnected")
	root.call_deferred("add_child", bridge)
	create_timer(60.0).connect("timeout", self, "_on_timeout")


func _kitEcho(call):
	call.reply(call.args)


func _kitCount(call):
	counter += 1
	call.reply({"count": counter})


func _kitSleep(call):
	var ms = call.args.get("ms")
	if typeof(ms) != TYPE_INT or ms < 0:
		call.fail("BAD_ARGS", "ms must be a non-negative int")
		return
	yield(create_timer(ms / 1000.0), "timeout")
	if call.is_cancelled:
		return
	counter += 1
	call.reply({"slept": ms})


func _kitEmit(call):
	bridge.send_event(call.npc, call.args["kind"], call.args["data"])
	call.reply({"sent": true})


func _kitSpeech(call):
	var stream = call.args.get("stream", "")
	call.reply({
		"text": speech.get(stream),
		"reason": ended.get(stream),
		"status": status.get(call.npc),
	})


func _kitClose(call):
	closing = true
	bridge.close(1000, "conformance done")


func _on_speech_ended(npc, stream, text, reason):
	speech[stream] = text
	ended[stream] = reason


func _on_status(npc, state):
	status[npc] = state


func _on_disconnected(code, reason, will_retry):
	print("NPC-TEST harness disconnected (code %d, kitClose %s)" % [code, closing])
	quit(0 if closing else 1)


func _on_timeout():
	print("NPC-TEST FAIL conformance harness timed out")
	quit(1)
