"""Deterministic identifiers: the same run produces the same ids, so retries are idempotent."""

from __future__ import annotations


class IdGenerator:
    """Sequential ids with a fixed prefix, e.g. ``O-sma_cross-000000001``.

    Parameters
    ----------
    prefix : str
        Stable prefix (kind and owner of the ids).
    start : int
        Last id already used (ids continue after it, e.g. after a restart).
    """

    __slots__ = ("_prefix", "_seq")

    def __init__(self, prefix: str, start: int = 0) -> None:
        self._prefix = prefix
        self._seq = start

    @property
    def last(self) -> int:
        """Sequence number of the last id issued."""
        return self._seq

    def next(self) -> str:
        """Return the next id."""
        self._seq += 1
        return f"{self._prefix}-{self._seq:09d}"
