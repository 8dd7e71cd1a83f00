-- Migration 3: parameter sweeps (`ultrathink sweep`).
-- A sweep is one row of `sweeps` (what was asked, as JSON) and one row of `sweep_points` per
-- finished point. A point's id is a hash of everything its result depends on, so a retried
-- task or a resumed driver inserts the same row again and `INSERT OR IGNORE` keeps one.
-- Full runs (orders, fills, equity) are stored in `runs` only with --keep-runs (run_id).

CREATE TABLE sweeps (
    sweep_id    INTEGER PRIMARY KEY,
    created_utc TEXT NOT NULL,
    strategy    TEXT NOT NULL,
    spec_json   TEXT NOT NULL,     -- SweepSpec.to_json(): grid, constraint, data, windows...
    n_points    INTEGER NOT NULL,
    status      TEXT NOT NULL,     -- running | done | interrupted | failed
    backend     TEXT NOT NULL,     -- what the last driver used: local:N or ray:ADDRESS
    elapsed_s   REAL NOT NULL DEFAULT 0
);

CREATE TABLE sweep_points (
    sweep_id     INTEGER NOT NULL REFERENCES sweeps (sweep_id),
    point_id     TEXT NOT NULL,
    seq          INTEGER NOT NULL,  -- the point's position in the sweep's enumeration
    data         TEXT NOT NULL,
    window_label TEXT NOT NULL,
    params_json  TEXT NOT NULL,
    metrics_json TEXT,              -- NULL when the point failed
    error        TEXT,              -- why it failed (the sweep goes on)
    run_id       INTEGER,           -- the stored run, with --keep-runs
    elapsed_s    REAL NOT NULL,
    PRIMARY KEY (sweep_id, point_id)
) WITHOUT ROWID;
