-- Issue 15: a running sync's live progress (phase and counts), written by
-- the replica that runs it at each phase change and at most once a second,
-- so that any replica can answer "how far is it" (the console's Sync Now
-- progress, GET /v1/customers/{c}/directory/syncs/{run}). Operational
-- state beside the log, like sync_leases: never an event, and losing it
-- loses only the live view (the run's outcome is in the log).
CREATE TABLE IF NOT EXISTS sync_run_progress
(
    run_id      text   PRIMARY KEY,
    customer_id text   NOT NULL,
    -- JSON: {"phase": "read" | "plan" | "apply", "read": n, "planned": {...}, "steps": n, "applied": n}
    progress    text   NOT NULL,
    updated_at  bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_run_progress_customer ON sync_run_progress (customer_id);
