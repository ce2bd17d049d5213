"""The public surface of runtime.completions: __all__ and the exception tree of its docstring."""

from __future__ import annotations

import builtins

import runtime.completions as completions
from runtime.completions import errors


def test_all_names_exist_and_nothing_private_is_exported() -> None:
    for name in completions.__all__:
        assert hasattr(completions, name), name
        assert not name.startswith("_")
    assert len(set(completions.__all__)) == len(completions.__all__)


def test_exception_tree_matches_the_docstring() -> None:
    base = errors.CompletionsError
    tree = {
        errors.ProviderError: base,
        errors.HTTPStatusError: base,
        errors.BadRequest: errors.HTTPStatusError,
        errors.Unauthorized: errors.HTTPStatusError,
        errors.NotFound: errors.HTTPStatusError,
        errors.RateLimited: errors.HTTPStatusError,
        errors.ServerError: errors.HTTPStatusError,
        errors.ConnectError: base,
        errors.TimeoutError: base,
        errors.StreamProtocolError: base,
        errors.StreamTruncated: errors.StreamProtocolError,
    }
    for cls, parent in tree.items():
        assert cls.__bases__[0] is parent, cls
        assert cls.__name__ in (completions.__doc__ or ""), cls
    assert issubclass(errors.TimeoutError, builtins.TimeoutError)
    assert errors.error_for_status(418, "", {}).__class__ is errors.HTTPStatusError
    assert isinstance(errors.error_for_status(599, "", {}), errors.ServerError)
