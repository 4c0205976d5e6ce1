-- CSV imports (M2): the review of a file, with the plan it settled on, so
-- that a commit applies exactly what was reviewed. Working data, not
-- history: what a commit applied is in the log (user events correlated by
-- the import id, and the Import aggregate's progress); plans of expired,
-- uncommitted reviews are deleted.
CREATE TABLE IF NOT EXISTS imports
(
    import_id    text PRIMARY KEY,
    customer_id  text   NOT NULL,
    reviewed_by  text   NOT NULL,
    reviewed_at  bigint NOT NULL,
    expires_at   bigint NOT NULL,
    -- 'reviewed' until the commit completes, then 'committed' (a cache of
    -- the Import aggregate, which is the authority).
    status       text   NOT NULL,
    chunks       bigint NOT NULL,
    -- JSON: the file as read, totals, seats and directory state at review.
    review       text   NOT NULL,
    committed_by text,
    committed_at bigint,
    -- JSON: the commit's result, answered again to a repeated commit.
    result       text
);
CREATE INDEX IF NOT EXISTS imports_customer ON imports (customer_id, reviewed_at);
CREATE INDEX IF NOT EXISTS imports_expiry ON imports (expires_at);

-- One row per data row of the file, in file order: its outcome and, for
-- additions and updates, the plan (target user, its version at review,
-- resulting profile, aliases) and the chunk it is committed in.
CREATE TABLE IF NOT EXISTS import_rows
(
    import_id text   NOT NULL,
    row_no    bigint NOT NULL,
    line      bigint NOT NULL,
    outcome   text   NOT NULL,
    chunk     bigint,
    plan      text   NOT NULL,
    PRIMARY KEY (import_id, row_no)
);
CREATE INDEX IF NOT EXISTS import_rows_chunk ON import_rows (import_id, chunk) WHERE chunk IS NOT NULL;
