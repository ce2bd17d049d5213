extends SceneTree
# Reconnect and resume: the test cuts the TCP connection after the first welcome; the addon
# must reconnect by itself and get the same session back (hello.resume).
#
#   NPC_BRIDGE_URL=ws://127.0.0.1:8765 godot3-server --path samples/godot -s res://tests/resume.gd

const Bridge = preload("res://addons/npc_bridge/bridge_client.gd")

var bridge
var sessions = []


func _init():
	bridge = Bridge.new()
	bridge.url = OS.get_environment("NPC_BRIDGE_URL")
	bridge.game = "godot-resume-test"
	bridge.add_npc("guard-1", "guard")
	bridge.register("openGate", self, "_open_gate")
	bridge.connect("connected", self, "_on_connected")
	bridge.connect("disconnected", self, "_on_disconnected")
	root.call_deferred("add_child", bridge)
	create_timer(20.0).connect("timeout", self, "_on_timeout")


func _open_gate(call):
	call.reply({"opened": true})


func _on_connected(session, welcome):
	sessions.append(session)
	print("NPC-TEST connected %d: session %s" % [sessions.size(), session])
	if sessions.size() == 2:
		if sessions[0] == sessions[1]:
			print("NPC-TEST PASS resumed session ", session)
			bridge.close()
			quit(0)
		else:
			print("NPC-TEST FAIL new session instead of a resume: ", sessions)
			quit(1)


func _on_disconnected(code, reason, will_retry):
	print("NPC-TEST disconnected (code %d, retry %s)" % [code, will_retry])
	if not will_retry and sessions.size() < 2:
		print("NPC-TEST FAIL gave up reconnecting")
		quit(1)


func _on_timeout():
	print("NPC-TEST FAIL timed out; sessions ", sessions)
	quit(1)
