"""Exactly-once operator commands (``web/command_ids.py``, ``control_client.post_command``).

Real HTTP throughout: a real uvicorn ``ControlServer`` on 127.0.0.1, in front of the engine's
own ``SessionControl`` (a real paper engine; a thread drains its queue as the kernel thread
does between bars) or of a stand-in channel that can hold a command; lost answers come from
the real seeded ``FaultProxy`` of the stress framework between the client and the server.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from ultrathink.config import realistic_defaults
from ultrathink.data import load_data
from ultrathink.decision.builtin import SmaCross
from ultrathink.engine.config import EngineConfig
from ultrathink.engine.wiring import Engine
from ultrathink.hardening.overrides import Command, OverrideError
from ultrathink.stress.proxy import FaultPlan, FaultProxy, Faults
from ultrathink.testing.engine import BatchCapture, engine_for, run_engine
from ultrathink.web.command_ids import Answer, CommandLedger
from ultrathink.web.control_api import ControlServer
from ultrathink.web.control_client import (
    CommandUnconfirmed,
    ControlClientError,
    post_command,
    send_command,
)

TOKEN = "test-token-not-secret"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SET_LIMIT = {"action": "set_limit", "operator": "t", "limit": "max_position_qty", "value": 7.0}


def raw_post(url: str, payload: Any) -> tuple[int, dict[str, Any]]:
    """One POST /v1/commands as an older client sends it (no retries, no id added)."""
    request = urllib.request.Request(
        url + "/v1/commands", data=json.dumps(payload).encode(), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with _NO_PROXY.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        finally:
            exc.close()


class Session:
    """A paper engine after its run, its control channel served over HTTP; a thread drains
    the command queue as the kernel thread does between bars."""

    def __init__(self) -> None:
        values = realistic_defaults()
        values["hardening"] = {"enabled": True, "degraded": None}
        data = load_data("synthetic:n_bars=200,seed=4")
        self.capture = BatchCapture()
        self.engine: Engine = engine_for(
            SmaCross(fast=3, slow=8), data, EngineConfig(**values), mode="paper",
            capture=self.capture,
        )  # fmt: skip
        run_engine(self.engine, data)
        assert self.engine.control is not None
        self.control = self.engine.control
        self._stop = threading.Event()
        self._kernel = threading.Thread(target=self._drain, daemon=True)
        self.server = ControlServer(self.control, token=TOKEN, command_timeout_s=20.0)

    def _drain(self) -> None:
        while not self._stop.wait(0.005):
            self.control.drain()

    def __enter__(self) -> Session:
        self._kernel.start()
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self._stop.set()
        self._kernel.join(10)

    def audit(self, kind: str) -> list[dict[str, Any]]:
        """The audit rows of ``kind`` (call after the kernel thread stopped, or between calls:
        the drain thread only writes while a command runs)."""
        self.engine.kernel.flush_now()
        return [json.loads(detail) for _ts, _k, detail in self.capture.audit(kind)]


@pytest.fixture
def session() -> Iterator[Session]:
    with Session() as s:
        yield s


def test_a_repeated_id_returns_the_first_answer_and_applies_once(session: Session) -> None:
    payload = {**SET_LIMIT, "id": "cmd-0001"}

    first_status, first = raw_post(session.server.url, payload)
    again_status, again = raw_post(session.server.url, payload)

    assert first_status == again_status == 200
    assert "repeat" not in first and again.pop("repeat") is True
    assert again == first  # the same before/after: the answer of the one run
    assert first["after"]["limits"]["max_position_qty"] == 7.0
    assert len(session.audit("operator.set_limit")) == 1


def test_a_client_without_an_id_still_works_and_is_not_deduplicated(session: Session) -> None:
    for _ in range(2):
        status, answer = raw_post(session.server.url, {**SET_LIMIT, "value": 9.0})
        assert status == 200 and "repeat" not in answer
    assert len(session.audit("operator.set_limit")) == 2  # an old client: no id, no promise


def test_a_retry_after_a_reset_answer_does_not_apply_twice(session: Session) -> None:
    # a seed whose first connection resets the answer and whose second passes: the command
    # is applied by the first attempt, and the retry (same id) gets the first answer back
    faults = Faults(reset=0.5, direction="down")
    seed = next(s for s in range(1000) if _resets(faults, s) == [True, False, False])
    with FaultProxy(session.server.port, faults, seed) as proxy:
        sent = send_command(f"http://{proxy.url}", TOKEN, SET_LIMIT, timeout_s=20)
        assert proxy.stats().faults["reset"] == 1

    assert sent.attempts == 2
    assert sent.result["repeat"] is True
    assert sent.result["after"]["limits"]["max_position_qty"] == 7.0
    (row,) = session.audit("operator.set_limit")
    assert row["after"]["limits"]["max_position_qty"] == 7.0


def _resets(faults: Faults, seed: int) -> list[bool]:
    # connection 0's first answer unit, connection 1's first two
    draws = [FaultPlan(faults, seed, 0, "down").draw()]
    plan = FaultPlan(faults, seed, 1, "down")
    draws += [plan.draw(), plan.draw()]
    return [kind == "reset" for kind, _ in draws]


def test_an_answer_lost_every_time_is_one_clear_line_and_applied_once(session: Session) -> None:
    with FaultProxy(session.server.port, Faults(reset=1.0, direction="down"), 7) as proxy:
        with pytest.raises(CommandUnconfirmed) as caught:
            post_command(f"http://{proxy.url}", TOKEN, SET_LIMIT, command_id="lost-1",
                         attempts=3, timeout_s=20)  # fmt: skip
        assert proxy.stats().connections == 3

    message = str(caught.value)
    assert "\n" not in message
    assert "may or may not have been applied" in message and "ctl status" in message
    assert "lost-1" in message and "3 attempts" in message
    assert len(session.audit("operator.set_limit")) == 1  # three sends, one run
    # the operator sends it again with its id: the first answer, still one run
    again = post_command(session.server.url, TOKEN, SET_LIMIT, command_id="lost-1")
    assert again["repeat"] is True
    assert len(session.audit("operator.set_limit")) == 1


def test_a_refusal_is_never_retried_and_repeats_as_a_refusal(session: Session) -> None:
    bad = {"action": "flatten", "operator": "t", "symbol": "NOPE"}
    for _ in range(2):
        with pytest.raises(ControlClientError, match=r"unknown symbol 'NOPE'.*\(HTTP 409\)"):
            post_command(session.server.url, TOKEN, bad, command_id="refused-1")
    assert len(session.audit("operator.refused")) == 1


@pytest.mark.parametrize(
    "bad_id",
    ["", "x" * 65, "has space", "new\nline", "ünï", "a/b", 5, ["x"], {"a": 1}, True],
    ids=["empty", "too-long", "space", "newline", "non-ascii", "slash", "int", "list", "obj",
         "bool"],
)  # fmt: skip
def test_a_bad_id_is_a_one_line_422(session: Session, bad_id: Any) -> None:
    status, answer = raw_post(session.server.url, {**SET_LIMIT, "id": bad_id})

    assert status == 422
    error = answer["error"]
    assert error.startswith("id must be 1-64 characters") and "\n" not in error
    assert len(error) < 300
    assert session.audit("operator.set_limit") == []


def test_an_id_reused_for_another_command_is_refused(session: Session) -> None:
    assert raw_post(session.server.url, {**SET_LIMIT, "id": "same"})[0] == 200
    status, answer = raw_post(session.server.url, {**SET_LIMIT, "value": 3.0, "id": "same"})
    assert status == 422 and "already used for another command" in answer["error"]
    assert len(session.audit("operator.set_limit")) == 1


def test_the_first_attempt_refused_fails_at_once_not_applied() -> None:
    # nothing listens: nothing was sent, so this is not an unconfirmed command
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ControlClientError, match="connection refused") as caught:
        post_command(f"http://127.0.0.1:{port}", TOKEN, SET_LIMIT)
    assert not isinstance(caught.value, CommandUnconfirmed)


# -- a repeat while the first is still running, on a channel that holds the command --------


class HeldChannel:
    """Holds every command until ``release`` is set; counts the runs."""

    def __init__(self) -> None:
        self.runs: list[Command] = []
        self.arrived = threading.Event()
        self.release = threading.Event()

    def execute(self, command: Command, timeout_s: float) -> dict[str, Any]:
        self.runs.append(command)
        self.arrived.set()
        if not self.release.wait(timeout_s):
            raise TimeoutError("held")
        if getattr(command, "symbol", None) == "NOPE":
            raise OverrideError("unknown symbol 'NOPE'")
        return {"action": command.action, "ok": True, "before": {"n": 0}, "after": {"n": 1}}

    def metrics_text(self) -> bytes:
        return b""


def test_a_repeat_of_a_command_in_flight_waits_for_its_answer() -> None:
    channel = HeldChannel()
    answers: list[tuple[int, dict[str, Any]]] = []
    payload = {"action": "halt", "operator": "t", "id": "in-flight"}
    with ControlServer(channel, token=TOKEN, command_timeout_s=60.0) as server:
        first = threading.Thread(target=lambda: answers.append(raw_post(server.url, payload)))
        first.start()
        assert channel.arrived.wait(60)  # the first is with the kernel now
        repeat = threading.Thread(target=lambda: answers.append(raw_post(server.url, payload)))
        repeat.start()
        repeat.join(0.3)  # it waits for the first's answer (not a readiness wait: a bound)
        assert repeat.is_alive() and len(channel.runs) == 1
        channel.release.set()
        first.join(60)
        repeat.join(60)

    assert len(channel.runs) == 1
    assert sorted(a[1].get("repeat", False) for a in answers) == [False, True]
    assert all(status == 200 and a["after"] == {"n": 1} for status, a in answers)


def test_a_command_cancelled_at_the_timeout_runs_when_retried() -> None:
    # 504: the session never started it (SessionControl cancels it), so the id is forgotten
    channel = HeldChannel()
    payload = {"action": "halt", "operator": "t", "id": "slow-1"}
    with ControlServer(channel, token=TOKEN, command_timeout_s=0.2) as server:
        assert raw_post(server.url, payload)[0] == 504
        channel.release.set()
        status, answer = raw_post(server.url, payload)
    assert status == 200 and "repeat" not in answer and len(channel.runs) == 2


def test_the_ledger_forgets_the_oldest_finished_ids_first() -> None:
    ledger = CommandLedger(size=2)
    for name in ("a", "b"):
        _future, first = ledger.claim(name, {"c": name})
        assert first
        ledger.settle(name, Answer(200, {"c": name}))
    running, first = ledger.claim("c", {"c": "c"})  # evicts "a", the oldest finished
    assert first and len(ledger) == 2
    assert ledger.claim("b", {"c": "b"})[1] is False  # remembered
    assert ledger.claim("a", {"c": "a"})[1] is True  # forgotten: a new command
    assert not running.done() and len(ledger) == 2  # "c" still runs: never evicted
