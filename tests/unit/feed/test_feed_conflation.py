"""The bounded hand-off queue: its full-queue policy, checked against a plain reference model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.feed.feed_fixtures import make_bar

from ultrathink.core.events import Bar
from ultrathink.feed import ConflatingQueue


def test_a_full_queue_sheds_the_oldest_bar_of_the_same_symbol() -> None:
    queue = ConflatingQueue(3)
    a1, b1, a2, a3 = make_bar(1, "A"), make_bar(1, "B"), make_bar(2, "A"), make_bar(3, "A")
    for bar in (a1, b1, a2):
        assert queue.put(bar) is None
    shed = queue.put(a3)
    assert shed is not None and shed.reason == "conflated" and shed.bar == a1
    assert queue.pop_many(10) == [b1, a2, a3]  # each symbol's order kept, newest kept


def test_without_a_bar_of_its_symbol_the_oldest_of_all_is_shed() -> None:
    queue = ConflatingQueue(2)
    a1, b1, c1 = make_bar(1, "A"), make_bar(1, "B"), make_bar(1, "C")
    queue.put(a1)
    queue.put(b1)
    shed = queue.put(c1)
    assert shed is not None and (shed.reason, shed.bar) == ("queue_full", a1)
    assert [queue.pop(), queue.pop(), queue.pop()] == [b1, c1, None]
    assert queue.high_water == 2 and len(queue) == 0


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        ConflatingQueue(0)


class _Reference:
    """The policy written as plainly as possible: a list scanned from the front."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: list[Bar] = []

    def put(self, bar: Bar) -> tuple[str, Bar] | None:
        shed = None
        if len(self.items) >= self.capacity:
            same = [i for i, b in enumerate(self.items) if b.symbol == bar.symbol]
            index, reason = (same[0], "conflated") if same else (0, "queue_full")
            shed = (reason, self.items.pop(index))
        self.items.append(bar)
        return shed

    def pop_many(self, n: int) -> list[Bar]:
        out, self.items = self.items[:n], self.items[n:]
        return out


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from("ABCD")),
        st.tuples(st.just("take"), st.integers(0, 4)),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 6), ops=OPS)
def test_the_queue_follows_the_policy_and_loses_nothing_unaccounted(
    capacity: int, ops: list[tuple[str, object]]
) -> None:
    queue, reference = ConflatingQueue(capacity), _Reference(capacity)
    counter: dict[str, int] = {}
    n_put = n_taken = 0
    shed: dict[str, int] = {}
    taken: list[Bar] = []
    for op, arg in ops:
        if op == "put":
            symbol = str(arg)
            counter[symbol] = counter.get(symbol, 0) + 1
            bar = make_bar(counter[symbol], symbol)
            got, want = queue.put(bar), reference.put(bar)
            assert (None if got is None else tuple(got)) == want
            if got is not None:
                shed[got.reason] = shed.get(got.reason, 0) + 1
            n_put += 1
        else:
            assert isinstance(arg, int)
            bars = queue.pop_many(arg)
            assert bars == reference.pop_many(arg)
            n_taken += len(bars)
            taken.extend(bars)
        assert len(queue) <= capacity and queue.high_water <= capacity
        assert n_put == n_taken + sum(shed.values()) + len(queue)
    for symbol in "ABCD":  # every symbol's bars come out in ts order
        ts = [b.ts_ns for b in taken if b.symbol == symbol]
        assert ts == sorted(set(ts))
