-- The append-only log. Columns up to `metadata` are postgres-es's schema, so
-- its PostgresEventRepository reads aggregates from this table; `position`
-- (global order, gapless, assigned under an advisory lock), `customer_id`
-- and `recorded_at` are Roster's.
CREATE TABLE IF NOT EXISTS events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    position       bigint                       NOT NULL,
    customer_id    text,
    recorded_at    bigint                       NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_position ON events (position);
CREATE INDEX IF NOT EXISTS events_customer_position ON events (customer_id, position);

-- postgres-es snapshots (unused by the current aggregates, kept for its repository).
CREATE TABLE IF NOT EXISTS snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Claims: cross-aggregate facts kept in the append transaction (U1, T2, T3).
CREATE TABLE IF NOT EXISTS customer_claims
(
    customer_id text PRIMARY KEY,
    partner_id  text   NOT NULL,
    seat_limit  bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS customer_claims_partner ON customer_claims (partner_id);

CREATE TABLE IF NOT EXISTS domain_claims
(
    domain      text PRIMARY KEY,
    customer_id text NOT NULL REFERENCES customer_claims (customer_id)
);

CREATE TABLE IF NOT EXISTS address_claims
(
    address     text PRIMARY KEY,
    domain      text    NOT NULL,
    customer_id text    NOT NULL,
    owner_id    text    NOT NULL,
    is_primary  boolean NOT NULL,
    seat        boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS address_claims_owner ON address_claims (owner_id);
CREATE INDEX IF NOT EXISTS address_claims_customer_domain ON address_claims (customer_id, domain);
CREATE INDEX IF NOT EXISTS address_claims_seats ON address_claims (customer_id) WHERE seat;

CREATE TABLE IF NOT EXISTS address_tombstones
(
    customer_id text   NOT NULL,
    address     text   NOT NULL,
    owner_id    text   NOT NULL,
    released_at bigint NOT NULL,
    PRIMARY KEY (customer_id, address)
);

-- Principals (T1).
CREATE TABLE IF NOT EXISTS partners
(
    partner_id text PRIMARY KEY,
    name       text   NOT NULL,
    created_at bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS api_tokens
(
    token_id    text PRIMARY KEY,
    token_hash  text   NOT NULL UNIQUE,
    partner_id  text REFERENCES partners (partner_id),
    customer_id text,
    label       text   NOT NULL,
    created_at  bigint NOT NULL,
    revoked_at  bigint,
    CHECK ((partner_id IS NULL) <> (customer_id IS NULL))
);

-- Projector bookkeeping.
CREATE TABLE IF NOT EXISTS projection_checkpoints
(
    name       text PRIMARY KEY,
    position   bigint NOT NULL,
    updated_at bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS projection_failures
(
    name      text   NOT NULL,
    position  bigint NOT NULL,
    error     text   NOT NULL,
    failed_at bigint NOT NULL,
    PRIMARY KEY (name, position)
);
