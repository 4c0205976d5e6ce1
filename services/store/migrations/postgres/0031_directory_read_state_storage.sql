-- The read state is tens of MB of JSON at 100k users, rewritten by every
-- read that changed something: store it out of line without pglz
-- compression, which cost more time than the bytes it saved.
ALTER TABLE directory_read_state ALTER COLUMN state SET STORAGE EXTERNAL;
