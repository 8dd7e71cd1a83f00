"""The options of the run commands (backtest, paper), declared once, and the typed request.

Each option names the configuration value it sets (``broker.commission_bps``); the same table
adds the argparse arguments — with the default *of that command*, since backtests run
without costs or limits and paper sessions with realistic ones — and turns the parsed
arguments into a ``services.RunRequest``. No option name is listed anywhere else.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Literal

from ultrathink.cli._registry import HelpParser
from ultrathink.errors import ConfigError

#: the port of ``paper --dashboard`` (and of ``ultrathink dashboard``) unless given
DEFAULT_DASHBOARD_PORT = 8200


@dataclass(frozen=True)
class ConfigOption:
    """A run option that sets one configuration value (``path``, dotted)."""

    flag: str
    path: str
    help: str
    metavar: str = "X"
    kind: type = float


CONFIG_OPTIONS: tuple[ConfigOption, ...] = (
    ConfigOption("--cash", "starting_cash", "starting cash", "AMOUNT"),
    ConfigOption("--commission-bps", "broker.commission_bps", "fee in bps of fill notional", "BPS"),
    ConfigOption("--fee-per-order", "broker.fee_per_order", "fixed fee per order", "AMOUNT"),
    ConfigOption("--slippage-bps", "broker.slippage_bps", "adverse slippage in bps", "BPS"),
    ConfigOption("--latency-ms", "broker.latency_ms", "order latency before it can fill", "MS"),
    ConfigOption(
        "--max-volume-pct", "broker.max_volume_pct", "cap fills at this %% of bar volume", "PCT"
    ),
    ConfigOption(
        "--max-drawdown-pct",
        "risk.max_drawdown_pct",
        "risk: REDUCING (and the kill switch when paper) beyond this drawdown",
        "PCT",
    ),
    ConfigOption(
        "--max-daily-loss-pct", "risk.max_daily_loss_pct", "risk: daily loss limit", "PCT"
    ),
    ConfigOption(
        "--max-position-qty", "risk.max_position_qty", "risk: largest |position| per symbol", "QTY"
    ),
    ConfigOption(
        "--max-order-notional", "risk.max_order_notional", "risk: largest order value", "AMOUNT"
    ),
)


def add_run_options(p: argparse.ArgumentParser, mode: str) -> None:
    """Add the options of ``mode`` (backtest or paper) to ``p``."""
    g = p.add_argument_group("strategy and data")
    g.add_argument(
        "--strategy",
        metavar="NAME|FILE.py[:Class]",
        help="built-in (sma_cross (default), buy_and_hold, ml) or your own file; its "
        "parameters are listed below",
    )
    g.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="strategy parameter, repeatable (e.g. --param fast=10)",
    )
    if mode == "backtest":
        g.add_argument(
            "--params-from",
            metavar="STUDY",
            help="the strategy and parameters of a study's winner (`optimize strategy`); "
            "--param still overrides one",
        )
        g.add_argument(
            "--storage", metavar="URL", help="the study's storage (default studies.db by the store)"
        )
    g.add_argument("--model", help="ml strategy: registry version (default: production/latest)")
    g.add_argument("--registry", metavar="DIR", help="model registry (default .ultrathink/models)")
    add_model_server_options(g)
    g.add_argument(
        "--data",
        metavar="SPEC",
        help="sp500 (default) | nasdaq | FILE.csv | FILE.parquet | synthetic[:k=v,...]",
    )
    g.add_argument("--start", metavar="DATE", help="first date to use (UTC, e.g. 2005-01-01)")
    g.add_argument("--end", metavar="DATE", help="last date to use (inclusive)")
    g = p.add_argument_group(f"capital, costs and limits (defaults of {mode})")
    for opt in CONFIG_OPTIONS:
        g.add_argument(
            opt.flag,
            metavar=opt.metavar,
            help=f"{opt.help} (default {{{opt.path}}})",
        )
    size = g.add_mutually_exclusive_group()
    size.add_argument(
        "--quantity",
        metavar="QTY",
        help="trade a fixed number of units",
    )
    size.add_argument(
        "--all-in",
        action="store_true",
        help="size each position at all equity, split across symbols (default)",
    )
    g.add_argument(
        "--config",
        metavar="FILE.toml",
        help="TOML file with engine/broker/risk/sizing/hardening settings",
    )
    g = p.add_argument_group("output")
    g.add_argument("--db", metavar="PATH", help="SQLite store (default .ultrathink/ultrathink.db)")
    g.add_argument("--no-store", action="store_true", help="do not persist this run")
    g.add_argument("--json", action="store_true", help="print a machine-readable summary")
    g.add_argument("--report", metavar="PATH.html", help="write an HTML report")
    if isinstance(p, HelpParser):  # the defaults of this command, when --help shows them
        p.before_help.append(lambda parser: _fill_defaults(parser, mode))
    if mode == "paper":
        g = p.add_argument_group("paper session")
        g.add_argument(
            "--speed",
            metavar="X|max",
            help="replay pace: a multiple of real time (1, 60 (default), 86400) or 'max'",
        )
        g.add_argument(
            "--resume",
            type=int,
            metavar="RUN_ID",
            help="continue a paper run after a crash or Ctrl-C: replay it, verify "
            "it against the venue, then trade on",
        )
        g.add_argument(
            "--feed",
            metavar="URL[,BACKUP]",
            help="trade the bars of a live feed on the live clock instead of a replay: "
            "tcp://127.0.0.1:PORT, and optionally a backup feed of the same bars "
            "(protocol: docs/feed.md); needs --symbols",
        )
        g.add_argument(
            "--symbols",
            metavar="SYM[,SYM]",
            help="--feed: the session's symbols (bars of others are dropped and counted)",
        )
        g.add_argument(
            "--no-control",
            action="store_true",
            help="no operator endpoint (default: `ultrathink ctl` can steer it)",
        )
        g.add_argument(
            "--dashboard",
            action="store_true",
            help="serve a live web page of the session (its own process, loopback only; "
            "prints the URL and a one-time login link)",
        )
        g.add_argument(
            "--dashboard-port",
            type=int,
            metavar="P",
            help="port of --dashboard (default 8200; 0: any free port)",
        )


def add_model_server_options(g: Any) -> None:
    """``--model-url`` and ``--model-timeout-ms`` (backtest, paper and run)."""
    g.add_argument(
        "--model-url",
        metavar="URL",
        help="ml strategy: ask this model server (`ultrathink serve`, e.g. "
        "http://127.0.0.1:8100) first; the local model of the same version is the fallback",
    )
    g.add_argument(
        "--model-timeout-ms",
        metavar="MS",
        help="deadline of one model server request (default: half of "
        "hardening.degraded.latency_enter_ms, at least 2 ms: 5 ms by default)",
    )


def model_server_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``RunRequest`` fields of ``add_model_server_options``."""
    timeout = args.model_timeout_ms
    if timeout is not None:
        timeout = _number("--model-timeout-ms", timeout)
        if timeout <= 0:
            raise ConfigError(f"--model-timeout-ms must be positive, was {args.model_timeout_ms}")
    return {"model_url": args.model_url, "model_timeout_ms": timeout}


def _dashboard_port(args: argparse.Namespace) -> int | None:
    port = getattr(args, "dashboard_port", None)
    if not getattr(args, "dashboard", False):
        if port is not None:
            raise ConfigError("--dashboard-port needs --dashboard")
        return None
    if args.no_control:
        raise ConfigError("--dashboard needs the control endpoint: drop --no-control")
    if args.no_store:
        raise ConfigError("--dashboard needs a store (its pages read the run): drop --no-store")
    if port is None:
        return DEFAULT_DASHBOARD_PORT
    if not 0 <= port <= 65535:
        raise ConfigError(f"--dashboard-port must be 0..65535, was {port}")
    return int(port)


def run_request(args: argparse.Namespace, mode: str) -> Any:
    """The ``services.RunRequest`` of parsed run options."""
    from ultrathink import services

    params: dict[str, str] = services.parse_params(args.param)
    strategy = args.strategy
    if getattr(args, "params_from", None):
        strategy, params = _from_study(args, params)
    resume = getattr(args, "resume", None)
    return services.RunRequest(
        mode=mode,  # type: ignore[arg-type]
        strategy=strategy,
        params=params,
        model=args.model,
        registry=args.registry,
        data=args.data,
        start=args.start,
        end=args.end,
        config_path=args.config,
        overrides=overrides(args),
        db=args.db,
        store=not args.no_store,
        report=args.report,
        resume=resume,
        control=mode == "paper" and not args.no_control,
        dashboard_port=_dashboard_port(args),
        speed=_speed(args.speed) if getattr(args, "speed", None) is not None else None,
        feed=getattr(args, "feed", None),
        symbols=getattr(args, "symbols", None),
        **model_server_fields(args),
    )


def _from_study(args: argparse.Namespace, params: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The winner of ``--params-from STUDY``, under any explicit ``--param``."""
    import sys

    from ultrathink import services
    from ultrathink.errors import ConfigError
    from ultrathink.optimization.study import default_storage, redact, study_winner

    url = args.storage or default_storage(services.resolve_db(args.db))
    winner = study_winner(url, args.params_from)
    if args.strategy and args.strategy != winner["strategy"]:
        raise ConfigError(
            f"--strategy {args.strategy} differs from study {args.params_from!r}'s strategy "
            f"{winner['strategy']!r}; drop --strategy"
        )
    chosen = {**{k: str(v) for k, v in winner["params"].items()}, **params}
    shown = ", ".join(f"{k}={v}" for k, v in chosen.items())
    print(
        f"parameters from study {args.params_from} ({redact(url)}), trial {winner['trial']}: "
        f"{shown}; the study scored them with paper's costs, this run uses its own",
        file=sys.stderr,
    )
    return str(winner["strategy"]), chosen


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Configuration values set on the command line, as nested dicts."""
    out: dict[str, Any] = {}
    for opt in CONFIG_OPTIONS:
        value = getattr(args, opt.flag.lstrip("-").replace("-", "_"))
        if value is not None:
            _put(out, opt.path, _number(opt.flag, value))
    if args.quantity is not None:
        out["sizing"] = {"mode": "fixed", "quantity": _number("--quantity", args.quantity)}
    elif args.all_in:
        out["sizing"] = {"mode": "all_in"}
    return out


def mode_defaults(mode: str) -> dict[str, Any]:
    """The configuration values a command starts from (before files and options)."""
    from ultrathink.config import realistic_defaults
    from ultrathink.engine.config import EngineConfig

    values = EngineConfig().model_dump()
    if mode != "backtest":
        for key, value in realistic_defaults().items():
            if isinstance(value, dict) and isinstance(values.get(key), dict):
                values[key] = {**values[key], **value}
            else:
                values[key] = value
    return values


def strategies_help() -> str:
    """Built-in strategies and their parameters, for ``--help``."""
    from ultrathink.decision.builtin import BUILTIN_STRATEGIES

    lines = ["strategies and their parameters (--param KEY=VALUE):"]
    classes = [*BUILTIN_STRATEGIES.values(), _ml_strategy()]
    for cls in classes:
        if cls is None:
            continue
        fields = cls.Params.model_fields
        params = ", ".join(f"{n}={f.default!r}" for n, f in fields.items()) or "(none)"
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        lines.append(f"  {cls.name}: {doc}")
        lines.append(f"      {params}")
    lines.append("  FILE.py[:Class]: your own Strategy subclass (see docs/python-api.md)")
    return "\n".join(lines)


def _ml_strategy() -> Any:
    try:  # the ml strategy brings numba: only for --help
        from ultrathink.decision.ml import MLStrategy
    except ImportError:  # pragma: no cover - a broken install still shows the rest
        return None
    return MLStrategy


def _fill_defaults(parser: argparse.ArgumentParser, mode: str) -> None:
    defaults = mode_defaults(mode)
    for opt in CONFIG_OPTIONS:
        for action in parser._actions:
            if opt.flag in action.option_strings and action.help:
                action.help = action.help.replace(f"{{{opt.path}}}", _shown(defaults, opt.path))


def _put(out: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def _shown(values: dict[str, Any], path: str) -> str:
    node: Any = values
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return "off" if node is None else f"{node:g}" if isinstance(node, float) else str(node)


def _number(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{flag} must be a number, was {text!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{flag} must be a finite number, was {text!r}")
    return value


def _speed(text: str) -> float | Literal["max"]:
    if text.strip().lower() == "max":
        return "max"
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"--speed must be a positive number or 'max', was {text!r}")
    return value
