"""runtime: the mind of each NPC.

Loads a project (``load_project``), keeps one session per NPC, sends the character's
capabilities as tools to an OpenAI-compatible endpoint, executes the tool calls (in the
game over the bridge, or in Python), and streams speech back to the game. The ``npc``
command (``runtime.cli``) is the only place where the parts are composed.
"""

from runtime.project import Character, Project, ProjectConfig, load_project

__all__ = ["Character", "Project", "ProjectConfig", "load_project"]
