"""Metadata of a registry version (``info.json``): building, validating and reading it."""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ultrathink.core.times import iso_ns
from ultrathink.errors import ConfigError
from ultrathink.models.artifacts import (
    MANIFEST,
    MANIFEST_HASH,
    ModelIntegrityError,
    parse_json_file,
)

MODEL_FILE = "model.pkl"
INFO_FILE = "info.json"
_LIBRARIES = {"numpy": "numpy", "sklearn": "scikit-learn", "lightgbm": "lightgbm"}


@dataclass(frozen=True)
class ModelInfo:
    """Everything recorded about a stored model version.

    Attributes
    ----------
    version : str
        ``"v0001"``, ``"v0002"``, …
    created : str
        ISO-8601 UTC creation time; ``created_ns`` holds the same instant in nanoseconds.
    model_class : str
        ``module.QualName`` of the stored model.
    feature_names : list of str
        Feature columns, in model order.
    params, metrics, extra : dict
        As given to ``save`` (after a JSON round trip: tuples are lists).
    data_hash : str
        Content hash of the training data.
    train_period : (int, int)
        UTC nanoseconds of the first and last training bar.
    versions : dict of str to str
        ``python``, ``numpy``, ``sklearn`` and ``lightgbm`` versions at save time.
    """

    version: str
    created: str
    created_ns: int
    model_class: str
    feature_names: list[str]
    params: dict[str, Any]
    data_hash: str
    metrics: dict[str, Any]
    train_period: tuple[int, int]
    versions: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """Return the running versions of python, numpy, sklearn and lightgbm."""
    found = {"python": platform.python_version()}
    for key, dist in _LIBRARIES.items():
        try:
            found[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[key] = "missing"
    return found


def check_save_args(
    model: Any, feature_names: list[str], data_hash: str, train_period: tuple[int, int]
) -> None:
    """Raise ``ConfigError`` when the arguments of ``ModelRegistry.save`` are inconsistent."""
    if not isinstance(feature_names, list | tuple) or not all(
        isinstance(n, str) for n in feature_names
    ):
        raise ConfigError(f"feature_names must be a list of str, was {feature_names!r}")
    n_model = getattr(model, "n_features_in_", None)
    if n_model is not None and int(n_model) != len(feature_names):
        raise ConfigError(
            f"feature_names has {len(feature_names)} names but the model was fitted on "
            f"{n_model} features; pass the training columns in model order"
        )
    if not isinstance(data_hash, str) or not data_hash:
        raise ConfigError(f"data_hash must be a non-empty str, was {data_hash!r}")
    ok = isinstance(train_period, list | tuple) and len(train_period) == 2
    if not ok or not all(isinstance(t, int | np.integer) for t in train_period):
        raise ConfigError(f"train_period must be (start_ns, end_ns) integers, was {train_period!r}")
    if int(train_period[0]) > int(train_period[1]):
        raise ConfigError(f"train_period start must be <= end, was {tuple(train_period)}")


_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_RESERVED = {MODEL_FILE, INFO_FILE, MANIFEST, MANIFEST_HASH}


def check_files(files: dict[str, bytes] | None) -> dict[str, bytes]:
    """The further files of ``ModelRegistry.save`` (``ConfigError`` for a bad name or value)."""
    if files is None:
        return {}
    if not isinstance(files, dict):
        raise ConfigError(f"files must be a dict of file name to bytes, was {type(files).__name__}")
    for name, data in files.items():
        if not isinstance(name, str) or not _FILE_NAME.match(name) or name in _RESERVED:
            raise ConfigError(
                f"file name {str(name)[:60]!r} must be a plain name (letters, digits, '.', '_', "
                f"'-'; no path) other than {', '.join(sorted(_RESERVED))}"
            )
        if not isinstance(data, bytes):
            raise ConfigError(f"file {name!r} must be bytes, was {type(data).__name__}")
    return dict(files)


def build_info(
    version: str,
    created_ns: int,
    model: Any,
    feature_names: list[str],
    params: dict[str, Any],
    data_hash: str,
    metrics: dict[str, Any],
    train_period: tuple[int, int],
    extra: dict[str, Any] | None,
) -> bytes:
    """Return the ``info.json`` bytes of a new version (raises ``ConfigError`` if not JSON)."""
    cls = type(model)
    info = {
        "version": version,
        "created": iso_ns(created_ns),
        "created_ns": int(created_ns),
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "feature_names": [str(n) for n in feature_names],
        "params": to_jsonable(params, "params"),
        "data_hash": data_hash,
        "metrics": to_jsonable(metrics, "metrics"),
        "train_period": [int(train_period[0]), int(train_period[1])],
        "versions": library_versions(),
        "extra": to_jsonable(extra or {}, "extra"),
    }
    return (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()


#: Fields of ``info.json`` and the check each value must pass (bools are not numbers).
_INFO_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "version": ("a string", lambda v: isinstance(v, str)),
    "created": ("a string", lambda v: isinstance(v, str)),
    "created_ns": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "model_class": ("a string", lambda v: isinstance(v, str)),
    "feature_names": (
        "a list of strings",
        lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
    ),
    "params": ("an object", lambda v: isinstance(v, dict)),
    "data_hash": ("a string", lambda v: isinstance(v, str)),
    "metrics": ("an object", lambda v: isinstance(v, dict)),
    "train_period": (
        "a list of two integers",
        lambda v: (
            isinstance(v, list)
            and len(v) == 2
            and all(isinstance(t, int) and not isinstance(t, bool) for t in v)
        ),
    ),
    "versions": (
        "an object of strings",
        lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
    ),
    "extra": ("an object", lambda v: isinstance(v, dict)),
}


def info_from_json(version: str, data: bytes) -> ModelInfo:
    """Parse verified ``info.json`` bytes of the version directory named ``version``.

    Raises
    ------
    ModelIntegrityError
        When the bytes are not a JSON object with every field of the right type, or
        describe another version.
    """
    where = f"{version}/{INFO_FILE}"
    raw = parse_json_file(Path(where), data)
    if not isinstance(raw, dict):
        raise _bad_info(where, f"must be a JSON object, was {type(raw).__name__}")
    raw = {"extra": {}, **raw}
    for name, (kind, is_ok) in _INFO_FIELDS.items():
        if name not in raw:
            raise _bad_info(where, f"has no {name!r} field")
        if not is_ok(raw[name]):
            raise _bad_info(where, f"field {name!r} must be {kind}, was {_shown(raw[name])}")
    if raw["version"] != version:
        raise ModelIntegrityError(
            f"{where} describes version {_shown(raw['version'])}, not {version!r}; "
            "the version directory was renamed. Rename it back; nothing was loaded"
        )
    start, end = raw["train_period"]
    return ModelInfo(
        version=version,
        created=raw["created"],
        created_ns=raw["created_ns"],
        model_class=raw["model_class"],
        feature_names=list(raw["feature_names"]),
        params=raw["params"],
        data_hash=raw["data_hash"],
        metrics=raw["metrics"],
        train_period=(start, end),
        versions=dict(raw["versions"]),
        extra=raw["extra"],
    )


def _bad_info(where: str, problem: str) -> ModelIntegrityError:
    return ModelIntegrityError(
        f"{where} {problem}; the metadata was edited or written by another program. Restore "
        "the version directory from a backup or save the model again; nothing was loaded"
    )


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def to_jsonable(value: Any, where: str) -> Any:
    """Return ``value`` with numpy scalars/arrays and tuples turned into JSON types."""
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"{where} keys must be str, had {bad!r}; convert them to str")
        return {k: to_jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ConfigError(
        f"{where} must be JSON-serialisable (dict, list, str, number, bool, None), had "
        f"{type(value).__name__}: {value!r}; convert it before saving"
    )
