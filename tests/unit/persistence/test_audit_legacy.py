"""Stores written before the economic audit (schema 1) still verify, read-only and migrated;
their orders are cross-checked against what schema 1 audited; later runs against all."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

from ultrathink.persistence import Store, StoreWriter, verify_audit
from ultrathink.persistence.chain import append_audit
from ultrathink.persistence.db import connect, load_migrations, migrate, schema_version

_RUN = (
    "INSERT INTO runs (kind, strategy, params_json, config_json, data_name, data_hash, "
    "code_version, started_ns, ended_ns, status, summary_json) "
    "VALUES ('backtest', 's', '{}', '{}', 'd', 'h', 'v', 0, 5, 'completed', '{}')"
)
_ORDER = (
    "INSERT INTO orders VALUES (1, 'A', 10, 'SPX', 'BUY', 'MARKET', 2.0, NULL, NULL, 'GTC', 0, "
    "'', 'FILLED', 2.0, 100.5, '', 12)"
)
_FILL = "INSERT INTO fills VALUES (1, 'F1', 'A', 12, 'SPX', 'BUY', 2.0, 100.5, 0.0, 0.0)"
# what schema 1 audited of that order: the approval and the events, not the fill
_V1_ROWS = [
    (10, 1, "risk.approved", "A", "SPX", "APPROVED", 2.0, None, "BUY MARKET GTC"),
    (11, 1, "order.ACCEPTED", "A", "SPX", "ACCEPTED", 0.0, None, ""),
    (12, 1, "order.FILLED", "A", "SPX", "FILLED", 2.0, None, ""),
]
LEGACY_NOTE = (
    "1 run(s) (1) predate the economic audit (schema 2): only their orders were cross-checked, "
    "against their order events and risk decisions"
)


def _schema_1_store(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(connect(path)) as conn:
        migrate(conn, load_migrations()[:1])
        conn.execute("BEGIN IMMEDIATE")
        for statement in (_RUN, _ORDER, _FILL):
            conn.execute(statement)
        append_audit(conn, _V1_ROWS)
        conn.execute("COMMIT")


def test_a_schema_1_store_verifies_read_only_without_being_migrated(db_path: Path) -> None:
    _schema_1_store(db_path)

    report = verify_audit(db_path)

    assert (report.ok, report.problems, report.notes) == (True, [], [LEGACY_NOTE])
    with closing(connect(db_path)) as conn:
        assert schema_version(conn) == 1


def test_after_migration_old_runs_stay_legacy_and_new_runs_are_fully_checked(
    db_path: Path, new_run, order_batch, raw_sql
) -> None:
    _schema_1_store(db_path)
    run_id = new_run(db_path)  # migrates to schema 2
    with StoreWriter(db_path) as writer:
        writer.put(order_batch(run_id, 0, 3))

    clean = verify_audit(db_path)
    raw_sql(db_path, "UPDATE fills SET price = 1 WHERE run_id = 2 AND fill_id = 'F-2-000000001'")
    tampered = verify_audit(db_path)

    assert raw_sql(db_path, "SELECT max_run_id FROM audit_legacy") == [(1,)]
    assert (clean.ok, clean.notes, clean.counts["fills"]) == (True, [LEGACY_NOTE], 4)
    assert len(tampered.problems) == 1
    assert tampered.problems[0].startswith("run 2 fill F-2-000000001 (order O-2-000000001): price")


def test_the_orders_of_a_legacy_run_are_still_cross_checked(db_path: Path, raw_sql) -> None:
    _schema_1_store(db_path)
    Store(db_path).close()  # migrated
    raw_sql(db_path, "UPDATE orders SET filled_qty = 1, status = 'PARTIALLY_FILLED'")

    problems = verify_audit(db_path).problems

    assert problems == [
        "run 1 order A: status 'PARTIALLY_FILLED' vs audited 'FILLED', filled_qty 1.0 vs "
        "audited 2.0 (orders vs its last audited state, seq 3 order.FILLED)"
    ]


def test_a_run_cannot_pass_as_legacy_once_it_has_a_created_row(db_path: Path, raw_sql) -> None:
    with Store(db_path) as store:
        store.create_run("backtest", "s", {}, {}, "d", "h", "v", 0)
    raw_sql(
        db_path, "DROP TRIGGER audit_legacy_no_update", "UPDATE audit_legacy SET max_run_id = 5"
    )
    raw_sql(db_path, "UPDATE runs SET strategy = 'forged'")

    problems = verify_audit(db_path).problems

    assert problems == [
        "run 1: strategy 'forged' vs audited 's' (runs vs its run.created audit row, seq 1)"
    ]
