-- Issue 17: the log's committed head, kept in one row. `MAX(position)`
-- walks the position index down from its end, and an open bulk append's
-- entries sit there uncommitted: every reader checked each of them
-- against the heap before it reached a committed one. The relay asks for
-- the head every 200 ms, so a 100,000-user sync's append paid for about
-- 20 walks of up to 90,000 entries (up to 54 ms each, 0.6 s of the
-- database's time in all), and a million users' about 245 walks of up to
-- 900,000. Readers now read this row: the version the last committed
-- append left.
--
-- A statement trigger keeps it, so every writer of the log does (an
-- older replica during a rolling update included). Every append holds
-- the append lock, so within the trigger the highest positions are the
-- writer's own and `MAX(position)` finds them at once; `GREATEST` keeps
-- the head from moving back should two writers ever race on the row.
CREATE TABLE IF NOT EXISTS log_head
(
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    position bigint  NOT NULL
);

CREATE OR REPLACE FUNCTION roster_log_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO log_head (one, position)
    SELECT true, COALESCE(MAX(position), 0) FROM events
    ON CONFLICT (one) DO UPDATE SET position = GREATEST(log_head.position, excluded.position);
    RETURN NULL;
END $$;

-- The trigger first: creating it waits for the appends in flight, and
-- the appends after it wait for this migration; the row is then set from
-- every committed event.
DROP TRIGGER IF EXISTS events_log_head ON events;
CREATE TRIGGER events_log_head AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION roster_log_head();

INSERT INTO log_head (one, position)
SELECT true, COALESCE(MAX(position), 0) FROM events
ON CONFLICT (one) DO UPDATE SET position = GREATEST(log_head.position, excluded.position);
