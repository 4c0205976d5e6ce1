-- Issue 18: a sync run's lease, renewed by a heartbeat while the run works.
-- A replica that stops (SIGKILL, crash, partition) stops renewing; once the
-- lease expires another replica takes it over, marks the run interrupted
-- and starts the customer's run again. Times are microseconds since the
-- epoch on the database's clock, so replicas with skewed clocks agree.
CREATE TABLE IF NOT EXISTS sync_leases
(
    run_id      text   PRIMARY KEY,
    customer_id text   NOT NULL,
    holder      text   NOT NULL,
    expires_at  bigint NOT NULL,
    -- The holder a takeover took the lease from (for the interrupted run's reason).
    taken_from  text
);
CREATE INDEX IF NOT EXISTS sync_leases_expires ON sync_leases (expires_at);
