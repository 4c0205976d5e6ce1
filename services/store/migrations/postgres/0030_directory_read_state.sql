-- What a directory reader keeps between runs for delta sync (B1): for
-- Entra ID, the users/delta and groups/delta links and the directory as
-- that read left it (users, mail-enabled groups and their members), so a
-- delta round can be applied to it to give the reconciler a complete
-- snapshot. One row per customer and directory kind, replaced by every
-- successful read. Not part of the log: it is a cache of the directory,
-- and losing it only costs one full read.
CREATE TABLE IF NOT EXISTS directory_read_state
(
    customer_id text   NOT NULL,
    kind        text   NOT NULL,
    state       bytea  NOT NULL,
    updated_at  bigint NOT NULL,
    PRIMARY KEY (customer_id, kind)
);
