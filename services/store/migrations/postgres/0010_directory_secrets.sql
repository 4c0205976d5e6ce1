-- Directory secrets (D7): bind passwords and client secrets, sealed with
-- XChaCha20-Poly1305 under the key of ROSTER_SECRET_KEY (or its key file).
-- Kept out of the log and of every view; the log only records that a
-- secret was set.
CREATE TABLE IF NOT EXISTS directory_secrets
(
    customer_id text   NOT NULL,
    kind        text   NOT NULL,
    key_id      text   NOT NULL,
    nonce       bytea  NOT NULL,
    ciphertext  bytea  NOT NULL,
    updated_at  bigint NOT NULL,
    PRIMARY KEY (customer_id, kind)
);
