"""runtime: the mind of each NPC.

Loads a project (``load_project``), keeps one session per NPC, sends the character's
capabilities as tools to an OpenAI-compatible endpoint, executes the tool calls (in the
game over the bridge, or in Python), and streams speech back to the game. The ``npc``
command (``runtime.cli``) is the only place where the parts are composed.

Sub-packages: ``runtime.completions`` (the model client), ``runtime.endpoint`` (the
character endpoint), ``runtime.offline`` (the embedded model), ``runtime.cassette``
(record / replay).
"""

from runtime.metrics import Metrics
from runtime.project import Character, Project, ProjectConfig, load_project
from runtime.prompts import PromptBuilder
from runtime.runtime import ModelSpec, Runtime
from runtime.session import GameLink, ModelClient, NpcSession, Perception, TurnResult
from runtime.store import MemoryStore, MessageRecord, SQLiteStore, Store, TurnRecord

__all__ = [
    "Character",
    "GameLink",
    "MemoryStore",
    "MessageRecord",
    "Metrics",
    "ModelClient",
    "ModelSpec",
    "NpcSession",
    "Perception",
    "Project",
    "ProjectConfig",
    "PromptBuilder",
    "Runtime",
    "SQLiteStore",
    "Store",
    "TurnRecord",
    "TurnResult",
    "load_project",
]
