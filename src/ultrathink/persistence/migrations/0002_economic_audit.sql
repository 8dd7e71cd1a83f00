-- Migration 2: the economic audit trail (audit format 2).
-- From this version on the audit chain also carries a `fill` row per fill, an `equity.chunk`
-- row per equity chunk, a `position` row per position upsert and `run.created`,
-- `run.finished` and `run.reopened` rows (ultrathink.persistence.audit_format). The chain's
-- hashing is unchanged. Runs created before this migration have none of these rows: the
-- highest such run id is recorded here, once, so that verification checks those runs only
-- against what schema 1 audited (order events and risk decisions), and every later run
-- against everything. A run with a `run.created` row is never treated as legacy.

CREATE TABLE audit_legacy (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    max_run_id INTEGER NOT NULL             -- runs with run_id <= this predate format 2
);

INSERT INTO audit_legacy (id, max_run_id) SELECT 1, COALESCE(MAX(run_id), 0) FROM runs;

CREATE TRIGGER audit_legacy_no_update BEFORE UPDATE ON audit_legacy
BEGIN
    SELECT RAISE(ABORT, 'audit_legacy is written once by migration 2: UPDATE is not allowed');
END;

CREATE TRIGGER audit_legacy_no_delete BEFORE DELETE ON audit_legacy
BEGIN
    SELECT RAISE(ABORT, 'audit_legacy is written once by migration 2: DELETE is not allowed');
END;
