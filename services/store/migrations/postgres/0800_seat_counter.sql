-- Issue 17: the seats a customer's addresses take (T3), kept as a counter
-- beside its limit instead of counted at every addition. COUNT(*) over
-- address_claims visited every seat of the customer twice for each manual
-- addition (the pre-check and the append's guard): O(users) a request, the
-- most CPU of a manual addition at 8,000 users and worse at 100,000.
--
-- Statement-level triggers with transition tables keep it: one UPDATE per
-- statement and customer, so a bulk claim of 100,000 addresses pays one
-- update, not 100,000. Every write to address_claims happens in an append
-- transaction, under the append lock, so the counter row is never updated
-- by two writers at once.
ALTER TABLE customer_claims ADD COLUMN IF NOT EXISTS seats_used bigint NOT NULL DEFAULT 0;

UPDATE customer_claims c
SET seats_used = (SELECT COUNT(*) FROM address_claims a WHERE a.customer_id = c.customer_id AND a.seat);

CREATE OR REPLACE FUNCTION roster_seats_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE customer_claims c SET seats_used = c.seats_used + d.n
    FROM (SELECT customer_id, COUNT(*) AS n FROM new_claims WHERE seat GROUP BY customer_id) d
    WHERE c.customer_id = d.customer_id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION roster_seats_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE customer_claims c SET seats_used = c.seats_used - d.n
    FROM (SELECT customer_id, COUNT(*) AS n FROM old_claims WHERE seat GROUP BY customer_id) d
    WHERE c.customer_id = d.customer_id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION roster_seats_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE customer_claims c SET seats_used = c.seats_used + d.n
    FROM (SELECT customer_id, SUM(n) AS n FROM (
              SELECT customer_id, COUNT(*) AS n FROM new_claims WHERE seat GROUP BY customer_id
              UNION ALL
              SELECT customer_id, -COUNT(*) AS n FROM old_claims WHERE seat GROUP BY customer_id
          ) x GROUP BY customer_id HAVING SUM(n) <> 0) d
    WHERE c.customer_id = d.customer_id;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS address_claims_seats_inserted ON address_claims;
CREATE TRIGGER address_claims_seats_inserted AFTER INSERT ON address_claims
    REFERENCING NEW TABLE AS new_claims
    FOR EACH STATEMENT EXECUTE FUNCTION roster_seats_inserted();

DROP TRIGGER IF EXISTS address_claims_seats_deleted ON address_claims;
CREATE TRIGGER address_claims_seats_deleted AFTER DELETE ON address_claims
    REFERENCING OLD TABLE AS old_claims
    FOR EACH STATEMENT EXECUTE FUNCTION roster_seats_deleted();

DROP TRIGGER IF EXISTS address_claims_seats_updated ON address_claims;
CREATE TRIGGER address_claims_seats_updated AFTER UPDATE ON address_claims
    REFERENCING OLD TABLE AS old_claims NEW TABLE AS new_claims
    FOR EACH STATEMENT EXECUTE FUNCTION roster_seats_updated();

-- The counter replaces the only reader of the partial index.
DROP INDEX IF EXISTS address_claims_seats;
