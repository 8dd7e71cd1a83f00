"""Parsing and formatting synthetic spec strings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.data import SyntheticConfig, parse_synthetic_spec
from ultrathink.data.synthetic import Crash, FlashCrash, Gap, Halt, VolSpike, format_synthetic_spec
from ultrathink.errors import ConfigError


def test_bare_synthetic_means_defaults() -> None:
    assert parse_synthetic_spec("synthetic") == SyntheticConfig()
    assert parse_synthetic_spec(" synthetic: ") == SyntheticConfig()


def test_scalar_fields() -> None:
    config = parse_synthetic_spec("synthetic:n_bars=1000000,seed=7,freq=1min,symbols=AAA+BBB")

    assert (config.n_bars, config.seed, config.freq) == (1_000_000, 7, "1min")
    assert config.symbols == ("AAA", "BBB")


def test_keys_are_case_insensitive_and_numbers_flexible() -> None:
    config = parse_synthetic_spec("SYNTHETIC:N_BARS=1e4,Vol_Annual=0.5,n_symbols=2")

    assert (config.n_bars, config.vol_annual, config.symbols) == (10_000, 0.5, ("SYN1", "SYN2"))


@pytest.mark.parametrize(
    ("item", "scenario"),
    [
        ("crash=20@1000/50", Crash(pct=20, start_bar=1000, n_bars=50)),
        ("gap=-5@300", Gap(pct=-5, at_bar=300)),
        (
            "flash_crash=10@2000/5/20",
            FlashCrash(pct=10, at_bar=2000, n_bars_down=5, n_bars_recover=20),
        ),
        ("vol_spike=3@100/200", VolSpike(multiplier=3, start_bar=100, n_bars=200)),
        ("halt=400/30", Halt(start_bar=400, n_bars=30)),
        ("halt=400/30:SYN", Halt(start_bar=400, n_bars=30, symbol="SYN")),
    ],
)
def test_scenarios(item: str, scenario: object) -> None:
    config = parse_synthetic_spec(f"synthetic:n_bars=5000,{item}")

    assert config.scenarios == (scenario,)


def test_scenario_keys_repeat_in_order() -> None:
    config = parse_synthetic_spec("synthetic:n_bars=5000,crash=20@1000/50,crash=5@10/2,halt=1/1")

    assert [s.kind for s in config.scenarios] == ["crash", "crash", "halt"]
    assert config.scenarios[1] == Crash(pct=5, start_bar=10, n_bars=2)


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        (
            "synthetic:nbars=5",
            r"unknown key 'nbars' \(did you mean 'n_bars'\?\); known keys: n_bars",
        ),
        ("synthetic:n_bars=0", r"n_bars=0: .*greater than or equal to 1; fix: change n_bars"),
        ("synthetic:n_bars=abc", r"n_bars='abc'.*valid integer"),
        ("synthetic:vol_annual=-1", r"vol_annual=-1.*greater than or equal to 0"),
        ("synthetic:seed=1,seed=2", r"'seed' given twice"),
        ("synthetic:n_bars", r"'n_bars' must be key=value"),
        ("synthetic:freq=1M", r"freq='1M'.*fixed positive bar length"),
        ("synth:n_bars=5", r"must start with 'synthetic'"),
        (
            "synthetic:crash=20@1000",
            r"crash='20@1000' is malformed; usage crash=PCT@START_BAR/N_BARS",
        ),
        ("synthetic:gap=5", r"gap='5' is malformed; usage gap=PCT@AT_BAR"),
        ("synthetic:halt=1@2/3", r"halt='1@2/3' is malformed"),
        ("synthetic:crash=120@10/5", r"crash='120@10/5': pct .*less than 100, was 120"),
        ("synthetic:n_bars=100,crash=20@99/5", r"covers bars 99..103 but n_bars is 100"),
        ("synthetic:halt=1/2:ZZZ", r"names symbol 'ZZZ'"),
    ],
)
def test_bad_specs_name_key_rule_and_value(spec: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        parse_synthetic_spec(spec)


def test_format_is_short_and_parses_back() -> None:
    config = parse_synthetic_spec("synthetic:n_bars=5000,seed=7,crash=20@1000/50,gap=-5.5@300")

    spec = format_synthetic_spec(config)

    assert spec == "synthetic:n_bars=5000,seed=7,crash=20@1000/50,gap=-5.5@300"
    assert format_synthetic_spec(SyntheticConfig()) == "synthetic"
    assert format_synthetic_spec(SyntheticConfig(n_symbols=3)) == "synthetic:n_symbols=3"  # type: ignore[call-arg]


@settings(max_examples=100, deadline=None)
@given(
    n_bars=st.integers(10, 10**6),
    seed=st.integers(0, 2**63),
    vol=st.floats(0, 10),
    pct=st.floats(-99.9, 1000),
    symbols=st.lists(st.sampled_from(["A", "B", "CC", "D.E"]), min_size=1, max_size=3, unique=True),
)
def test_format_then_parse_round_trips(
    n_bars: int, seed: int, vol: float, pct: float, symbols: list[str]
) -> None:
    config = SyntheticConfig(
        n_bars=n_bars,
        seed=seed,
        vol_annual=vol,
        symbols=tuple(symbols),
        scenarios=(Gap(pct=pct, at_bar=5, symbol=symbols[0]), Halt(start_bar=1, n_bars=2)),
    )

    assert parse_synthetic_spec(format_synthetic_spec(config)) == config
