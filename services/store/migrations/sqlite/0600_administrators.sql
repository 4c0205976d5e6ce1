-- Administrators of the console (T4, issue 14): people with accounts, in a
-- partner's or one customer's scope (T1). Passwords are argon2id PHC strings;
-- a TOTP secret is sealed under the secrets key (like directory secrets, D7).
CREATE TABLE IF NOT EXISTS administrators
(
    admin_id      text PRIMARY KEY,
    email         text   NOT NULL UNIQUE,
    display_name  text   NOT NULL,
    partner_id    text REFERENCES partners (partner_id),
    customer_id   text,
    password_hash text,
    totp_nonce    blob,
    totp_sealed   blob,
    created_at    integer NOT NULL,
    disabled_at   integer,
    CHECK ((partner_id IS NULL) <> (customer_id IS NULL))
);
CREATE INDEX IF NOT EXISTS administrators_partner ON administrators (partner_id);
CREATE INDEX IF NOT EXISTS administrators_customer ON administrators (customer_id);

-- Server-side sessions: the cookie holds a random id, the table its SHA-256.
-- stage 'full' is signed in; 'totp' has passed the password and waits for
-- the second factor.
CREATE TABLE IF NOT EXISTS admin_sessions
(
    session_hash text PRIMARY KEY,
    session_id   text   NOT NULL UNIQUE,
    admin_id     text   NOT NULL REFERENCES administrators (admin_id),
    stage        text   NOT NULL,
    csrf         text   NOT NULL,
    method       text   NOT NULL,
    client_addr  text   NOT NULL,
    user_agent   text   NOT NULL,
    created_at   integer NOT NULL,
    last_seen_at integer NOT NULL,
    revoked_at   integer
);
CREATE INDEX IF NOT EXISTS admin_sessions_admin ON admin_sessions (admin_id);

-- One-time links (invitations, password resets, the first administrator's
-- setup): only their SHA-256 is kept.
CREATE TABLE IF NOT EXISTS admin_links
(
    link_hash  text PRIMARY KEY,
    admin_id   text   NOT NULL REFERENCES administrators (admin_id),
    kind       text   NOT NULL,
    created_at integer NOT NULL,
    expires_at integer NOT NULL,
    used_at    integer
);
CREATE INDEX IF NOT EXISTS admin_links_admin ON admin_links (admin_id);

-- Sign-in throttling, per account ('account:<email>') and per client
-- address ('address:<ip>').
CREATE TABLE IF NOT EXISTS signin_throttle
(
    throttle_key    text PRIMARY KEY,
    failures        integer NOT NULL,
    last_failure_at integer NOT NULL,
    blocked_until   integer NOT NULL
);

-- A partner's sign-in policy: TOTP required, and single sign-on through its
-- OpenID Connect provider (the client secret sealed).
CREATE TABLE IF NOT EXISTS partner_signin
(
    partner_id     text PRIMARY KEY,
    require_totp   integer NOT NULL DEFAULT 0,
    oidc_issuer    text,
    oidc_client_id text,
    oidc_nonce     blob,
    oidc_sealed    blob,
    updated_at     integer  NOT NULL
);

-- Single sign-on logins under way: the state, nonce and PKCE verifier.
CREATE TABLE IF NOT EXISTS sso_pending
(
    state_hash text PRIMARY KEY,
    partner_id text   NOT NULL,
    pending    text   NOT NULL,
    next_path  text   NOT NULL,
    created_at integer NOT NULL
);
