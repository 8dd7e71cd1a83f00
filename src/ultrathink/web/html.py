"""Self-contained HTML pages: one stylesheet, plotly.js inlined once, written atomically.

The run report, the training report, the study report and the sweep report are built with
:func:`page` (figures as ``ultrathink.web.charts.figure_div`` fragments), so each is one file
that opens offline, with no script or stylesheet fetched from anywhere.
"""

from __future__ import annotations

import html
from pathlib import Path

from ultrathink.errors import ConfigError

__all__ = ["CSS", "page", "write_html"]

#: the reports' one stylesheet
CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:right}th{background:#f3f3f3}.warn{color:#a40;font-weight:bold}"
    ".note{color:#555;font-size:90%}section{margin-top:2em}"
    "table.kv th{text-align:left}tr.overall td{font-weight:bold;"
    "border-top:2px solid #444}"
)


def write_html(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a clear error when it cannot be written).

    Parameters
    ----------
    path : Path
        The file; its directory is created when missing.
    text : str
        The page.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ConfigError
        The directory or the file cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise ConfigError(f"cannot write the report {path}: {exc.strerror}") from None
    return path


def page(title: str, summary: str, sections: list[tuple[str, str, str]]) -> str:
    """One self-contained HTML page with plotly.js inlined once, so it opens offline.

    Parameters
    ----------
    title : str
        Page title and heading (escaped here).
    summary : str
        HTML placed under the heading (trusted: escape what it quotes).
    sections : list of (title, note, html)
        Each a heading, a one-line note (both escaped here) and a figure or table fragment.
    """
    from plotly.offline import get_plotlyjs

    body = "\n".join(
        f"<section><h2>{html.escape(t)}</h2><p class=note>{html.escape(n)}</p>{f}</section>"
        for t, n, f in sections
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        f"<style>{CSS}</style><script>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1>{summary}{body}"
        "</body></html>"
    )
