"""docs/feed.md runs as written: its Python examples, and its tables name the real reasons."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ultrathink.feed import MALFORMED_REASONS, SHED_REASONS, SWITCH_REASONS, FeedConfig

DOC = Path(__file__).resolve().parents[3] / "docs" / "feed.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("index", range(2))
def test_each_example_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = _blocks()[index]
    exec(compile(code, f"{DOC.name}[{index}]", "exec"), {"__name__": "docs_example"})
    out = capsys.readouterr().out
    assert out.strip() in {"primary 1", "[185.25, 186.25, 187.25]"}


def test_the_page_names_every_reason_and_setting() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in (*MALFORMED_REASONS, *SHED_REASONS, *SWITCH_REASONS, *FeedConfig.model_fields):
        assert f"`{name}`" in text, name
