-- The console's security log (T4, issue 14): sign-ins, failures, sign-outs,
-- invitations and links, password and TOTP changes, administrator, token and
-- sign-in policy changes. Append-only: rows are never updated or deleted
-- (the triggers refuse it). `partner_id` is the partner whose administrators
-- see the row (NULL: a failed sign-in for an email no administrator has,
-- shown to the operator by `roster admin log`); `customer_id` is set when
-- the administrator concerned is a customer administrator.
CREATE TABLE IF NOT EXISTS security_events
(
    event_id    text PRIMARY KEY,
    recorded_at bigint NOT NULL,
    event_type  text   NOT NULL,
    partner_id  text,
    customer_id text,
    actor       text,
    admin_id    text,
    email       text,
    client_addr text   NOT NULL,
    detail      text   NOT NULL
);
CREATE INDEX IF NOT EXISTS security_events_partner ON security_events (partner_id, recorded_at);
CREATE INDEX IF NOT EXISTS security_events_customer ON security_events (customer_id, recorded_at);

CREATE OR REPLACE FUNCTION security_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'security_events is append-only';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS security_events_no_change ON security_events;
CREATE TRIGGER security_events_no_change BEFORE UPDATE OR DELETE ON security_events
    FOR EACH ROW EXECUTE FUNCTION security_events_append_only();

-- TOTP replay (RFC 6238 section 5.2): the last time step accepted for an
-- administrator; a code of that step or an earlier one is refused.
ALTER TABLE administrators ADD COLUMN IF NOT EXISTS totp_last_step bigint;
