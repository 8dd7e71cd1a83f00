"""Serving routing: option parsing, sticky stable-hash routing, weights, canary limits, JSON."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter

import pytest

from ultrathink.errors import ConfigError
from ultrathink.serving.routing import (
    CanaryPolicy,
    Routing,
    key_unit,
    parse_ab,
    parse_canary,
)

N_KEYS = 20_000


def _ab_canary_shadow() -> Routing:
    return Routing.build("v0001", parse_ab("v0001=90,v0002=10"), "v0003", parse_canary("v0004:5"))


# --- parse_ab ---------------------------------------------------------------------------------


def test_parse_ab_valid() -> None:
    assert parse_ab("v0001=90,v0002=10") == {"v0001": 90, "v0002": 10}
    assert list(parse_ab("v0002=10,v0001=90")) == ["v0002", "v0001"]  # order kept
    assert parse_ab(" v0001 = 50 , production=50 ") == {"v0001": 50, "production": 50}
    assert parse_ab("v12345=100") == {"v12345": 100}
    assert parse_ab("v0001=100,v0002=0") == {"v0001": 100, "v0002": 0}


@pytest.mark.parametrize(
    ("text", "offending"),
    [
        ("", "''"),
        ("   ", "'   '"),
        ("v0001", "'v0001'"),
        ("v0001=", "'v0001='"),
        ("=100", "'=100'"),
        ("v0001=100,", "''"),
        ("v0001:100", "'v0001:100'"),
        ("v001=100", "'v001'"),
        ("x0001=100", "'x0001'"),
        ("V0001=100", "'V0001'"),
        ("prod=100", "'prod'"),
        ("v0001=abc", "'abc'"),
        ("v0001=50.5,v0002=49.5", "'50.5'"),
        ("v0001=-5,v0002=105", "'-5'"),
        ("v0001=+90,v0002=10", "'+90'"),
        ("v0001=90,v0001=10", "'v0001'"),
        ("v0001=90,v0002=5", "got 95 (v0001=90,v0002=5)"),
        ("v0001=60,v0002=50", "got 110"),
        ("v0001=0,v0002=0", "got 0"),
    ],
)
def test_parse_ab_errors_name_the_offending_part(text: str, offending: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_ab(text)
    message = str(info.value)
    assert offending in message
    assert "\n" not in message
    assert "--ab" in message and "pass e.g." in message


def test_parse_ab_sum_message_exact() -> None:
    with pytest.raises(ConfigError, match=r"--ab weights must add up to 100, got 95 \(v0001=90"):
        parse_ab("v0001=90,v0002=5")


# --- parse_canary -----------------------------------------------------------------------------


def test_parse_canary_valid() -> None:
    assert parse_canary("v0002:5") == ("v0002", 5.0)
    assert parse_canary("v0002:0.5") == ("v0002", 0.5)
    assert parse_canary("v0002:50") == ("v0002", 50.0)
    assert isinstance(parse_canary("v0002:5")[1], float)


@pytest.mark.parametrize(
    ("text", "offending"),
    [
        ("v0002", "'v0002'"),
        ("v0002=5", "'v0002=5'"),
        ("v0002:5:1", "'v0002:5:1'"),
        (":5", "''"),
        ("v02:5", "'v02'"),
        ("v0002:", "''"),
        ("v0002:abc", "'abc'"),
        ("v0002:0", "'0'"),
        ("v0002:-1", "'-1'"),
        ("v0002:50.01", "'50.01'"),
        ("v0002:51", "'51'"),
        ("v0002:nan", "'nan'"),
        ("v0002:inf", "'inf'"),
    ],
)
def test_parse_canary_errors_name_the_offending_part(text: str, offending: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_canary(text)
    message = str(info.value)
    assert offending in message
    assert "--canary" in message and "\n" not in message


# --- CanaryPolicy -----------------------------------------------------------------------------


def test_breach_waits_for_min_requests() -> None:
    policy = CanaryPolicy("v0002", 5.0, min_requests=50)
    assert policy.breach(0, 0, 0.0) is None
    assert policy.breach(49, 49, 10_000.0) is None  # everything failing, still too early


def test_breach_on_error_rate() -> None:
    policy = CanaryPolicy("v0002", 5.0, max_error_rate=0.02, min_requests=50)
    assert policy.breach(100, 2, 10.0) is None  # exactly at the limit is allowed
    reason = policy.breach(100, 3, 10.0)
    assert reason is not None
    assert "v0002" in reason and "error rate" in reason and "3.00%" in reason
    assert "p99" not in reason


def test_breach_on_p99() -> None:
    policy = CanaryPolicy("v0002", 5.0, max_p99_ms=50.0, min_requests=50)
    assert policy.breach(50, 0, 50.0) is None
    reason = policy.breach(50, 0, 62.5)
    assert reason is not None
    assert "p99" in reason and "62.5 ms" in reason and "error rate" not in reason


def test_breach_on_both() -> None:
    reason = CanaryPolicy("v0002", 5.0).breach(100, 50, 500.0)
    assert reason is not None
    assert "error rate" in reason and "p99" in reason


@pytest.mark.parametrize(
    "kwargs",
    [
        {"version": "bad", "pct": 5.0},
        {"version": "v0002", "pct": 0.0},
        {"version": "v0002", "pct": 60.0},
        {"version": "v0002", "pct": math.nan},
        {"version": "v0002", "pct": 5.0, "max_error_rate": 1.5},
        {"version": "v0002", "pct": 5.0, "max_error_rate": -0.1},
        {"version": "v0002", "pct": 5.0, "max_p99_ms": 0.0},
        {"version": "v0002", "pct": 5.0, "max_p99_ms": math.inf},
        {"version": "v0002", "pct": 5.0, "min_requests": 0},
        {"version": "v0002", "pct": 5.0, "min_requests": 2.5},
    ],
)
def test_canary_policy_rejects_bad_fields(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        CanaryPolicy(**kwargs)  # type: ignore[arg-type]


# --- Routing.build and validation -------------------------------------------------------------


def test_build_without_ab() -> None:
    routing = Routing.build("v0001", None, None, None)
    assert routing.primary == "v0001"
    assert routing.weights == {"v0001": 100}
    assert routing.shadow is None and routing.canary is None
    assert routing.versions() == ["v0001"]
    assert routing.effective_weights() == {"v0001": 100.0}
    assert {routing.choose(f"K{i}", i) for i in range(200)} == {"v0001"}


def test_build_primary_is_largest_ab_weight_first_on_ties() -> None:
    assert Routing.build("v0009", parse_ab("v0001=10,v0002=90"), None, None).primary == "v0002"
    assert Routing.build("v0009", parse_ab("v0002=50,v0001=50"), None, None).primary == "v0002"


def test_build_canary_limits_reach_the_policy() -> None:
    routing = Routing.build(
        "v0001", None, None, ("v0002", 5.0), max_error_rate=0.1, max_p99_ms=20.0, min_requests=10
    )
    assert routing.canary == CanaryPolicy("v0002", 5.0, 0.1, 20.0, 10)


def test_build_rejects_unknown_canary_limit() -> None:
    with pytest.raises(ConfigError, match="max_p99"):
        Routing.build("v0001", None, None, ("v0002", 5.0), max_p99=20.0)


@pytest.mark.parametrize(
    ("ab", "shadow", "canary", "offending"),
    [
        (None, "v0001", None, "shadow v0001"),  # shadow is the primary
        ({"v0001": 90, "v0002": 10}, "v0002", None, "shadow v0002"),
        ({"v0001": 100, "v0002": 0}, "v0002", None, "shadow v0002"),  # loaded A/B version
        (None, None, ("v0001", 5.0), "canary v0001"),  # canary is the primary
        ({"v0001": 90, "v0002": 10}, None, ("v0002", 5.0), "canary v0002"),
        (None, "v0003", ("v0003", 5.0), "canary v0003"),
        (None, "bad", None, "'bad'"),
        ({"v0001": 90, "v0002": 5}, None, None, "got 95"),
        ({"v0001": 90.0, "v0002": 10}, None, None, "90.0"),
        ({}, None, None, "{}"),
        (None, None, ("v0002", 75.0), "75.0"),
    ],
)
def test_build_rejects_conflicts(
    ab: dict[str, int] | None,
    shadow: str | None,
    canary: tuple[str, float] | None,
    offending: str,
) -> None:
    with pytest.raises(ConfigError) as info:
        Routing.build("v0001", ab, shadow, canary)
    assert offending in str(info.value)


def test_build_rejects_bad_primary() -> None:
    with pytest.raises(ConfigError, match="'latest'"):
        Routing.build("latest", None, None, None)


def test_direct_construction_validates_primary() -> None:
    with pytest.raises(ConfigError, match="primary v0003"):
        Routing(primary="v0003", weights={"v0001": 100})
    with pytest.raises(ConfigError, match="primary v0002"):
        Routing(primary="v0002", weights={"v0001": 100, "v0002": 0})


def test_canary_together_with_ab_is_allowed() -> None:
    routing = _ab_canary_shadow()
    assert routing.primary == "v0001"
    assert routing.canary is not None and routing.canary.version == "v0004"
    assert routing.shadow == "v0003"


# --- versions and weights ---------------------------------------------------------------------


def test_versions_lists_everything_to_load_once() -> None:
    assert _ab_canary_shadow().versions() == ["v0001", "v0002", "v0004", "v0003"]
    zero = Routing.build("v0001", parse_ab("v0001=100,v0002=0"), "v0003", None)
    assert zero.versions() == ["v0001", "v0002", "v0003"]
    assert Routing.build("v0001", None, "v0002", None).versions() == ["v0001", "v0002"]


def test_effective_weights() -> None:
    weights = _ab_canary_shadow().effective_weights()
    assert list(weights) == ["v0004", "v0001", "v0002"]  # canary first; shadow never answers
    assert weights == pytest.approx({"v0004": 5.0, "v0001": 85.5, "v0002": 9.5})
    assert sum(weights.values()) == pytest.approx(100.0)
    zero = Routing.build("v0001", parse_ab("v0001=100,v0002=0"), None, None)
    assert zero.effective_weights() == {"v0001": 100.0}


# --- choose -----------------------------------------------------------------------------------


def test_choose_is_sticky_per_key() -> None:
    routing = _ab_canary_shadow()
    twin = _ab_canary_shadow()
    restored = Routing.from_dict(json.loads(json.dumps(routing.to_dict())))
    for i in range(2_000):
        key = f"SYM{i}"
        first = routing.choose(key, 0)
        assert {routing.choose(key, seq) for seq in (1, 7, 10_000)} == {first}
        assert twin.choose(key, 3) == first
        assert restored.choose(key, 99) == first


def test_choose_uses_the_stable_blake2b_draw() -> None:
    routing = Routing.build("v0001", parse_ab("v0001=50,v0002=50"), None, None)
    for i in range(500):
        key = f"K{i}"
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "big") / 2**64
        assert key_unit(key, 0) == u
        assert routing.choose(key, 0) == ("v0001" if u < 0.5 else "v0002")


def test_choose_without_key_is_deterministic_by_seq() -> None:
    routing = _ab_canary_shadow()
    first = [routing.choose(None, seq) for seq in range(3_000)]
    again = [_ab_canary_shadow().choose(None, seq) for seq in range(3_000)]
    assert first == again
    assert [routing.choose("", seq) for seq in range(100)] == first[:100]  # empty key = none
    assert set(first) == {"v0001", "v0002", "v0004"}


def _assert_split(routing: Routing, chosen: Counter[str], n: int) -> None:
    shares = routing.effective_weights()
    assert set(chosen) == set(shares)
    for version, pct in shares.items():
        p = pct / 100.0
        sigma = math.sqrt(n * p * (1.0 - p))
        assert abs(chosen[version] - n * p) <= 4.0 * sigma, (version, chosen[version], n * p)


@pytest.mark.parametrize(
    ("ab", "canary"),
    [
        ("v0001=90,v0002=10", None),
        ("v0001=90,v0002=10", "v0004:5"),
        ("v0001=50,v0002=30,v0003=20", "v0004:10"),
        (None, "v0004:2.5"),
    ],
)
def test_split_over_distinct_keys_matches_weights(ab: str | None, canary: str | None) -> None:
    routing = Routing.build(
        "v0001",
        parse_ab(ab) if ab else None,
        None,
        parse_canary(canary) if canary else None,
    )
    chosen = Counter(routing.choose(f"KEY-{i:05d}", 0) for i in range(N_KEYS))
    _assert_split(routing, chosen, N_KEYS)


def test_split_without_keys_matches_weights() -> None:
    routing = _ab_canary_shadow()
    chosen = Counter(routing.choose(None, seq) for seq in range(N_KEYS))
    _assert_split(routing, chosen, N_KEYS)


def test_zero_weight_version_never_answers() -> None:
    routing = Routing.build("v0001", parse_ab("v0001=100,v0002=0"), None, None)
    assert {routing.choose(f"K{i}", i) for i in range(2_000)} == {"v0001"}


# --- rollback and JSON ------------------------------------------------------------------------


def test_without_canary_is_the_rollback_target() -> None:
    routing = _ab_canary_shadow()
    rolled = routing.without_canary()
    assert rolled.canary is None
    assert rolled.weights == routing.weights and rolled.shadow == "v0003"
    assert rolled.primary == "v0001"
    assert rolled.versions() == ["v0001", "v0002", "v0003"]
    assert {rolled.choose(f"K{i}", 0) for i in range(2_000)} == {"v0001", "v0002"}
    assert rolled.without_canary() is rolled


def test_to_dict_round_trip() -> None:
    for routing in (
        _ab_canary_shadow(),
        Routing.build("v0001", None, None, None),
        Routing.build("production", None, "v0002", ("v0003", 1.5), min_requests=5),
    ):
        data = routing.to_dict()
        restored = Routing.from_dict(json.loads(json.dumps(data)))
        assert restored == routing
        assert restored.to_dict() == data
        assert list(restored.weights) == list(routing.weights)


def test_weights_are_copied() -> None:
    ab = {"v0001": 90, "v0002": 10}
    routing = Routing.build("v0001", ab, None, None)
    ab["v0002"] = 50
    assert routing.weights == {"v0001": 90, "v0002": 10}


@pytest.mark.parametrize(
    "data",
    [
        {"primary": "v0001", "weights": {"v0001": 100}},
        {"primary": "v0001", "weights": {"v0001": 100}, "shadow": None, "canary": None, "x": 1},
        {"primary": "v0001", "weights": [["v0001", 100]], "shadow": None, "canary": None},
        {"primary": "v0001", "weights": {"v0001": 100}, "shadow": None, "canary": {"pct": 5}},
        {"primary": "v0001", "weights": {"v0001": 99}, "shadow": None, "canary": None},
    ],
)
def test_from_dict_rejects_bad_input(data: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Routing.from_dict(data)
