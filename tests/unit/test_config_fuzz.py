"""A fuzz-like sweep of the configuration: any input is a valid config or one ConfigError line.

Random TOML documents (built from the real setting names and hostile values), random bytes,
random overrides and random environment variables go through ``load_engine_config``; then
the CLI is run on a few bad files to check its stderr is exactly one ``error: ...`` line.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from ultrathink.cli import main
from ultrathink.config import load_engine_config
from ultrathink.engine.config import EngineConfig
from ultrathink.errors import ConfigError

PREFIXES = ("invalid configuration: ", "config file ", "environment variable")
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def _names(model: type[BaseModel], seen: set[str]) -> set[str]:
    for name, field in model.model_fields.items():
        seen.add(name)
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            for inner in (arg, *getattr(arg, "__args__", ())):
                if isinstance(inner, type) and issubclass(inner, BaseModel) and inner is not model:
                    _names(inner, seen)
    return seen


NAMES = sorted(_names(EngineConfig, set()))
KEYS = st.sampled_from(NAMES) | st.text(max_size=6)
SCALARS = (
    st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.sampled_from([0, 1, -1, 2**63, 10**400, 65_536, 100, 2**20])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["all_in", "fixed", "decision", "", "5", "true", "\x00", "\u202e", "\ud800"])
    | st.text(max_size=12)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=6)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return json.dumps(value)  # TOML basic strings take JSON's escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    pairs = (f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
    return "{" + ", ".join(pairs) + "}"


def check(load: Any) -> None:
    """``load()`` returns a sound config or raises a one-line ConfigError; nothing else."""
    try:
        config = load()
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(PREFIXES), message
        assert "\n" not in message and "\r" not in message, message
        return
    assert isinstance(config, EngineConfig)
    assert isinstance(config.starting_cash, float) and math.isfinite(config.starting_cash)
    assert type(config.chunk_size) is int
    assert type(config.measure_latency) is bool
    assert type(config.risk.check_buying_power) is bool


@FUZZ
@given(document=DOCUMENTS)
def test_random_toml_documents(document: dict[str, Any]) -> None:
    text = "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in document.items())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")

        check(lambda: load_engine_config(path, environ={}))


@FUZZ
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.toml"
        path.write_bytes(data)

        check(lambda: load_engine_config(path, environ={}))


@FUZZ
@given(overrides=st.dictionaries(KEYS, VALUES | st.none(), max_size=6))
def test_random_overrides(overrides: dict[str, Any]) -> None:
    check(lambda: load_engine_config(overrides=overrides, environ={}))


@FUZZ
@given(
    environ=st.dictionaries(
        st.lists(st.sampled_from(NAMES) | st.text(max_size=4), min_size=1, max_size=3).map(
            lambda parts: "ULTRATHINK__" + "__".join(parts).upper()
        ),
        st.text(max_size=20) | SCALARS.map(toml_value),
        max_size=4,
    )
)
def test_random_environment(environ: dict[str, str]) -> None:
    check(lambda: load_engine_config(environ=environ))


# --- the CLI: exactly one `error: ...` line on stderr, exit code 2 ----------------------------

BAD_FILES: list[tuple[str, bytes | None]] = [
    ("directory", None),
    ("binary.toml", b"\xff\xfe\x00\x01garbage"),
    ("deep.toml", b"x = " + b"[" * 100_000 + b"]" * 100_000),
    ("bool.toml", b"starting_cash = true\n"),
    ("risk.toml", b"risk = 5\n"),
    ("huge.toml", b"#" * (2 * 1024 * 1024)),
    ("unknown.toml", b"[broker]\ncommission_bps = 1\nunknown_key = 3\n"),
    ("nan.toml", b"[risk]\nmax_drawdown_pct = nan\n"),
]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("ULTRATHINK"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ULTRATHINK_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.mark.parametrize(("name", "content"), BAD_FILES, ids=[f[0] for f in BAD_FILES])
def test_cli_says_one_error_line_for_a_bad_config(
    isolated: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes | None
) -> None:
    path = isolated / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)

    code = main(["backtest", "--no-store", "--config", str(path)])

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and str(path) in err


def test_cli_says_one_error_line_for_a_bad_environment_value(
    isolated: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ULTRATHINK__STARTING_CASH", "true")

    code = main(["backtest", "--no-store"])

    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines() == [
        "error: invalid configuration: starting_cash must be a number (e.g. 20 or 2.5), was "
        "true (a boolean) (set by environment variable ULTRATHINK__STARTING_CASH)"
    ]


def test_the_installed_command_on_a_directory(isolated: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRATHINK")}
    script = Path(sys.executable).with_name("ultrathink")  # the console script
    command = [str(script), "backtest", "--config", str(isolated)]

    done = subprocess.run([*command, "--no-store"], capture_output=True, text=True, env=env)

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: config file {isolated} is a directory; pass the path of a TOML file "
        "(e.g. --config ultrathink.toml)"
    ]
