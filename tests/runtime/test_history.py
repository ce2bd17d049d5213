"""The bounded history window (runtime.history): bounds by messages and tokens, and the rule
that a tool call and its results are never split."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.history import History, estimate_tokens


def user(text: str = "hi") -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str = "ok", calls: tuple[str, ...] = ()) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [
            {"id": c, "type": "function", "function": {"name": "act", "arguments": "{}"}}
            for c in calls
        ]
    return message


def tool(call_id: str, content: str = "{}") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def assert_wellformed(messages: list[dict[str, Any]]) -> None:
    open_calls: set[str] = set()
    for message in messages:
        if message["role"] == "tool":
            assert message["tool_call_id"] in open_calls, "a tool result lost its call"
            open_calls.discard(message["tool_call_id"])
            continue
        assert not open_calls, "a call lost its results"
        open_calls = {c["id"] for c in message.get("tool_calls") or ()}


def test_message_bound_drops_the_oldest() -> None:
    history = History(3, 10_000)
    for i in range(5):
        history.append(user(str(i)))
    assert [m["content"] for m in history] == ["2", "3", "4"]
    assert len(history) == 3


def test_token_bound_drops_the_oldest() -> None:
    history = History(100, 60)
    for i in range(10):
        history.append(user(f"{i}" * 80))  # ~24 tokens each
    assert len(history) == 2
    assert history.tokens <= 60
    assert history.tokens == sum(estimate_tokens(m) for m in history)


def test_tokens_are_tracked_through_appends_and_drops() -> None:
    history = History(4, 10_000)
    history.extend([user("a" * 40), assistant("b" * 400), user("c")])
    assert history.tokens == sum(estimate_tokens(m) for m in history)
    history.extend([user("d"), user("e")])
    assert history.tokens == sum(estimate_tokens(m) for m in history)


def test_estimate_counts_tool_call_arguments() -> None:
    small = estimate_tokens(assistant("", ("c1",)))
    big = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "act", "arguments": "x" * 400}}
        ],
    }
    assert estimate_tokens(big) >= small + 90


def test_a_call_and_its_results_leave_together() -> None:
    history = History(4, 10_000)
    history.extend([user("go"), assistant("", ("a", "b")), tool("a"), tool("b"), user("next")])
    # Dropping only the oldest message would leave [assistant, a, b, next] (4): fine.
    assert [m["role"] for m in history] == ["assistant", "tool", "tool", "user"]
    history.append(assistant("done"))
    # Now the call unit goes as a whole, never leaving results without their call.
    assert [m["role"] for m in history] == ["user", "assistant"]


def test_the_newest_unit_is_kept_even_over_the_bound() -> None:
    history = History(2, 10_000)
    history.extend([user("go"), assistant("", ("a", "b", "c")), tool("a"), tool("b"), tool("c")])
    assert [m["role"] for m in history] == ["assistant", "tool", "tool", "tool"]
    assert_wellformed(list(history))


def test_a_result_over_the_whole_token_budget_keeps_its_call() -> None:
    history = History(40, 100)
    history.extend([user("go"), assistant("", ("big",)), tool("big", "x" * 4000)])
    assert [m["role"] for m in history] == ["assistant", "tool"]


def test_a_loaded_window_starting_mid_unit_drops_the_orphans() -> None:
    # load_history returns the last N rows, which may begin with tool results.
    history = History(40, 10_000, [tool("a"), tool("b"), user("hello"), assistant("hi")])
    assert [m["role"] for m in history] == ["user", "assistant"]
    only_orphans = History(40, 10_000, [tool("a")])
    assert list(only_orphans) == []


def _conversation() -> st.SearchStrategy[list[dict[str, Any]]]:
    """Realistic histories: user, then assistant steps each with 0-3 calls answered."""
    unit = st.one_of(
        st.builds(lambda n: [user("u" * n)], st.integers(0, 300)),
        st.builds(
            lambda n, k: (
                [assistant("a" * n, tuple(f"c{i}" for i in range(k)))]
                + [tool(f"c{i}", "r" * n) for i in range(k)]
            ),
            st.integers(0, 300),
            st.integers(0, 3),
        ),
    )
    return st.lists(unit, min_size=1, max_size=25).map(lambda units: [m for u in units for m in u])


@settings(max_examples=150, deadline=None)
@given(_conversation(), st.integers(2, 12), st.integers(100, 800), st.integers(0, 40))
def test_the_window_is_always_wellformed_and_bounded(
    messages: list[dict[str, Any]], max_messages: int, max_tokens: int, split: int
) -> None:
    split = min(split, len(messages))
    # Part loaded (as from the store, possibly cut mid-unit), part appended one by one.
    history = History(max_messages, max_tokens, messages[:split])
    for message in messages[split:]:
        history.append(message)
        window = list(history)
        assert_wellformed(window)
        assert window[-1] is message  # the newest message is always there
        # Over a bound only when the newest unit alone is.
        if len(window) > max_messages or history.tokens > max_tokens:
            assert window[0]["role"] == "assistant"
            assert all(m["role"] == "tool" for m in window[1:])
    assert history.tokens == sum(estimate_tokens(m) for m in history)
