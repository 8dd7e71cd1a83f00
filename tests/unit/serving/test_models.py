"""``ServedModel.answer_json``: the miss path's templated answer equals orjson's encoding."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st

from ultrathink.serving.models import ServedModel

NAMES = ("ret_1", "ret_5", "vol_20", "rsi_14")


def _model(version: str, entry: float, exit_: float) -> ServedModel:
    return ServedModel(
        version=version,
        feature_names=NAMES,
        index={n: i for i, n in enumerate(NAMES)},
        compiled=None,
        low=np.full(len(NAMES), -1.0),
        high=np.full(len(NAMES), 1.0),
        entry_threshold=entry,
        exit_threshold=exit_,
        data_hash="0" * 64,
    )


def _reference(model: ServedModel, p: float, outside: tuple[str, ...]) -> bytes:
    return orjson.dumps(
        {
            "version": model.version,
            "probability": p,
            "decision": {
                "entry_threshold": model.entry_threshold,
                "exit_threshold": model.exit_threshold,
                "out_of_range": outside,
            },
        }
    )[1:]


@given(
    version=st.from_regex(r"v[0-9]{4}", fullmatch=True),
    p=st.floats(0.0, 1.0) | st.sampled_from([1e-300, 5e-324, 0.1 + 0.2, 1e-5]),
    entry=st.floats(0.0, 1.0),
    exit_=st.floats(0.0, 1.0),
    outside=st.lists(st.sampled_from(NAMES), unique=True).map(tuple),
)
def test_templated_answer_is_the_bytes_orjson_makes_of_the_dict(
    version: str, p: float, entry: float, exit_: float, outside: tuple[str, ...]
) -> None:
    model = _model(version, entry, exit_)
    got = model.answer_json((p, outside))
    assert got == _reference(model, p, outside)
    parsed = orjson.loads(b"{" + got)
    assert parsed["probability"] == p
    assert parsed["decision"]["out_of_range"] == list(outside)


def test_out_of_range_names_the_features_outside_the_training_range() -> None:
    model = _model("v0001", 0.55, 0.45)
    assert model.out_of_range(np.array([0.0, 0.5, -0.5, 1.0])) == ()
    assert model.out_of_range(np.array([2.0, 0.5, -3.0, 1.0])) == ("ret_1", "vol_20")
