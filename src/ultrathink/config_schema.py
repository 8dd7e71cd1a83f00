"""What ``EngineConfig`` holds at a path of setting names, read from its type annotations.

The environment layer asks how to read a variable's text (``annotation_at``, ``takes_text``,
``expected``); the messages ask which keys a table knows (``model_at``).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from pydantic import BaseModel

from ultrathink.engine.config import EngineConfig


def annotation_at(parts: tuple[str, ...]) -> Any:
    """The type annotation of the setting at ``parts``; None if no setting is there."""
    model: type[BaseModel] | None = EngineConfig
    annotation: Any = None
    for part in parts:
        if part.isdigit():  # an array index: the element model was resolved already
            continue
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        annotation = field.annotation
        model = _model_in(annotation)
    return annotation


def model_at(parts: tuple[str, ...]) -> type[BaseModel] | None:
    """The table of settings at ``parts`` (``EngineConfig`` itself at the top), or None."""
    return _model_in(annotation_at(parts)) if parts else EngineConfig


def _flat_args(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _flat_args(arg)]
    return [annotation]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for arg in _flat_args(annotation):
        if typing.get_origin(arg) is tuple:  # tuple[RateWindow, ...]
            return _model_in(typing.get_args(arg)[0])
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def takes_text(annotation: Any) -> bool:
    """Whether the setting is text (``str`` or string literals), so a variable is taken as is."""
    args = [a for a in _flat_args(annotation) if a is not type(None)]
    return bool(args) and all(
        a is str
        or (typing.get_origin(a) is Literal and all(isinstance(v, str) for v in typing.get_args(a)))
        for a in args
    )


def expected(annotation: Any) -> tuple[str, str]:
    """What a value of the setting is, and an example, e.g. ``("a whole number", "100")``."""
    args = _flat_args(annotation)
    if _model_in(annotation) is not None:
        if any(typing.get_origin(a) is tuple for a in args):
            return "a TOML array", "'[{limit = 50, per_s = 1.0}]'"
        return "a TOML inline table", "'{key = 1}'"
    if bool in args:
        return "true or false", "true"
    if int in args and float not in args:
        return "a whole number", "100"
    return "a number", "20"
