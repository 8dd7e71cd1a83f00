"""The versions a server holds: verified, compiled and warmed up before they answer.

``load_served`` goes through ``ModelRegistry.load``, which checks every artefact's SHA-256
against the version's manifest before unpickling anything; then the ensemble is compiled and
warmed up (numba compiles on first call). A version that fails any step raises a clear error
and is never served. ``ModelSet`` is the immutable map the request path reads; a reload
builds a new one off the event loop and swaps the reference, so a request in flight keeps the
model it started with.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numba import njit

from ultrathink.errors import ConfigError
from ultrathink.models.compiled_kernels import predict_row as _predict_row

__all__ = ["ModelSet", "ServedModel", "load_served", "resolve_version"]


@dataclass(frozen=True, eq=False)
class ServedModel:
    """One loaded version.

    Attributes
    ----------
    version : str
        Registry version.
    feature_names : tuple of str
        The model's features, in column order.
    index : dict
        Feature name -> column.
    compiled : object
        The ``CompiledEnsemble`` (``predict_row``, ``predict_batch``).
    low, high : np.ndarray
        Per-feature training range, for the ``out_of_range`` decision input.
    entry_threshold, exit_threshold : float
        The decision thresholds a client should apply (tuned ones when the version has them).
    data_hash : str
        The training data's hash, from the registry.
    """

    version: str
    feature_names: tuple[str, ...]
    index: dict[str, int]
    compiled: Any
    low: np.ndarray
    high: np.ndarray
    entry_threshold: float
    exit_threshold: float
    data_hash: str
    n_trees: tuple[int, int] = (0, 0)
    #: the compiled ensemble's tables, in ``compiled_kernels.predict_row``'s order
    tables: tuple[np.ndarray, ...] = ()
    #: packs a row of numbers into the float64 bytes a vector of it has (the cache key)
    packer: struct.Struct = field(default_factory=lambda: struct.Struct("<0d"))
    #: the answer JSON's constant parts around the probability and the out-of-range names
    _head: bytes = field(init=False, repr=False)
    _middle: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        dumps = orjson.dumps
        head = b'"version":%s,"probability":' % dumps(self.version)
        middle = b',"decision":{"entry_threshold":%s,"exit_threshold":%s,"out_of_range":' % (
            dumps(self.entry_threshold),
            dumps(self.exit_threshold),
        )
        object.__setattr__(self, "_head", head)
        object.__setattr__(self, "_middle", middle)

    def predict_row(self, x: np.ndarray) -> float:
        """Probability of an up move for one float64 row in this model's column order."""
        return float(self.compiled.predict_row(x))

    def answer(self, x: np.ndarray) -> tuple[float, tuple[str, ...]]:
        """``(probability, out-of-range names)`` of one row: the request path's miss. One
        kernel call scores the row and checks its range (each numba dispatch costs ~0.5 µs
        here, each Python layer ~0.2 µs)."""
        p, inside = _score(x, self.low, self.high, *self.tables)
        return p, () if inside else self.out_of_range(x)

    def answer_json(self, answer: tuple[float, tuple[str, ...]]) -> bytes:
        """Everything of a prediction's JSON after ``{"id":…,"cached":…,``: the bytes
        ``orjson`` makes of ``{"version", "probability", "decision": {…}}``, from templates
        (a third of the time of encoding the dict; a unit test checks they are equal)."""
        names = answer[1]
        return b"%s%s%s%s}}" % (
            self._head,
            orjson.dumps(answer[0]),
            self._middle,
            orjson.dumps(names) if names else b"[]",
        )

    def predict_batch(self, X: np.ndarray) -> np.ndarray:
        """Probabilities for a float64 matrix in this model's column order."""
        return np.asarray(self.compiled.predict_batch(X), dtype=np.float64)

    def out_of_range(self, x: np.ndarray) -> tuple[str, ...]:
        """Names of the features outside the training range (the strategy's hold input).

        A tuple of strings: a cached answer made only of immutable atoms is untracked by
        the cyclic GC, so a large cache does not lengthen its collections."""
        if _inside(x, self.low, self.high):
            return ()
        outside = (x < self.low) | (x > self.high)
        return tuple(n for n, o in zip(self.feature_names, outside, strict=True) if o)

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/models`` says of it."""
        return {
            "version": self.version,
            "features": list(self.feature_names),
            "entry_threshold": self.entry_threshold,
            "exit_threshold": self.exit_threshold,
            "data_hash": self.data_hash,
            "trees": list(self.n_trees),
        }


@njit(cache=True, nogil=True)
def _score(
    x: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    node_i: np.ndarray,
    node_f: np.ndarray,
    tree_i: np.ndarray,
    params: np.ndarray,
) -> tuple[float, bool]:  # pragma: no cover
    return _predict_row(x, node_i, node_f, tree_i, params), _inside(x, low, high)


@njit(cache=True, nogil=True)
def _inside(x: np.ndarray, low: np.ndarray, high: np.ndarray) -> bool:  # pragma: no cover
    # one pass, no temporaries: numpy's two comparisons and an ``any`` cost ~7 µs a row here
    for i in range(x.shape[0]):  # noqa: SIM110  (numba compiles the loop, not all())
        if x[i] < low[i] or x[i] > high[i]:
            return False
    return True


def resolve_version(registry: Path, version: str) -> str:
    """``production`` -> the registry's production version; a version id is checked to exist."""
    from ultrathink.models.registry import ModelRegistry

    reg = ModelRegistry(registry)
    if version == "production":
        prod = reg.production()
        if prod is None:
            raise ConfigError(
                f"the registry {registry} has no production version; promote one with "
                "`ultrathink models promote VERSION` or pass --model VERSION"
            )
        return str(prod)
    reg.show(version)  # a clear ModelNotFoundError / ModelIntegrityError when it cannot be
    return version


def load_served(registry: Path, version: str) -> ServedModel:
    """Verify, unpickle, compile and warm up ``version`` (see the module docstring)."""
    from ultrathink.decision.ml import MLStrategy
    from ultrathink.models.compiled import CompiledEnsemble
    from ultrathink.models.registry import ModelRegistry

    loaded = ModelRegistry(registry).load(version)
    info = loaded.info
    try:
        compiled = CompiledEnsemble.from_ensemble(loaded.model)
    except Exception as exc:
        raise ConfigError(
            f"model {version} cannot be compiled for serving ({type(exc).__name__}: {exc})"
        ) from None
    compiled.warmup()
    names = tuple(info.feature_names)
    width = len(names)
    extra = info.extra or {}
    low = np.asarray(extra.get("low", [-math.inf] * width), dtype=np.float64)
    high = np.asarray(extra.get("high", [math.inf] * width), dtype=np.float64)
    # the ML strategy's thresholds: its defaults, or the entry threshold a study tuned
    defaults = MLStrategy.Params.model_fields
    tuned = (extra.get("decision") or {}).get("entry_threshold")
    entry = float(tuned) if tuned is not None else defaults["entry_threshold"].default
    probe = np.zeros((4, width))
    compiled.predict_batch(probe)  # the batch kernel is compiled separately from the row one
    # the request path scores a read-only view of the cache key's bytes: numba compiles a
    # separate specialisation for read-only arrays, so compile both now, not on a request
    frozen = np.frombuffer(probe[0].tobytes(), dtype=np.float64)
    tables = (compiled.node_i, compiled.node_f, compiled.tree_i, compiled.params)
    for row in (frozen, probe[0]):
        _score(row, low, high, *tables)
    return ServedModel(
        version=info.version,
        feature_names=names,
        index={n: i for i, n in enumerate(names)},
        compiled=compiled,
        low=low,
        high=high,
        entry_threshold=entry,
        exit_threshold=min(defaults["exit_threshold"].default, entry),
        data_hash=info.data_hash,
        n_trees=tuple(compiled.n_trees),  # type: ignore[arg-type]
        packer=struct.Struct(f"={width}d"),
        tables=tables,
    )


@dataclass(frozen=True)
class ModelSet:
    """The loaded versions, by id. Immutable: a reload makes a new one."""

    models: dict[str, ServedModel] = field(default_factory=dict)

    def get(self, version: str) -> ServedModel | None:
        return self.models.get(version)

    def with_models(self, loaded: Sequence[ServedModel], keep: Sequence[str]) -> ModelSet:
        """A new set: ``loaded`` replaces or adds; of the rest only ``keep`` stays."""
        models = {v: m for v, m in self.models.items() if v in keep}
        models.update({m.version: m for m in loaded})
        return ModelSet(models)
