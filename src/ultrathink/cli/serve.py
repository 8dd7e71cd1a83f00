"""``ultrathink serve``: the model server, and the commands that steer a running one.

``ultrathink serve`` serves registry versions over HTTP (see docs/serving.md). The actions
talk to a running server: ``ab status`` prints per-variant figures and the significance test;
``promote``, ``rollback``, ``reload`` and ``routing`` call the admin routes with the API key.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import stat
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ultrathink.cli._common import DB_HELP
from ultrathink.cli._registry import CliContext, Command, sub_parser
from ultrathink.errors import ConfigError, UltrathinkError

_DEFAULT_PORT = 8100
_URL_HELP = f"the server (default http://127.0.0.1:{_DEFAULT_PORT})"


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=_DEFAULT_PORT, help="port (0: any free one)")
    p.add_argument("--model", default=None, help="VERSION or production (default: production, "
                   "else the latest)")  # fmt: skip
    p.add_argument("--ab", default=None, help="weighted A/B split, e.g. v0001=90,v0002=10")
    p.add_argument(
        "--shadow", default=None, help="VERSION scored off the request path, never answers"
    )
    p.add_argument("--canary", default=None, help="VERSION:PCT, rolled back on a breach")
    p.add_argument("--canary-max-error-rate", type=float, default=0.02)
    p.add_argument("--canary-max-p99-ms", type=float, default=50.0)
    p.add_argument("--cache-size", type=int, default=100_000, help="cached rows (0: no cache)")
    p.add_argument("--cache-mb", type=float, default=64.0, help="cache memory bound in MiB")
    p.add_argument("--cache-ttl-s", type=float, default=300.0, help="seconds an answer is kept")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--api-key-file", default=None, help="file holding the admin key (mode 0600); "
                   "default: a new key in the run directory")  # fmt: skip
    p.add_argument("--max-batch", type=int, default=1000, help="rows per batch request")
    p.add_argument("--rate-limit", type=float, default=20_000.0, help="requests/s per client")
    p.add_argument("--registry", default=None, help="model registry (default .ultrathink/models)")
    p.add_argument("--db", default=None, help=DB_HELP + "; the serving files go beside it")
    p.set_defaults(func=_serve)
    sub = p.add_subparsers(dest="serve_cmd", metavar="ACTION")
    ab = sub_parser(sub, "ab", "A/B figures of a running server", ("ultrathink serve ab status",))
    ab_sub = ab.add_subparsers(dest="ab_cmd", required=True, metavar="ACTION")
    status = sub_parser(
        ab_sub, "status", "per-variant results and the significance test",
        ("ultrathink serve ab status --url http://127.0.0.1:8100",),
    )  # fmt: skip
    _client_options(status, admin=False)
    status.set_defaults(func=_ab_status)
    promote = sub_parser(sub, "promote", "promote a served variant (the A/B test must pass)",
                         ("ultrathink serve promote v0002",))  # fmt: skip
    promote.add_argument("version")
    promote.add_argument("--force", action="store_true", help="promote without a significant win")
    _client_options(promote)
    promote.set_defaults(func=_admin, route="promote")
    rollback = sub_parser(
        sub, "rollback", "roll the registry back and serve it", ("ultrathink serve rollback",)
    )
    _client_options(rollback)
    rollback.set_defaults(func=_admin, route="rollback")
    reload = sub_parser(
        sub, "reload", "reload served versions from the registry",
        ("ultrathink serve reload", "ultrathink serve reload v0002"),
    )  # fmt: skip
    reload.add_argument("version", nargs="?", default=None)
    _client_options(reload)
    reload.set_defaults(func=_admin, route="reload")
    examples = (
        "ultrathink serve routing --ab v0001=90,v0002=10",
        "ultrathink serve routing --canary v0002:5",
    )
    routing = sub_parser(sub, "routing", "change the A/B weights, shadow and canary", examples)
    routing.add_argument("--primary", default=None)
    routing.add_argument("--ab", default=None)
    routing.add_argument("--shadow", default=None)
    routing.add_argument("--canary", default=None)
    _client_options(routing)
    routing.set_defaults(func=_admin, route="routing")


def _client_options(p: argparse.ArgumentParser, *, admin: bool = True) -> None:
    p.add_argument("--url", default=f"http://127.0.0.1:{_DEFAULT_PORT}", help=_URL_HELP)
    p.add_argument("--json", action="store_true", help="JSON output")
    if admin:
        p.add_argument("--api-key-file", default=None, help="the server's key file (default: the "
                       "one `serve` wrote for that port)")  # fmt: skip
        p.add_argument("--db", default=None, help=DB_HELP)


def _serving_root(db: str | None) -> Path:
    from ultrathink import services

    return services.resolve_db(db).parent / "serving"


# --- the server -------------------------------------------------------------------------------
def _serve(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink import services
    from ultrathink.serving.app import ServeOptions
    from ultrathink.serving.models import resolve_version
    from ultrathink.serving.routing import Routing, parse_ab, parse_canary
    from ultrathink.serving.server import bind, serve

    _check_numbers(args)
    registry = services.registry_root(args.registry, args.db)
    model = args.model or _default_model(registry)
    ab = parse_ab(args.ab) if args.ab else None
    if ab is not None:
        ab = {resolve_version(registry, v): w for v, w in ab.items()}
    canary = parse_canary(args.canary) if args.canary else None
    primary = resolve_version(registry, model)
    routing = Routing.build(
        primary, ab, resolve_version(registry, args.shadow) if args.shadow else None,
        (resolve_version(registry, canary[0]), canary[1]) if canary else None,
        max_error_rate=args.canary_max_error_rate, max_p99_ms=args.canary_max_p99_ms,
    )  # fmt: skip
    given_key = _read_key_file(args.api_key_file) if args.api_key_file else None
    sock = bind(args.host, args.port)
    port = sock.getsockname()[1]
    root = _serving_root(args.db)
    run_dir = root / f"run-{port}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a previous server's routing must not come back
    run_dir.mkdir(parents=True, exist_ok=True)
    key_file, api_key = given_key or _new_key(run_dir)
    options = ServeOptions(
        registry=registry, model=model, routing=routing.to_dict(), run_dir=run_dir,
        serving_db=root / "serving.db", api_key=api_key, cache_rows=args.cache_size,
        cache_bytes=int(args.cache_mb * 1024 * 1024), cache_ttl_s=args.cache_ttl_s or None,
        max_batch=args.max_batch, rate_per_s=args.rate_limit,
        rate_burst=max(1, int(args.rate_limit // 10)), workers=args.workers, host=args.host,
        port=port,
    )  # fmt: skip
    url = f"http://{args.host}:{port}"
    shares = ", ".join(f"{v} {w:g} %" for v, w in routing.effective_weights().items())
    extra = f"; shadow {routing.shadow}" if routing.shadow else ""
    print(f"listening on {url}; loading {', '.join(routing.versions())}…", flush=True)
    t0 = time.perf_counter()

    def announce() -> None:
        print(
            f"ready in {time.perf_counter() - t0:.1f} s: {shares}{extra} · cache "
            f"{args.cache_size:,} rows, TTL {args.cache_ttl_s:g} s · {args.workers} worker(s)\n"
            f"admin key: {key_file} · API: {url}/openapi.json · stop: Ctrl-C or SIGTERM",
            flush=True,
        )

    code = serve(options, sock, announce)
    print("stopped (drained)" if code == 0 else "stopped", flush=True)
    return code


def _check_numbers(args: argparse.Namespace) -> None:
    checks = (
        ("--port", args.port, 0 <= args.port <= 65535, "0..65535"),
        ("--workers", args.workers, 1 <= args.workers <= 64, "1..64"),
        ("--cache-size", args.cache_size, args.cache_size >= 0, ">= 0"),
        ("--cache-mb", args.cache_mb, args.cache_mb > 0, "> 0"),
        ("--cache-ttl-s", args.cache_ttl_s, args.cache_ttl_s >= 0, ">= 0 (0: no expiry)"),
        ("--max-batch", args.max_batch, 1 <= args.max_batch <= 100_000, "1..100000"),
        ("--rate-limit", args.rate_limit, args.rate_limit > 0, "> 0"),
    )
    for flag, value, ok, rule in checks:
        if not ok or value != value:
            raise ConfigError(f"{flag} must be {rule}, was {value}")


def _default_model(registry: Path) -> str:
    from ultrathink.models.registry import ModelRegistry

    reg = ModelRegistry(registry)
    if reg.production() is not None:
        return "production"
    latest = reg.latest()
    if latest is None:
        raise ConfigError(
            f"the registry {registry} has no model to serve; train one with `ultrathink train`"
        )
    return str(latest)


def _new_key(run_dir: Path) -> tuple[Path, str]:
    # no --api-key-file: a new key, readable by this user only, where the admin commands look
    key_file = run_dir / "api-key"
    key = secrets.token_urlsafe(32)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key_file, key


def _read_key_file(path: str) -> tuple[Path, str]:
    # checked before anything is bound or written, so a refused start leaves nothing behind
    key_file = Path(path)
    try:
        st = key_file.stat()
        key = key_file.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--api-key-file {path}: cannot read it ({exc})") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"--api-key-file {path}: others can read it; run `chmod 600 {path}`")
    if len(key) < 16 or not key.isprintable():
        raise ConfigError(
            f"--api-key-file {path}: the key must be at least 16 printable characters"
        )
    return key_file, key


# --- clients of a running server --------------------------------------------------------------
def _call(url: str, method: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if key:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {"error": str(exc)}
    except (urllib.error.URLError, OSError) as exc:
        raise UltrathinkError(f"cannot reach the server at {url} ({exc}); is it running?") from None


def _admin(args: argparse.Namespace, context: CliContext) -> int:
    from urllib.parse import urlsplit

    port = urlsplit(args.url).port or _DEFAULT_PORT
    key_path = args.api_key_file or str(_serving_root(args.db) / f"run-{port}" / "api-key")
    try:
        key = Path(key_path).read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the API key {key_path} ({exc}); pass --api-key-file"
        ) from None
    body: dict[str, Any] = {}
    if args.route == "promote":
        body = {"version": args.version, "force": args.force}
    elif args.route == "reload" and args.version:
        body = {"version": args.version}
    elif args.route == "routing":
        body = _routing_body(args)
    status, answer = _call(f"{args.url.rstrip('/')}/v1/admin/{args.route}", "POST", body, key)
    if args.json:
        print(json.dumps(answer, indent=2))
    if status != 200:
        if not args.json:
            print(f"error: {answer.get('error', answer)}", file=sys.stderr)
        return 2
    if not args.json:
        loaded = ", ".join(answer["loaded"]) or "nothing new"
        print(
            f"{args.route}: generation {answer['generation']}, serving "
            f"{_routing_text(answer['routing'])}; loaded {loaded} in {answer['load_s']} s on "
            f"{answer['workers_applied']} worker(s)"
        )
    return 0


def _routing_text(routing: dict[str, Any]) -> str:
    from ultrathink.serving.routing import Routing

    parsed = Routing.from_dict(routing)
    shares = ", ".join(f"{v} {w:g} %" for v, w in parsed.effective_weights().items())
    if parsed.canary is not None:
        shares += f" (canary {parsed.canary.version})"
    return shares + (f"; shadow {parsed.shadow}" if parsed.shadow else "")


def _routing_body(args: argparse.Namespace) -> dict[str, Any]:
    from ultrathink.serving.routing import parse_ab, parse_canary

    body: dict[str, Any] = {"primary": args.primary, "shadow": args.shadow}
    body["ab"] = parse_ab(args.ab) if args.ab else None
    if args.canary:
        version, pct = parse_canary(args.canary)
        body["canary"] = {"version": version, "pct": pct}
    return body


def _ab_status(args: argparse.Namespace, context: CliContext) -> int:
    status, report = _call(f"{args.url.rstrip('/')}/v1/ab", "GET")
    if status != 200:
        raise UltrathinkError(f"the server answered {status}: {report.get('error', report)}")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from ultrathink.serving.report import print_ab

    print_ab(report)
    return 0


COMMAND = Command(
    name="serve",
    order=75,
    help="serve models over HTTP with a cache and A/B, shadow and canary routing",
    description="Serve registry models over HTTP on loopback: predict, batch, feedback, a "
    "prediction cache, sticky A/B, shadow and canary routing, hot reload, Prometheus metrics. "
    "The actions steer a running server.",
    examples=(
        "ultrathink serve",
        "ultrathink serve --ab v0001=90,v0002=10 --shadow v0003",
        "ultrathink serve ab status",
        "ultrathink serve promote v0002",
    ),
    configure=_configure,
    handler=None,
)
