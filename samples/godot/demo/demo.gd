extends Node2D
# Demo: a guard at the village's north gate. Start `npc serve samples/village`, run this
# scene, type "the password is oak" and press Enter: the guard walks to the gate, opens
# it and talks. NPC_BRIDGE_URL / NPC_BRIDGE_TOKEN override the bridge address and token.

onready var bridge = $NpcBridge
onready var guard = $World/Guard
onready var gate = $Gate
onready var speech_label = $UI/Speech
onready var status_label = $UI/Status
onready var input = $UI/Say


func _ready():
	var env_url = OS.get_environment("NPC_BRIDGE_URL")
	if env_url != "":
		bridge.url = env_url
	var env_token = OS.get_environment("NPC_BRIDGE_TOKEN")
	if env_token != "":
		bridge.token = env_token
	guard.attach(bridge, gate)
	bridge.connect("speech_delta", self, "_on_speech_delta")
	bridge.connect("speech_ended", self, "_on_speech_ended")
	bridge.connect("status_changed", self, "_on_status")
	bridge.connect("connected", self, "_on_connected")
	input.connect("text_entered", self, "_on_text_entered")
	bridge.connect_to_runtime()


func _on_connected(session, welcome):
	status_label.text = "connected (session %s)" % session


func _on_text_entered(text):
	bridge.hear(guard.npc_id, "player", text)
	input.text = ""


func _on_speech_delta(npc, stream, text):
	speech_label.text += text


func _on_speech_ended(npc, stream, text, reason):
	speech_label.text = "%s: %s" % [npc, text]


func _on_status(npc, state):
	status_label.text = "%s is %s" % [npc, state]
	if state == "speaking":
		speech_label.text = ""
