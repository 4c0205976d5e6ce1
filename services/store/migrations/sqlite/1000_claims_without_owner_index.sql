-- Issue 17: the index of the claims' owners is dropped. Its keys are random
-- user ids, so each of a bulk's claims wrote a page of its own: a third of
-- the insert of 110,000 claims in psql (0.38 s of 1.2 s), on the append's
-- one connection. Every write names a claim by its address (the primary
-- key); the one reader by owner, the holder named in a CSV review's message,
-- looks its owners up in one statement among the customer's claims
-- (`Db::primaries_bulk`). An index is not data: nothing to move.
DROP INDEX IF EXISTS address_claims_owner;
