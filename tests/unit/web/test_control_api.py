"""Control API over real HTTP: a real uvicorn on 127.0.0.1, a stand-in command channel."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ultrathink.errors import ConfigError
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

TOKEN = "test-token-not-secret"
METRICS = (
    b"# HELP ut_trading_state Trading state\n# TYPE ut_trading_state gauge\nut_trading_state 0.0\n"
)
ROUTES = (("POST", "/v1/commands"), ("GET", "/v1/status"), ("GET", "/metrics"))
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FakeChannel:
    """The engine's stand-in: records commands, answers before/after, refuses or stalls."""

    symbols = ("SPY", "QQQ")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.commands: list[Command] = []
        self.timeouts_s: list[float] = []
        self.state: dict[str, Any] = {"trading_state": "ACTIVE", "disabled": []}
        self.stall = False
        self.crash = False

    def execute(self, command: Command, timeout_s: float) -> dict[str, Any]:
        self.commands.append(command)
        self.timeouts_s.append(timeout_s)
        if self.stall:  # the kernel thread never answers: the channel gives up at timeout_s
            time.sleep(timeout_s)
            raise TimeoutError(f"no answer from the kernel thread in {timeout_s} s")
        if self.crash:
            raise RuntimeError("kernel thread is gone")
        symbol = getattr(command, "symbol", None)
        if symbol is not None and symbol not in self.symbols:
            raise OverrideError(f"symbol must be one of SPY, QQQ, was {symbol!r}")
        before = json.loads(json.dumps(self.state))
        states = {"halt": "HALTED", "resume": "ACTIVE", "reduce": "REDUCING"}
        self.state["trading_state"] = states.get(command.action, self.state["trading_state"])
        return {"action": command.action, "ok": True, "before": before, "after": self.state}

    def metrics_text(self) -> bytes:
        return METRICS


def call(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One real HTTP request; status, headers and body (also of error answers)."""
    request = urllib.request.Request(url + path, data=body, method=method, headers=headers or {})
    try:
        with _NO_PROXY.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, dict(exc.headers), exc.read()
        finally:
            exc.close()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(url: str, payload: Any, token: str = TOKEN) -> tuple[int, Any]:
    status, _, body = call(url, "POST", "/v1/commands", json.dumps(payload).encode(), auth(token))
    return status, json.loads(body)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ControlServer, FakeChannel]]:
    channel = FakeChannel()
    server = ControlServer(channel, token=TOKEN, command_timeout_s=0.2)
    server.start()
    yield server, channel
    server.stop()


@pytest.fixture
def channel(served: tuple[ControlServer, FakeChannel]) -> FakeChannel:
    fake = served[1]
    fake.reset()  # a fresh stand-in per test, one server per module
    return fake


@pytest.fixture
def url(served: tuple[ControlServer, FakeChannel], channel: FakeChannel) -> str:
    return served[0].url


@pytest.fixture(autouse=True, scope="module")
def _no_server_left() -> Iterator[None]:
    yield
    names = [t.name for t in threading.enumerate() if t.name == "ultrathink-control-api"]
    assert names == []


# --- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [{}, auth("wrong"), {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}, auth("é")],
    ids=["none", "wrong", "no-scheme", "basic", "non-ascii"],
)
def test_missing_or_wrong_token_is_401_and_says_where_the_token_is(
    url: str, channel: FakeChannel, method: str, path: str, headers: dict[str, str]
) -> None:
    body = b'{"action": "halt", "operator": "alice"}' if method == "POST" else None

    status, answer_headers, raw = call(url, method, path, body, headers)

    assert status == 401
    assert "session file" in json.loads(raw)["error"]
    assert answer_headers["www-authenticate"] == "Bearer"
    assert TOKEN.encode() not in raw
    assert channel.commands == []


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_right_token_is_200_on_every_route(url: str, method: str, path: str) -> None:
    body = b'{"action": "status", "operator": "alice"}' if method == "POST" else None

    status, _, _ = call(url, method, path, body, auth())

    assert status == 200


# --- commands -------------------------------------------------------------------------------

VALID = [
    ({"action": "halt", "operator": "alice"}, Halt(operator="alice")),
    ({"action": "halt", "operator": "al", "flatten": False}, Halt(operator="al", flatten=False)),
    ({"action": "resume", "operator": "bob", "reason": "ok"}, Resume(operator="bob", reason="ok")),
    ({"action": "reduce", "operator": "bob"}, Reduce(operator="bob")),
    ({"action": "flatten", "operator": "b", "symbol": "SPY"}, Flatten(operator="b", symbol="SPY")),
    ({"action": "flatten", "operator": "bob"}, Flatten(operator="bob")),
    (
        {"action": "set_limit", "operator": "bob", "limit": "max_drawdown_pct", "value": 12.5},
        SetLimit(operator="bob", limit="max_drawdown_pct", value=12.5),
    ),
    (
        {"action": "set_limit", "operator": "bob", "limit": "max_open_orders", "value": None},
        SetLimit(operator="bob", limit="max_open_orders", value=None),
    ),
    (
        {"action": "disable_symbol", "operator": "bob", "symbol": "QQQ"},
        SymbolSwitch(action="disable_symbol", operator="bob", symbol="QQQ"),
    ),
    (
        {"action": "enable_symbol", "operator": "bob", "symbol": "QQQ"},
        SymbolSwitch(action="enable_symbol", operator="bob", symbol="QQQ"),
    ),
    (
        {"action": "force_breaker", "operator": "bob", "breaker": "decision", "state": "open"},
        ForceBreaker(operator="bob", breaker="decision", state="open"),
    ),
    ({"action": "status", "operator": "carol"}, Status(operator="carol")),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "expected"), VALID, ids=lambda v: str(v)[:40])
def test_valid_command_reaches_the_channel_parsed(
    url: str, channel: FakeChannel, payload: dict[str, Any], expected: Command
) -> None:
    status, answer = post(url, payload)

    assert status == 200
    assert channel.commands == [expected]
    assert channel.timeouts_s == [0.2]
    assert answer["action"] == payload["action"]
    assert answer["ok"] is True


def test_halt_answers_before_and_after(url: str, channel: FakeChannel) -> None:
    _, answer = post(url, {"action": "halt", "operator": "alice", "reason": "feed stale"})

    assert answer["before"]["trading_state"] == "ACTIVE"
    assert answer["after"]["trading_state"] == "HALTED"


INVALID = [
    ({"action": "set_limit", "operator": "a", "limit": "max_drawdown_pct", "value": "x"}, "value"),
    ({"action": "set_limit", "operator": "a", "limit": "max_leverage", "value": 2}, "limit"),
    ({"action": "halt", "operator": "a", "flatten": "maybe"}, "flatten"),
    ({"action": "force_breaker", "operator": "a", "breaker": "fuse", "state": "open"}, "breaker"),
    ({"action": "resume", "operator": "a"}, "reason"),
    ({"action": "halt"}, "operator"),
    ({"action": "halt", "operator": " a"}, "operator"),
    ({"action": "halt", "operator": "a", "colour": "red"}, "colour"),
    ({"action": "explode", "operator": "a"}, "action"),
    (["halt"], "JSON object"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "field"), INVALID, ids=lambda v: str(v)[:40])
def test_invalid_command_is_422_naming_the_field(
    url: str, channel: FakeChannel, payload: Any, field: str
) -> None:
    status, answer = post(url, payload)

    assert status == 422
    assert field in answer["error"]
    assert channel.commands == []


def test_command_the_session_refuses_is_409(url: str, channel: FakeChannel) -> None:
    status, answer = post(url, {"action": "flatten", "operator": "a", "symbol": "TSLA"})

    assert status == 409
    assert answer == {"error": "symbol must be one of SPY, QQQ, was 'TSLA'"}


def test_session_that_does_not_answer_in_time_is_504(url: str, channel: FakeChannel) -> None:
    channel.stall = True

    status, answer = post(url, {"action": "halt", "operator": "a"})

    assert status == 504
    assert "did not answer the halt command within 0.2 s" in answer["error"]


def test_session_failure_is_500_with_the_error(url: str, channel: FakeChannel) -> None:
    channel.crash = True

    status, answer = post(url, {"action": "reduce", "operator": "a"})

    assert status == 500
    assert "kernel thread is gone" in answer["error"]


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe\x00", b'{"action": "halt",'])
def test_malformed_json_is_400(url: str, channel: FakeChannel, body: bytes) -> None:
    status, _, raw = call(url, "POST", "/v1/commands", body, auth())

    assert status == 400
    assert "must be a JSON command object" in json.loads(raw)["error"]
    assert channel.commands == []


def test_oversized_body_is_413(url: str, channel: FakeChannel) -> None:
    body = json.dumps({"action": "halt", "operator": "a", "reason": "x" * 70_000}).encode()

    status, _, _ = call(url, "POST", "/v1/commands", body, auth())

    assert status == 413


def test_status_route_takes_the_operator_from_the_header(url: str, channel: FakeChannel) -> None:
    call(url, "GET", "/v1/status", headers={**auth(), "X-Operator": "dave"})
    call(url, "GET", "/v1/status", headers=auth())

    assert channel.commands == [Status(operator="dave"), Status(operator="anonymous")]


def test_metrics_are_the_channel_bytes_in_prometheus_text_format(url: str) -> None:
    status, headers, raw = call(url, "GET", "/metrics", headers=auth())

    assert status == 200
    assert raw == METRICS
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


# --- server lifecycle -----------------------------------------------------------------------


def test_server_binds_loopback_only(served: tuple[ControlServer, FakeChannel]) -> None:
    server = served[0]
    listening = server._server.servers[0].sockets  # type: ignore[union-attr]

    assert [s.getsockname()[:2] for s in listening] == [("127.0.0.1", server.port)]
    assert server.url == f"http://127.0.0.1:{server.port}"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "localhost", "example.com"])
def test_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        ControlServer(FakeChannel(), host=host)


def test_session_file_is_private_while_serving_and_removed_on_stop(tmp_path: Path) -> None:
    path = tmp_path / "home" / "control.json"
    server = ControlServer(FakeChannel(), session_file=path)

    server.start(extra={"run_id": "r-1", "token": "not-this-one"})
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        content = json.loads(path.read_text())
        url = server.url
        status, _ = post(content["url"], {"action": "status", "operator": "a"}, content["token"])
    finally:
        server.stop()

    assert mode == 0o600
    assert content == {"url": url, "token": server.token, "pid": os.getpid(), "run_id": "r-1"}
    assert status == 200
    assert not path.exists()


def test_existing_world_readable_session_file_becomes_private(tmp_path: Path) -> None:
    path = tmp_path / "control.json"
    path.write_text("{}")
    path.chmod(0o644)

    with ControlServer(FakeChannel(), session_file=path):
        mode = stat.S_IMODE(path.stat().st_mode)

    assert mode == 0o600


def test_stop_leaves_a_session_file_another_session_wrote(tmp_path: Path) -> None:
    path = tmp_path / "control.json"
    with ControlServer(FakeChannel(), session_file=path):
        path.write_text(json.dumps({"url": "http://127.0.0.1:1", "token": "theirs"}))

    assert json.loads(path.read_text())["token"] == "theirs"


def test_generated_token_is_long_and_random() -> None:
    tokens = {ControlServer(FakeChannel()).token for _ in range(3)}

    assert len(tokens) == 3
    assert all(len(t) >= 40 for t in tokens)


def test_port_in_use_is_a_config_error_naming_the_port(
    served: tuple[ControlServer, FakeChannel],
) -> None:
    taken = served[0].port

    with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{taken}"):
        ControlServer(FakeChannel(), port=taken).start()


def test_stop_is_idempotent_and_frees_the_port() -> None:
    server = ControlServer(FakeChannel())
    server.start()
    port = server.port

    server.stop()
    server.stop()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.port
