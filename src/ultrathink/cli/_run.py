"""What backtest, paper and the main job share: run a request, print the result."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from ultrathink.cli._registry import CliContext


def execute(request: Any, context: CliContext, *, as_json: bool) -> int:
    """Run ``request`` (a ``services.RunRequest``) and print its summary."""
    from ultrathink import services

    result = services.execute_run(
        request,
        progress=None if as_json else _progress_factory(),
        profiler=context.profiler,
        on_ready=_announce if request.mode == "paper" else None,
    )
    report = None
    if request.report:
        from ultrathink.engine.report import write_report

        report = write_report(result, request.report)
    if as_json:
        out = result.summary()
        out["report"] = str(report) if report else None
        json.dump(out, sys.stdout, indent=1)  # streamed: no second copy of a large summary
        print()
    else:
        from ultrathink.cli._output import print_summary

        print_summary(result, report)
    return 0


def _progress_factory() -> Callable[[int], Callable[[int], None] | None]:
    from ultrathink.cli._output import progress_callback

    return progress_callback


def _announce(session: Any) -> None:
    # stderr: where the session is, how long a paced replay takes, how to stop it
    spec = session.spec
    data, speed = spec.data, spec.config.speed
    where = f"run {session.run_id}" if session.run_id is not None else "not stored"
    if getattr(data, "live", False):
        history = f", {len(data):,} journaled bars to replay first" if len(data) else ""
        print(
            f"paper: {where}, live feed {data.urls} ({', '.join(data.symbols)}){history}; "
            "Ctrl-C stops it between two bars and keeps everything",
            file=sys.stderr, flush=True,
        )  # fmt: skip
        return
    print(f"paper: {where}, {len(data):,} bars of {data.name}", file=sys.stderr, flush=True)
    if speed is None or len(data) < 2:
        return
    seconds = (data.end_ns - data.start_ns) / 1e9 / speed
    if seconds >= 60:
        span = f"{seconds / 3600:,.1f} h" if seconds >= 5400 else f"{seconds / 60:,.0f} min"
        print(
            f"paper: replaying at {speed:g}x real time takes about {span}; "
            "Ctrl-C stops at the next bar and keeps everything (--speed max replays as fast "
            "as possible; `paper --resume` continues later)",
            file=sys.stderr,
            flush=True,
        )
