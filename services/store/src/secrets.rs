//! Secrets at rest (D7): directory bind passwords and client secrets are
//! sealed with XChaCha20-Poly1305 under a 256-bit key, bound to their
//! customer and kind, and stored apart from the log. The API never returns
//! them and nothing logs them: [`Secret`] prints as `***`.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, XChaCha20Poly1305, XNonce};
use roster_events::CustomerId;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::{micros, with_db, Db, StoreError};

/// A secret value in memory. Its Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(Zeroizing::new(s.into()))
    }
    /// The plaintext, for the one place that needs it (a bind).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The key that seals secrets.
#[derive(Clone)]
pub struct SecretKey {
    key: Zeroizing<[u8; 32]>,
    /// A short fingerprint, so that a wrong key is told apart from corrupt data.
    id: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

/// Where the key came from, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
    Created(PathBuf),
}

pub const KEY_FILE_NAME: &str = "secret.key";

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let id = hex::encode(&Sha256::digest(bytes)[..6]);
        SecretKey {
            key: Zeroizing::new(bytes),
            id,
        }
    }

    /// Parses 32 bytes given as base64 or as 64 hex digits.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let t = text.trim();
        let mut bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).map_err(|_| bad_key())?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
                .map_err(|_| bad_key())?
        };
        if bytes.len() != 32 {
            bytes.zeroize();
            return Err(bad_key());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        bytes.zeroize();
        Ok(Self::from_bytes(key))
    }

    pub fn generate() -> Self {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&key);
        Self::from_bytes(bytes)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key from `ROSTER_SECRET_KEY`, else the file `ROSTER_SECRET_KEY_FILE`,
    /// else `secret.key` in the data directory. Only when `create` is true
    /// (the embedded default) is a missing key file created (mode 0600).
    pub fn load(
        env_key: Option<&str>,
        key_file: Option<&Path>,
        data_dir: &Path,
        create: bool,
    ) -> Result<(Self, KeySource), StoreError> {
        if let Some(k) = env_key.filter(|k| !k.trim().is_empty()) {
            return Ok((Self::parse(k)?, KeySource::Env));
        }
        let (path, explicit) = match key_file {
            Some(p) => (p.to_path_buf(), true),
            None => (data_dir.join(KEY_FILE_NAME), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((Self::parse(&text)?, KeySource::File(path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create && !explicit => {
                let key = Self::generate();
                write_private(&path, &key.encoded())?;
                Ok((key, KeySource::Created(path)))
            }
            Err(e) => Err(StoreError::Config(format!(
                "no secret key: {} ({e}). Set ROSTER_SECRET_KEY to 32 random bytes in base64 \
                 (e.g. `openssl rand -base64 32`) or ROSTER_SECRET_KEY_FILE to a file holding them; \
                 every replica needs the same key",
                path.display()
            ))),
        }
    }

    fn encoded(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(*self.key)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.key).into())
    }

    /// Seals `plaintext`, bound to `aad` (who it belongs to).
    pub fn seal(&self, plaintext: &Secret, aad: &str) -> (Vec<u8>, Vec<u8>) {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 sealing does not fail");
        (nonce.to_vec(), ct)
    }

    pub fn open(&self, nonce: &[u8], ciphertext: &[u8], aad: &str) -> Result<Secret, StoreError> {
        if nonce.len() != 24 {
            return Err(StoreError::Corrupt(
                "a sealed secret has a bad nonce".into(),
            ));
        }
        let plain = self
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                StoreError::Corrupt("a sealed secret does not open with this key".into())
            })?;
        let s = String::from_utf8(plain)
            .map_err(|_| StoreError::Corrupt("a secret is not text".into()))?;
        Ok(Secret::new(s))
    }
}

fn bad_key() -> StoreError {
    StoreError::Config(
        "the secret key must be 32 bytes, in base64 (e.g. `openssl rand -base64 32`) or as 64 hex digits"
            .into(),
    )
}

/// Writes a new file readable by its owner only.
pub fn write_private(path: &Path, text: &str) -> Result<(), StoreError> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| StoreError::Config(format!("cannot write {}: {e}", path.display())))?;
    writeln!(f, "{text}")
        .map_err(|e| StoreError::Config(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

fn aad(customer: CustomerId, kind: &str, target: Option<&str>) -> String {
    match target {
        Some(t) => format!("roster:directory-secret:{customer}:{kind}:{t}"),
        None => format!("roster:directory-secret:{customer}:{kind}"),
    }
}

impl Db {
    /// Seals and stores a directory secret (replacing any earlier one),
    /// bound to `target`: the digest of the connection it was entered for
    /// (D7). [`Db::get_secret`] releases it for that target only.
    pub async fn put_secret(
        &self,
        key: &SecretKey,
        customer: CustomerId,
        kind: &str,
        target: &str,
        secret: &Secret,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let (nonce, ct) = key.seal(secret, &aad(customer, kind, Some(target)));
        with_db!(self, |p| {
            sqlx::query(
            "INSERT INTO directory_secrets (customer_id, kind, key_id, nonce, ciphertext, updated_at, target)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (customer_id, kind) DO UPDATE SET key_id = excluded.key_id,
               nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at,
               target = excluded.target"
        )
        .bind(customer.to_string())
        .bind(kind)
        .bind(key.id())
        .bind(nonce)
        .bind(ct)
        .bind(micros(now))
        .bind(target)
        .execute(p)
        .await
        .map(|_| ())?
        });
        Ok(())
    }

    /// Whether `key` opens the stored directory secrets (a start-up check,
    /// issue 16): one sealed with another key, or one that does not open,
    /// is a clear error naming the key's settings instead of a 500 at the
    /// next directory test. Returns how many secrets are stored.
    pub async fn check_secret_key(&self, key: &SecretKey) -> Result<u64, StoreError> {
        type Row = (String, String, String, Vec<u8>, Vec<u8>, Option<String>);
        let rows: Vec<Row> = with_db!(self, |p| {
            sqlx::query_as(
                "SELECT customer_id, kind, key_id, nonce, ciphertext, target FROM directory_secrets
                 ORDER BY updated_at DESC LIMIT 20",
            )
            .fetch_all(p)
            .await?
        });
        let count: i64 = with_db!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM directory_secrets"
        )
        .fetch_one(p)
        .await?);
        let wrong = |detail: String| {
            StoreError::Config(format!(
                "the secrets key does not open the {count} stored directory secret(s): {detail}. \
                 Give the key they were sealed with: ROSTER_SECRET_KEY, ROSTER_SECRET_KEY_FILE, or \
                 {KEY_FILE_NAME} in the data directory (restore it from the backup taken with the database)"
            ))
        };
        for (customer, kind, key_id, nonce, ct, target) in rows {
            if key_id != key.id() {
                return Err(wrong(format!(
                    "they were sealed with key {key_id}, this key is {}",
                    key.id()
                )));
            }
            let customer = CustomerId::parse(&customer)
                .map_err(|e| StoreError::Corrupt(format!("directory_secrets: {e}")))?;
            key.open(&nonce, &ct, &aad(customer, &kind, target.as_deref()))
                .map_err(|_| {
                    wrong(format!(
                        "the {kind} secret of customer {customer} does not open"
                    ))
                })?;
        }
        Ok(count.max(0) as u64)
    }

    /// The directory secret of a customer, opened, for the connection
    /// `target` (D7); `None` when none is set or when the stored one was
    /// entered for another target.
    pub async fn get_secret(
        &self,
        key: &SecretKey,
        customer: CustomerId,
        kind: &str,
        target: &str,
    ) -> Result<Option<Secret>, StoreError> {
        type Row = (String, Vec<u8>, Vec<u8>, Option<String>);
        let row: Option<Row> = with_db!(self, |p| {
            sqlx::query_as(
            "SELECT key_id, nonce, ciphertext, target FROM directory_secrets WHERE customer_id = $1 AND kind = $2"
        )
        .bind(customer.to_string())
        .bind(kind)
        .fetch_optional(p)
        .await?
        });
        match row {
            None => Ok(None),
            Some((_, _, _, Some(bound))) if bound != target => Ok(None),
            Some((key_id, _, _, _)) if key_id != key.id() => Err(StoreError::Config(format!(
                "the {kind} secret of customer {customer} was sealed with another key ({key_id}, this one is {}): \
                 give every replica the same ROSTER_SECRET_KEY",
                key.id()
            ))),
            Some((_, nonce, ct, bound)) => key
                .open(&nonce, &ct, &aad(customer, kind, bound.as_deref()))
                .map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d7_a_sealed_secret_opens_only_with_its_key_and_owner() {
        let key = SecretKey::generate();
        let s = Secret::new("hunter2-very-secret");
        let (n, ct) = key.seal(&s, "a");
        assert!(
            !ct.windows(6).any(|w| w == b"hunter"),
            "no plaintext in the ciphertext"
        );
        assert_eq!(key.open(&n, &ct, "a").unwrap(), s);
        assert!(key.open(&n, &ct, "b").is_err(), "bound to its owner");
        assert!(SecretKey::generate().open(&n, &ct, "a").is_err());
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }

    #[test]
    fn d7_keys_parse_from_base64_or_hex_and_are_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, src) = SecretKey::load(None, None, dir.path(), true).unwrap();
        assert!(matches!(src, KeySource::Created(_)));
        let (k2, src) = SecretKey::load(None, None, dir.path(), true).unwrap();
        assert!(matches!(src, KeySource::File(_)));
        assert_eq!(k1.id(), k2.id());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let hex_key = "00".repeat(32);
        assert!(SecretKey::parse(&hex_key).is_ok());
        assert!(SecretKey::parse("too short").is_err());
        let other = tempfile::tempdir().unwrap();
        let err = SecretKey::load(None, None, other.path(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ROSTER_SECRET_KEY"), "{err}");
    }
}
