"""Fixtures of the perf tests: the ``bench`` command run in-process, isolated from the checkout."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ultrathink.cli import main


@dataclass(frozen=True)
class BenchRun:
    """Exit code and captured output of one ``ultrathink bench`` invocation."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


BenchCli = Callable[..., BenchRun]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # relative paths (plots, worktrees' temp files) land in tmp; every test that saves
    # results passes --results or --no-save
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    yield


@pytest.fixture
def bench_cli(capsys: pytest.CaptureFixture[str]) -> BenchCli:
    """Run ``ultrathink bench ARGS`` in-process (``ultrathink.cli.main``)."""

    def invoke(*argv: str) -> BenchRun:
        capsys.readouterr()
        try:
            code = main(["bench", *argv])
        except SystemExit as exc:  # argparse: --help and usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return BenchRun(code, captured.out, captured.err)

    return invoke
