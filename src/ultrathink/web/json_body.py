"""The body of a control command: strict, small, UTF-8 JSON, or an ``ApiError`` saying why not.

``read_json`` refuses, each with a message naming the rule and the fix:

* 415 a ``Content-Type`` other than ``application/json`` (charset UTF-8 if given);
* 413 a body over ``MAX_BODY_BYTES``: by its ``Content-Length`` before reading anything, or as
  soon as the stream passes the cap (chunked bodies declare no length, and a client may send
  more than it declared);
* 400 a body that is not UTF-8 (``json.loads`` of bytes would guess UTF-16 or -32), not JSON,
  or JSON a command cannot be: ``NaN``/``Infinity``, a float out of range, an integer of more
  than ``MAX_INT_DIGITS`` digits, a repeated key, an unpaired surrogate escape in a string, or
  nesting deeper than ``MAX_JSON_DEPTH``; and a client that disconnects mid-body.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from ultrathink.web.api_error import ApiError

__all__ = ["MAX_BODY_BYTES", "MAX_INT_DIGITS", "MAX_JSON_DEPTH", "read_json"]

#: Commands are a few hundred bytes; anything much larger is not a command.
MAX_BODY_BYTES = 64 * 1024
#: A command is a flat object; JSON nested deeper than this is not a command.
MAX_JSON_DEPTH = 8
#: Digits of the longest integer a command may hold (limits are far smaller).
MAX_INT_DIGITS = 100
_EXAMPLE = 'e.g. {"action": "halt", "operator": "alice", "reason": "feed stale"}'


class _BadJson(ValueError):
    """The body is JSON, but not JSON a command may be (raised by the parser hooks)."""


async def read_json(request: Request) -> Any:
    """The request's JSON value, read under every rule above; ``ApiError`` if one is broken."""
    _check_content_type(request.headers.get("content-type"))
    return _parse_json(await _read_body(request))


def _check_content_type(value: str | None) -> None:
    media, _, params = (value or "").partition(";")
    charset = "utf-8"
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset":
            charset = val.strip().strip('"').lower()
    if media.strip().lower() != "application/json" or charset not in ("utf-8", "utf8"):
        shown = "none" if value is None else repr(value[:80])
        raise ApiError(
            415,
            f"Content-Type must be application/json (UTF-8), was {shown}; send the command "
            "with the header 'Content-Type: application/json'",
        )


def _too_large(n_bytes: str) -> ApiError:
    return ApiError(
        413,
        f"request body must be at most {MAX_BODY_BYTES} bytes, was {n_bytes}; a command is "
        "a small JSON object",
    )


async def _read_body(request: Request) -> bytes:
    # refuse by the declared length before reading anything, then cap the stream itself
    # (chunked bodies declare none, and a client may send more than it declared)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.strip().isdigit():
        digits = declared.strip().lstrip("0") or "0"
        if len(digits) > 18 or int(digits) > MAX_BODY_BYTES:
            raise _too_large(digits if len(digits) <= 18 else f"{len(digits)} digits long")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise _too_large(f"more (reading stopped at {len(body)})")
    except ClientDisconnect:
        raise ApiError(400, "the client disconnected before the whole body arrived") from None
    return bytes(body)


def _bad_json(detail: str) -> ApiError:
    return ApiError(400, f"request body must be a JSON command object, {detail}; {_EXAMPLE}")


def _parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")  # not json.loads(bytes): it would guess UTF-16 or -32
    except UnicodeDecodeError as exc:
        raise _bad_json(
            f"in UTF-8: it had the byte 0x{body[exc.start]:02x} at offset {exc.start}"
        ) from None
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            object_pairs_hook=_unique_keys,
        )
    except _BadJson as exc:
        raise _bad_json(str(exc)) from None
    except RecursionError:
        raise _bad_json(f"nested at most {MAX_JSON_DEPTH} levels deep; it was far deeper") from None
    except ValueError as exc:  # JSONDecodeError
        raise _bad_json(f"could not parse it ({exc})") from None
    _check_parsed(value)
    return value


def _refuse_constant(name: str) -> Any:
    raise _BadJson(f"it held {name}, which is not a JSON number; send a finite number or null")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadJson(f"it held the number {text[:40]}, which is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _BadJson(
            f"it held an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})"
        )
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; another parser may keep the first:
    # a command must mean one thing
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _BadJson(f"it repeats the key {key!r}; send each field once")
        out[key] = value
    return out


def _check_parsed(value: Any) -> None:
    # iterative: depth and text checks must not recurse on what they guard against
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise _bad_json(f"nested at most {MAX_JSON_DEPTH} levels deep")
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
            stack.extend(
                (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
            )


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # "\ud800": an escape of half a character
        raise _bad_json(
            f"with valid text: a string held the unpaired surrogate escape "
            f"{text[exc.start].encode('unicode_escape').decode()}"
        ) from None
