"""The writer process's batch codec (``persistence/codec.py``): what it decodes is what was
encoded, record for record and bit for bit, and it pickles no ndarray."""

from __future__ import annotations

import math
import pickle
import pickletools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.core.enums import DenyReason, OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import Fill, OrderDenied, OrderEvent, OrderRequest
from ultrathink.persistence import WriteBatch
from ultrathink.persistence.codec import decode_batch, encode_batch

ids = st.text("ABCxyz-_|0123456789", min_size=1, max_size=12)
text = st.text(max_size=20)
ts = st.integers(-(2**63), 2**63 - 1)
num = st.floats(allow_nan=False, allow_infinity=False, width=64)
maybe = st.none() | num

requests = st.builds(
    OrderRequest, ids, ts, ids, st.sampled_from(Side), num, st.sampled_from(OrderType), maybe,
    maybe, st.sampled_from(TimeInForce), st.booleans(),
)  # fmt: skip
denials = st.builds(OrderDenied, ts, ids, ids, st.sampled_from(DenyReason), text)
events = st.builds(OrderEvent, ts, ids, ids, st.sampled_from(OrderStatus), num, text)
fills = st.builds(Fill, ts, ids, ids, ids, st.sampled_from(Side), num, num, num, num)


@st.composite
def equity(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    n = draw(st.integers(0, 20))
    if draw(st.booleans()):
        return None
    values = st.lists(st.floats(width=64), min_size=n, max_size=n)  # NaN and inf included
    return (
        np.array(draw(st.lists(ts, min_size=n, max_size=n)), dtype=np.int64),
        np.array(draw(values), dtype=np.float64),
        np.array(draw(values), dtype=np.float64),
    )


batches = st.builds(
    WriteBatch, st.integers(1, 10**6), st.lists(requests, max_size=4),
    st.lists(denials, max_size=3), st.lists(ids, max_size=3), st.lists(events, max_size=4),
    st.lists(fills, max_size=4), equity(),
    st.lists(st.tuples(ids, num, num, num, num), max_size=2),
    st.lists(st.tuples(ts, text, text), max_size=2),
)  # fmt: skip


def same(a: object, b: object) -> bool:
    # equal, with NaN equal to NaN (a curve may hold them) and floats compared bit for bit
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a.hex() == b.hex()
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=200, deadline=None)
@given(batches)
def test_a_decoded_batch_is_the_encoded_one(batch: WriteBatch) -> None:
    payload = pickle.loads(pickle.dumps(encode_batch(batch)))  # as the pipe carries it
    back = decode_batch(payload)
    assert (back.equity is None) == (batch.equity is None)
    if batch.equity is not None:
        assert same(back.equity, batch.equity)
    for field in set(WriteBatch._fields) - {"equity"}:
        got, sent = getattr(back, field), getattr(batch, field)
        assert same(
            got if field == "run_id" else list(got), sent if field == "run_id" else list(sent)
        ), field


def test_numbers_travel_as_bytes_not_as_pickled_arrays() -> None:
    # pickling an ndarray costs ~15 µs whatever its size: a batch must hold none
    n = 100
    batch = WriteBatch(
        run_id=1, requests=[], denials=[], approvals=[], events=[],
        fills=[Fill(1, "C-1", "F-1", "SPY", Side.BUY, 1.0, 10.0, 0.0)],
        equity=(np.arange(n, dtype=np.int64), np.ones(n), np.ones(n)),
    )  # fmt: skip
    ops = {op.name for op, _, _ in pickletools.genops(pickle.dumps(encode_batch(batch)))}
    assert "GLOBAL" not in ops and "STACK_GLOBAL" not in ops, "no class is pickled"
    payload = encode_batch(batch)
    assert payload["rq"] is None and payload["ev"] is None, "an empty kind is None"
