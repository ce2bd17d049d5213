"""What the offline model knows about a character, decoupled from the project loader.

The offline model is a product on its own (``npc offline-model`` serves it to any tool), so it
takes plain frozen records instead of the runtime's project models; `runtime.offline.convert`
builds them from a loaded project. Rules are compiled once here because matching runs on every
request and must stay in the microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.offline.errors import OfflineConfigError

__all__ = ["OfflineCharacter", "OfflineRule"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _phrase_pattern(phrases: Sequence[str]) -> re.Pattern[str]:
    # Word boundaries that also work for phrases starting or ending in punctuation: `\b`
    # would not match before a leading "?" and would match inside "oak-tree" as designers expect.
    alternatives = "|".join(re.escape(p.strip()) for p in phrases)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class OfflineRule:
    """One `[[offline.rule]]` of a character file.

    ``when``: phrases, any of which (case-insensitive, whole words) in the latest user
    message fires the rule. ``call``: a tool to call (only when the request offers it) with
    ``args``. ``say``: a line spoken with it. ``after_result``: the line spoken when the
    tool result of that call comes back.
    """

    when: tuple[str, ...]
    call: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    say: str | None = None
    after_result: str | None = None
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        when: Sequence[str] | str,
        call: str | None = None,
        args: Mapping[str, Any] | None = None,
        say: str | None = None,
        after_result: str | None = None,
    ) -> None:
        phrases = (when,) if isinstance(when, str) else tuple(when)
        phrases = tuple(p for p in phrases if p.strip())
        if not phrases:
            raise OfflineConfigError("an offline rule needs at least one non-empty `when` phrase")
        if call is None and say is None:
            raise OfflineConfigError(f"offline rule {list(phrases)!r} needs `call` or `say`")
        if call is not None and not _NAME_RE.match(call):
            raise OfflineConfigError(f"offline rule {list(phrases)!r}: bad tool name {call!r}")
        if after_result is not None and call is None:
            raise OfflineConfigError(
                f"offline rule {list(phrases)!r}: `after_result` needs a `call` to follow"
            )
        object.__setattr__(self, "when", phrases)
        object.__setattr__(self, "call", call)
        object.__setattr__(self, "args", dict(args or {}))
        object.__setattr__(self, "say", say)
        object.__setattr__(self, "after_result", after_result)
        object.__setattr__(self, "pattern", _phrase_pattern(phrases))

    def matches(self, text: str) -> bool:
        return self.pattern.search(text) is not None


@dataclass(frozen=True, slots=True)
class OfflineCharacter:
    """A character as the offline model plays it: who it is, what it knows, its rules."""

    id: str
    name: str
    persona: str = ""
    knowledge: tuple[str, ...] = ()
    rules: tuple[OfflineRule, ...] = ()
    # Derived once: the policy draws from these on every request.
    lines: tuple[str, ...] = field(init=False, repr=False, compare=False)
    vocabulary: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        id: str,
        name: str,
        persona: str = "",
        knowledge: Sequence[str] = (),
        rules: Sequence[OfflineRule] = (),
    ) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "persona", persona)
        object.__setattr__(self, "knowledge", tuple(knowledge))
        object.__setattr__(self, "rules", tuple(rules))
        lines = [*self.knowledge, f"I am {name}."]
        first = persona.split(". ", maxsplit=1)[0].strip().rstrip(".")
        if first:
            lines.append(f"I am {name}, {first[0].lower()}{first[1:]}.")
        object.__setattr__(self, "lines", tuple(lines))
        words = ["player"]
        for fact in self.knowledge:
            for raw in fact.split():
                word = raw.strip(".,;:!?'\"()").lower()
                if word.isalpha() and len(word) > 3 and word not in words:
                    words.append(word)
        object.__setattr__(self, "vocabulary", tuple(words))

    def first_rule(self, text: str) -> OfflineRule | None:
        """The first rule (file order) whose phrases occur in ``text``."""
        for rule in self.rules:
            if rule.matches(text):
                return rule
        return None
