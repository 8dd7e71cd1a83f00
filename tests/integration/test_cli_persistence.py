"""Stored runs: ``runs``, ``runs show`` and ``audit verify``, including a tampered store."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from contextlib import closing, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from ultrathink.cli import main
from ultrathink.persistence import Store

DATA = "synthetic:n_bars=3000,seed=4"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A store holding one completed backtest (made once), and its JSON summary."""
    db = tmp_path_factory.mktemp("pristine") / "u.db"
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["backtest", "--json", "--db", str(db), "--data", DATA])
    assert code == 0
    return db, json.loads(out.getvalue())


@pytest.fixture
def stored(pristine, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A private copy of the pristine store (tests tamper with it)."""
    source, summary = pristine
    target = tmp_path / "store"
    target.mkdir()
    for file in source.parent.glob(f"{source.name}*"):  # the db and any WAL files
        shutil.copy(file, target / file.name)
    return target / source.name, summary


def sql(db: Path, *statements: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    with closing(sqlite3.connect(db)) as conn:
        for statement in statements:
            rows = conn.execute(statement).fetchall()
        conn.commit()
    return rows


def test_stored_backtest_is_listed(cli, stored) -> None:
    db, summary = stored

    table = cli("runs", "--db", str(db))
    as_json = cli("runs", "list", "--json", "--db", str(db))

    assert table.code == 0
    assert "runs (newest first)" in table.out
    assert as_json.code == 0
    [run] = as_json.json()
    assert run["run_id"] == summary["run_id"] == 1
    assert (run["kind"], run["strategy"], run["data_name"], run["status"]) == (
        "backtest", "sma_cross", DATA, "completed",
    )  # fmt: skip
    assert run["summary"]["final_equity"] == summary["final_equity"]
    assert run["summary"]["n_trades"] == summary["n_trades"]
    assert run["config"]["broker"]["commission_bps"] == 0.0


def test_runs_list_is_newest_first_and_limited(cli, stored) -> None:
    db, _ = stored
    assert cli("paper", "--speed", "max", "--json", "--db", str(db), "--data", DATA).code == 0

    runs = cli("runs", "--json", "--db", str(db)).json()
    limited = cli("runs", "list", "--limit", "1", "--json", "--db", str(db)).json()

    assert [(r["run_id"], r["kind"]) for r in runs] == [(2, "paper"), (1, "backtest")]
    assert [r["run_id"] for r in limited] == [2]


@pytest.mark.parametrize(
    "argv",
    [("runs", "show", "1", "--json"), ("runs", "--json", "show", "1")],
    ids=["flags-after", "flags-before"],
)
def test_runs_show_matches_the_backtest_summary(cli, stored, argv: tuple[str, ...]) -> None:
    db, summary = stored

    result = cli(*argv, "--db", str(db))

    assert result.code == 0, result.err
    info = result.json()
    assert info["orders"] == summary["orders"]
    assert sum(info["orders"].values()) == sum(summary["orders"].values())
    assert info["n_fills"] == summary["n_fills"] == len(summary["fills"])
    assert info["n_equity_points"] == summary["n_bars"]
    assert info["final_equity"] == summary["final_equity"]
    open_positions = {p["symbol"]: p["quantity"] for p in info["positions"] if p["quantity"]}
    assert open_positions == summary["final_positions"]
    assert info["run"]["data_hash"] == summary["data_hash"]


def test_runs_show_table(cli, stored) -> None:
    db, summary = stored

    result = cli("runs", "show", "1", "--db", str(db))

    assert result.code == 0
    assert "run 1: backtest sma_cross" in result.out
    assert f"{summary['n_fills']:,}" in result.out


def test_stored_fills_equal_the_summary_fills(stored) -> None:
    db, summary = stored

    with Store(db) as store:
        fills = store.load_fills(1)
        orders = store.load_orders(1)

    assert [(f.client_order_id, f.side.value, f.quantity, f.price, f.fee) for f in fills] == [
        (f["client_order_id"], f["side"], f["quantity"], f["price"], f["fee"])
        for f in summary["fills"]
    ]
    assert len(orders) == sum(summary["orders"].values())
    assert (orders["filled_qty"] == orders["quantity"]).all()


def test_runs_show_unknown_id_is_a_clean_error(cli, stored) -> None:
    db, _ = stored

    result = cli("runs", "show", "99", "--db", str(db))

    assert result.code == 2
    assert result.err.strip() == "error: run 99 not found; see `ultrathink runs`"


def test_runs_on_a_fresh_store_is_empty(cli, tmp_path: Path) -> None:
    result = cli("runs", "--json", "--db", str(tmp_path / "fresh.db"))

    assert result.code == 0
    assert result.json() == []


# -- audit -----------------------------------------------------------------------------------
def test_audit_verify_ok_after_a_backtest(cli, stored) -> None:
    db, summary = stored
    n_orders = sum(summary["orders"].values())

    text = cli("audit", "verify", "--db", str(db))
    as_json = cli("audit", "verify", "--json", "--db", str(db))

    assert text.code == 0
    assert text.out.startswith("OK: ")
    assert "chain and tables agree" in text.out
    assert as_json.code == 0
    report = as_json.json()
    assert report["ok"] is True
    assert report["problems"] == []
    # per filled order: the risk approval, ACCEPTED, the fill and FILLED; per run:
    # run.created, run.finished, one equity chunk and one final position
    assert report["n_rows"] == report["head_seq"] == 4 * n_orders + 4
    assert report["counts"]["fills"] == n_orders
    assert len(report["head_hash"]) == 64


def test_audit_triggers_refuse_update_and_delete(stored) -> None:
    db, _ = stored

    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        sql(db, "UPDATE audit_log SET quantity = 1 WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        sql(db, "DELETE FROM audit_log WHERE seq = 2")


def _middle_seq_with_quantity(db: Path) -> int:
    [(n_rows,)] = sql(db, "SELECT COUNT(*) FROM audit_log")
    [(seq,)] = sql(
        db,
        f"SELECT MIN(seq) FROM audit_log WHERE quantity IS NOT NULL AND seq > {n_rows // 2}",
    )
    return int(seq)


def test_audit_verify_names_an_edited_row(cli, stored) -> None:
    db, _ = stored
    seq = _middle_seq_with_quantity(db)

    sql(
        db,
        "DROP TRIGGER audit_log_no_update",
        f"UPDATE audit_log SET quantity = quantity + 1 WHERE seq = {seq}",
    )
    result = cli("audit", "verify", "--db", str(db))

    assert result.code == 1
    assert result.out.startswith("BROKEN: 1 problem(s)")
    assert f"seq {seq}: hash does not match the row's content (row edited)" in result.out


def test_audit_verify_names_a_deleted_row(cli, stored) -> None:
    db, _ = stored
    seq = _middle_seq_with_quantity(db)

    sql(db, "DROP TRIGGER audit_log_no_delete", f"DELETE FROM audit_log WHERE seq = {seq}")
    result = cli("audit", "verify", "--json", "--db", str(db))

    assert result.code == 1
    report = result.json()
    assert report["ok"] is False
    assert any(f"seq {seq + 1}: gap after seq {seq - 1}" in p for p in report["problems"])
    assert any(f"seq {seq + 1}: prev_hash does not link" in p for p in report["problems"])


def test_audit_verify_notices_rows_cut_from_the_end(cli, stored) -> None:
    db, _ = stored
    [(last,)] = sql(db, "SELECT MAX(seq) FROM audit_log")

    sql(db, "DROP TRIGGER audit_log_no_delete", f"DELETE FROM audit_log WHERE seq > {last - 3}")
    result = cli("audit", "verify", "--db", str(db))

    assert result.code == 1
    assert f"audit_head is at seq {last} but the last row is seq {last - 3}" in result.out


def test_audit_verify_of_a_missing_store_is_a_clean_error(cli, tmp_path: Path) -> None:
    result = cli("audit", "verify", "--db", str(tmp_path / "nope.db"))

    assert result.code == 2
    assert "does not exist" in result.err


def test_audit_verify_of_a_non_database_is_a_clean_error(cli, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not sqlite" * 100)

    result = cli("audit", "verify", "--db", str(bogus))

    assert result.code == 2
    assert "Traceback" not in result.err
    assert result.err.startswith("error: ")


def test_store_and_audit_in_real_subprocesses(cli_subprocess, tmp_path: Path) -> None:
    db = str(tmp_path / "sub.db")

    run = cli_subprocess("backtest", "--json", "--db", db, "--data", DATA)
    listed = cli_subprocess("runs", "--json", "--db", db)
    verified = cli_subprocess("audit", "verify", "--db", db)

    assert run.code == 0, run.err
    assert [r["run_id"] for r in listed.json()] == [run.json()["run_id"]]
    assert verified.code == 0
    assert verified.out.startswith("OK: ")


def test_default_store_comes_from_the_environment(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "env" / "default.db"
    monkeypatch.setenv("ULTRATHINK_DB", str(db))

    ran = cli("backtest", "--json", "--data", "synthetic:n_bars=300,seed=1")
    listed = cli("runs", "--json")
    verified = cli("audit", "verify")

    assert ran.code == 0, ran.err
    assert db.is_file()
    assert [r["run_id"] for r in listed.json()] == [ran.json()["run_id"]]
    assert verified.code == 0
