"""``ultrathink data feed``: replay a dataset as a live feed on loopback (``feed/replay.py``).

The parser's options and the command's printing; the publishing is ``feed.replay``. Stdout
is one ready line when the publisher listens, then one summary line (``--json``: one JSON
object each); Ctrl-C or SIGTERM stops it with the summary and exit code 0, as ``serve``.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ultrathink.cli._registry import sub_parser
from ultrathink.errors import ConfigError, UltrathinkError

if TYPE_CHECKING:
    from ultrathink.data.frame import MarketData
    from ultrathink.feed.replay import Pace

#: bars per second when neither --speed nor --rate is given
DEFAULT_RATE = 10.0
#: a paper session's feed watchdog reduces trading after this long without a bar (FeedBars)
_SESSION_STALE_S = 10.0
#: longest wait at the end for the clients' buffers to empty
_DRAIN_S = 30.0


def add_parser(dsub: Any) -> None:
    """Add ``data feed`` to the ``data`` sub-commands."""
    f = sub_parser(
        dsub,
        "feed",
        "replay a dataset as a live feed on loopback (for `paper --feed`)",
        (
            "ultrathink data feed --port 9100",
            "ultrathink paper --feed tcp://127.0.0.1:9100 --symbols SP500   # another terminal",
            'ultrathink data feed --data "synthetic:n_bars=2000,seed=7,symbols=AAA+BBB" '
            "--port 9100 --speed 600",
        ),
        description="Serve the bars of a dataset on tcp://HOST:PORT with the feed protocol "
        "(docs/feed.md): in timestamp order, every bar of a timestamp together, each with its "
        "own timestamp. Waits for the first client, publishes, waits for the clients to "
        "receive what was sent, prints a summary and exits; Ctrl-C stops it early.",
    )
    f.add_argument(
        "--data", metavar="SPEC", help="sp500 (default) | nasdaq | FILE.csv | FILE.parquet | "
        "synthetic[:k=v,...]",
    )  # fmt: skip
    f.add_argument(
        "--host", default="127.0.0.1",
        help="loopback address to bind (default 127.0.0.1; the protocol has no authentication)",
    )  # fmt: skip
    f.add_argument("--port", type=int, default=9100, help="TCP port (default 9100; 0: any free)")
    pace = f.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", metavar="X|max", help="X times real time, from the bars' own spacing "
        "(as `paper --speed`), or 'max': as fast as possible",
    )  # fmt: skip
    pace.add_argument(
        "--rate", type=float, metavar="BARS_PER_S",
        help=f"bars per second (default {DEFAULT_RATE:g})",
    )  # fmt: skip
    f.add_argument(
        "--from-bar", type=int, default=0, metavar="N",
        help="skip the first N bars (rows in timestamp, symbol order)",
    )  # fmt: skip
    f.add_argument("--limit", type=int, metavar="N", help="send at most N bars")
    f.add_argument(
        "--wait-client-s", type=float, default=300.0, metavar="S",
        help="wait this long for the first client (default 300; 0: do not wait)",
    )  # fmt: skip
    f.add_argument("--json", action="store_true", help="JSON lines: ready, then the summary")


def run(args: argparse.Namespace) -> int:
    """Run ``data feed``: load, listen, wait for a client, publish, summarise."""
    from ultrathink import services
    from ultrathink.feed import FeedPublisher
    from ultrathink.feed.replay import replay, wait_drained, wait_for_client

    pace = _check(args)
    data = _rows(services.load(args.data or "sp500"), args.from_bar, args.limit)
    symbols = sorted({data.symbols[i] for i in set(data.symbol_idx.tolist())})
    with FeedPublisher(args.host, args.port) as publisher, _stop_on_signals() as stop:
        url = publisher.url
        _ready(args, url, data, symbols, pace)
        if not wait_for_client(publisher, args.wait_client_s, stop) and not stop():
            raise UltrathinkError(
                f"no client connected to {url} within {args.wait_client_s:g} s, nothing was "
                f"sent; start `ultrathink paper --feed {url} --symbols {','.join(symbols)}` "
                "sooner or raise --wait-client-s"
            )
        result = replay(publisher, data.iter_bars(), pace, should_stop=stop)
        drained = wait_drained(publisher, _DRAIN_S, stop)
        stats = publisher.stats()
    summary: dict[str, Any] = {
        "n_bars": result.n_bars, "n_timestamps": result.n_timestamps,
        "elapsed_s": round(result.elapsed_s, 3), "bars_per_s": round(result.bars_per_s, 1),
        "pace": pace.describe(), "interrupted": stop(), "drained": drained,
        "publisher": {
            "accepted": stats.accepted, "clients": stats.clients, "messages": stats.messages,
            "heartbeats": stats.heartbeats, "bytes_sent": stats.bytes_sent,
            "disconnects": stats.disconnects,
        },
    }  # fmt: skip
    print(json.dumps(summary) if args.json else _summary_text(summary), flush=True)
    return 0


def _check(args: argparse.Namespace) -> Pace:
    from ultrathink.feed.address import is_loopback
    from ultrathink.feed.replay import Pace

    if not is_loopback(args.host):
        raise ConfigError(
            f"--host {args.host!r} is not a loopback address: the feed protocol has no "
            "authentication or encryption; use 127.0.0.1, ::1 or localhost (tunnel it, e.g. "
            "ssh -L, to reach it from elsewhere)"
        )
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, was {args.port}")
    if not (math.isfinite(args.wait_client_s) and args.wait_client_s >= 0):
        raise ConfigError(f"--wait-client-s must be >= 0, was {args.wait_client_s}")
    if args.from_bar < 0:
        raise ConfigError(f"--from-bar must be >= 0, was {args.from_bar}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, was {args.limit}")
    if args.rate is not None:
        return Pace(rate_bars_per_s=args.rate)
    if args.speed is None:
        return Pace(rate_bars_per_s=DEFAULT_RATE)
    if args.speed.strip().lower() == "max":
        return Pace()
    try:
        return Pace(speed=float(args.speed))
    except ValueError:
        raise ConfigError(
            f"--speed must be a positive number or 'max', was {args.speed!r}"
        ) from None


def _rows(data: MarketData, start: int, limit: int | None) -> MarketData:
    # rows [start, start + limit) of the (timestamp, symbol)-sorted table, without copying
    import dataclasses

    if start >= len(data):
        raise ConfigError(f"--from-bar {start} is past the end of {data.name} ({len(data):,} bars)")
    stop = len(data) if limit is None else min(len(data), start + limit)
    if start == 0 and stop == len(data):
        return data
    columns = ("ts_ns", "symbol_idx", "open", "high", "low", "close", "volume")
    return dataclasses.replace(data, **{c: getattr(data, c)[start:stop] for c in columns})


def _ready(
    args: argparse.Namespace, url: str, data: MarketData, symbols: list[str], pace: Pace
) -> None:
    # the readiness line: the publisher listens from here
    if args.json:
        print(json.dumps({"ready": url, "n_bars": len(data), "symbols": symbols,
                          "data": data.name, "pace": pace.describe()}), flush=True)  # fmt: skip
    else:
        shown = ",".join(symbols[:10]) + (
            f",… ({len(symbols)} symbols)" if len(symbols) > 10 else ""
        )
        print(f"feed: {url} ({len(data):,} bars of {shown})", flush=True)
        wait = f"up to {args.wait_client_s:g} s " if args.wait_client_s else ""
        print(f"waiting {wait}for a client, e.g. `ultrathink paper --feed {url} --symbols "
              f"{','.join(symbols)}`; stop: Ctrl-C", file=sys.stderr, flush=True)  # fmt: skip
    gap_s = _gap_s(data, len(symbols), pace)
    if gap_s > _SESSION_STALE_S / 2:
        print(
            f"note: at {pace.describe()} a timestamp comes about every {gap_s:,.0f} s; a "
            f"`paper --feed` session reduces trading after {_SESSION_STALE_S:g} s without a "
            "bar: raise --speed or --rate",
            file=sys.stderr, flush=True,
        )  # fmt: skip


def _gap_s(data: MarketData, n_symbols: int, pace: Pace) -> float:
    # the typical wall time between two timestamps at this pace
    if pace.speed is not None:
        return data.median_interval_ns() / 1e9 / pace.speed
    if pace.rate_bars_per_s is not None:
        return n_symbols / pace.rate_bars_per_s
    return 0.0


def _summary_text(s: dict[str, Any]) -> str:
    pub = s["publisher"]
    lost = ", ".join(f"{k} {v}" for k, v in pub["disconnects"].items()) or "none"
    head = "stopped: sent" if s["interrupted"] else "sent"
    text = (
        f"{head} {s['n_bars']:,} bars ({s['n_timestamps']:,} timestamps) in "
        f"{s['elapsed_s']:.2f} s: {s['bars_per_s']:,.0f} bars/s (pace {s['pace']}); "
        f"{pub['accepted']} client(s) connected in all, {pub['clients']} at the end, "
        f"{pub['heartbeats']} heartbeat(s), {pub['bytes_sent']:,} bytes sent; "
        f"disconnects: {lost}"
    )
    if not s["drained"] and not s["interrupted"]:
        text += f"; a client had not received everything after {_DRAIN_S:g} s"
    return text


class _StopFlag:
    # set by a signal handler: a plain attribute, so the handler takes no lock
    requested = False

    def __call__(self) -> bool:
        return self.requested


@contextmanager
def _stop_on_signals() -> Iterator[_StopFlag]:
    # Ctrl-C and SIGTERM end the wait or the replay at its next check, not with a traceback
    flag = _StopFlag()

    def handler(signum: int, frame: Any) -> None:
        flag.requested = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
