-- Issue 9: a projection failure is retried a bounded number of times before
-- the event is skipped for that projection; the count of attempts so far.
ALTER TABLE projection_failures ADD COLUMN attempts bigint NOT NULL DEFAULT 1;
