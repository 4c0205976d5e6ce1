-- The directory read state (B1) is now compressed by Roster (LZ4) before
-- it is stored: the database's own compression (pglz) would try again on
-- every write for nothing. Rows written before keep their old storage
-- until the next read replaces them (issue 17).
ALTER TABLE directory_read_state ALTER COLUMN state SET STORAGE EXTERNAL;
