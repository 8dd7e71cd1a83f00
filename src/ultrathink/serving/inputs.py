"""Request bodies of the model server: parsed, checked, and turned into feature vectors.

Every refusal is an ``Invalid`` carrying the HTTP status, the field (a dotted path such as
``features.ret_5`` or ``rows.3``), the rule it broke and the value it had, so a 422 names all
three. The checks agree with the schemas in ``serving.schema`` (the OpenAPI document); a
hand-written check is used on the request path because a pydantic model costs several
microseconds per request there, more than the cache hit it guards.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ultrathink.serving.models import ServedModel

__all__ = ["Invalid", "check_fields", "parse_body", "row_values", "row_vector", "rows_matrix"]

_NUMBER = (int, float)
_NUMBER_TYPES = frozenset(_NUMBER)


class Invalid(Exception):
    """A request the server refuses: ``status`` (400 or 422), ``field``, ``rule``, ``value``."""

    def __init__(self, status: int, field: str, rule: str, value: Any = None) -> None:
        super().__init__(f"{field}: {rule}")
        self.status = status
        self.field = field
        self.rule = rule
        self.value = value

    def payload(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        shown = self.value
        if isinstance(shown, (dict, list)) or (isinstance(shown, str) and len(shown) > 80):
            shown = orjson.dumps(shown)[:80].decode("utf-8", "replace")
        return {
            "error": f"{self.field}: {self.rule}",
            "status": self.status,
            "field": self.field,
            "rule": self.rule,
            "value": shown,
        }


def parse_body(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``Invalid`` (400 not JSON, 422 not an object)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid(400, "body", f"must be UTF-8 JSON ({exc})", None) from None
    if not isinstance(value, dict):
        raise Invalid(422, "body", "must be a JSON object", value)
    return value


def check_fields(body: dict[str, Any], allowed: frozenset[str], required: tuple[str, ...]) -> None:
    """Unknown or missing top-level fields are 422s that name them."""
    if body.keys() <= allowed and len(body) >= len(required) == 1 and required[0] in body:
        return  # the common case: every field known, the one required present
    for name in body:
        if name not in allowed:
            rule = f"is not a field here; allowed: {', '.join(sorted(allowed)) or 'none'}"
            raise Invalid(422, name, rule, body[name])
    for name in required:
        if name not in body:
            raise Invalid(422, name, "is required")


def _finite(x: np.ndarray, names: tuple[str, ...], where: str) -> np.ndarray:
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise Invalid(422, f"{where}.{names[bad]}", "must be a finite number", float(x[bad]))
    return x


def row_values(
    features: Any, model: ServedModel, primary: ServedModel, where: str = "features"
) -> list[Any]:
    """One row for ``model`` as checked numbers: a ``{name: number}`` object (extra names are
    ignored), or a list of numbers in ``primary``'s feature order. JSON cannot carry NaN or
    infinity (orjson refuses them while parsing), so every value is finite."""
    names = model.feature_names
    if type(features) is dict:
        try:
            values = [features[n] for n in names]
        except KeyError as missing:
            field = f"{where}.{missing.args[0]}"
            raise Invalid(422, field, f"is required by {model.version}") from None
        if not set(map(type, values)) <= _NUMBER_TYPES:
            for name, v in zip(names, values, strict=True):
                if type(v) not in _NUMBER:
                    raise Invalid(422, f"{where}.{name}", "must be a number", v)
        return values
    if type(features) is list:
        width = len(primary.feature_names)
        if len(features) != width:
            raise Invalid(
                422, where, f"must hold {width} numbers in the order of GET /v1/models "
                f"({primary.version}'s features), had {len(features)}", len(features),
            )  # fmt: skip
        if not set(map(type, features)) <= _NUMBER_TYPES:
            for i, v in enumerate(features):
                if type(v) not in _NUMBER:
                    raise Invalid(422, f"{where}.{i}", "must be a number", v)
        if model is primary:
            return features
        try:
            return [features[primary.index[n]] for n in names]
        except KeyError as missing:
            raise Invalid(
                422, where, f"{model.version} needs feature {missing.args[0]}, which "
                f"{primary.version} does not have: send the features by name",
            ) from None  # fmt: skip
    raise Invalid(
        422, where, "must be an object of feature name -> number, or a list of numbers",
        features,
    )  # fmt: skip


def row_vector(
    features: Any, model: ServedModel, primary: ServedModel, where: str = "features"
) -> np.ndarray:
    """``row_values`` as a float64 vector, checked finite."""
    values = np.array(row_values(features, model, primary, where), dtype=np.float64)
    return _finite(values, model.feature_names, where)


def rows_matrix(rows: Any, model: ServedModel, primary: ServedModel, max_rows: int) -> np.ndarray:
    """A batch for ``model``: 1..``max_rows`` rows, each as ``row_vector`` takes it."""
    if type(rows) is not list or not rows:
        raise Invalid(422, "rows", "must be a non-empty list of rows", rows)
    if len(rows) > max_rows:
        raise Invalid(
            422, "rows", f"must hold at most {max_rows} rows (--max-batch), had {len(rows)}",
            len(rows),
        )  # fmt: skip
    X = np.empty((len(rows), len(model.feature_names)))
    for i, row in enumerate(rows):
        X[i] = row_vector(row, model, primary, where=f"rows.{i}")
    return X
