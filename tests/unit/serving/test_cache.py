"""Prediction cache: hits, TTL, LRU order, both bounds, replace, invalidate, config, threads."""

from __future__ import annotations

import itertools
import math
import random
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.errors import ConfigError
from ultrathink.serving.cache import ENTRY_OVERHEAD_BYTES, CacheStats, PredictionCache

OVH = ENTRY_OVERHEAD_BYTES


class _FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _key(i: int, n_features: int = 28) -> bytes:
    return np.full(n_features, float(i), dtype=np.float64).tobytes()


def _size(key: bytes, nbytes: int) -> int:
    return len(key) + nbytes + OVH


def _audit(cache: PredictionCache) -> None:
    """The cache's internal accounting agrees with its contents, and both bounds hold."""
    data = cache._data
    stats = cache.stats()
    assert stats.rows == len(data) == len(cache)
    assert stats.bytes == sum(entry[1] for entry in data.values())
    assert stats.rows <= cache.max_rows
    assert stats.bytes <= cache.max_bytes
    indexed = {(version, key) for version, keys in cache._index.items() for key in keys}
    assert indexed == set(data)
    assert all(cache._index.values())  # no empty version left behind


# --- Hits, misses and stats ---------------------------------------------------------------


def test_hit_returns_the_identical_object_and_counts() -> None:
    cache = PredictionCache(max_rows=10, max_bytes=10_000, ttl_s=None)
    value = {"proba": np.array([0.3, 0.7])}

    cache.put("v0001", _key(1), value, nbytes=16)

    assert cache.get("v0001", _key(1)) is value  # a fresh but equal key object hits
    assert cache.get("v0001", _key(2)) is None
    assert cache.get("v0002", _key(1)) is None  # same features, other version: a miss
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.rows) == (1, 2, 1)
    assert stats.bytes == _size(_key(1), 16)
    assert stats.hit_ratio == pytest.approx(1 / 3)


def test_stats_before_any_get_and_to_dict() -> None:
    cache = PredictionCache(max_rows=5, max_bytes=4_000, ttl_s=30.0)

    stats = cache.stats()

    assert isinstance(stats, CacheStats)
    assert stats.to_dict() == {
        "hits": 0,
        "misses": 0,
        "evictions": 0,
        "expirations": 0,
        "invalidated": 0,
        "rows": 0,
        "bytes": 0,
        "max_rows": 5,
        "max_bytes": 4_000,
        "hit_ratio": 0.0,
    }
    with pytest.raises(AttributeError):
        stats.hits = 3  # type: ignore[misc]
    assert (cache.max_rows, cache.max_bytes, cache.ttl_s) == (5, 4_000, 30.0)


# --- TTL ----------------------------------------------------------------------------------


def test_entry_expires_ttl_after_its_put_and_counts_as_miss_and_expiration() -> None:
    clock = _FakeClock(100.0)
    cache = PredictionCache(max_rows=10, max_bytes=10_000, ttl_s=10.0, clock=clock)
    cache.put("v1", _key(1), "a", nbytes=1)

    clock.now = 105.0
    assert cache.get("v1", _key(1)) == "a"  # a hit does not extend the TTL
    clock.now = 109.999
    assert cache.get("v1", _key(1)) == "a"
    clock.now = 110.0
    assert cache.get("v1", _key(1)) is None

    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations) == (2, 1, 1)
    assert (stats.rows, stats.bytes) == (0, 0)  # the expired entry was dropped
    _audit(cache)


def test_putting_again_restarts_the_ttl() -> None:
    clock = _FakeClock()
    cache = PredictionCache(max_rows=10, max_bytes=10_000, ttl_s=10.0, clock=clock)
    cache.put("v1", _key(1), "old", nbytes=1)
    clock.now = 8.0
    cache.put("v1", _key(1), "new", nbytes=1)

    clock.now = 17.0
    assert cache.get("v1", _key(1)) == "new"
    clock.now = 18.0
    assert cache.get("v1", _key(1)) is None


def test_no_ttl_never_expires() -> None:
    clock = _FakeClock()
    cache = PredictionCache(max_rows=10, max_bytes=10_000, ttl_s=None, clock=clock)
    cache.put("v1", _key(1), "a", nbytes=1)

    clock.now = 1e12

    assert cache.get("v1", _key(1)) == "a"
    assert cache.stats().expirations == 0


def test_expired_entry_pushed_out_by_capacity_counts_as_expiration() -> None:
    clock = _FakeClock()
    cache = PredictionCache(max_rows=2, max_bytes=10_000, ttl_s=5.0, clock=clock)
    cache.put("v1", _key(1), "a", nbytes=0)
    clock.now = 3.0
    cache.put("v1", _key(2), "b", nbytes=0)
    clock.now = 5.0  # key 1 expires exactly now, key 2 has not

    cache.put("v1", _key(3), "c", nbytes=0)  # pushes out key 1 (expired)
    cache.put("v1", _key(4), "d", nbytes=0)  # pushes out key 2 (live)

    stats = cache.stats()
    assert (stats.expirations, stats.evictions, stats.rows) == (1, 1, 2)


# --- LRU and the two bounds ---------------------------------------------------------------


def test_touching_an_entry_protects_it_from_eviction() -> None:
    cache = PredictionCache(max_rows=3, max_bytes=100_000, ttl_s=None)
    for i in (1, 2, 3):
        cache.put("v1", _key(i), i, nbytes=8)

    assert cache.get("v1", _key(1)) == 1  # 1 becomes most recent: 2 is now the LRU
    cache.put("v1", _key(4), 4, nbytes=8)

    assert cache.get("v1", _key(2)) is None
    assert [cache.get("v1", _key(i)) for i in (1, 3, 4)] == [1, 3, 4]
    assert cache.stats().evictions == 1
    _audit(cache)


def test_byte_bound_evicts_lru_entries_until_the_new_one_fits() -> None:
    one = _size(_key(0), 100)
    cache = PredictionCache(max_rows=100, max_bytes=3 * one, ttl_s=None)
    for i in range(3):
        cache.put("v1", _key(i), i, nbytes=100)
    assert cache.stats().bytes == 3 * one

    cache.put("v1", _key(9), 9, nbytes=100 + one)  # needs two entries' room

    assert [cache.get("v1", _key(i)) for i in range(3)] == [None, None, 2]
    assert cache.get("v1", _key(9)) == 9
    stats = cache.stats()
    assert (stats.rows, stats.bytes, stats.evictions) == (2, 3 * one, 2)
    _audit(cache)


def test_entry_larger_than_max_bytes_is_not_stored_and_evicts_nothing() -> None:
    cache = PredictionCache(max_rows=10, max_bytes=2_000, ttl_s=None)
    cache.put("v1", _key(1), "small", nbytes=10)

    cache.put("v1", _key(2), "huge", nbytes=2_000)  # 224 + 2000 + overhead > 2000

    assert cache.get("v1", _key(2)) is None
    assert cache.get("v1", _key(1)) == "small"
    stats = cache.stats()
    assert (stats.rows, stats.evictions) == (1, 0)


def test_entry_of_exactly_max_bytes_is_stored() -> None:
    key = _key(1)
    cache = PredictionCache(max_rows=10, max_bytes=_size(key, 50), ttl_s=None)

    cache.put("v1", key, "fits", nbytes=50)

    assert cache.get("v1", key) == "fits"
    assert cache.stats().bytes == cache.max_bytes


def test_replacing_a_key_adjusts_bytes_and_makes_it_most_recent() -> None:
    cache = PredictionCache(max_rows=2, max_bytes=100_000, ttl_s=None)
    cache.put("v1", _key(1), "a", nbytes=10)
    cache.put("v1", _key(2), "b", nbytes=10)

    cache.put("v1", _key(1), "a2", nbytes=500)  # replace: key 2 becomes the LRU

    stats = cache.stats()
    assert (stats.rows, stats.bytes) == (2, _size(_key(1), 500) + _size(_key(2), 10))
    cache.put("v1", _key(3), "c", nbytes=10)
    assert cache.get("v1", _key(2)) is None
    assert cache.get("v1", _key(1)) == "a2"
    assert cache.stats().evictions == 1
    _audit(cache)


def test_oversize_replacement_drops_the_older_value() -> None:
    cache = PredictionCache(max_rows=10, max_bytes=2_000, ttl_s=None)
    cache.put("v1", _key(1), "old", nbytes=10)

    cache.put("v1", _key(1), "new but too big", nbytes=5_000)

    assert cache.get("v1", _key(1)) is None  # never an answer older than the last put
    stats = cache.stats()
    assert (stats.rows, stats.bytes, stats.evictions) == (0, 0, 0)
    _audit(cache)


def test_key_length_counts_toward_bytes() -> None:
    cache = PredictionCache(max_rows=10, max_bytes=100_000, ttl_s=None)

    cache.put("v1", b"", "empty", nbytes=0)
    cache.put("v1", _key(1, n_features=3), "three", nbytes=7)

    assert cache.stats().bytes == OVH + (24 + 7 + OVH)


# --- Invalidate, clear, disabled ----------------------------------------------------------


def test_invalidate_drops_only_that_version_and_returns_the_count() -> None:
    cache = PredictionCache(max_rows=100, max_bytes=1_000_000, ttl_s=None)
    for i in range(5):
        cache.put("v1", _key(i), ("v1", i), nbytes=8)
    for i in range(3):
        cache.put("v2", _key(i), ("v2", i), nbytes=8)

    assert cache.invalidate("v1") == 5
    assert cache.invalidate("v1") == 0
    assert cache.invalidate("never-seen") == 0

    assert all(cache.get("v1", _key(i)) is None for i in range(5))
    assert [cache.get("v2", _key(i)) for i in range(3)] == [("v2", i) for i in range(3)]
    stats = cache.stats()
    assert (stats.invalidated, stats.rows, stats.evictions) == (5, 3, 0)
    assert stats.bytes == 3 * _size(_key(0), 8)
    assert "v1" not in cache._index
    _audit(cache)


def test_index_forgets_a_version_whose_entries_were_all_evicted() -> None:
    cache = PredictionCache(max_rows=1, max_bytes=100_000, ttl_s=None)
    cache.put("v1", _key(1), 1, nbytes=0)

    cache.put("v2", _key(1), 2, nbytes=0)

    assert list(cache._index) == ["v2"]
    assert cache.invalidate("v1") == 0
    _audit(cache)


def test_clear_drops_entries_but_keeps_counters() -> None:
    cache = PredictionCache(max_rows=10, max_bytes=100_000, ttl_s=None)
    cache.put("v1", _key(1), 1, nbytes=0)
    cache.put("v2", _key(2), 2, nbytes=0)
    cache.get("v1", _key(1))

    cache.clear()

    stats = cache.stats()
    assert (stats.rows, stats.bytes, stats.hits) == (0, 0, 1)
    assert cache.get("v1", _key(1)) is None
    cache.put("v1", _key(1), 1, nbytes=0)  # still usable
    assert cache.get("v1", _key(1)) == 1
    _audit(cache)


def test_max_rows_zero_disables_the_cache() -> None:
    cache = PredictionCache(max_rows=0, max_bytes=0, ttl_s=None)

    cache.put("v1", _key(1), "a", nbytes=8)

    assert cache.get("v1", _key(1)) is None
    stats = cache.stats()
    assert (stats.rows, stats.bytes, stats.misses, stats.hits) == (0, 0, 1, 0)
    assert cache.invalidate("v1") == 0


# --- Bad arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_rows": -1}, r"max_rows must be an integer >= 0, was -1; pass .* or 0 to disable"),
        ({"max_rows": 2.5}, r"max_rows must be an integer >= 0, was 2\.5"),
        ({"max_rows": True}, r"max_rows must be an integer >= 0, was True"),
        ({"max_rows": "100"}, r"max_rows must be an integer >= 0, was '100'"),
        ({"max_bytes": 0}, r"max_bytes must be an integer >= 1 when max_rows > 0, was 0; pass"),
        ({"max_bytes": -5}, r"max_bytes must be an integer >= 1 when max_rows > 0, was -5"),
        ({"max_bytes": 1e6}, r"max_bytes must be an integer >= 1 .* was 1000000\.0"),
        ({"max_rows": 0, "max_bytes": -1}, r"max_bytes must be an integer >= 0, was -1"),
        ({"ttl_s": 0}, r"ttl_s must be None or a finite number of seconds > 0, was 0; pass"),
        ({"ttl_s": -1.0}, r"ttl_s must be None or a finite .* was -1\.0"),
        ({"ttl_s": math.nan}, r"ttl_s must be None or a finite .* was nan"),
        ({"ttl_s": math.inf}, r"ttl_s must be None or a finite .* was inf; .* None for no"),
        ({"ttl_s": True}, r"ttl_s must be None or a finite .* was True"),
        ({"ttl_s": "60"}, r"ttl_s must be None or a finite .* was '60'"),
        ({"clock": 12.0}, r"clock must be a callable returning seconds, was 12\.0; pass"),
    ],
)
def test_bad_constructor_arguments_raise_config_error(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"max_rows": 10, "max_bytes": 10_000, "ttl_s": 60.0, **kwargs}

    with pytest.raises(ConfigError, match=r"^PredictionCache " + message) as info:
        PredictionCache(**args)

    assert "\n" not in str(info.value)


def test_integer_ttl_and_max_bytes_zero_when_disabled_are_accepted() -> None:
    assert PredictionCache(max_rows=1, max_bytes=1, ttl_s=5).ttl_s == 5.0
    assert PredictionCache(max_rows=0, max_bytes=0, ttl_s=None).max_bytes == 0


@pytest.mark.parametrize(
    ("key", "nbytes", "error", "message"),
    [
        (bytearray(b"abc"), 1, TypeError, r"cache key must be bytes, was bytearray; .*tobytes"),
        (np.zeros(3), 1, TypeError, r"cache key must be bytes, was ndarray"),
        (b"abc", 1.5, TypeError, r"nbytes must be an integer, was 1\.5"),
        (b"abc", -1, ValueError, r"nbytes must be an integer >= 0, was -1"),
        (b"abc", True, ValueError, r"nbytes must be an integer >= 0, was True"),
    ],
)
def test_bad_put_arguments_raise(
    key: Any, nbytes: Any, error: type[Exception], message: str
) -> None:
    cache = PredictionCache(max_rows=10, max_bytes=10_000, ttl_s=None)

    with pytest.raises(error, match=message):
        cache.put("v1", key, "x", nbytes=nbytes)

    assert cache.stats().rows == 0


def test_numpy_integer_nbytes_is_accepted() -> None:
    cache = PredictionCache(max_rows=10, max_bytes=10_000, ttl_s=None)

    cache.put("v1", _key(1), "x", nbytes=np.int64(16))  # type: ignore[arg-type]

    assert cache.stats().bytes == _size(_key(1), 16)


# --- Against a reference model ------------------------------------------------------------


class _Reference:
    """The specified behaviour, written plainly: a list in LRU order (least recent first)."""

    def __init__(self, max_rows: int, max_bytes: int, ttl_s: float | None) -> None:
        self.max_rows, self.max_bytes, self.ttl_s = max_rows, max_bytes, ttl_s
        self.entries: list[tuple[tuple[str, bytes], object, int, float]] = []
        self.counts = {"hits": 0, "misses": 0, "evictions": 0, "expirations": 0, "invalidated": 0}

    def _find(self, k: tuple[str, bytes]) -> int | None:
        return next((i for i, e in enumerate(self.entries) if e[0] == k), None)

    def _expired(self, expires: float, now: float) -> bool:
        return self.ttl_s is not None and now >= expires

    def get(self, k: tuple[str, bytes], now: float) -> object | None:
        i = self._find(k)
        if i is None:
            self.counts["misses"] += 1
            return None
        entry = self.entries.pop(i)
        if self._expired(entry[3], now):
            self.counts["expirations"] += 1
            self.counts["misses"] += 1
            return None
        self.entries.append(entry)
        self.counts["hits"] += 1
        return entry[1]

    def put(self, k: tuple[str, bytes], value: object, nbytes: int, now: float) -> None:
        if self.max_rows == 0:
            return
        i = self._find(k)
        if i is not None:
            del self.entries[i]
        size = len(k[1]) + nbytes + OVH
        if size > self.max_bytes:
            return
        expires = math.inf if self.ttl_s is None else now + self.ttl_s
        self.entries.append((k, value, size, expires))
        while len(self.entries) > self.max_rows or self.bytes > self.max_bytes:
            old = self.entries.pop(0)
            self.counts["expirations" if self._expired(old[3], now) else "evictions"] += 1

    def invalidate(self, version: str) -> int:
        kept = [e for e in self.entries if e[0][0] != version]
        n = len(self.entries) - len(kept)
        self.entries = kept
        self.counts["invalidated"] += n
        return n

    @property
    def bytes(self) -> int:
        return sum(e[2] for e in self.entries)


_VERSIONS = st.sampled_from(["v1", "v2"])
_KEYS = st.sampled_from([b"", b"\x01" * 8, _key(1), _key(2, 5)])
_NBYTES = st.integers(0, 300) | st.integers(0, 3_000)  # the second is often too big to store
_PUT = st.tuples(st.just("put"), _VERSIONS, _KEYS, _NBYTES)
_OPS = st.one_of(
    _PUT,
    _PUT,
    st.tuples(st.just("get"), _VERSIONS, _KEYS),
    st.tuples(st.just("get_held"), st.integers(0, 7)),  # a key the reference holds now
    st.tuples(st.just("get_held"), st.integers(0, 7)),
    st.tuples(st.just("invalidate"), _VERSIONS),
    st.tuples(st.just("advance"), st.sampled_from([0.25, 0.5, 1.0, 3.0])),
    st.just(("clear",)),
)


@settings(max_examples=200, deadline=None)
@given(
    max_rows=st.integers(0, 6),
    room=st.integers(0, 6),  # about how many typical entries fit in max_bytes
    slack=st.integers(1, 300),
    ttl_s=st.none() | st.sampled_from([0.5, 1.0, 3.0]),
    ops=st.lists(_OPS, min_size=10, max_size=60),
)
def test_every_operation_agrees_with_a_reference_model(
    max_rows: int, room: int, slack: int, ttl_s: float | None, ops: list[tuple[Any, ...]]
) -> None:
    clock = _FakeClock()
    max_bytes = room * (OVH + 150) + slack
    cache = PredictionCache(max_rows, max_bytes, ttl_s, clock=clock)
    model = _Reference(max_rows, max_bytes, ttl_s)

    for op, *args in ops:
        if op == "get_held":
            if not model.entries:
                continue
            op, args = "get", list(model.entries[args[0] % len(model.entries)][0])
        if op == "put":
            version, key, nbytes = args
            value = object()
            cache.put(version, key, value, nbytes)
            model.put((version, key), value, nbytes, clock.now)
        elif op == "get":
            version, key = args
            got = cache.get(version, bytes(bytearray(key)))  # an equal, distinct key object
            assert got is model.get((version, key), clock.now)
        elif op == "invalidate":
            assert cache.invalidate(args[0]) == model.invalidate(args[0])
        elif op == "advance":
            clock.now += args[0]
        else:
            cache.clear()
            model.entries.clear()

        _audit(cache)  # both bounds hold after every operation
        held = [(k, entry[0], entry[1], entry[2]) for k, entry in cache._data.items()]
        assert held == model.entries  # same entries, values, sizes, expiries, LRU order
        stats = cache.stats()
        assert {name: getattr(stats, name) for name in model.counts} == model.counts


# --- Threads ------------------------------------------------------------------------------


@pytest.fixture
def tight_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # force thread switches inside the critical sections
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("tight_switching")
@pytest.mark.parametrize("ttl_s", [None, 0.1])
def test_concurrent_threads_leave_consistent_accounting(ttl_s: float | None) -> None:
    n_threads, n_ops, n_keys = 8, 8_000, 10
    ticks = itertools.count()

    def clock() -> float:
        return next(ticks) * 0.001  # each read moves time on, so entries expire mid-race

    keys = [_key(i) for i in range(n_keys)]
    versions = ["v1", "v2", "v3"]
    cache = PredictionCache(
        max_rows=20, max_bytes=16 * _size(keys[0], 40), ttl_s=ttl_s, clock=clock
    )
    barrier = threading.Barrier(n_threads)
    gets = [0] * n_threads
    dropped = [0] * n_threads
    wrong: list[object] = []
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        rng = random.Random(t)
        barrier.wait()
        try:
            for _ in range(n_ops):
                version, i, op = rng.choice(versions), rng.randrange(n_keys), rng.random()
                if op < 0.55:
                    got = cache.get(version, _key(i))
                    gets[t] += 1
                    if got is not None and got != (version, i):
                        wrong.append(got)
                elif op < 0.98:
                    cache.put(version, keys[i], (version, i), nbytes=i * 8)
                else:
                    dropped[t] += cache.invalidate(version)
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == [] and wrong == []
    _audit(cache)
    stats = cache.stats()
    assert stats.hits + stats.misses == sum(gets)
    assert stats.invalidated == sum(dropped)
    assert stats.hits > 0 and stats.evictions > 0
    if ttl_s is not None:
        assert stats.expirations > 0
    for (version, key), (value, size, _) in cache._data.items():
        i = keys.index(key)
        assert value == (version, i)
        assert size == _size(key, i * 8)
