"""docs/python-api.md runs as written: its code blocks, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_has_examples() -> None:
    assert len(blocks()) >= 5


def test_every_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # the examples write demo.csv
    namespace: dict[str, object] = {"__name__": "docs_example"}
    for i, code in enumerate(blocks()):
        exec(compile(code, f"{DOC.name}[{i}]", "exec"), namespace)
    out = capsys.readouterr().out
    assert "5031 ('SP500',)" in out and "4000 ('AAA', 'BBB')" in out
