"""``ultrathink ctl`` end to end: the real client against a real ControlServer on localhost.

Sessions are found the way ``ctl`` finds them in production: a control file in the run's
session directory next to the store, with the run's OS lock held.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ultrathink.cli.ctl import TOKEN_ENV, format_result
from ultrathink.config import default_db_path
from ultrathink.engine.sessions import CONTROL_FILE_NAME, RunLock, session_dir
from ultrathink.hardening.overrides import (
    Command,
    Flatten,
    ForceBreaker,
    Halt,
    OverrideError,
    Reduce,
    Resume,
    SetLimit,
    Status,
    SymbolSwitch,
)
from ultrathink.web.control_api import ControlServer


class FakeChannel:
    """The engine's stand-in: records commands, flips the trading state, knows SPY only."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.state: dict[str, Any] = {"trading_state": "ACTIVE", "limits": {"max_dd": 20.0}}

    def execute(self, command: Command, timeout_s: float) -> dict[str, Any]:
        self.commands.append(command)
        symbol = getattr(command, "symbol", None)
        if symbol not in (None, "SPY"):
            raise OverrideError(f"symbol must be one of SPY, was {symbol!r}")
        before = json.loads(json.dumps(self.state))
        states = {"halt": "HALTED", "resume": "ACTIVE", "reduce": "REDUCING"}
        self.state["trading_state"] = states.get(command.action, self.state["trading_state"])
        if isinstance(command, SetLimit):
            self.state["limits"]["max_dd"] = command.value
        message = "positions flattened" if isinstance(command, Halt) and command.flatten else ""
        after = self.state
        return {
            "action": command.action,
            "ok": True,
            "before": before,
            "after": after,
            "message": message,
        }

    def metrics_text(self) -> bytes:
        return b""


Ctl = Callable[..., Any]  # returns conftest's CliResult (code, out, err)


@contextmanager
def live_session(run_id: int, channel: FakeChannel) -> Iterator[ControlServer]:
    """A control server for run ``run_id`` of the default store, its lock held."""
    directory = session_dir(default_db_path(), run_id)
    with RunLock(directory, run_id):
        server = ControlServer(channel, session_file=directory / CONTROL_FILE_NAME)
        server.start(extra={"run_id": run_id, "strategy": "fake"})
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def session() -> Iterator[tuple[ControlServer, FakeChannel]]:
    channel = FakeChannel()
    with live_session(1, channel) as server:
        yield server, channel


@pytest.fixture
def ctl(cli: Any) -> Ctl:
    """``ultrathink ctl ...`` in-process through the whole CLI (the integration ``cli`` runner)."""
    return lambda *argv: cli("ctl", *argv)


def test_status_prints_the_session_state(session: Any, ctl: Ctl) -> None:
    _, channel = session

    result = ctl("status", "--operator", "alice")

    assert (result.code, result.err) == (0, "")
    assert result.out == "status:\n  trading_state: ACTIVE\n  limits.max_dd: 20.0\n"
    assert channel.commands == [Status(operator="alice")]


def test_halt_prints_what_changed(session: Any, ctl: Ctl) -> None:
    _, channel = session

    result = ctl("halt", "--operator", "alice", "--reason", "feed stale")

    assert result.code == 0
    assert result.out == "halt: trading_state ACTIVE → HALTED (positions flattened)\n"
    assert channel.commands == [Halt(operator="alice", reason="feed stale")]


def test_a_command_sent_again_with_its_id_is_not_applied_twice(session: Any, ctl: Ctl) -> None:
    _, channel = session

    first = ctl("halt", "--operator", "alice", "--id", "op-halt-1")
    again = ctl("halt", "--operator", "alice", "--id", "op-halt-1")
    bad = ctl("halt", "--operator", "alice", "--id", "not an id")

    assert first.out == "halt: trading_state ACTIVE → HALTED (positions flattened)\n"
    assert again.code == 0
    assert again.out == (
        "halt: trading_state ACTIVE → HALTED (positions flattened) "
        "[already applied: the first answer]\n"
    )
    assert bad.code == 2 and bad.err.startswith("error: id must be 1-64 characters")
    assert bad.err.count("\n") == 1 and bad.err.rstrip().endswith("(HTTP 422)")
    assert channel.commands == [Halt(operator="alice")]  # one run


def test_an_empty_before_value_is_shown_as_empty_quotes() -> None:
    result = {
        "action": "halt",
        "before": {"trading_state": "ACTIVE", "state_reason": ""},
        "after": {"trading_state": "HALTED", "state_reason": "kill switch"},
    }

    assert format_result(result) == (
        'halt: trading_state ACTIVE → HALTED, state_reason "" → kill switch'
    )


def test_json_prints_the_raw_result(session: Any, ctl: Ctl) -> None:
    result = ctl("halt", "--no-flatten", "--operator", "alice", "--json")

    answer = json.loads(result.out)
    assert answer["after"]["trading_state"] == "HALTED"
    assert answer["action"] == "halt"


def limit(name: str, value: float | None) -> SetLimit:
    return SetLimit(operator="op", limit=name, value=value)


ARGV_TO_COMMAND = [
    (("halt", "--no-flatten"), Halt(operator="op", flatten=False)),
    (("resume", "--reason", "fixed"), Resume(operator="op", reason="fixed")),
    (("reduce",), Reduce(operator="op")),
    (("flatten", "SPY"), Flatten(operator="op", symbol="SPY")),
    (("flatten", "--all"), Flatten(operator="op", symbol=None)),
    (("set-limit", "max_drawdown_pct", "15"), limit("max_drawdown_pct", 15.0)),
    (("set-limit", "max_open_orders", "off"), limit("max_open_orders", None)),
    (("set-limit", "price_band_pct", "None"), limit("price_band_pct", None)),
    (("disable", "SPY"), SymbolSwitch(action="disable_symbol", operator="op", symbol="SPY")),
    (("enable", "SPY"), SymbolSwitch(action="enable_symbol", operator="op", symbol="SPY")),
    (
        ("breaker", "execution", "open"),
        ForceBreaker(operator="op", breaker="execution", state="open"),
    ),
    (("status",), Status(operator="op")),
]


@pytest.mark.parametrize(
    ("argv", "expected"), ARGV_TO_COMMAND, ids=[" ".join(argv) for argv, _ in ARGV_TO_COMMAND]
)
def test_each_subcommand_sends_its_command(
    session: Any, ctl: Ctl, monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], expected: Any
) -> None:
    monkeypatch.setenv("USER", "op")  # the default operator
    _, channel = session

    result = ctl(*argv)

    assert (result.code, result.err) == (0, "")
    assert channel.commands == [expected]


def test_set_limit_with_a_bad_value_exits_2_with_the_session_message(
    session: Any, ctl: Ctl
) -> None:
    result = ctl("set-limit", "max_drawdown_pct", "lots", "--operator", "alice")

    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith("error: invalid set_limit command: value:")
    assert "'lots'" in result.err
    assert "(HTTP 422)" in result.err
    assert "Traceback" not in result.err


def test_resume_without_reason_exits_2_naming_reason(session: Any, ctl: Ctl) -> None:
    result = ctl("resume", "--operator", "alice")

    assert result.code == 2
    assert "reason" in result.err


def test_command_the_session_refuses_exits_2(session: Any, ctl: Ctl) -> None:
    result = ctl("disable", "TSLA", "--operator", "alice")

    assert result.code == 2
    assert result.err == "error: symbol must be one of SPY, was 'TSLA' (HTTP 409)\n"


def test_flatten_needs_a_symbol_or_all(session: Any, ctl: Ctl) -> None:
    assert ctl("flatten").code == 2
    assert ctl("flatten", "SPY", "--all").code == 2


def test_no_session_file_exits_2(ctl: Ctl, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "control.json"

    result = ctl("status", "--session", str(missing))

    assert result.code == 2
    assert result.err == f"error: no control file at {missing}\n"


def test_no_live_session_exits_2_saying_how_to_start_one(ctl: Ctl) -> None:
    result = ctl("halt")

    assert result.code == 2
    assert result.err == (
        f"error: no live paper session in {default_db_path()} (start one with `ultrathink "
        "paper`, or pass --db, --session or --url)\n"
    )


def test_wrong_token_exits_2_with_the_server_message(session: Any, ctl: Ctl) -> None:
    server, channel = session

    result = ctl("halt", "--url", server.url, "--token", "guess")

    assert result.code == 2
    assert "wrong bearer token" in result.err
    assert "(HTTP 401)" in result.err
    assert channel.commands == []


def test_url_and_token_from_the_environment(
    session: Any, ctl: Ctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, channel = session
    monkeypatch.setenv(TOKEN_ENV, server.token)

    result = ctl("reduce", "--url", server.url + "/", "--operator", "alice")

    assert result.code == 0
    assert channel.commands == [Reduce(operator="alice")]


def test_url_without_token_exits_2(ctl: Ctl) -> None:
    result = ctl("status", "--url", "http://127.0.0.1:9")

    assert result.code == 2
    assert TOKEN_ENV in result.err


def private_file(path: Path, content: Any) -> Path:
    path.write_text(json.dumps(content))
    path.chmod(0o600)
    return path


def test_stale_session_file_exits_2_connection_refused(ctl: Ctl, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    content = {"url": f"http://127.0.0.1:{port}", "token": "t", "pid": 1}
    stale = private_file(tmp_path / "stale.json", content)

    result = ctl("status", "--session", str(stale))

    assert result.code == 2
    assert "connection refused" in result.err


def test_session_file_without_url_exits_2(ctl: Ctl, tmp_path: Path) -> None:
    bad = private_file(tmp_path / "bad.json", [1, 2])

    result = ctl("status", "--session", str(bad))

    assert result.code == 2
    assert "has no url and token: not a control file" in result.err


def test_session_file_is_removed_when_the_session_stops(ctl: Ctl) -> None:
    with live_session(4, FakeChannel()):
        running = ctl("status", "--operator", "alice")

    stopped = ctl("status", "--operator", "alice")

    assert running.code == 0
    assert stopped.code == 2
    assert "no live paper session" in stopped.err


def test_a_file_others_can_read_is_not_trusted(session: Any, ctl: Ctl) -> None:
    _server, channel = session
    path = session_dir(default_db_path(), 1) / CONTROL_FILE_NAME
    path.chmod(0o644)

    named = ctl("halt", "--session", str(path))
    found = ctl("halt")

    assert named.code == 2 and "not trusted" in named.err
    assert found.code == 2 and "no live paper session" in found.err  # skipped, never used
    assert channel.commands == []


@pytest.mark.parametrize("url", ["http://10.1.2.3:8080", "http://example.com", "https://127.0.0.1"])
def test_the_token_goes_to_loopback_http_only(ctl: Ctl, tmp_path: Path, url: str) -> None:
    rogue = private_file(tmp_path / "rogue.json", {"url": url, "token": "secret"})

    from_file = ctl("halt", "--session", str(rogue))
    from_flag = ctl("halt", "--url", url, "--token", "secret")

    for result in (from_file, from_flag):
        assert result.code == 2
        assert "not an http URL on a loopback address" in result.err


def test_two_sessions_need_run_and_halt_all_reaches_both(ctl: Ctl) -> None:
    first, second = FakeChannel(), FakeChannel()
    with live_session(1, first), live_session(2, second):
        listed = ctl("sessions")
        ambiguous = ctl("halt", "--operator", "alice")
        one = ctl("reduce", "--run", "2", "--operator", "alice")
        every = ctl("halt", "--all", "--operator", "alice", "--reason", "outage")
        missing = ctl("status", "--run", "9")

    assert listed.code == 0
    assert listed.out.startswith("run 1: pid ") and "\nrun 2: pid " in listed.out
    assert ambiguous.code == 2 and "2 live sessions (run 1, run 2): pick one with --run" in (
        ambiguous.err
    )
    assert one.code == 0
    assert every.code == 0 and every.out.count("halt: trading_state") == 2
    assert missing.code == 2 and "run 9 has no live session" in missing.err
    assert [c.action for c in first.commands] == ["halt"]
    assert [c.action for c in second.commands] == ["reduce", "halt"]


def test_sessions_lists_only_live_ones(ctl: Ctl) -> None:
    with live_session(7, FakeChannel()):
        directory = session_dir(default_db_path(), 7)
    # the server stopped and the lock was released: a leftover file is not a live session
    private_file(directory / CONTROL_FILE_NAME, {"url": "http://127.0.0.1:9", "token": "t"})

    result = ctl("sessions", "--json")

    assert result.code == 0
    assert json.loads(result.out) == []
    assert os.getuid() == directory.stat().st_uid


HELP = {
    (): ("sessions", "status", "halt", "resume", "reduce", "flatten", "set-limit", "disable",
         "enable", "breaker"),
    ("sessions",): ("--db", "--json"),
    ("status",): ("--db", "--run", "--operator", "--reason", "--session", "--url", "--token",
                  "--json"),
    ("halt",): ("--no-flatten", "--all", "--run", "--session"),
    ("resume",): ("--reason",),
    ("reduce",): ("--operator",),
    ("flatten",): ("SYMBOL", "--all"),
    ("set-limit",): ("NAME", "VALUE", "off"),
    ("disable",): ("SYMBOL",),
    ("enable",): ("SYMBOL",),
    ("breaker",): ("NAME", "open", "closed"),
}  # fmt: skip


@pytest.mark.parametrize("command", list(HELP), ids=lambda c: " ".join(c) or "ctl")
def test_help_exits_0_and_lists_options(ctl: Ctl, command: tuple[str, ...]) -> None:
    result = ctl(*command, "--help")

    assert result.code == 0
    assert result.out.startswith(f"usage: ultrathink ctl {' '.join(command)}".rstrip())
    for option in HELP[command]:
        assert option in result.out
