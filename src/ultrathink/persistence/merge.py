"""Merge sorted row streams by key, one group at a time (the cross-checks' join).

Each source is a cursor whose ``ORDER BY`` matches its key function: the merge never holds
more than the current group of each source. Keys are flat tuples of ``(rank, value)`` pairs
that mirror SQLite's ordering across storage classes (NULL < numbers < text < blobs), so a
tampered value of an unexpected type sorts where SQLite put it instead of breaking the
comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from typing import Any

Row = tuple[Any, ...]
Key = tuple[Any, ...]
_EMPTY: Iterator[Row] = iter(())  # exhausted: safe to hand out as every empty group


def sql_order(value: object) -> tuple[int, Any]:
    """Return a sort key of ``value`` that orders as SQLite's ``ORDER BY`` (BINARY text)."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, value)


def int_key(a: object) -> Key:
    """Key of one column that is normally an integer (a run id)."""
    return (1, a) if type(a) is int else sql_order(a)


def int_str_key(a: object, b: object) -> Key:
    """Key of an integer column then a text column (run id, order id or symbol)."""
    if type(a) is int and type(b) is str:
        return (1, a, 2, b)
    return (*sql_order(a), *sql_order(b))


def key_values(key: Key) -> tuple[Any, ...]:
    """Return the values a key was made of (None for NULL)."""
    return tuple(None if key[i] == 0 else key[i + 1] for i in range(0, len(key), 2))


def merge_groups(
    *sources: tuple[Iterable[Row], Callable[[Row], Key]],
) -> Iterator[tuple[Key, list[Iterator[Row]]]]:
    """Yield ``(key, [group of each source])`` in key order; absent groups are empty.

    Each group is a lazy iterator over the source's rows with that key: consume it before
    asking for the next key (the rest of a group is skipped then).
    """
    outers = [groupby(rows, key) for rows, key in sources]
    heads = [next(outer, None) for outer in outers]
    while True:
        key = None
        for head in heads:
            if head is not None and (key is None or head[0] < key):
                key = head[0]
        if key is None:
            return
        hits = [head is not None and head[0] == key for head in heads]
        yield key, [head[1] if head is not None and hit else _EMPTY
                    for head, hit in zip(heads, hits, strict=True)]  # fmt: skip
        for i, hit in enumerate(hits):
            if hit:
                heads[i] = next(outers[i], None)
