"""Live session pages: follow a running paper session from outside its process.

The dashboard is a separate process from the session it watches, so a dashboard that dies
(or is slow, or leaks) never affects the session: it reads the session only through the
session's control API, the same loopback endpoint and token ``ultrathink ctl`` uses
(``web/control_client``).

* ``LiveWatch`` polls ``GET /v1/status?since=SEQ`` (the kernel's latest snapshot; no kernel
  round trip, no lock on the hot path; nothing but a 204 while the session has published no
  newer snapshot) every ``interval_s`` over one kept-alive connection, in a thread of its
  own, and keeps what the
  page draws: the equity, latency, throughput, price and resource series, the fills seen and
  an alert feed made by comparing each snapshot with the previous one (trading-state changes,
  breaker trips, kill switch, degraded mode, a stale feed, model fallbacks, the end of the
  session). The session process's CPU and RSS are read with psutil from its pid. A profiled
  session's snapshots carry per-stage latency percentiles (``stages``: the profiler's last
  recorded bars, see ``perf/profiler.py``): their p50 and p99 become one series per stage.
* The browser gets Server-Sent Events (``/api/live/KEY/stream``): a full frame first, then
  one frame per new snapshot with only what is new. SSE rather than a WebSocket: the flow is
  one-way, EventSource reconnects by itself, and it is plain HTTP through Starlette.
* Commands (``POST /api/live/KEY/command``) are forwarded to the session's
  ``/v1/commands`` with the operator's name, exactly as ``ultrathink ctl`` sends them, so the
  session validates, applies between two bars and audits them; the answer (before/after) is
  returned to the page.

Everything a watch keeps is bounded: the series are halved (every other point kept) when
they reach ``max_points``, and the fills and alerts keep the newest few thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from html import escape
from pathlib import Path
from typing import Any

import orjson

from ultrathink.web.control_client import (
    ControlClientError,
    StatusPoller,
    default_operator,
    live_targets,
    post_command,
)

__all__ = ["LiveHub", "LiveWatch", "diff_alerts"]

#: series points kept per watch before halving
MAX_POINTS = 200_000
#: fills and alerts kept per watch
MAX_FILLS = 5_000
MAX_ALERTS = 1_000
#: points in the first frame a page gets (the rest of the history is downsampled)
FIRST_FRAME_POINTS = 2_000
#: most price and stage-latency columns a watch keeps (a page draws a few of each)
MAX_COLUMNS = 50

_SERIES = ("wall_ns", "clock_ns", "equity", "p50_us", "p99_us", "bars_s", "decisions_s",
           "cpu_pct", "rss_mb")  # fmt: skip


def diff_alerts(prev: Mapping[str, Any] | None, snap: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What changed between two snapshots that an operator must see: ``[(kind, text)]``.

    ``kind`` is one of ``state``, ``kill_switch``, ``breaker``, ``degraded``, ``feed``,
    ``fallback``, ``replay`` and ``finished``.
    """
    out: list[tuple[str, str]] = []
    if prev is None:
        state = snap.get("trading_state", "?")
        if state != "ACTIVE":
            out.append(("state", f"trading state {state}: {snap.get('state_reason') or '-'}"))
        return out
    old_state, new_state = prev.get("trading_state"), snap.get("trading_state")
    if old_state != new_state:
        reason = snap.get("state_reason") or "-"
        kind = "kill_switch" if "kill" in reason.lower() else "state"
        out.append((kind, f"trading state {old_state} → {new_state}: {reason}"))
    old_h, new_h = prev.get("hardening") or {}, snap.get("hardening") or {}
    old_b, new_b = old_h.get("breakers") or {}, new_h.get("breakers") or {}
    for name, state in new_b.items():
        if old_b.get(name) not in (None, state):
            out.append(("breaker", f"breaker {name}: {old_b[name]} → {state}"))
    if bool(old_h.get("degraded")) != bool(new_h.get("degraded")):
        on = bool(new_h.get("degraded"))
        out.append(("degraded", "degraded mode entered" if on else "degraded mode left"))
    if bool(old_h.get("feed_stale")) != bool(new_h.get("feed_stale")):
        stale = bool(new_h.get("feed_stale"))
        out.append(("feed", "the feed is stale" if stale else "the feed is fresh again"))
    old_f = (prev.get("strategy") or {}).get("fallbacks") or {}
    for name, n in ((snap.get("strategy") or {}).get("fallbacks") or {}).items():
        more = n - old_f.get(name, 0)
        if more > 0:
            out.append(("fallback", f"model fallback to {name}: {more} more ({n} in all)"))
    if prev.get("replaying") and not snap.get("replaying"):
        out.append(("replay", "replay done: the session is live"))
    if snap.get("finished") and not prev.get("finished"):
        out.append(("finished", "the session finished"))
    return out


class _Ring:
    """A list with an absolute index: items before ``base`` were dropped."""

    __slots__ = ("base", "items", "limit")

    def __init__(self, limit: int) -> None:
        self.base = 0
        self.items: list[Any] = []
        self.limit = limit

    def append(self, item: Any) -> None:
        self.items.append(item)
        if len(self.items) > self.limit:
            drop = len(self.items) - self.limit // 2
            del self.items[:drop]
            self.base += drop

    @property
    def end(self) -> int:
        return self.base + len(self.items)

    def since(self, cursor: int) -> list[Any]:
        return self.items[max(0, cursor - self.base) :]


class LiveWatch:
    """Follows one live session through its control API (see the module docstring).

    Parameters
    ----------
    key, label : str
        The URL-safe key of the session (``run-3``) and how it is shown (``run 3``).
    url, token : str
        Its control endpoint (loopback) and bearer token, from its trusted control file.
    pid : int or None
        The session process, for CPU and RSS.
    info : mapping
        What the control file says of the session (run id, mode, strategy, store).
    interval_s : float
        Time between two status polls.
    max_points : int
        Series points kept before the oldest half is thinned.
    """

    def __init__(
        self,
        key: str,
        label: str,
        url: str,
        token: str,
        pid: int | None,
        info: Mapping[str, Any],
        *,
        interval_s: float = 0.25,
        max_points: int = MAX_POINTS,
        is_alive: Callable[[], bool] | None = None,
    ) -> None:
        self.key, self.label, self.url, self._token = key, label, url, token
        self.info = dict(info)
        self.interval_s = interval_s
        self._max_points = max_points
        self._is_alive = is_alive
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = _process(pid)
        self.series: dict[str, list[float]] = {name: [] for name in _SERIES}
        self.prices: dict[str, list[float]] = {}
        #: "STAGE p50" / "STAGE p99" (µs) of a profiled session, aligned with ``series``
        self.stages: dict[str, list[float]] = {}
        self.series_base = 0
        self.fills = _Ring(MAX_FILLS)
        self.alerts = _Ring(MAX_ALERTS)
        self._fill_keys: set[tuple[Any, ...]] = set()
        self.snapshot: dict[str, Any] | None = None
        self.process: dict[str, Any] = {}
        self.ended = False
        self.error = ""
        #: bumped whenever something new is kept; streams wait for it to move
        self.version = 0

    # -- the polling thread -----------------------------------------------------------------
    def start(self) -> LiveWatch:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"live-{self.key}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        failures = 0
        poller = StatusPoller(self.url, self._token, "dashboard", timeout_s=5.0)
        since: int | None = None
        try:
            while not self._stop.is_set() and not self.ended:
                try:
                    answer = poller.poll(since)
                except ControlClientError as exc:
                    failures += 1
                    alive = self._is_alive() if self._is_alive is not None else failures < 3
                    if not alive:
                        self._end(f"the session ended ({exc})")
                        break
                    self._note_error(str(exc))
                else:
                    failures = 0
                    snap = answer.get("after") if answer is not None else None
                    if isinstance(snap, dict) and isinstance(snap.get("seq"), int):
                        self.apply(snap, self._sample_process())
                        since = snap["seq"]
                self._stop.wait(self.interval_s)
        finally:
            poller.close()

    def _sample_process(self) -> dict[str, Any]:
        proc = self._proc
        if proc is None:
            return {}
        try:
            with proc.oneshot():
                return {
                    "cpu_pct": proc.cpu_percent(None),
                    "rss_mb": proc.memory_info().rss / 2**20,
                    "threads": proc.num_threads(),
                }
        except Exception:  # psutil.Error: the process is gone or not ours
            return {}

    # -- what the thread keeps (also called directly by tests) -------------------------------
    def apply(self, snap: dict[str, Any], process: Mapping[str, Any] | None = None) -> None:
        """Keep what ``snap`` adds; alerts come from comparing it with the previous one."""
        with self._lock:
            prev = self.snapshot
            if prev is not None and snap.get("seq") == prev.get("seq"):
                if process:
                    self.process = dict(process)
                return
            now = time.time_ns()
            for kind, text in diff_alerts(prev, snap):
                self.alerts.append({"wall_ns": now, "kind": kind, "text": text})
            lat = snap.get("decision_latency_us") or {}
            proc = dict(process or {})
            row = {
                "wall_ns": float(snap.get("wall_ns") or now),
                "clock_ns": float(snap.get("clock_ns") or 0),
                "equity": float(snap.get("equity") or 0.0),
                "p50_us": float(lat.get("p50", "nan")),
                "p99_us": float(lat.get("p99", "nan")),
                "bars_s": float(snap.get("bars_per_s") or 0.0),
                "decisions_s": float(snap.get("decisions_per_s") or 0.0),
                "cpu_pct": float(proc.get("cpu_pct", "nan")),
                "rss_mb": float(proc.get("rss_mb", "nan")),
            }
            for name in _SERIES:
                self.series[name].append(row[name])
            n = len(self.series["wall_ns"])
            _append_columns(self.prices, snap.get("prices") or {}, n)
            _append_columns(self.stages, _stage_points(snap.get("stages")), n)
            for fill in snap.get("recent_fills") or ():
                key = tuple(fill)
                if key not in self._fill_keys:
                    self._fill_keys.add(key)
                    self.fills.append(list(fill))
            if len(self._fill_keys) > 4 * MAX_FILLS:
                self._fill_keys = {tuple(f) for f in self.fills.items}
            if n > self._max_points:
                self._thin()
            self.snapshot = snap
            self.process = proc
            self.error = ""
            self.version += 1

    def _thin(self) -> None:
        # keep every other point of the older half: the newest stay at full resolution
        n = len(self.series["wall_ns"])
        half = n // 2
        for name in _SERIES:
            col = self.series[name]
            col[:half] = col[:half:2]
        for col in (*self.prices.values(), *self.stages.values()):
            col[:half] = col[:half:2]
        self.series_base += n  # every cursor into the series is stale: pages get a full frame

    def _note_error(self, text: str) -> None:
        with self._lock:
            if text != self.error:
                self.error = text
                self.version += 1

    def _end(self, text: str) -> None:
        with self._lock:
            self.ended = True
            self.alerts.append({"wall_ns": time.time_ns(), "kind": "ended", "text": text})
            self.version += 1

    # -- frames for the page -----------------------------------------------------------------
    def frame(self, cursor: dict[str, int] | None) -> tuple[dict[str, Any], dict[str, int]]:
        """What a page lacks since ``cursor`` (None: everything, downsampled), and the new
        cursor. A frame with ``"full": true`` replaces what the page drew."""
        with self._lock:
            n = len(self.series["wall_ns"])
            full = cursor is None or cursor["base"] != self.series_base or cursor["n"] > n
            if full:
                step = max(1, -(-n // FIRST_FRAME_POINTS))
                idx = list(range(0, n, step))
                if n and idx[-1] != n - 1:
                    idx.append(n - 1)
                series = {k: [v[i] for i in idx] for k, v in self.series.items()}
                prices = {s: [v[i] for i in idx] for s, v in self.prices.items()}
                stages = {s: [v[i] for i in idx] for s, v in self.stages.items()}
                fills = self.fills.items[-1_000:]
                alerts = self.alerts.items[-200:]
            else:
                assert cursor is not None
                start = cursor["n"]
                series = {k: v[start:] for k, v in self.series.items()}
                prices = {s: v[start:] for s, v in self.prices.items()}
                stages = {s: v[start:] for s, v in self.stages.items()}
                fills = self.fills.since(cursor["fills"])
                alerts = self.alerts.since(cursor["alerts"])
            frame = {
                "full": full,
                "key": self.key,
                "label": self.label,
                "info": self.info,
                "snapshot": self.snapshot,
                "process": self.process,
                "series": series,
                "prices": prices,
                "stages": stages,
                "fills": fills,
                "alerts": alerts,
                "ended": self.ended,
                "error": self.error,
            }
            new_cursor = {
                "base": self.series_base, "n": n, "fills": self.fills.end,
                "alerts": self.alerts.end,
            }  # fmt: skip
        return frame, new_cursor

    # -- commands -----------------------------------------------------------------------------
    def command(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send ``payload`` to the session (blocking; call it off the event loop)."""
        result = post_command(self.url, self._token, payload)
        with self._lock:
            text = f"{payload.get('operator')}: {payload.get('action')}"
            message = result.get("message")
            self.alerts.append({
                "wall_ns": time.time_ns(), "kind": "command",
                "text": f"{text} ({message})" if message else text,
            })  # fmt: skip
            self.version += 1
        return result


def _append_columns(columns: dict[str, list[float]], values: Mapping[str, Any], n: int) -> None:
    # one value per column for row n-1: NaN where a column has none; a new column starts
    # with NaN for the rows before it; never more than MAX_COLUMNS columns
    for name, value in values.items():
        col = columns.get(name)
        if col is None:
            if len(columns) >= MAX_COLUMNS:
                continue
            col = columns[name] = [float("nan")] * (n - 1)
        try:
            col.append(float(value))
        except (TypeError, ValueError):
            col.append(float("nan"))
    for col in columns.values():
        if len(col) < n:
            col.append(float("nan"))


def _stage_points(stages: Any) -> dict[str, Any]:
    # {"model": {"p50": 3.1, "p99": 9.0, ...}} -> {"model p50": 3.1, "model p99": 9.0}
    if not isinstance(stages, Mapping):
        return {}
    out: dict[str, Any] = {}
    for name, stat in stages.items():
        if isinstance(stat, Mapping) and "p50" in stat:
            out[f"{name} p50"] = stat.get("p50")
            out[f"{name} p99"] = stat.get("p99")
    return out


def _process(pid: int | None) -> Any:
    if pid is None:
        return None
    try:
        import psutil

        proc = psutil.Process(pid)
        proc.cpu_percent(None)  # the first call starts the interval
        return proc
    except Exception:  # no such process, or psutil missing: no resource series
        return None


class LiveHub:
    """The live sessions of one store, and one ``LiveWatch`` per session a page follows."""

    def __init__(self, db: Path, *, interval_s: float = 0.25) -> None:
        self.db = db
        self.interval_s = interval_s
        self._watches: dict[str, LiveWatch] = {}
        self._lock = threading.Lock()
        self.closing = False

    def sessions(self) -> list[dict[str, Any]]:
        """The live sessions now: ``{"key", "label", "run_id", "mode", "strategy", "pid"}``."""
        out = []
        for label, content in live_targets(self.db):
            out.append({
                "key": label.replace(" ", "-"), "label": label,
                "run_id": content.get("run_id"), "mode": content.get("mode"),
                "strategy": content.get("strategy"), "pid": content.get("pid"),
            })  # fmt: skip
        return out

    def watch(self, key: str) -> LiveWatch | None:
        """The watch of session ``key`` (started on first use), or None if it is not live and
        was never watched."""
        with self._lock:
            found = self._watches.get(key)
            if found is not None:
                return found
        for label, content in live_targets(self.db):
            if label.replace(" ", "-") != key:
                continue
            pid = content.get("pid")
            watch = LiveWatch(
                key, label, str(content["url"]), str(content["token"]),
                int(pid) if isinstance(pid, int) else None,
                {k: content.get(k) for k in ("run_id", "mode", "strategy", "db")},
                interval_s=self.interval_s, is_alive=lambda: _alive(self.db, key),
            )  # fmt: skip
            with self._lock:
                existing = self._watches.setdefault(key, watch)
            return existing.start()
        return None

    def close(self) -> None:
        self.closing = True
        with self._lock:
            watches = list(self._watches.values())
        for watch in watches:
            watch.stop()


def _alive(db: Path, key: str) -> bool:
    return any(label.replace(" ", "-") == key for label, _ in live_targets(db))


async def stream(watch: LiveWatch, hub: LiveHub, poll_s: float = 0.1) -> AsyncIterator[bytes]:
    """The SSE byte stream of one page: a full frame, then what is new, then ``end``."""
    cursor: dict[str, int] | None = None
    seen = -1
    idle = 0.0
    while not hub.closing:
        if watch.version != seen:
            seen = watch.version
            frame, cursor = watch.frame(cursor)
            yield b"data: " + orjson.dumps(frame, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"
            idle = 0.0
            if watch.ended:
                yield b"event: end\ndata: {}\n\n"
                return
        elif idle >= 10.0:
            yield b": keep-alive\n\n"  # proxies and the browser keep the stream open
            idle = 0.0
        await asyncio.sleep(poll_s)
        idle += poll_s
    with contextlib.suppress(Exception):
        yield b'event: end\ndata: {"reason": "the dashboard is stopping"}\n\n'


def command_payload(body: Any, operator_default: str | None = None) -> dict[str, Any]:
    """The command object a page sent, with the operator's name required (the session's
    audit row names it); the session validates the rest."""
    if not isinstance(body, dict):
        raise ValueError("the command must be a JSON object")
    payload = dict(body)
    operator = str(payload.get("operator") or operator_default or default_operator()).strip()
    if not operator:
        raise ValueError("operator: your name is required (it goes to the audit trail)")
    payload["operator"] = operator
    return payload


# --- pages and routes ---------------------------------------------------------------------
_STATIC = Path(__file__).with_name("static")
_ASSETS = {"live.js": "text/javascript", "live.css": "text/css"}


def live_page(key: str, label: str, operator: str) -> str:
    """The HTML of a session's live page (the data comes by SSE; see ``static/live.js``)."""
    from string import Template

    page = Template((_STATIC / "live.html").read_text(encoding="utf-8"))
    return page.substitute(key=escape(key), label=escape(label), operator=escape(operator))


def sessions_page(sessions: list[dict[str, Any]]) -> str:
    """The list of live sessions of the store."""
    rows = "".join(
        f"<tr><td><a href='/live/{escape(s['key'])}'>{escape(s['label'])}</a></td>"
        f"<td>{escape(str(s.get('mode') or ''))}</td><td>{escape(str(s.get('strategy') or ''))}"
        f"</td><td>{escape(str(s.get('pid') or ''))}</td></tr>"
        for s in sessions
    )
    body = (
        f"<table><tr><th>session</th><th>mode</th><th>strategy</th><th>pid</th></tr>{rows}</table>"
        if sessions
        else "<p>No live paper session in this store. Start one with <code>ultrathink paper"
        " --dashboard</code>.</p>"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>ULTRATHINK live</title>"
        "<link rel='stylesheet' href='/assets/live.css'></head><body>"
        "<header><b>ULTRATHINK · live sessions</b>"
        f"<a href='/runs'>runs</a></header><main><section class='wide'>{body}</section>"
        "</main></body></html>"
    )


def live_routes(hub: LiveHub, operator: str | None = None) -> list[Any]:
    """Starlette routes of the live pages; the app that mounts them authenticates them."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    who = operator or default_operator()

    def missing(key: str) -> JSONResponse:
        return JSONResponse(
            {"error": f"no live session {key!r} in {hub.db}; live: "
                      f"{', '.join(s['key'] for s in hub.sessions()) or 'none'}"},
            status_code=404,
        )  # fmt: skip

    async def sessions_html(request: Request) -> Response:
        return HTMLResponse(sessions_page(await run_in_threadpool(hub.sessions)))

    async def sessions_json(request: Request) -> Response:
        return JSONResponse({"sessions": await run_in_threadpool(hub.sessions)})

    async def page(request: Request) -> Response:
        key = request.path_params["key"]
        watch = await run_in_threadpool(hub.watch, key)
        if watch is None:
            return HTMLResponse(
                sessions_page(await run_in_threadpool(hub.sessions)).replace(
                    "<main>", f"<main><section class='wide'><p>No live session "
                    f"<b>{escape(key)}</b>: it has ended or never ran. Its record is under "
                    "<a href='/runs'>runs</a>.</p></section>", 1,
                ),
                status_code=404,
            )  # fmt: skip
        return HTMLResponse(live_page(key, watch.label, who))

    async def events(request: Request) -> Response:
        key = request.path_params["key"]
        watch = await run_in_threadpool(hub.watch, key)
        if watch is None:
            return missing(key)
        return StreamingResponse(
            stream(watch, hub), media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )  # fmt: skip

    async def frame(request: Request) -> Response:
        key = request.path_params["key"]
        watch = await run_in_threadpool(hub.watch, key)
        if watch is None:
            return missing(key)
        body, _ = watch.frame(None)
        return Response(orjson.dumps(body), media_type="application/json")

    async def command(request: Request) -> Response:
        key = request.path_params["key"]
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send the command as application/json"}, 415)
        raw = await request.body()
        if len(raw) > 16_384:
            return JSONResponse({"error": "the command is over 16 KiB"}, 413)
        try:
            payload = command_payload(orjson.loads(raw), who)
        except (orjson.JSONDecodeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        watch = await run_in_threadpool(hub.watch, key)
        if watch is None:
            return missing(key)
        try:
            result = await run_in_threadpool(watch.command, payload)
        except ControlClientError as exc:
            return JSONResponse({"error": str(exc)}, 409)
        return JSONResponse(result)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        kind = _ASSETS.get(name)
        if kind is None:
            return JSONResponse({"error": f"no asset {name!r}"}, 404)
        return Response(
            (_STATIC / name).read_bytes(), media_type=kind, headers={"Cache-Control": "no-cache"}
        )

    return [
        Route("/live", sessions_html),
        Route("/live/{key}", page),
        Route("/api/live", sessions_json),
        Route("/api/live/{key}/stream", events),
        Route("/api/live/{key}/frame", frame),
        Route("/api/live/{key}/command", command, methods=["POST"]),
        Route("/assets/{name:str}", asset),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
    ]
