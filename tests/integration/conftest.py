"""Shared fixtures of the CLI integration tests: in-process and subprocess runners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ultrathink.cli import main


@dataclass(frozen=True)
class CliResult:
    """Exit code and captured output of one CLI invocation."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


CliRunner = Callable[..., CliResult]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # a forgotten --db must never write into the checkout or the user's home
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("ULTRATHINK"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ULTRATHINK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")  # rich tables: no truncated cells in captured output
    yield


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Run ``ultrathink.cli.main`` in-process; returns code, stdout and stderr."""

    def invoke(*argv: str) -> CliResult:
        capsys.readouterr()  # drop anything printed before
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


def console_script() -> Path:
    """The ``ultrathink`` console script installed next to the running interpreter."""
    return Path(sys.executable).parent / "ultrathink"


@pytest.fixture
def cli_subprocess(tmp_path: Path) -> CliRunner:
    """Run the installed ``ultrathink`` console script in a real subprocess."""

    def invoke(*argv: str, timeout_s: float = 120.0) -> CliResult:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRATHINK")}
        env["ULTRATHINK_HOME"] = str(tmp_path / "home")
        env["COLUMNS"] = "200"
        proc = subprocess.run(
            [str(console_script()), *argv],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=tmp_path,
            env=env,
            check=False,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return invoke
