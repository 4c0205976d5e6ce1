-- Issue 17: the seats a customer's addresses take (T3), kept as a counter
-- beside its limit instead of counted at every addition (COUNT(*) over
-- address_claims was O(users) a manual addition). SQLite has no
-- statement-level triggers; a row trigger is an in-process update of one
-- row by its key.
ALTER TABLE customer_claims ADD COLUMN seats_used INTEGER NOT NULL DEFAULT 0;

UPDATE customer_claims
SET seats_used = (SELECT COUNT(*) FROM address_claims a
                  WHERE a.customer_id = customer_claims.customer_id AND a.seat);

CREATE TRIGGER IF NOT EXISTS address_claims_seats_inserted AFTER INSERT ON address_claims
WHEN NEW.seat
BEGIN
    UPDATE customer_claims SET seats_used = seats_used + 1 WHERE customer_id = NEW.customer_id;
END;

CREATE TRIGGER IF NOT EXISTS address_claims_seats_deleted AFTER DELETE ON address_claims
WHEN OLD.seat
BEGIN
    UPDATE customer_claims SET seats_used = seats_used - 1 WHERE customer_id = OLD.customer_id;
END;

CREATE TRIGGER IF NOT EXISTS address_claims_seats_updated AFTER UPDATE OF seat, customer_id ON address_claims
WHEN (OLD.seat IS NOT NEW.seat) OR (OLD.customer_id IS NOT NEW.customer_id)
BEGIN
    UPDATE customer_claims SET seats_used = seats_used - (CASE WHEN OLD.seat THEN 1 ELSE 0 END)
    WHERE customer_id = OLD.customer_id;
    UPDATE customer_claims SET seats_used = seats_used + (CASE WHEN NEW.seat THEN 1 ELSE 0 END)
    WHERE customer_id = NEW.customer_id;
END;

DROP INDEX IF EXISTS address_claims_seats;
