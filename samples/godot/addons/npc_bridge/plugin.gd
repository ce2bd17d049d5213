tool
extends EditorPlugin
# Registers the NpcBridge node type in the editor's "Create Node" dialog.


func _enter_tree():
	add_custom_type("NpcBridge", "Node", preload("bridge_client.gd"), null)


func _exit_tree():
	remove_custom_type("NpcBridge")
