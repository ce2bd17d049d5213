extends Node2D
# The north gate: closed until the guard opens it.

var is_open = false


func open():
	is_open = true
	update()


func _draw():
	var color = Color(0.3, 0.8, 0.3) if is_open else Color(0.6, 0.3, 0.1)
	var width = 4 if is_open else 40
	draw_rect(Rect2(Vector2(-20, -4), Vector2(width, 8)), color)
