"""Running the model server: the socket, the workers, readiness, and a graceful stop.

The listening socket is bound first, so ``/livez`` answers and ``/readyz`` says 503 while the
models load, compile and warm up; the server reports ready only after that. With
``--workers N`` (N > 1) the parent binds the socket and starts N worker processes
(``python -m ultrathink.serving.worker``) that inherit it, each with its own models, cache and
event loop; the kernel spreads connections between them. The parent prints the ready line
when every worker has said ready, forwards SIGTERM and SIGINT, restarts a worker that dies
unexpectedly, and exits when all have drained.

SIGTERM (or Ctrl-C) drains: the worker stops accepting, finishes the requests in flight,
closes its connections and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ultrathink.errors import ConfigError, UltrathinkError
from ultrathink.serving.app import ServeOptions, ServingApp
from ultrathink.serving.http import HttpServer

__all__ = ["bind", "options_from_json", "options_to_json", "run_worker", "serve"]

DRAIN_S = 30.0
_RESTARTS_PER_MIN = 5


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port), or a clear ConfigError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick a free --port or "
            "stop what holds it"
        ) from None
    sock.setblocking(False)
    return sock


def options_to_json(options: ServeOptions) -> str:
    return json.dumps({k: str(v) if isinstance(v, Path) else v
                       for k, v in dataclasses.asdict(options).items()})  # fmt: skip


def options_from_json(text: str) -> ServeOptions:
    raw = json.loads(text)
    for name in ("registry", "run_dir", "serving_db"):
        raw[name] = Path(raw[name])
    return ServeOptions(**raw)


async def run_worker(
    options: ServeOptions,
    sock: socket.socket,
    on_ready: Callable[[], None],
    *,
    parent: int | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT, then drain. Returns the exit code.

    ``parent``: the supervisor's pid; the worker also drains and exits when it is gone
    (killed with SIGKILL, it could forward nothing), so no orphan keeps the port."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watch = asyncio.ensure_future(_watch_parent(parent, stop)) if parent is not None else None
    try:
        return await _serve_until_stopped(options, sock, on_ready, stop)
    finally:
        if watch is not None:
            watch.cancel()


async def _serve_until_stopped(
    options: ServeOptions, sock: socket.socket, on_ready: Callable[[], None], stop: asyncio.Event
) -> int:
    app = ServingApp(options)
    server = HttpServer(app.handle, max_body=options.max_body)
    await server.start(sock)
    starting = asyncio.ensure_future(app.admin.start())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
        await server.drain(DRAIN_S)
        return 0
    if starting.exception() is not None:
        await server.drain(1.0)
        exc = starting.exception()
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return 2
    # what start-up built lives as long as the server: keep it out of every collection's scan
    gc.collect()
    gc.freeze()
    on_ready()
    follow = asyncio.ensure_future(app.admin.follow())
    await stopping
    follow.cancel()
    drained = await server.drain(DRAIN_S)
    app.store.close()
    return 0 if drained else 1


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    stop.set()


def serve(options: ServeOptions, sock: socket.socket, announce: Callable[[], None]) -> int:
    """Run one worker in this process, or supervise ``options.workers`` worker processes."""
    import uvloop

    from ultrathink.serving.store import ServingStore

    ServingStore.prepare(options.serving_db)  # once, before any worker opens it
    if options.workers <= 1:
        return uvloop.run(run_worker(options, sock, announce))
    return _Supervisor(options, sock).run(announce)


class _Supervisor:
    def __init__(self, options: ServeOptions, sock: socket.socket) -> None:
        self.options = options
        self.sock = sock
        self.procs: dict[int, subprocess.Popen[str]] = {}
        self.ready: set[int] = set()
        self.stopping = False
        self.cond = threading.Condition()
        self.restarts: list[float] = []

    def _spawn(self, worker: int) -> None:
        fd = self.sock.fileno()
        os.set_inheritable(fd, True)
        opts = dataclasses.replace(self.options, worker=worker)
        proc = subprocess.Popen(
            [sys.executable, "-m", "ultrathink.serving.worker", str(fd)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, pass_fds=(fd,),
            start_new_session=False,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(options_to_json(opts))
        proc.stdin.close()
        self.procs[worker] = proc
        threading.Thread(target=self._watch, args=(worker, proc), daemon=True).start()

    def _watch(self, worker: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "ready":
                with self.cond:
                    self.ready.add(worker)
                    self.cond.notify_all()
        proc.wait()
        with self.cond:
            self.ready.discard(worker)
            self.cond.notify_all()

    def run(self, announce: Callable[[], None]) -> int:
        def forward(signum: int, frame: Any) -> None:
            self.stopping = True
            for proc in self.procs.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            with self.cond:
                self.cond.notify_all()

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        for worker in range(self.options.workers):
            self._spawn(worker)
        failed = False
        with self.cond:
            while len(self.ready) < self.options.workers and not self.stopping:
                if any(p.poll() is not None for p in self.procs.values()):
                    failed = True
                    forward(signal.SIGTERM, None)
                    break
                self.cond.wait(0.5)
        if failed:
            codes = [p.wait() for p in self.procs.values()]
            raise UltrathinkError(
                f"a worker failed to start (exit codes {codes}); its error is printed above"
            )
        if not self.stopping:
            announce()
        while not self.stopping:
            with self.cond:
                self.cond.wait(0.5)
            for worker, proc in list(self.procs.items()):
                if proc.poll() is not None and not self.stopping:
                    self._restart(worker, proc.returncode)
        # stopped by a signal: a worker that drained exits 0; one signalled before it could
        # install its handler (still importing) ends by SIGTERM; neither is a failure
        codes = [p.wait() for p in self.procs.values()]
        return 0 if all(c in (0, -signal.SIGTERM) for c in codes) else 1

    def _restart(self, worker: int, code: int) -> None:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < 60] + [now]
        if len(self.restarts) > _RESTARTS_PER_MIN:
            print(f"error: workers keep dying (last exit {code}); stopping", file=sys.stderr)
            self.stopping = True
            for proc in self.procs.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            return
        print(f"worker {worker} exited with {code}; restarting it", file=sys.stderr, flush=True)
        self._spawn(worker)
