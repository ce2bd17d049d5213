"""Frame codec: one binary websocket frame <-> one validated message.

Why the limits are derived from the frame size: every msgpack item takes at
least one byte, so an array header claiming more items than the frame has
bytes (or a map claiming more than half) is a lie; rejecting it before
allocation keeps memory flat against a header claiming 2**32-1 items.

msgpack's C unpacker stops at 1024 levels of nesting (StackError) but the
rest of the program (pydantic, json.dumps for the model) should never see
deep trees, so :func:`decode_frame` also walks the decoded value iteratively
and enforces :data:`MAX_DEPTH`. The same walk rejects what JSON cannot carry:
NaN/Infinity, ext types (including msgpack timestamps) and binary strings.

Classification (the contract docs/protocol.md states):

- the bytes are not exactly one msgpack map (truncated, trailing bytes, reserved
  byte 0xc1, invalid UTF-8, non-string keys, lying headers, too deep)
  -> ``MALFORMED``, close 1007;
- a valid map whose values JSON cannot represent -> ``BAD_INPUT`` (connection stays);
- unknown ``t`` -> ``UNKNOWN_TYPE``; a missing/wrong/extra field -> ``BAD_INPUT``
  with the field path; both echo the frame's ``id`` and keep the connection.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgpack
from pydantic import BaseModel, ValidationError

from .errors import CloseCode, ErrorCode, ProtocolError
from .messages import GAME_MESSAGE_TYPES, MESSAGE_ADAPTER, Message

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "MAX_DEPTH",
    "decode_frame",
    "encode",
    "encode_map",
    "unpack_frame",
]

DEFAULT_MAX_FRAME_BYTES = 64 * 1024
MAX_DEPTH = 32


class _Ext:
    """Stands in for any ext value so the walk can report it as BAD_INPUT."""

    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code


def _ext_hook(code: int, data: bytes) -> _Ext:
    return _Ext(code)


_packer = msgpack.Packer(use_bin_type=True)
# The union's core validator, called directly: the same schema and rules as
# MESSAGE_ADAPTER.validate_python without its Python wrapper (~0.2 us per frame).
_validate: Callable[[Any], Message] = MESSAGE_ADAPTER.validator.validate_python


def encode_map(obj: dict[str, Any]) -> bytes:
    """Pack an already-shaped message map (the fast path for frames we build ourselves)."""
    return _packer.pack(obj)  # type: ignore[no-any-return]


def encode(message: BaseModel) -> bytes:
    """Pack a message model; absent optional fields are omitted, not sent as nil."""
    return _packer.pack(message.model_dump(mode="python", exclude_none=True))  # type: ignore[no-any-return]


def _malformed(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.MALFORMED, message, close_code=CloseCode.INVALID_DATA)


def unpack_frame(data: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> dict[str, Any]:
    """Decode the bytes of one frame into a plain map, enforcing every structural limit."""
    n = len(data)
    if n > max_frame_bytes:
        raise ProtocolError(
            ErrorCode.MALFORMED,
            f"frame of {n} bytes exceeds {max_frame_bytes}",
            close_code=CloseCode.TOO_BIG,
        )
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_ext_hook,
            max_str_len=n,
            max_bin_len=n,
            max_array_len=n,
            max_map_len=n // 2,
            max_ext_len=n,
        )
    except msgpack.ExtraData:
        raise _malformed("trailing bytes after the msgpack map") from None
    except msgpack.StackError:
        raise _malformed(f"nesting deeper than {MAX_DEPTH}") from None
    except msgpack.FormatError:
        raise _malformed("invalid msgpack (reserved byte)") from None
    except UnicodeDecodeError:
        raise _malformed("invalid UTF-8 in a string") from None
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise _malformed(f"invalid msgpack: {exc}") from None
    if type(obj) is not dict:
        raise _malformed("a frame must be one msgpack map")
    _check_values(obj)
    return obj


def _check_values(root: dict[str, Any]) -> None:
    # Iterative, so a deep tree cannot exhaust the Python stack; types are compared
    # with `is` because msgpack only produces exact built-in types. Hot path: every
    # frame passes here, so the common cases come first and floats are tested
    # inline: x - x is 0.0 for a finite x and NaN (truthy) for NaN and +-Infinity.
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        values: Any = node.values() if type(node) is dict else node
        for value in values:
            tv: Any = type(value)
            if tv is str or tv is int or tv is bool or value is None:
                continue
            if tv is float:
                if value - value:
                    raise _bad_value(root, "NaN and Infinity are not allowed")
            elif tv is dict or tv is list:
                if depth >= MAX_DEPTH:
                    raise _malformed(f"nesting deeper than {MAX_DEPTH}")
                stack.append((value, depth + 1))
            elif tv is bytes:
                raise _bad_value(root, "binary strings are not allowed (use str)")
            else:
                raise _bad_value(root, "ext types (including timestamps) are not allowed")


def _bad_value(root: dict[str, Any], message: str) -> ProtocolError:
    path = _find_bad_path(root)
    return ProtocolError(
        ErrorCode.BAD_INPUT,
        f"{path}: {message}" if path else message,
        call_id=_echo_id(root),
        path=path,
    )


def _find_bad_path(root: dict[str, Any]) -> str:
    """Slow path, only after a bad value was seen: name where it is."""
    todo: list[tuple[Any, str]] = [(root, "")]
    while todo:
        node, prefix = todo.pop()
        items = node.items() if type(node) is dict else enumerate(node)
        for key, value in items:
            path = f"{prefix}.{key}" if prefix else str(key)
            tv: Any = type(value)
            if tv is dict or tv is list:
                todo.append((value, path))
            elif (
                (tv is float and not math.isfinite(value))
                or tv is bytes
                or tv is _Ext
                or tv is msgpack.Timestamp
            ):
                return path
    return ""


def _echo_id(obj: dict[str, Any]) -> str | None:
    value = obj.get("id")
    if type(value) is str and 0 < len(value) <= 64:
        return value
    return None


def decode_frame(
    data: bytes,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    accept: frozenset[str] = GAME_MESSAGE_TYPES,
) -> Message:
    """Decode and validate one frame; raise :class:`ProtocolError` for anything else.

    ``accept`` is the set of ``t`` values this side may receive (the server accepts
    game messages, the client runtime messages); others are UNKNOWN_TYPE.
    """
    obj = unpack_frame(data, max_frame_bytes)
    t = obj.get("t")
    if type(t) is not str:
        raise ProtocolError(
            ErrorCode.BAD_INPUT,
            "t: a string message type is required",
            call_id=_echo_id(obj),
            path="t",
        )
    if t not in accept:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {t[:64]!r}",
            call_id=_echo_id(obj),
            path="t",
        )
    try:
        return _validate(obj)
    except ValidationError as exc:
        raise _bad_input(exc, t, obj) from None


def _bad_input(exc: ValidationError, tag: str, obj: dict[str, Any]) -> ProtocolError:
    first = exc.errors(include_url=False, include_input=False)[0]
    loc = list(first["loc"])
    if loc and loc[0] == tag:
        loc = loc[1:]
    path = ".".join(str(part) for part in loc)
    message = first["msg"]
    if len(exc.errors()) > 1:
        message += f" (and {len(exc.errors()) - 1} more)"
    return ProtocolError(
        ErrorCode.BAD_INPUT,
        f"{path}: {message}" if path else message,
        call_id=_echo_id(obj),
        path=path or None,
    )
