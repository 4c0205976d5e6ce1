-- The console's security log (T4, issue 14); see the PostgreSQL migration.
CREATE TABLE IF NOT EXISTS security_events
(
    event_id    text PRIMARY KEY,
    recorded_at integer NOT NULL,
    event_type  text    NOT NULL,
    partner_id  text,
    customer_id text,
    actor       text,
    admin_id    text,
    email       text,
    client_addr text    NOT NULL,
    detail      text    NOT NULL
);
CREATE INDEX IF NOT EXISTS security_events_partner ON security_events (partner_id, recorded_at);
CREATE INDEX IF NOT EXISTS security_events_customer ON security_events (customer_id, recorded_at);

CREATE TRIGGER IF NOT EXISTS security_events_no_update BEFORE UPDATE ON security_events
BEGIN
    SELECT RAISE(ABORT, 'security_events is append-only');
END;
CREATE TRIGGER IF NOT EXISTS security_events_no_delete BEFORE DELETE ON security_events
BEGIN
    SELECT RAISE(ABORT, 'security_events is append-only');
END;

-- TOTP replay (RFC 6238 section 5.2): the last time step accepted.
ALTER TABLE administrators ADD COLUMN totp_last_step integer;
