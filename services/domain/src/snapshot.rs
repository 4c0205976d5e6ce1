//! What a directory reader returns: one complete, typed snapshot of the
//! directory (D3.r), or an error that says why it could not be read.

use roster_events::Profile;
use serde::{Deserialize, Serialize};

/// A directory object's stable id: one type from the read to the events.
pub use roster_events::ObjectId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    User,
    Group,
    PublicFolder,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::User => "user",
            ObjectKind::Group => "group",
            ObjectKind::PublicFolder => "public_folder",
        }
    }
}

/// One user, group or public folder as the directory has it, attributes
/// mapped (D3.d) but not yet judged: addresses are raw text here; the
/// reconciler validates them against the managed domains.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DirectoryObject {
    pub id: ObjectId,
    pub kind: ObjectKind,
    /// The entry's DN (LDAP) or user principal name (Entra), for people.
    pub dn: Option<String>,
    pub display_name: Option<String>,
    /// LDAP `mail` / Entra `mail`.
    pub mail: Option<String>,
    /// `proxyAddresses` values as stored: `SMTP:` primary, `smtp:` aliases,
    /// other types (`X500:`, `SIP:`) kept for the reconciler to ignore.
    pub proxy_addresses: Vec<String>,
    /// givenName, sn, homePhone, mobile, company, department, notes (AD `info`).
    pub profile: Profile,
    /// AD `userAccountControl` bit 0x2, Entra `accountEnabled=false`, ...
    pub disabled: bool,
    /// For groups: the ids of the member objects found in the snapshot.
    pub members: Vec<ObjectId>,
    /// For groups: the mail addresses of members the read did not return
    /// as objects (users outside the custom user filter, D6), as the
    /// directory gives them. Membership is the group's, whatever the user
    /// filter (issue 12). A boxed slice, not a vector: it is set once, and
    /// the 8 bytes keep an object no larger than the LDAP reader's item,
    /// whose buffer a read's objects are converted in (issue 17).
    #[serde(default, skip_serializing_if = "<[String]>::is_empty")]
    pub member_addresses: Box<[String]>,
}

/// A complete read of the directory. Readers never return a partial one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub objects: Vec<DirectoryObject>,
}

impl Snapshot {
    /// A fingerprint of the objects whatever their order (the plan does not
    /// depend on it): two reads with the same fingerprint under the same
    /// `keys` hold the same objects. Two independently keyed 64-bit hashes
    /// of every object, summed, so that a directory's content cannot be
    /// chosen to collide without the process's random keys (issue 17: a run
    /// whose read and inputs are as the previous run's reuses its plan).
    pub fn fingerprint(&self, keys: &FingerprintKeys) -> u128 {
        use std::hash::BuildHasher;
        let (mut a, mut b) = (0u64, 0u64);
        for o in &self.objects {
            a = a.wrapping_add(keys.0.hash_one(o));
            b = b.wrapping_add(keys.1.hash_one(o));
        }
        (u128::from(a) << 64 | u128::from(b)) ^ self.objects.len() as u128
    }
}

/// The random keys of [`Snapshot::fingerprint`], drawn once per process.
#[derive(Clone, Default)]
pub struct FingerprintKeys(
    foldhash::quality::RandomState,
    foldhash::quality::RandomState,
);

impl FingerprintKeys {
    /// Two independently keyed 64-bit hashes of `value`, as one number.
    pub fn of<T: std::hash::Hash + ?Sized>(&self, value: &T) -> u128 {
        use std::hash::BuildHasher;
        u128::from(self.0.hash_one(value)) << 64 | u128::from(self.1.hash_one(value))
    }
}

/// Why a directory could not be read or reached. Each says what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum ReadError {
    #[error("the host name could not be resolved: {0}")]
    NameResolution(String),
    #[error("the connection was refused: {0}")]
    Refused(String),
    #[error("the directory did not answer in time: {0}")]
    Timeout(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("the directory rejected the bind: {0}")]
    BindRejected(String),
    #[error("the base DN was not found: {0}")]
    BaseDnNotFound(String),
    #[error("the credentials lack permission: {0}")]
    Permission(String),
    #[error("the filter is not valid: {0}")]
    InvalidFilter(String),
    #[error("the directory throttled the read and retries were exhausted: {0}")]
    Throttled(String),
    /// The read started but did not complete (connection lost, page error,
    /// size limit): nothing may be concluded from it (D3.r).
    #[error("the read did not complete: {0}")]
    Incomplete(String),
    #[error("the settings are not usable: {0}")]
    Settings(String),
    /// Entra ID: the tenant (directory id or domain) does not exist.
    #[error("the tenant was not found: {0}")]
    TenantNotFound(String),
    /// Entra ID: no application with this client id in the tenant.
    #[error("the client id is not known in the tenant: {0}")]
    ClientIdNotFound(String),
    /// Entra ID: the client secret is wrong or was removed (revoked).
    #[error("the client secret was rejected: {0}")]
    SecretRejected(String),
    /// Entra ID: the client secret has expired.
    #[error("the client secret has expired: {0}")]
    SecretExpired(String),
    #[error("{0}")]
    Other(String),
}

impl ReadError {
    /// A stable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            ReadError::NameResolution(_) => "name_resolution",
            ReadError::Refused(_) => "refused",
            ReadError::Timeout(_) => "timeout",
            ReadError::Tls(_) => "tls",
            ReadError::BindRejected(_) => "bind_rejected",
            ReadError::BaseDnNotFound(_) => "base_dn_not_found",
            ReadError::Permission(_) => "permission",
            ReadError::InvalidFilter(_) => "invalid_filter",
            ReadError::Throttled(_) => "throttled",
            ReadError::Incomplete(_) => "incomplete",
            ReadError::Settings(_) => "settings",
            ReadError::TenantNotFound(_) => "tenant_not_found",
            ReadError::ClientIdNotFound(_) => "client_id_not_found",
            ReadError::SecretRejected(_) => "secret_rejected",
            ReadError::SecretExpired(_) => "secret_expired",
            ReadError::Other(_) => "other",
        }
    }
}

/// The answer to "Test connection".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    /// Users the settings (base DN and filters) select.
    pub users: u64,
    /// Mail-enabled groups they select.
    pub groups: u64,
    /// A short description of what was reached (server, TLS, bound as).
    pub details: String,
}

/// How an incremental read obtained its snapshot (B1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// Every object was read.
    Full,
    /// Only the changes since the previous read were fetched and applied to
    /// the directory as that read left it.
    Delta,
}

impl ReadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadMode::Full => "full",
            ReadMode::Delta => "delta",
        }
    }
}

/// The outcome of [`DirectoryReader::read_incremental`]: still a complete
/// snapshot (D3.r), plus the state to hand to the next read.
#[derive(Debug, Clone)]
pub struct IncrementalRead {
    pub snapshot: Snapshot,
    pub mode: ReadMode,
    /// Opaque state (delta links and the directory as read) for the next
    /// read; `None` when there is nothing new to keep (the reader keeps no
    /// state, or the previous one is still exact and stays).
    pub state: Option<ReadState>,
}

/// A reader's opaque state for its next read, as the store is to keep it.
/// Either way the store gives back the reader's own bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadState {
    /// Bytes the store compresses.
    Plain(Vec<u8>),
    /// Bytes the reader compressed as it wrote them, so that the whole
    /// state never existed uncompressed (issue 17: 28 MB at 100,000 LDAP
    /// users, beside the read and the plan); the store keeps them as they
    /// are.
    Compressed(Vec<u8>),
}

impl ReadState {
    /// The reader's bytes (what the store gives back), compressed or not.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            ReadState::Plain(b) | ReadState::Compressed(b) => b,
        }
    }

    /// The reader's bytes, compressed or not.
    pub fn bytes(&self) -> &[u8] {
        match self {
            ReadState::Plain(b) | ReadState::Compressed(b) => b,
        }
    }
}

/// A capability: something that can read a whole directory.
#[async_trait::async_trait]
pub trait DirectoryReader: Send + Sync {
    /// A complete snapshot, or an error; never a partial list (D3.r).
    async fn read(&self) -> Result<Snapshot, ReadError>;
    /// Connects, binds and counts what the settings select.
    async fn test(&self) -> Result<TestReport, ReadError>;
    /// B1: a complete snapshot obtained, where the reader can, from the
    /// changes since the read that left `previous` (its own opaque state).
    /// Readers without delta support read everything.
    async fn read_incremental(
        &self,
        previous: Option<&[u8]>,
    ) -> Result<IncrementalRead, ReadError> {
        let _ = previous;
        Ok(IncrementalRead {
            snapshot: self.read().await?,
            mode: ReadMode::Full,
            state: None,
        })
    }
}
