-- D7 (issue 10): a directory secret is bound to the connection target it
-- was entered for (a digest of host, port, TLS settings and bind user, or of
-- tenant, client id and endpoints). It is released only for that target;
-- the digest is also sealed into the ciphertext's associated data. Rows
-- from before this column are bound by the settings check alone.
ALTER TABLE directory_secrets ADD COLUMN IF NOT EXISTS target text;
