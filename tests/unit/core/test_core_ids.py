"""IdGenerator: deterministic sequential ids that continue after a restart point."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ultrathink.core.ids import IdGenerator


def test_ids_are_sequential_and_zero_padded() -> None:
    ids = IdGenerator("O-sma_cross")

    issued = [ids.next() for _ in range(3)]

    assert issued == ["O-sma_cross-000000001", "O-sma_cross-000000002", "O-sma_cross-000000003"]


def test_last_tracks_the_last_issued_sequence_number() -> None:
    ids = IdGenerator("O")
    assert ids.last == 0

    ids.next()
    ids.next()

    assert ids.last == 2


def test_two_generators_with_same_prefix_produce_identical_ids() -> None:
    a, b = IdGenerator("F"), IdGenerator("F")

    assert [a.next() for _ in range(100)] == [b.next() for _ in range(100)]


def test_start_continues_after_the_last_used_id() -> None:
    ids = IdGenerator("O", start=41)

    assert ids.last == 41
    assert ids.next() == "O-000000042"
    assert ids.last == 42


def test_restart_from_last_reproduces_the_continuation() -> None:
    first = IdGenerator("O")
    for _ in range(7):
        first.next()
    resumed = IdGenerator("O", start=first.last)

    assert resumed.next() == first.next()


@given(st.integers(min_value=0, max_value=10**8), st.integers(min_value=1, max_value=50))
def test_ids_are_unique_and_sortable(start: int, n: int) -> None:
    ids = IdGenerator("X", start=start)

    issued = [ids.next() for _ in range(n)]

    assert len(set(issued)) == n
    assert issued == sorted(issued)
    assert issued[0] == f"X-{start + 1:09d}"
