-- Migration 1: runs, orders, fills, positions, equity chunks and the hash-chained audit log.
-- Applied by ultrathink.persistence.db.migrate inside one transaction.

CREATE TABLE runs (
    run_id       INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL,             -- backtest | paper | run
    strategy     TEXT    NOT NULL,
    params_json  TEXT    NOT NULL,
    config_json  TEXT    NOT NULL,
    data_name    TEXT    NOT NULL,
    data_hash    TEXT    NOT NULL,
    code_version TEXT    NOT NULL,
    started_ns   INTEGER NOT NULL,
    ended_ns     INTEGER,
    status       TEXT    NOT NULL,             -- running | completed | failed | interrupted
    summary_json TEXT
);

CREATE TABLE orders (
    run_id          INTEGER NOT NULL REFERENCES runs (run_id),
    client_order_id TEXT    NOT NULL,
    ts_ns           INTEGER NOT NULL,
    symbol          TEXT    NOT NULL,
    side            TEXT    NOT NULL,
    order_type      TEXT    NOT NULL,
    quantity        REAL    NOT NULL,
    limit_price     REAL,
    stop_price      REAL,
    tif             TEXT    NOT NULL,
    reduce_only     INTEGER NOT NULL,
    tag             TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    filled_qty      REAL    NOT NULL,
    avg_fill_price  REAL,
    reason          TEXT    NOT NULL,
    updated_ns      INTEGER NOT NULL,
    PRIMARY KEY (run_id, client_order_id)
) WITHOUT ROWID;

CREATE TABLE fills (
    run_id          INTEGER NOT NULL REFERENCES runs (run_id),
    fill_id         TEXT    NOT NULL,
    client_order_id TEXT    NOT NULL,
    ts_ns           INTEGER NOT NULL,
    symbol          TEXT    NOT NULL,
    side            TEXT    NOT NULL,
    quantity        REAL    NOT NULL,
    price           REAL    NOT NULL,
    fee             REAL    NOT NULL,
    slippage_bps    REAL    NOT NULL,
    PRIMARY KEY (run_id, fill_id),
    FOREIGN KEY (run_id, client_order_id) REFERENCES orders (run_id, client_order_id)
) WITHOUT ROWID;

-- Fills of one order: covering, so the average-fill-price subquery never scans the run.
CREATE INDEX fills_by_order ON fills (run_id, client_order_id, quantity, price);

CREATE TABLE positions (
    run_id       INTEGER NOT NULL REFERENCES runs (run_id),
    symbol       TEXT    NOT NULL,
    quantity     REAL    NOT NULL,
    avg_price    REAL    NOT NULL,
    realized_pnl REAL    NOT NULL,
    last_price   REAL    NOT NULL,
    PRIMARY KEY (run_id, symbol)
) WITHOUT ROWID;

-- Equity curve as columnar chunks: little-endian int64 / float64 arrays (numpy tobytes).
CREATE TABLE equity_chunks (
    run_id       INTEGER NOT NULL REFERENCES runs (run_id),
    chunk_no     INTEGER NOT NULL,
    n_rows       INTEGER NOT NULL,
    ts_blob      BLOB    NOT NULL,
    equity_blob  BLOB    NOT NULL,
    cash_blob    BLOB    NOT NULL,
    PRIMARY KEY (run_id, chunk_no)
) WITHOUT ROWID;

-- Append-only, hash-chained log of order events, risk decisions and other audited actions.
CREATE TABLE audit_log (
    seq             INTEGER PRIMARY KEY,
    ts_ns           INTEGER,
    run_id          INTEGER,
    kind            TEXT NOT NULL,
    client_order_id TEXT,
    symbol          TEXT,
    status          TEXT,
    quantity        REAL,
    price           REAL,
    detail          TEXT,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE is not allowed');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE is not allowed');
END;

-- The latest (seq, hash) of the chain, written in the same transaction as the rows: lets
-- verification notice rows removed from (or appended to) the end of the chain.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);

CREATE TRIGGER audit_head_no_rewind BEFORE UPDATE ON audit_head
WHEN NEW.seq < OLD.seq
BEGIN
    SELECT RAISE(ABORT, 'audit_head may only move forward');
END;

CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN
    SELECT RAISE(ABORT, 'audit_head cannot be deleted');
END;

-- Order events are audit rows: a view, so that each event is written once.
CREATE VIEW order_events AS
SELECT seq, ts_ns, run_id, client_order_id, symbol, status, quantity AS filled_qty,
       detail AS reason
FROM audit_log
WHERE kind GLOB 'order.*';

-- Audit rows of one run (order history, run reports).
CREATE INDEX audit_log_by_run ON audit_log (run_id, client_order_id);
