"""The model server as the ML strategy's scorer: ``--model-url`` on backtest, paper and run.

The kernel is synchronous, so the client is a blocking one: ``ModelServerClient`` keeps ONE
keep-alive HTTP/1.1 connection (``http.client.HTTPConnection``, TCP_NODELAY) open and reuses
it for every request. When the server has closed a kept connection (its idle timeout, a
restart) the request is sent again once on a new connection; a timed-out request closes the
connection, so a late answer is never read as the next request's.

Timeout rule (``decision_timeout_ms``): a request may take at most HALF of the decision
latency budget — ``hardening.degraded.latency_enter_ms``, the decision latency at which a
session enters degraded mode (10 ms by default, so 5 ms) — and never less than 2 ms, since a
loopback round trip with the JSON costs a few hundred µs and a tighter deadline would time
out on a scheduler hiccup. The other half is left to the local fallback, the features and
the order path, so a slow server cannot by itself push the session into degraded mode.
``--model-timeout-ms`` overrides the rule. The deadline covers the whole exchange (connect,
send, answer, and the one reconnect), not each socket operation.

``RemoteModel`` puts the client behind a circuit breaker named ``model_server`` on the live
clock (network time is wall time, also in a backtest): 3 failures within 10 s open it, and
while it is OPEN no request is sent, so the strategy stops paying the timeout; after 2 s one
half-open probe asks the server again and an answer closes it — that is how a session
switches back once the server returns. A failure is a timeout, a refused or broken
connection, a status other than 200, a body that is not JSON, an answer without a
probability in [0, 1], or an answer from a version whose features are not the local model's
(in the same order). On a failure ``predict`` returns None and the strategy decides with its
LOCAL compiled model of the same version (then the member chain, then hold). Every fallback
is counted by reason (``stats``); the audit trail gets a ``decision.fallback`` row only at
transitions — server lost (the first failure after an answer), breaker opened, server back
(the first answer after a failure) — never one per bar while the server is away.
"""

from __future__ import annotations

import http.client
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from ultrathink.core.clock import Clock, LiveClock
from ultrathink.errors import ConfigError
from ultrathink.hardening.breaker import (
    BreakerConfig,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
)

__all__ = [
    "MODEL_SERVER_BREAKER",
    "STARTUP_TIMEOUT_S",
    "Catalog",
    "ModelServerClient",
    "RemoteError",
    "RemoteModel",
    "decision_timeout_ms",
]

#: A request's share of the decision latency budget, and the floor of the timeout.
TIMEOUT_SHARE = 0.5
MIN_TIMEOUT_MS = 2.0
#: The deadline of ``GET /v1/models`` when a run starts (not on the decision path).
STARTUP_TIMEOUT_S = 2.0
#: The breaker around the server: 3 failures in 10 s open it; a probe after 2 s.
MODEL_SERVER_BREAKER = BreakerConfig(
    name="model_server", failure_threshold=3, window_s=10.0, recovery_timeout_s=2.0
)

_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_NUMBER = (float, int)


def decision_timeout_ms(latency_enter_ms: float, explicit_ms: float | None = None) -> float:
    """The request timeout: ``explicit_ms`` if given, else half the decision latency budget
    ``latency_enter_ms`` with a floor of 2 ms (see the module docstring)."""
    if explicit_ms is not None:
        if not (explicit_ms > 0 and math.isfinite(explicit_ms)):
            raise ConfigError(f"--model-timeout-ms must be a positive number, was {explicit_ms}")
        return float(explicit_ms)
    return max(MIN_TIMEOUT_MS, TIMEOUT_SHARE * latency_enter_ms)


class RemoteError(Exception):
    """A request that brought no usable answer: ``reason`` (a stable code) and ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _Broken(Exception):
    """A kept connection the server had closed: send again on a new one."""


@dataclass(frozen=True)
class Catalog:
    """What ``GET /v1/models`` says: the primary version and each version's features."""

    primary: str
    features: dict[str, tuple[str, ...]]

    @classmethod
    def parse(cls, payload: Any) -> Catalog:
        """The catalog of a ``GET /v1/models`` body, or ``RemoteError`` (``bad_answer``)."""
        try:
            primary = payload["routing"]["primary"]
            features = {
                str(m["version"]): tuple(str(n) for n in m["features"])
                for m in payload["models"]
                if "features" in m
            }
        except (KeyError, TypeError) as exc:
            raise RemoteError("bad_answer", f"GET /v1/models: no {exc} in the answer") from None
        if type(primary) is not str:
            raise RemoteError("bad_answer", f"GET /v1/models: routing.primary was {primary!r}")
        return cls(primary, features)


class ModelServerClient:
    """A blocking client of one model server over one pooled keep-alive connection.

    Parameters
    ----------
    url : str
        ``http://HOST:PORT`` (a path prefix is kept; https is not supported).
    timeout_s : float
        Deadline of one request, reconnect included.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port or 80
        except ValueError:
            port = -1
        if parts.scheme != "http" or not parts.hostname or port < 0:
            raise ConfigError(
                f"--model-url must be an http URL of a model server, e.g. "
                f"http://127.0.0.1:8100, was {url!r}"
            )
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ConfigError(f"the model server timeout must be positive, was {timeout_s} s")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._prefix = parts.path.rstrip("/")
        self._conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout_s)
        self.connects = 0  # connections opened
        self.reconnects = 0  # kept connections found closed by the server, replaced

    def close(self) -> None:
        """Close the kept connection (the next request opens a new one)."""
        self._conn.close()

    def exchange(
        self, method: str, path: str, body: bytes | None = None, timeout_s: float | None = None
    ) -> tuple[int, bytes]:
        """One request: (status, body). Raises ``RemoteError`` (``timeout``, ``refused``,
        ``connection``); a kept connection the server closed is replaced once."""
        budget_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + budget_s
        target = self._prefix + path
        try:
            return self._once(method, target, body, deadline, budget_s, may_retry=True)
        except _Broken:
            self.reconnects += 1
            return self._once(method, target, body, deadline, budget_s, may_retry=False)

    def _once(
        self,
        method: str,
        target: str,
        body: bytes | None,
        deadline: float,
        budget_s: float,
        *,
        may_retry: bool,
    ) -> tuple[int, bytes]:
        conn = self._conn
        reused = conn.sock is not None
        try:
            if reused:
                conn.sock.settimeout(_left(deadline))
            else:
                conn.timeout = _left(deadline)
                conn.connect()
                self.connects += 1
            conn.request(method, target, body, _HEADERS)
            if conn.sock is not None:
                conn.sock.settimeout(_left(deadline))
            response = conn.getresponse()
            return response.status, response.read()
        except TimeoutError:
            conn.close()
            ms = 1000 * budget_s
            raise RemoteError("timeout", f"no answer from {self.url} within {ms:g} ms") from None
        except ConnectionRefusedError:
            conn.close()
            raise RemoteError("refused", f"{self.url} refused the connection") from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if reused and may_retry:
                raise _Broken from None
            raise RemoteError("connection", f"{type(exc).__name__}: {exc}") from None

    def catalog(self, timeout_s: float | None = None) -> Catalog:
        """``GET /v1/models`` as a ``Catalog``."""
        status, data = self.exchange("GET", "/v1/models", None, timeout_s)
        return Catalog.parse(_json(status, data, "GET /v1/models"))

    def predict(self, features: dict[str, float], key: str | None = None) -> Any:
        """``POST /v1/predict`` with features by name; the decoded answer."""
        body: dict[str, Any] = {"features": features}
        if key is not None:
            body["key"] = key
        status, data = self.exchange("POST", "/v1/predict", orjson.dumps(body))
        return _json(status, data, "POST /v1/predict")


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _json(status: int, data: bytes, what: str) -> Any:
    if status != 200:
        try:
            message = orjson.loads(data).get("error", "")
        except (orjson.JSONDecodeError, AttributeError):
            message = data[:120].decode("utf-8", "replace")
        raise RemoteError(f"http_{status}", f"{what} answered {status}: {message}")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RemoteError("bad_json", f"{what}: the answer is not JSON ({exc})") from None


def _no_audit(detail: str) -> None:
    pass


class RemoteModel:
    """The ML strategy's remote scorer: the server behind a breaker (see the module docstring).

    ``breaker`` configures the circuit breaker, on ``clock`` (default: the live clock).
    ``predict(x, key)`` returns the server's probability for the feature row ``x`` (in the
    order of ``feature_names``, sent by name with ``key`` for sticky routing), or None when
    the strategy must fall back to its local model. ``version``/``feature_names`` are the
    local model's; an answer from another version counts only if that version has the same
    features (``catalog``; an unknown version makes one ``GET /v1/models`` to learn them).
    """

    predict: Callable[[np.ndarray, str], float | None]  # an attribute: a profiler timing point

    def __init__(
        self,
        client: ModelServerClient,
        version: str,
        feature_names: Sequence[str],
        *,
        catalog: Catalog | None = None,
        startup: str = "",
        breaker: BreakerConfig = MODEL_SERVER_BREAKER,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.version = version
        self.feature_names = tuple(feature_names)
        self._names = list(feature_names)
        self._accepted: dict[str, bool] = {version: True}  # version -> answers count
        if catalog is not None:
            self._learn(catalog)
        self.startup = startup
        self._recovery_s = breaker.recovery_timeout_s
        self.breaker = CircuitBreaker(breaker, clock or LiveClock())
        self.breaker.on_transition(self._on_transition)
        self.audit: Callable[[str], None] = _no_audit
        self.requests = 0  # predictions asked (answered + fallbacks)
        self.sent = 0  # requests sent to the server (not refused by the breaker)
        self.answered = 0
        self.by_reason: dict[str, int] = {}
        self.versions_answered: dict[str, int] = {}
        self.outages = 0
        self.breaker_opened = 0
        self.probes_failed = 0
        self._lost = False
        self._lost_at = 0
        self._key = ""
        self.predict = self._predict

    def bind_audit(self, audit: Callable[[str], None]) -> None:
        """Where transition notes go (the strategy's ``decision.fallback`` audit rows)."""
        self.audit = audit

    def close(self) -> None:
        """Close the connection."""
        self.client.close()

    def _predict(self, x: np.ndarray, key: str) -> float | None:
        self.requests += 1
        self._key = key
        if not self.breaker.allow():
            self._fallback("breaker_open", "the breaker is open", record=False)
            return None
        self.sent += 1
        try:
            answer = self.client.predict(dict(zip(self._names, x.tolist(), strict=True)), key)
            p, version = self._check(answer)
        except RemoteError as exc:
            self._fallback(exc.reason, exc.detail)
            return None
        except Exception as exc:  # never let the remote path break a decision
            self._fallback("error", f"{type(exc).__name__}: {exc}")
            return None
        self.breaker.record_success()
        self.answered += 1
        self.versions_answered[version] = self.versions_answered.get(version, 0) + 1
        if self._lost:
            self._lost = False
            n = self.requests - 1 - self._lost_at
            self.audit(
                f"{key} model server {self.client.url} back: {version} answers again after "
                f"{n} fallback(s) to the local {self.version}"
            )
        return p

    def _check(self, answer: Any) -> tuple[float, str]:
        if type(answer) is not dict:
            raise RemoteError("bad_answer", f"the answer is not an object: {answer!r:.80}")
        p: Any = answer.get("probability")
        version: Any = answer.get("version")
        if type(p) not in _NUMBER or not 0.0 <= p <= 1.0:
            raise RemoteError("bad_answer", f"probability {p!r} is not a number in [0, 1]")
        if type(version) is not str:
            raise RemoteError("bad_answer", f"version {version!r} is not a string")
        accepted = self._accepted.get(version)
        if accepted is None:  # a version not seen yet (a reload, a new variant): learn it
            self._learn(self.client.catalog())
            accepted = self._accepted.setdefault(version, False)
        if not accepted:
            raise RemoteError(
                "version_mismatch",
                f"{version} answered, whose features are not those of the local {self.version}",
            )
        return float(p), version

    def _learn(self, catalog: Catalog) -> None:
        for version, names in catalog.features.items():
            self._accepted[version] = names == self.feature_names

    def _fallback(self, reason: str, detail: str, *, record: bool = True) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if not self._lost:
            self._lost = True
            self._lost_at = self.requests - 1
            self.outages += 1
            self.audit(
                f"{self._key} model server {self.client.url} lost ({reason}: {detail}); the "
                f"local {self.version} decides until it answers again"
            )
        if record:
            self.breaker.record_failure(f"{reason}: {detail}")

    def _on_transition(self, t: BreakerTransition) -> None:
        if t.to_state is BreakerState.OPEN:
            if t.from_state is BreakerState.CLOSED:
                self.breaker_opened += 1
                self.audit(
                    f"{self._key} model server breaker {t.name} OPEN ({t.reason}): no requests "
                    f"for {self._recovery_s:g} s, then one probe"
                )
            else:
                self.probes_failed += 1

    def stats(self) -> dict[str, Any]:
        """Counts for the run summary: requests = answered + fallbacks."""
        return {
            "url": self.client.url,
            "version": self.version,
            "timeout_ms": round(1000 * self.client.timeout_s, 3),
            "startup": self.startup,
            "requests": self.requests,
            "sent": self.sent,
            "answered": self.answered,
            "fallbacks": self.requests - self.answered,
            "by_reason": dict(sorted(self.by_reason.items())),
            "versions_answered": dict(sorted(self.versions_answered.items())),
            "outages": self.outages,
            "breaker": {
                "state": self.breaker.state.value,
                "opened": self.breaker_opened,
                "probes_failed": self.probes_failed,
            },
            "connections": self.client.connects,
            "reconnects": self.client.reconnects,
        }
