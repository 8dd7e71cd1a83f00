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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    """One real HTTP request; status, headers and body (also of error answers).

    A body goes as ``Content-Type: application/json`` unless ``headers`` name another type.
    """
    headers = dict(headers or {})
    if body is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url + path, data=body, method=method, headers=headers)
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


# --- hostile bodies: 4xx with a JSON error, never 500, never a silent coercion --------------


def raw_exchange(url: str, head: bytes, body_parts: list[bytes], timeout_s: float = 10) -> bytes:
    """Send ``head`` and ``body_parts`` on a raw socket; return what the server answers.

    The server may answer (and close) before every part is sent: that is what is tested.
    """
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except OSError:  # the server answered and closed: stop sending
                break
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    return answer


def head(headers: dict[str, str]) -> bytes:
    lines = ["POST /v1/commands HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {TOKEN}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_and_error(answer: bytes) -> tuple[int, str]:
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])["error"]


def test_a_body_declared_too_large_is_refused_before_it_is_read(
    url: str, channel: FakeChannel
) -> None:
    # 50 MB declared, 1 KB sent: the answer comes without waiting for the rest
    request = head({"Content-Type": "application/json", "Content-Length": "50000000"})

    answer = raw_exchange(url, request, [b"{" + b" " * 1023], timeout_s=5)

    status, error = status_and_error(answer)
    assert status == 413
    assert f"at most {64 * 1024} bytes, was 50000000" in error
    assert channel.commands == []


def test_a_chunked_body_is_cut_off_at_the_cap(url: str, channel: FakeChannel) -> None:
    # no length declared; the stream never ends: the running cap answers 413 by itself
    request = head({"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    chunk = b"%x\r\n%s\r\n" % (16 * 1024, b" " * 16 * 1024)

    answer = raw_exchange(url, request, [chunk] * 8, timeout_s=5)

    status, error = status_and_error(answer)
    assert status == 413
    assert "reading stopped at" in error
    assert channel.commands == []


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/json; charset=latin-1", "application/jsonx", "json"],
    ids=str,
)  # fmt: skip
def test_a_body_that_is_not_declared_json_is_415(
    url: str, channel: FakeChannel, content_type: str | None
) -> None:
    headers = {"Content-Length": "40"} | ({"Content-Type": content_type} if content_type else {})

    answer = raw_exchange(url, head(headers), [b'{"action": "halt", "operator": "alice"}'])

    status, error = status_and_error(answer)
    assert status == 415
    assert "Content-Type must be application/json" in error
    assert channel.commands == []


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json;"]
)
def test_json_content_types_are_accepted(url: str, channel: FakeChannel, content_type: str) -> None:
    body = b'{"action": "reduce", "operator": "alice"}'

    status, _, _ = call(url, "POST", "/v1/commands", body, {**auth(), "Content-Type": content_type})

    assert status == 200
    assert channel.commands == [Reduce(operator="alice")]


HOSTILE_BODIES = [
    ("deep-arrays", b"[" * 30_000 + b"]" * 30_000, "nested at most 8 levels deep"),  # < cap
    ("deep-objects", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nested at most 8 levels"),
    ("deep-in-field", b'{"action": "halt", "operator": "a", "reason": ' + b"[" * 20
     + b"]" * 20 + b"}", "nested at most 8 levels deep"),
    ("nan", b'{"action": "set_limit", "operator": "a", "limit": "max_drawdown_pct", '
     b'"value": NaN}', "NaN, which is not a JSON number"),
    ("infinity", b'{"action": "set_limit", "operator": "a", "limit": "max_drawdown_pct", '
     b'"value": -Infinity}', "-Infinity, which is not a JSON number"),
    ("overflow", b'{"action": "set_limit", "operator": "a", "limit": "max_drawdown_pct", '
     b'"value": 1e400}', "the number 1e400, which is out of range"),
    ("huge-int", b'{"action": "halt", "operator": "a", "x": ' + b"9" * 5000 + b"}",
     "an integer of 5000 digits"),
    ("duplicate", b'{"action": "status", "operator": "a", "action": "halt"}',
     "repeats the key 'action'"),
    ("utf16", '{"action": "halt", "operator": "a"}'.encode("utf-16"), "in UTF-8"),
    ("utf8-bom", b'\xef\xbb\xbf{"action": "halt", "operator": "a"}', "could not parse"),
    ("overlong", b'{"action": "halt", "operator": "\xc0\xaf"}', "in UTF-8"),
    ("surrogate", b'{"action": "halt", "operator": "a", "\\ud800": 1}', "unpaired surrogate"),
    ("trailing", b'{"action": "halt", "operator": "a"} {}', "could not parse"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "fragment"), [h[1:] for h in HOSTILE_BODIES],
                         ids=[h[0] for h in HOSTILE_BODIES])  # fmt: skip
def test_hostile_json_is_400_naming_the_problem(
    url: str, channel: FakeChannel, body: bytes, fragment: str
) -> None:
    status, headers, raw = call(url, "POST", "/v1/commands", body, auth())

    assert status == 400
    assert headers["content-type"] == "application/json"
    error = json.loads(raw)["error"]
    assert fragment in error
    assert "must be a JSON command object" in error
    assert len(error) < 500
    assert channel.commands == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"action": "set_limit", "operator": "a", "limit": "max_drawdown_pct", "value": True},
         "value"),
        ({"action": "set_limit", "operator": "a", "limit": "max_drawdown_pct", "value": "12"},
         "value"),
        ({"action": "halt", "operator": "a", "flatten": 0}, "flatten"),
        ({"action": "halt", "operator": "al\u0007ice"}, "operator"),
        ({"action": "halt", "operator": "alice", "reason": "a\nb"}, "reason"),
        ({"action": "halt", "operator": "alice", "reason": "\u202eevil"}, "reason"),
        ({"action": "flatten", "operator": "a", "symbol": "SPY\u0000"}, "symbol"),
    ],
    ids=lambda v: str(v)[:60],
)  # fmt: skip
def test_coercions_and_control_characters_are_422(
    url: str, channel: FakeChannel, payload: dict[str, Any], field: str
) -> None:
    status, answer = post(url, payload)

    assert status == 422
    assert f"{field}: " in answer["error"]
    assert channel.commands == []


def test_a_control_character_in_the_operator_header_is_422(url: str, channel: FakeChannel) -> None:
    answer = raw_exchange(
        url,
        b"GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
        + b"\r\nX-Operator: al\x85ice\r\nConnection: close\r\n\r\n",
        [],
    )  # fmt: skip

    status, error = status_and_error(answer)
    assert status == 422
    assert "operator" in error
    assert channel.commands == []


# a fuzz-like sweep over real HTTP: whatever the body, a 4xx JSON error or a parsed command
FUZZ_BODIES = (
    st.binary(max_size=64)
    | st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass"))
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=10,
    ).map(lambda v: json.dumps(v).encode())
    | st.builds(
        lambda action, extra: json.dumps({"action": action, "operator": "fz", **extra}).encode(),
        st.sampled_from(["halt", "set_limit", "flatten", "resume", "status", "force_breaker"]),
        st.dictionaries(
            st.sampled_from(["reason", "value", "limit", "symbol", "flatten", "state"]),
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        ),
    )
)


@settings(max_examples=250, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(body=FUZZ_BODIES)
def test_any_body_is_answered_with_json_never_500(url: str, body: bytes) -> None:
    status, headers, raw = call(url, "POST", "/v1/commands", body, auth())

    assert status in (200, 400, 409, 422), (status, raw)
    assert headers["content-type"] == "application/json"
    answer = json.loads(raw)
    if status != 200:
        assert set(answer) == {"error"} and "\n" not in answer["error"]


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
