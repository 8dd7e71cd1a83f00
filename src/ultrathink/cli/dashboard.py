"""``ultrathink dashboard``: the run browser, model and performance pages of a store.

``ultrathink dashboard`` serves the pages on a loopback address (read-only: the store is
opened read-only for every request, so it works beside a running session) and prints a
one-time login link; ``ultrathink dashboard link`` asks the running dashboard of the same
store for a new one (the first link works once, within an hour). The session file beside
the store (``<store>.dashboard.json``, mode 0600) holds the URL and the bearer token scripts
send. Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ultrathink.cli._common import DB_HELP
from ultrathink.cli._registry import CliContext, Command, sub_parser
from ultrathink.errors import ConfigError, UltrathinkError

_DEFAULT_PORT = 8200


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, help=DB_HELP)
    p.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=_DEFAULT_PORT,
                   help=f"port (default {_DEFAULT_PORT}; 0: any free one)")  # fmt: skip
    p.add_argument("--registry", default=None, help="model registry (default: models/ beside "
                   "the store)")  # fmt: skip
    p.add_argument("--bench", metavar="PATH", default=None,
                   help="benchmark results (default: .bench/results.jsonl)")  # fmt: skip
    p.add_argument("--profile", metavar="PATH", default=None,
                   help="profile.json of `ultrathink profile` (default .ultrathink/profile/"
                   "profile.json)")  # fmt: skip
    p.set_defaults(func=_serve)
    sub = p.add_subparsers(dest="dashboard_cmd", metavar="ACTION")
    link = sub_parser(sub, "link", "a new one-time login link from the running dashboard",
                      ("ultrathink dashboard link",))  # fmt: skip
    link.add_argument("--db", default=None, help=DB_HELP)
    link.set_defaults(func=_new_link)


def _store_runs(db: Path) -> int | None:
    """How many runs the store holds (None: busy now); ``ConfigError`` when it is missing."""
    from ultrathink.web import browse

    if not db.exists():
        raise ConfigError(f"store {db} does not exist; run a backtest first or pass --db")
    if not db.is_file():
        raise ConfigError(f"store {db} is not a file; pass the --db of a store")
    try:
        return int(browse.list_runs(db, browse.RunFilter(), 1, 1)["total"])
    except browse.StoreBusyError as exc:
        print(f"warning: {exc}; the pages will say so until it is free", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink import services
    from ultrathink.cli.profile import DEFAULT_OUT
    from ultrathink.perf.results import default_results_path
    from ultrathink.web.dashboard_app import DashboardConfig
    from ultrathink.web.dashboard_server import DashboardServer, session_file_for
    from ultrathink.web.live import LiveHub, live_routes

    db = services.resolve_db(args.db)
    n_runs = _store_runs(db)
    config = DashboardConfig(
        db=db, registry=services.registry_root(args.registry, args.db),
        bench_results=Path(args.bench) if args.bench else default_results_path(),
        profile=Path(args.profile) if args.profile else DEFAULT_OUT / "profile.json",
    )  # fmt: skip
    session_file = session_file_for(db)
    hub = LiveHub(db)  # the live pages of the store's running paper sessions
    server = DashboardServer(config, host=args.host, port=args.port, session_file=session_file,
                             routes=live_routes(hub))  # fmt: skip
    stop = threading.Event()
    with _stop_on_signals(stop):
        server.start()
        try:
            runs = "busy" if n_runs is None else f"{n_runs:,} run{'s' * (n_runs != 1)}"
            print(f"dashboard of {db} ({runs}): {server.url}", flush=True)
            print(f"log in (one-time link): {server.login_url()}", flush=True)
            print(f"session file (URL and bearer token for scripts): {session_file} · stop: "
                  "Ctrl-C or SIGTERM", flush=True)  # fmt: skip
            while not stop.wait(1.0):
                pass
        finally:
            hub.close()
            server.stop()
    print("stopped", flush=True)
    return 0


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    # Ctrl-C and SIGTERM end the wait in the main thread; the server thread is stopped after
    def handler(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _new_link(args: argparse.Namespace, context: CliContext) -> int:
    import urllib.error
    import urllib.request

    from ultrathink import services
    from ultrathink.web.control_client import loopback_url, read_trusted
    from ultrathink.web.dashboard_server import session_file_for

    path = session_file_for(services.resolve_db(args.db))
    if not path.exists():
        raise ConfigError(f"no dashboard is serving this store (no {path}); start one with "
                          "`ultrathink dashboard`")  # fmt: skip
    content = read_trusted(path)
    url = loopback_url(str(content["url"]), str(path))
    headers = {"Authorization": f"Bearer {content['token']}"}
    request = urllib.request.Request(f"{url}/api/login-link", b"", headers, method="POST")
    # no proxies: an http_proxy setting must never receive the bearer token
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=15) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise UltrathinkError(f"the dashboard at {url} refused: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UltrathinkError(f"cannot reach the dashboard at {url} ({exc}); is it still "
                              f"running? ({path} may be stale)") from None  # fmt: skip
    print(f"log in (one-time link): {answer['url']}")
    return 0


COMMAND = Command(
    name="dashboard",
    order=66,
    help="browse runs, models and benchmarks in the browser (read-only, loopback)",
    description="Serve the run browser (filters, metrics, equity/drawdown/underwater curves, "
    "fills on the price, monthly returns, trade PnL, exposure, orders and fills, the audit "
    "verdict), run comparison, the model registry and the benchmark history on a loopback "
    "address, behind a one-time login link. The store is opened read-only.",
    examples=(
        "ultrathink dashboard",
        "ultrathink dashboard --db runs.db --port 0",
        "ultrathink dashboard link",
    ),
    configure=_configure,
    handler=None,
)
