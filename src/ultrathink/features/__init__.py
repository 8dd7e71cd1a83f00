"""Features: indicators computed both vectorised (research) and incrementally (engine).

``compute_features`` (vectorised) and ``StreamingFeatures`` (O(1) per bar) produce the same
``FEATURE_NAMES`` columns; ``forward_return_labels`` and ``purged_walk_forward`` prepare
training data without look-ahead. The numba-backed modules load on first use, so importing
the indicators alone does not pay for numba.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ultrathink.features.indicators import EMA, SMA, ema, sma
from ultrathink.features.labels import forward_return_labels
from ultrathink.features.spec import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    FIRST_VALID_ROW,
    N_FEATURES,
    WARMUP_BARS,
)
from ultrathink.features.validation import purged_walk_forward

if TYPE_CHECKING:
    from ultrathink.features.streaming import StreamingFeatures
    from ultrathink.features.vectorised import compute_features, compute_features_for

_LAZY = {
    "StreamingFeatures": "ultrathink.features.streaming",
    "compute_features": "ultrathink.features.vectorised",
    "compute_features_for": "ultrathink.features.vectorised",
}

__all__ = [
    "EMA",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "FIRST_VALID_ROW",
    "N_FEATURES",
    "SMA",
    "WARMUP_BARS",
    "StreamingFeatures",
    "compute_features",
    "compute_features_for",
    "ema",
    "forward_return_labels",
    "purged_walk_forward",
    "sma",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ultrathink.features' has no attribute {name!r}")
