"""load_engine_config: every bad file, environment value or setting is one clear ConfigError."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ultrathink.config import (
    MAX_CONFIG_BYTES,
    engine_config_from_values,
    load_engine_config,
    realistic_defaults,
)
from ultrathink.engine.config import EngineConfig
from ultrathink.errors import ConfigError


def load(path: Path | str | None = None, **kwargs: object) -> EngineConfig:
    kwargs.setdefault("environ", {})
    return load_engine_config(path, **kwargs)  # type: ignore[arg-type]


def write(tmp_path: Path, content: str | bytes, name: str = "c.toml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def refused(fn: Callable[[], object], *fragments: str) -> str:
    """The one-line message of the ConfigError ``fn`` raises; it holds every fragment."""
    with pytest.raises(ConfigError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert len(message) < 1500, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- the file itself -----------------------------------------------------------------------


def test_a_directory_is_refused(tmp_path: Path) -> None:
    refused(lambda: load(tmp_path), str(tmp_path), "is a directory", "TOML file")


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    refused(lambda: load(tmp_path / "nope.toml"), "nope.toml", "not found")


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "starting_cash = 1\n")
    path.chmod(0o000)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("this user reads any file whatever its mode (root / CAP_DAC_OVERRIDE)")
        refused(lambda: load(path), "permission denied", "chmod")
    finally:
        path.chmod(0o600)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)

    refused(lambda: load(fifo), "is a FIFO", "not a regular file")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused(device: str) -> None:
    refused(lambda: load(device), device, "not a regular file")


def test_a_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, b"# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))

    refused(lambda: load(path), f"larger than {MAX_CONFIG_BYTES} bytes")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\xff\xfe s\x00t\x00", "not UTF-8 text (byte 0xff at offset 0)"),
        (b"starting_cash = 1\n\x80\x81", "not UTF-8 text (byte 0x80 at offset 18)"),
        (bytes(range(256)) * 4, "not UTF-8"),
        (b"starting_cash = 1\x00\n", "not valid TOML"),
        (b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 64, "not valid TOML"),
    ],
    ids=["utf16", "latin1-tail", "binary", "nul", "elf"],
)
def test_non_utf8_or_binary_content_is_refused(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    path = write(tmp_path, content)

    refused(lambda: load(path), fragment)


@pytest.mark.parametrize(
    "content",
    [
        "x = " + "{a = " * 100_000 + "1" + "}" * 100_000,
        "x = " + "[" * 100_000 + "]" * 100_000,
        "x = " + "[{a = " * 50_000 + "1" + "}]" * 50_000,
        "x = " + "[" * 9 + "]" * 9,  # parses, but deeper than any setting
        "a.b.c.d.e.f.g.h.i.j = 1",
    ],
    ids=["inline-tables", "arrays", "mixed", "depth-9", "dotted-keys"],
)
def test_deep_nesting_is_refused_without_recursion_error(tmp_path: Path, content: str) -> None:
    path = write(tmp_path, content)

    refused(lambda: load(path), "nests tables or arrays more than 8 levels deep")


def test_an_integer_python_will_not_read_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "starting_cash = " + "9" * 5000 + "\n")

    message = refused(lambda: load(path), "holds a number Python will not read")
    assert "set_int_max_str_digits" not in message  # not a fix for a config file


def test_a_byte_order_mark_is_not_content(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfstarting_cash = 5\n")

    assert load(path).starting_cash == 5.0


# --- silent coercions ------------------------------------------------------------------------

COERCIONS = [
    ("starting_cash = true", "starting_cash must be a number", "was true (a boolean)"),
    ('starting_cash = "250000"', "starting_cash must be a number", "'250000'"),
    ("risk = 5", "risk must be a table of settings", "was 5"),
    ("[risk]\nmax_drawdown_pct = true", "risk.max_drawdown_pct must be a number", "true"),
    ("[risk]\nmax_open_orders = 2.5", "risk.max_open_orders must be a whole number", "2.5"),
    ('[risk]\ncheck_buying_power = "no"', "risk.check_buying_power must be true or false", ""),
    ("[broker]\ncommission_bps = false", "broker.commission_bps must be a number", "false"),
    ("[sizing]\nmode = 1", "sizing.mode must be 'all_in' or 'fixed'", "was 1"),
    ("[sizing]\nquantity = true\nmode = 'fixed'", "sizing.quantity must be a number", "true"),
    ("[kill_switch]\nflatten = 1", "kill_switch.flatten must be true or false", "was 1"),
    ("[kill_switch.crash]\npct = true", "kill_switch.crash.pct must be a number", "true"),
    ("[kill_switch.crash]\npct = 5\nn_bars = 2.0", "kill_switch.crash.n_bars must be a whole", ""),
    ("[hardening]\nenabled = 'yes'", "hardening.enabled must be true or false", "'yes'"),
    ("[hardening.decision]\nfailure_threshold = true", "failure_threshold must be a whole", ""),
    ("[hardening.degraded]\ncpu_enter_pct = false", "cpu_enter_pct must be a number", "false"),
    ("[rate_limits]\nwindows = [{limit = true, per_s = 1}]", "windows.0.limit must be a whole", ""),
    ("[rate_limits]\nwindows = [{limit = 5, per_s = '1'}]", "windows.0.per_s must be a number", ""),
    ("[control]\nport = '8080'", "control.port must be a whole number", "'8080'"),
    ("[control]\nenabled = 0", "control.enabled must be true or false", "was 0"),
    ("chunk_size = 100.0", "chunk_size must be a whole number", "100.0"),
    ("measure_latency = 1", "measure_latency must be true or false", "was 1"),
    ("profile_sample_every = true", "profile_sample_every must be a whole number", "true"),
    ("speed = inf", "speed must be a finite number", "inf"),
    ("starting_cash = nan", "starting_cash must be a finite number", "nan"),
    ("[risk]\nmax_position_qty = inf", "risk.max_position_qty must be a finite number", ""),
    ("starting_cash = 1e400", "starting_cash must be a finite number", "inf"),
]


@pytest.mark.parametrize(("toml", "rule", "value"), COERCIONS, ids=[c[0] for c in COERCIONS])
def test_a_value_of_the_wrong_type_is_refused_not_coerced(
    tmp_path: Path, toml: str, rule: str, value: str
) -> None:
    path = write(tmp_path, toml + "\n")

    refused(lambda: load(path), "invalid configuration", rule, value, f"config file {path}")


def test_integers_are_numbers_and_stay_exact(tmp_path: Path) -> None:
    path = write(tmp_path, "starting_cash = 250000\n[risk]\nmax_drawdown_pct = 20\n")

    config = load(path)

    assert config.starting_cash == 250_000.0 and isinstance(config.starting_cash, float)
    assert config.risk.max_drawdown_pct == 20.0


def test_a_whole_float_is_an_order_count() -> None:
    # ctl set-limit and the audit trail carry limits as JSON numbers
    assert load(overrides={"risk": {"max_open_orders": 50.0}}).risk.max_open_orders == 50


def test_an_unknown_key_names_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "[broker]\ncommission_bps = 1\ncommision_bps = 3\n")

    refused(lambda: load(path), "broker.commision_bps is not a setting", "commission_bps,")


def test_a_key_with_control_characters_is_shown_escaped(tmp_path: Path) -> None:
    path = write(tmp_path, '"a\\nb\\u001b[31m" = 1\n')

    refused(lambda: load(path), "'a\\nb\\x1b[31m' is not a setting")


def test_a_long_value_is_shown_shortened(tmp_path: Path) -> None:
    path = write(tmp_path, f'starting_cash = "{"9" * 5000}"\n')

    message = refused(lambda: load(path), "starting_cash must be a number", "...")
    assert len(message) < 300


def test_a_file_table_cannot_be_hidden_by_a_later_layer(tmp_path: Path) -> None:
    # the CLI always passes {"risk": {}}: it must not silently replace `risk = 5`
    path = write(tmp_path, "risk = 5\n")

    refused(lambda: load(path, overrides={"risk": {}}), "risk must be a table", "was 5")


def test_a_table_turns_on_a_switched_off_section() -> None:
    config = load(base={"rate_limits": None}, overrides={"rate_limits": {}})

    assert config.rate_limits is not None


# --- the environment -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "check"),
    [
        ("ULTRATHINK__RISK__MAX_DRAWDOWN_PCT", "20", lambda c: c.risk.max_drawdown_pct == 20.0),
        ("ULTRATHINK__STARTING_CASH", "1_000.5", lambda c: c.starting_cash == 1000.5),
        ("ULTRATHINK__HARDENING__ENABLED", "true", lambda c: c.hardening.enabled is True),
        ("ULTRATHINK__SIZING__MODE", "all_in", lambda c: c.sizing.mode == "all_in"),
        ("ULTRATHINK__CONTROL__SESSION_FILE", "/tmp/x 1.json", lambda c: c.control.session_file),
        ("ULTRATHINK__RISK", "{max_drawdown_pct = 20}", lambda c: c.risk.max_drawdown_pct == 20),
        ("ULTRATHINK__KILL_SWITCH__CRASH__PCT", "10", lambda c: c.kill_switch.crash.pct == 10),
        (
            "ULTRATHINK__RATE_LIMITS__WINDOWS",
            "[{limit = 50, per_s = 1}]",
            lambda c: c.rate_limits.windows[0].limit == 50,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_environment_values_are_read_as_the_settings_toml_value(
    name: str, raw: str, check: Callable[[EngineConfig], object]
) -> None:
    assert check(load(environ={name: raw}))


@pytest.mark.parametrize(
    ("environ", "fragments"),
    [
        ({"ULTRATHINK__RISK__MAX_DRAWDOWN_PCT": "lots"}, ("risk.max_drawdown_pct", "'lots'")),
        ({"ULTRATHINK__RISK__MAX_DRAWDOWN_PCT": ""}, ("must be a number", "to ''")),
        ({"ULTRATHINK__RISK__MAX_DRAWDOWN_PCT": "1\nrisk = 3"}, ("'1\\nrisk = 3'",)),
        ({"ULTRATHINK__STARTING_CASH": "true"}, ("starting_cash must be a number", "true")),
        ({"ULTRATHINK__HARDENING__ENABLED": "1"}, ("must be true or false", "was 1")),
        ({"ULTRATHINK__HARDENING__ENABLED": "yes"}, ("must be true or false", "'yes'")),
        ({"ULTRATHINK__CHUNK_SIZE": "5.0"}, ("chunk_size must be a whole number",)),
        ({"ULTRATHINK__SPEED": "inf"}, ("speed must be a finite number",)),
        ({"ULTRATHINK__RISK__MAX_DRAWDOWN_PCT": "9" * 5000}, ("must be a number",)),
        ({"ULTRATHINK__RISK": "[" * 100_000}, ("ULTRATHINK__RISK",)),
        ({"ULTRATHINK__RISK": "[" * 20 + "]" * 20}, ("more than 8 levels deep",)),
        ({"ULTRATHINK__": "1"}, ("does not name a setting",)),
        ({"ULTRATHINK__RISK____X": "1"}, ("does not name a setting",)),
        ({"ULTRATHINK__NOPE": "1"}, ("nope is not a setting", "ULTRATHINK__NOPE")),
        (
            {"ULTRATHINK__RISK": "{}", "ULTRATHINK__RISK__MAX_DRAWDOWN_PCT": "5"},
            ("ULTRATHINK__RISK and ULTRATHINK__RISK__MAX_DRAWDOWN_PCT both set risk",),
        ),
        (
            {"ULTRATHINK__SPEED": "2", "ULTRATHINK__speed": "3"},
            ("both set speed", "unset one"),
        ),
        ({"ULTRATHINK__CONTROL__SESSION_FILE": "a\x1bb"}, ("control characters", "'a\\x1bb'")),
    ],
    ids=lambda v: str(v)[:50],
)
def test_bad_environment_values_are_refused_naming_the_variable(
    environ: dict[str, str], fragments: tuple[str, ...]
) -> None:
    message = refused(lambda: load(environ=environ), *fragments)

    assert "ULTRATHINK__" in message


def test_layers_override_in_order_and_errors_name_the_layer(tmp_path: Path) -> None:
    path = write(tmp_path, "starting_cash = 5\n[risk]\nmax_drawdown_pct = 20\n")
    environ = {"ULTRATHINK__RISK__MAX_DRAWDOWN_PCT": "30"}

    config = load(path, environ=environ, overrides={"starting_cash": 7})

    assert (config.starting_cash, config.risk.max_drawdown_pct) == (7.0, 30.0)
    refused(
        lambda: load(path, environ={"ULTRATHINK__RISK__MAX_DRAWDOWN_PCT": "150"}),
        "risk.max_drawdown_pct must be less than or equal to 100, was 150",
        "(set by environment variable ULTRATHINK__RISK__MAX_DRAWDOWN_PCT)",
    )
    refused(
        lambda: load(path, overrides={"risk": {"max_drawdown_pct": 0.0}}),
        "must be greater than 0, was 0.0 (set by the command line)",
    )


# --- stored configs (JSON round trip) ---------------------------------------------------------


def test_a_stored_json_config_validates_again() -> None:
    environ = {
        "ULTRATHINK__RATE_LIMITS__PER_SYMBOL": "[{limit = 5, per_s = 0.5}]",
        "ULTRATHINK__KILL_SWITCH__CRASH__PCT": "10",
    }
    config = load(base=realistic_defaults(), environ=environ, overrides={"speed": 60})
    stored = json.loads(json.dumps(config.model_dump(mode="json")))

    assert EngineConfig(**stored) == config  # services.resumable_run
    assert engine_config_from_values(stored, "the stored config of run 1") == config


def test_a_bad_stored_config_is_a_config_error_naming_its_source() -> None:
    refused(
        lambda: engine_config_from_values({"starting_cash": True}, "the stored config of run 3"),
        "starting_cash must be a number",
        "(set by the stored config of run 3)",
    )


def test_the_config_module_stays_import_light() -> None:
    # `ultrathink backtest` imports it at start-up: no settings framework, no web stack
    code = "import sys, ultrathink.config; print(sorted(sys.modules))"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = set(json.loads(out.stdout.replace("'", '"')))

    assert not modules & {"pydantic_settings", "dotenv", "fastapi", "uvicorn", "asyncio"}


def test_many_problems_make_one_bounded_message(tmp_path: Path) -> None:
    path = write(tmp_path, "".join(f"key_{i} = {i}\n" for i in range(5000)))

    message = refused(lambda: load(path), "key_0 is not a setting", "and 4997 more problems")

    assert len(message) < 2000
