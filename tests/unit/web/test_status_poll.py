"""The cheap status route and the dashboard's poller, over real HTTP on 127.0.0.1.

``GET /v1/status`` answers the channel's ``status_json`` bytes as they are (no command, no
thread-pool hop, no re-encoding) and 204 No Content when ``?since=`` names the latest
snapshot; ``StatusPoller`` polls it over one kept-alive connection.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from ultrathink.hardening.overrides import Command
from ultrathink.web.control_api import ControlServer
from ultrathink.web.control_client import ControlClientError, StatusPoller

TOKEN = "poll-token-not-secret"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SnapshotChannel:
    """A channel with the cheap status path: the answer of snapshot ``seq``, as bytes."""

    def __init__(self) -> None:
        self.seq = 0
        self.encoded = 0
        self.commands: list[Command] = []

    def execute(self, command: Command, timeout_s: float) -> dict[str, Any]:
        self.commands.append(command)
        return {"action": command.action, "ok": True, "before": {}, "after": {}}

    def status_json(self, since: int | None = None) -> bytes | None:
        if since is not None and since == self.seq:
            return None
        self.encoded += 1
        return json.dumps({"action": "status", "after": {"seq": self.seq}}).encode()

    def metrics_text(self) -> bytes:
        return b""


@pytest.fixture
def served() -> Iterator[tuple[str, SnapshotChannel]]:
    channel = SnapshotChannel()
    server = ControlServer(channel, token=TOKEN)
    server.start()
    try:
        yield server.url, channel
    finally:
        server.stop()


def get(url: str, token: str = TOKEN) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with _NO_PROXY.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, exc.read()
        finally:
            exc.close()


def test_status_is_the_channel_bytes_and_204_when_unchanged(
    served: tuple[str, SnapshotChannel],
) -> None:
    url, channel = served
    channel.seq = 7

    assert get(f"{url}/v1/status") == (200, b'{"action": "status", "after": {"seq": 7}}')
    assert get(f"{url}/v1/status?since=6")[0] == 200
    assert get(f"{url}/v1/status?since=7") == (204, b"")
    assert channel.commands == [], "no command object on the cheap path"


@pytest.mark.parametrize("since", ["-1", "x", "1.5", "²", "9" * 19])
def test_a_bad_since_is_422(served: tuple[str, SnapshotChannel], since: str) -> None:
    url, _ = served
    status, body = get(f"{url}/v1/status?since={urllib.request.quote(since)}")

    assert status == 422
    assert "since" in json.loads(body)["error"]


def test_the_cheap_route_still_needs_the_token(served: tuple[str, SnapshotChannel]) -> None:
    url, channel = served
    status, body = get(f"{url}/v1/status", token="wrong")

    assert status == 401 and "wrong bearer token" in json.loads(body)["error"]
    assert channel.encoded == 0


def test_the_poller_keeps_one_connection_and_gets_none_while_nothing_is_new(
    served: tuple[str, SnapshotChannel],
) -> None:
    url, channel = served
    channel.seq = 3
    poller = StatusPoller(url, TOKEN, "dashboard")
    try:
        first = poller.poll()
        conn = poller._conn
        assert first == {"action": "status", "after": {"seq": 3}}
        assert poller.poll(since=3) is None
        channel.seq = 4
        assert poller.poll(since=3) == {"action": "status", "after": {"seq": 4}}
        assert conn is not None and poller._conn is conn, "one kept-alive connection"
    finally:
        poller.close()


def test_the_poller_reconnects_once_when_the_connection_was_dropped(
    served: tuple[str, SnapshotChannel],
) -> None:
    url, _ = served
    poller = StatusPoller(url, TOKEN, "dashboard")
    try:
        assert poller.poll() is not None
        assert poller._conn is not None and poller._conn.sock is not None
        poller._conn.sock.close()  # as if the server had closed the idle connection
        assert poller.poll() == {"action": "status", "after": {"seq": 0}}
    finally:
        poller.close()


def test_the_poller_says_why_it_failed() -> None:
    channel = SnapshotChannel()
    server = ControlServer(channel, token=TOKEN)
    server.start()
    url = server.url
    wrong = StatusPoller(url, "wrong", "dashboard")
    try:
        with pytest.raises(ControlClientError, match=r"wrong bearer token.*\(HTTP 401\)"):
            wrong.poll()
    finally:
        wrong.close()
        server.stop()
    gone = StatusPoller(url, TOKEN, "dashboard")
    with pytest.raises(ControlClientError, match="no paper session is listening"):
        gone.poll()
    with pytest.raises(ControlClientError, match="loopback"):
        StatusPoller("http://10.0.0.1:80", TOKEN, "dashboard")
