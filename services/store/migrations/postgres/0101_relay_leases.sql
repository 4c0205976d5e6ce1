-- Issue 9: the relay's lease, renewed by a heartbeat. A relay that stops
-- renewing it (hung, SIGSTOPped, partitioned) loses it when it expires and
-- a standby takes over; the times are the database's own clock, so relays
-- on hosts with skewed clocks agree.
CREATE TABLE IF NOT EXISTS relay_leases
(
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);
