"""The report of a stress run: one JSON document and one self-contained HTML page.

``write`` puts ``<name>.json`` and ``<name>.html`` in the report directory (``<name>`` is the
scenario, or ``suite``), replacing the previous ones. The JSON holds everything measured:
the verdict, every threshold with its measured value, every case's figures and invariants,
the metrics, the machine. The page shows the same with the scenarios' plots, plotly.js
inlined once (``ultrathink.web.html.page``), so it opens offline.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ultrathink.stress.runner import RunOptions, ScenarioReport, machine
from ultrathink.stress.thresholds import format_number

#: Version of the JSON layout.
REPORT_VERSION = 1


def document(name: str, reports: Sequence[ScenarioReport], options: RunOptions) -> dict[str, Any]:
    """The JSON document of a run of ``reports`` (``name``: the scenario, or ``suite``)."""
    return {
        "report": "ultrathink-stress",
        "version": REPORT_VERSION,
        "name": name,
        "ok": all(r.ok for r in reports),
        "quick": options.quick,
        "seed": options.seed,
        "started_utc": reports[0].started_utc if reports else None,
        "elapsed_s": round(sum(r.elapsed_s for r in reports), 3),
        "breached": [v.line() for r in reports for v in r.breached],
        # as the first scenario started (its code is the code measured), else as written
        "machine": reports[0].machine if reports and reports[0].machine else machine(),
        "scenarios": [_scenario(r) for r in reports],
    }


def write(
    report_dir: Path, name: str, reports: Sequence[ScenarioReport], options: RunOptions
) -> tuple[dict[str, Any], Path, Path]:
    """Write ``<name>.json`` and ``<name>.html``; return the document and both paths."""
    from ultrathink.web.html import write_html

    doc = document(name, reports, options)
    json_path = report_dir / f"{name}.json"
    text = json.dumps(doc, indent=1, default=_plain, allow_nan=False)
    write_html(json_path, text + "\n")  # the same atomic write, whatever the content
    html_path = write_html(report_dir / f"{name}.html", render(doc, reports))
    return doc, json_path, html_path


def render(doc: dict[str, Any], reports: Sequence[ScenarioReport]) -> str:
    """The HTML page of ``doc``."""
    from ultrathink.web.html import page

    verdict = "every threshold held" if doc["ok"] else f"{len(doc['breached'])} breached"
    m = doc["machine"]
    summary = (
        f"<p><b>{html.escape(verdict)}</b>; {len(reports)} scenario(s) in "
        f"{doc['elapsed_s']:.1f} s{' (--quick)' if doc['quick'] else ''}, started "
        f"{html.escape(str(doc['started_utc']))} UTC on {m['cpus']} CPUs (load "
        f"{m['load_avg_1m']}), Python {html.escape(m['python'])}, code "
        f"{html.escape(m['code'])}.</p>"
        + "".join(f"<p class=warn>{html.escape(line)}</p>" for line in doc["breached"])
    )
    sections: list[tuple[str, str, str]] = []
    for i, (report, data) in enumerate(zip(reports, doc["scenarios"], strict=True)):
        sections += _sections(i, report, data)
    return page(f"ultrathink stress: {doc['name']}", summary, sections)


def _scenario(r: ScenarioReport) -> dict[str, Any]:
    c, o = r.config, r.outcome
    checked = sum(len(case.invariants) for case in o.cases)
    return {
        "name": c.name,
        "kind": c.kind,
        "description": c.description,
        "source": str(c.source),
        "seed": c.seed,
        "quick": c.quick,
        "in_suite": c.in_suite,
        "note": c.note,
        "duration_s": c.duration_s,
        "shape": c.shape.model_dump(),
        "ok": r.ok,
        "started_utc": r.started_utc,
        "elapsed_s": round(r.elapsed_s, 3),
        "load_avg_1m": {"start": r.machine.get("load_avg_1m"), "end": r.load_avg_1m_end},
        "work_dir": str(r.work_dir),
        "metrics": {k: _num(v) for k, v in r.metrics.items()},
        "not_measured": o.not_measured,
        "thresholds": [
            {
                "threshold": v.threshold.text,
                "metric": v.threshold.metric,
                "op": v.threshold.op,
                "value": v.threshold.value,
                "measured": _num(v.measured),
                "status": v.status,
                "note": v.note,
            }
            for v in r.verdicts
        ],
        "invariants": {"checked": checked, "failed": o.invariant_failures},
        "cases": [case.to_dict() for case in o.cases],
        "series": o.series,
    }


def _sections(i: int, report: ScenarioReport, data: dict[str, Any]) -> list[tuple[str, str, str]]:
    from ultrathink.web.charts import figure_div

    name = data["name"]
    head = f"{name}: {data['description']}"
    load = data["load_avg_1m"]
    note = (
        f"seed {data['seed']}, {data['elapsed_s']:.1f} s, load {load['start']} → {load['end']}"
        + (f"; {data['note']}" if data["note"] else "")
    )
    rows = "".join(
        f"<tr><td style=text-align:left>{html.escape(t['threshold'])}</td>"
        f"<td>{_cell(t['measured'])}</td><td class={'warn' if t['status'] == 'breached' else ''}>"
        f"{html.escape(t['status'])}</td></tr>"
        for t in data["thresholds"]
    )
    thresholds = f"<table><tr><th>threshold</th><th>measured</th><th>status</th></tr>{rows}</table>"
    out = [(head, note, thresholds + _metrics_table(data))]
    out.append((f"{name}: cases", "what each case measured", _cases_table(data["cases"])))
    out.append((f"{name}: invariants", _invariants_note(data), _invariants_table(data["cases"])))
    for j, (title, fig_note, fig) in enumerate(report.outcome.figures):
        out.append((title, fig_note, figure_div(fig, f"s{i}-f{j}")))
    return out


def _metrics_table(data: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td><td style=text-align:left>"
        f"{html.escape(data['not_measured'].get(k, ''))}</td></tr>"
        for k, v in data["metrics"].items()
    )
    return f"<table class=kv><tr><th>metric</th><th>value</th><th>note</th></tr>{rows}</table>"


def _cases_table(cases: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for c in cases for k in c["figures"]))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in ["case", "ok", *columns])
    body = "".join(
        "<tr>"
        + f"<td style=text-align:left>{html.escape(c['name'])}</td>"
        + f"<td>{'skipped' if c['skipped'] else ('yes' if c['ok'] else 'NO')}</td>"
        + "".join(f"<td>{_cell(c['figures'].get(k))}</td>" for k in columns)
        + "</tr>"
        for c in cases
    )
    skipped = "".join(
        f"<p class=note>{html.escape(c['name'])} skipped: {html.escape(c['skipped'])}</p>"
        for c in cases
        if c["skipped"]
    )
    return f"<table><tr>{head}</tr>{body}</table>{skipped}"


def _invariants_table(cases: list[dict[str, Any]]) -> str:
    # one row per case, one column per invariant; a failure shows its detail, a pass its
    # detail on hover
    names = list(dict.fromkeys(inv["name"] for c in cases for inv in c["invariants"]))
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["case", *names])
    rows = []
    for c in cases:
        cells = []
        for name in names:
            found = [inv for inv in c["invariants"] if inv["name"] == name]
            if not found:
                cells.append("<td>—</td>")
                continue
            bad = [inv for inv in found if not inv["ok"]]
            detail = "; ".join(inv["detail"] for inv in (bad or found))
            text = f"FAILS: {html.escape(detail)}" if bad else "holds"
            cls = " class=warn" if bad else ""
            cells.append(f"<td{cls} title='{html.escape(detail, quote=True)}'>{text}</td>")
        rows.append(
            f"<tr><td style=text-align:left>{html.escape(c['name'])}</td>{''.join(cells)}</tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _invariants_note(data: dict[str, Any]) -> str:
    inv = data["invariants"]
    return (
        f"{inv['checked'] - inv['failed']} of {inv['checked']} invariant checks hold "
        "(hover a cell for its detail)"
    )


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return html.escape(format_number(round(value, 4)))
    return html.escape(str(value))


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _plain(value: Any) -> Any:
    # numpy scalars and paths in figures; anything else is a bug worth a clear message
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable in a stress report: {type(value).__name__}")
