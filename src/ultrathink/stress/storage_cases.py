"""The storage cases of the resources scenario: a full disk and a read-only store.

Both compare with a reference: an uninterrupted session of the same data, strategy and
config. **Disk full**: the store and the session directory live on a small tmpfs with
``free_kb`` left; the session must stop at the first failed write with one clear ``error:``
line (exit 2, no traceback); then, with space freed, the store must verify, keep its head
through a ``paper --resume`` (``audit verify --expect-head``: every committed record
survives), and the resumed run must equal the reference. **Read-only store**: a session is
killed (its run left ``running``), then its directory is made read-only (a read-only bind
mount; ``chattr +i`` where mounting is refused); a resume and a new run on it must each fail
with one clear ``error:`` line and change nothing (every file's sha256), ``audit verify``
must still read it, and once writable again the resume must equal the reference.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ultrathink.engine.sessions import CONTROL_FILE_NAME, session_dir
from ultrathink.stress.base import STRICT
from ultrathink.stress.chaos import (
    PaperCommand,
    finish,
    ultrathink_command,
    wait_for_file,
)
from ultrathink.stress.child import is_root, kill_and_reap, readonly_view, tmpfs
from ultrathink.stress.invariants import (
    TRACEBACK,
    audit_chain,
    check_any_instant,
    check_process,
    check_run,
    read_rows,
    run_state,
)
from ultrathink.stress.outcome import Case, Invariant

STRATEGY = ("--strategy", "sma_cross", "--param", "fast=3", "--param", "slow=8")
Log = Callable[[str], None]


class DiskFull(BaseModel):
    """The store on a tmpfs of ``fs_kb`` KiB with ``free_kb`` left when the session starts."""

    model_config = STRICT

    kind: Literal["disk_full"]
    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    fs_kb: int = Field(default=8192, ge=256, le=1_048_576)
    free_kb: int = Field(default=3000, ge=64)
    n_bars: int = Field(default=8000, ge=100)
    speed: float = Field(default=100_000.0, gt=0)


class ReadOnlyStore(BaseModel):
    """A killed session's store made read-only, then written to."""

    model_config = STRICT

    kind: Literal["read_only"]
    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    n_bars: int = Field(default=600, ge=100)
    speed: float = Field(default=6000.0, gt=0)


def clear_error(code: int | None, stderr: str) -> tuple[bool, str]:
    """Whether a command failed as the CLI should (exit 2, no traceback, its last line one
    ``error: …``); and that line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    errors = [line for line in lines if line.startswith("error: ")]
    ok = code == 2 and TRACEBACK not in stderr and len(errors) == 1 and last == errors[0]
    return ok, last[:300]


def disk_full_case(fault: DiskFull, work: Path, seed: int, log: Log) -> Case:
    """Run the disk-full case (see the module docstring); skipped when not root."""
    case = Case(fault.name)
    if not is_root():
        case.skipped = "a tmpfs needs root (CI and this machine's agents run as root)"
        return case
    cmd, mode, reference = _reference(fault, work, seed, case, log)
    if reference is None:
        return case
    after = work / fault.name / "after"
    try:
        with tmpfs(work / fault.name / "fs", fault.fs_kb) as fs:
            _fill(fs / "ballast", fault.free_kb)
            log(f"resources: {fault.name}: a session on a tmpfs with {fault.free_kb} KiB free")
            proc = cmd.start(fs / "stress.db", *mode, output=True)
            _out, err = proc.communicate(timeout=600)
            ok, line = clear_error(proc.returncode, err.decode(errors="replace"))
            case.figures.update(exit_code=proc.returncode, message=line, error_clear=ok)
            # what the failed session left, as it left it: the files, moved to a disk with
            # room (as an operator would), without the ballast and the released lock
            shutil.copytree(fs, after, ignore=_no_locks)
    except OSError as exc:
        case.skipped = f"no tmpfs here: {exc}"
        return case
    _after_failure(case, cmd, after / "stress.db", mode, reference)
    return case


def _after_failure(
    case: Case, cmd: PaperCommand, db: Path, mode: tuple[str, ...], reference: dict[str, object]
) -> None:
    status = read_rows(db, "SELECT status FROM runs")
    committed = audit_chain(db)
    head = read_rows(db, "SELECT hash FROM audit_head")
    problems = check_any_instant(db)
    case.figures.update(
        status_after_failure=status[0][0] if status else None,
        orders_committed=read_rows(db, "SELECT COUNT(*) FROM orders")[0][0] if status else 0,
        venue_orders=len(
            read_rows(session_dir(db, 1) / "venue.sqlite", "SELECT 1 FROM venue_orders")
        ),
    )
    case.invariants += [
        committed,
        Invariant(
            "any_instant", not problems, "; ".join(problems) or "the store never led the venue"
        ),
    ]
    proc = cmd.start(db, *mode, "--resume", "1", output=True)
    _out, err = proc.communicate(timeout=600)
    case.invariants.append(
        check_process(proc.returncode, err.decode(errors="replace"), what="resume with space again")
    )
    survived = audit_chain(db, expect_head=head[0][0]) if head else committed
    case.invariants += [i for i in check_run(db) if i.name != "audit_chain"]
    case.invariants.append(survived)
    case.figures.update(
        committed_survive=committed.ok and survived.ok,
        resumed_equal=proc.returncode == 0 and run_state(db) == reference,
    )


def readonly_case(fault: ReadOnlyStore, work: Path, seed: int, log: Log) -> Case:
    """Run the read-only-store case (see the module docstring)."""
    case = Case(fault.name)
    cmd, mode, reference = _reference(fault, work, seed, case, log)
    if reference is None:
        return case
    store = work / fault.name / "store"
    store.mkdir(parents=True)
    db = store / "stress.db"
    proc = cmd.start(db, *mode)
    wait_for_file(session_dir(db, 1) / CONTROL_FILE_NAME, proc)  # live: then kill it
    kill_and_reap(proc)  # and its store writer, which finishes its batch first
    before = _hashes(store)
    try:
        with readonly_view(store, work / fault.name / "view") as how:
            log(f"resources: {fault.name}: the killed session's store, read-only ({how})")
            _write_attempts(case, cmd, work / fault.name / "view" / "stress.db", mode)
            case.figures["read_only_by"] = how
    except OSError as exc:
        case.skipped = str(exc)
        return case
    changed = [name for name, digest in _hashes(store).items() if before.get(name) != digest]
    case.figures.update(unchanged=not changed, changed_files=", ".join(changed) or None)
    code, err = finish(cmd, db, ("--speed", "max"))
    case.invariants.append(check_process(code, err, what="resume once writable"))
    case.invariants += check_run(db)
    case.figures["resumed_equal"] = code == 0 and run_state(db) == reference
    return case


def _write_attempts(case: Case, cmd: PaperCommand, view_db: Path, mode: tuple[str, ...]) -> None:
    attempts = {
        "resume": cmd.start(view_db, "--speed", "max", "--resume", "1", output=True),
        "new_run": cmd.start(view_db, *mode, output=True),
    }
    clear = True
    for label, proc in attempts.items():
        _out, err = proc.communicate(timeout=600)
        ok, line = clear_error(proc.returncode, err.decode(errors="replace"))
        ok = ok and "is read-only" in line  # and it says why, not "not a usable database"
        clear &= ok
        case.figures[f"{label}_message"] = line
        case.invariants.append(
            Invariant(f"{label}_refused_clearly", ok, f"exit {proc.returncode}: {line}")
        )
    verify = subprocess.run(
        [*ultrathink_command(), "audit", "verify", "--db", str(view_db)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    case.figures.update(error_clear=clear, readable=verify.returncode == 0)
    case.invariants.append(
        Invariant(
            "readable",
            verify.returncode == 0,
            verify.stdout.strip()[:200] or verify.stderr.strip()[:200],
        )
    )


def _reference(
    fault: DiskFull | ReadOnlyStore, work: Path, seed: int, case: Case, log: Log
) -> tuple[PaperCommand, tuple[str, ...], dict[str, object] | None]:
    # the case's session command, its pace, and the state of an uninterrupted run of it
    cmd = PaperCommand(f"synthetic:n_bars={fault.n_bars},seed={seed}", STRATEGY)
    mode = ("--speed", str(fault.speed))
    db = work / fault.name / "reference" / "stress.db"
    db.parent.mkdir(parents=True)
    log(f"resources: {case.name}: reference session")
    code, err = finish(cmd, db, mode)
    case.invariants.append(check_process(code, err, what="reference session"))
    return cmd, mode, run_state(db) if code == 0 else None


def _fill(path: Path, free_kb: int) -> None:
    st = os.statvfs(path.parent)
    size = st.f_bavail * st.f_frsize - free_kb * 1024
    with open(path, "wb") as f:
        f.write(b"\0" * max(size, 0))


def _hashes(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _no_locks(_directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n in ("lock", "ballast")]
