//! Directory sync settings (D5, D6) and the events of the directory
//! aggregate: one per customer, holding its directory connection, exceptions,
//! additions and sync runs.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{Address, ObjectId};
use crate::user::Profile;
use schemars::JsonSchema;

/// Which directory a customer syncs from (D1: at most one is enabled).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryKind {
    Ldap,
    Entra,
}

impl DirectoryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryKind::Ldap => "ldap",
            DirectoryKind::Entra => "entra",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [DirectoryKind::Ldap, DirectoryKind::Entra]
            .into_iter()
            .find(|k| k.as_str() == s.trim())
    }
    pub fn source(self) -> crate::Source {
        match self {
            DirectoryKind::Ldap => crate::Source::Ldap,
            DirectoryKind::Entra => crate::Source::Entra,
        }
    }
}

/// Poll interval (D4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PollInterval {
    #[serde(rename = "6h")]
    Hours6,
    #[serde(rename = "12h")]
    Hours12,
    #[serde(rename = "24h")]
    Hours24,
    #[serde(rename = "3d")]
    Days3,
    #[serde(rename = "7d")]
    Weekly,
}

impl PollInterval {
    pub fn duration(self) -> chrono::Duration {
        match self {
            PollInterval::Hours6 => chrono::Duration::hours(6),
            PollInterval::Hours12 => chrono::Duration::hours(12),
            PollInterval::Hours24 => chrono::Duration::hours(24),
            PollInterval::Days3 => chrono::Duration::days(3),
            PollInterval::Weekly => chrono::Duration::days(7),
        }
    }
}

/// Delete-after (D3.i).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DeleteAfter {
    #[serde(rename = "7d")]
    Days7,
    #[serde(rename = "14d")]
    Days14,
    #[serde(rename = "30d")]
    Days30,
    #[serde(rename = "never")]
    Never,
}

impl DeleteAfter {
    /// `None` for "never".
    pub fn duration(self) -> Option<chrono::Duration> {
        match self {
            DeleteAfter::Days7 => Some(chrono::Duration::days(7)),
            DeleteAfter::Days14 => Some(chrono::Duration::days(14)),
            DeleteAfter::Days30 => Some(chrono::Duration::days(30)),
            DeleteAfter::Never => None,
        }
    }
}

/// Which schema the LDAP directory uses (D3.d).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LdapPreset {
    #[default]
    ActiveDirectory,
    /// OpenLDAP with inetOrgPerson.
    Openldap,
    /// 389 Directory Server and FreeIPA.
    #[serde(rename = "389ds")]
    Ds389,
}

/// Attribute names that override the preset's (D3.d custom mapping). Each
/// is the LDAP attribute to read for that field; unset fields keep the preset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct AttributeMap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_addresses: Option<String>,
    /// The attribute of each profile field (U2), flattened: on the wire
    /// `first_name`, `last_name`, ... sit beside `mail`, as they always did.
    #[serde(flatten)]
    pub profile: Profile,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// An LDAP filter that selects users; overrides the preset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_filter: Option<String>,
    /// An LDAP filter that selects groups; overrides the preset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_filter: Option<String>,
    /// An LDAP filter that selects the disabled users (within the user
    /// filter); overrides how the preset recognises them (D3.h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_filter: Option<String>,
}

/// How TLS certificates are checked. Verification is on unless explicitly
/// turned off (also when the settings omit this object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsSettings {
    /// `false` only when an administrator explicitly turns verification off.
    #[serde(default = "yes")]
    pub verify: bool,
    /// PEM of a CA to trust in addition to the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            verify: true,
            ca_pem: None,
        }
    }
}

/// The mass-deletion guard (D3.s). A run that would flag more users than
/// either limit is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GuardSettings {
    /// Hold when more than this many users would be flagged.
    pub max_flags: u64,
    /// Hold when more than this percentage of the customer's directory users
    /// would be flagged, and that is more than `min_flags_for_percent`.
    pub max_percent: u8,
    pub min_flags_for_percent: u64,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            max_flags: 500,
            max_percent: 10,
            min_flags_for_percent: 5,
        }
    }
}

impl GuardSettings {
    /// Whether a run that would flag `flags` of `directory_users` is held.
    pub fn holds(&self, flags: u64, directory_users: u64) -> bool {
        if flags > self.max_flags {
            return true;
        }
        let share =
            flags.saturating_mul(100) > directory_users.saturating_mul(self.max_percent as u64);
        share && flags > self.min_flags_for_percent
    }
}

/// LDAP / Active Directory connection (D5). The bind password is not here:
/// it is kept encrypted apart from the log (D7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LdapSettings {
    pub host: String,
    /// Default 636 with SSL, 389 without.
    pub port: u16,
    /// LDAPS (TLS from the first byte). On by default.
    pub ssl: bool,
    /// StartTLS on a plain connection (only when `ssl` is off).
    pub starttls: bool,
    #[serde(default)]
    pub tls: TlsSettings,
    /// A DN or `user@domain`.
    pub bind_user: String,
    pub base_dn: String,
    /// An RFC 4515 filter ANDed with the preset's user and group filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(default)]
    pub include_disabled: bool,
    #[serde(default)]
    pub include_public_folders: bool,
    #[serde(default)]
    pub preset: LdapPreset,
    #[serde(default)]
    pub attributes: AttributeMap,
    /// Seconds before a connection or a page times out.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u32,
    /// Hours between full reads when delta reads are used (B1): AD
    /// `uSNChanged`, OpenLDAP content synchronisation. Default 24; 0: every
    /// run reads everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_sync_hours: Option<u32>,
}

fn default_timeout() -> u32 {
    30
}

/// Microsoft Entra ID connection (D6). The client secret is kept apart (D7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EntraSettings {
    /// Directory (tenant) id or a verified domain.
    pub tenant: String,
    pub client_id: String,
    #[serde(default)]
    pub include_disabled: bool,
    /// A Graph `$filter` applied to users only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Token and Graph endpoints, for sovereign clouds (and tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_endpoint: Option<String>,
    /// Hours between full reads when delta sync is used (B1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_sync_hours: Option<u32>,
}

/// One directory's settings.
#[allow(clippy::large_enum_variant)] // stored and sent as data, never on a hot path
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Connection {
    Ldap(LdapSettings),
    Entra(EntraSettings),
}

impl Connection {
    pub fn kind(&self) -> DirectoryKind {
        match self {
            Connection::Ldap(_) => DirectoryKind::Ldap,
            Connection::Entra(_) => DirectoryKind::Entra,
        }
    }
}

/// A directory connection as configured: the settings, when and how to sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DirectoryConfig {
    pub connection: Connection,
    pub poll_interval: PollInterval,
    pub delete_after: DeleteAfter,
    #[serde(default)]
    pub guard: GuardSettings,
}

/// Something an administrator excludes from sync (D3.o): a directory user
/// or group by its object id, or an alias by address.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Exception {
    User { object_id: String },
    Group { object_id: String },
    Alias { address: Address },
}

/// What started a sync run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncTrigger {
    Scheduled,
    /// Sync Now (D4).
    Manual,
    /// An administrator confirmed a held run (D3.s).
    Confirmed,
}

impl SyncTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncTrigger::Scheduled => "scheduled",
            SyncTrigger::Manual => "manual",
            SyncTrigger::Confirmed => "confirmed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            SyncTrigger::Scheduled,
            SyncTrigger::Manual,
            SyncTrigger::Confirmed,
        ]
        .into_iter()
        .find(|t| t.as_str() == s.trim())
    }
}

/// What a sync run did (B4); the per-user list is the run's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SyncCounts {
    /// Objects the directory returned (users, lists, public folders).
    pub read: u64,
    pub added: u64,
    pub returned: u64,
    pub updated: u64,
    pub renamed: u64,
    pub aliases_mapped: u64,
    pub aliases_unmapped: u64,
    pub flagged: u64,
    pub unflagged: u64,
    pub skipped: u64,
    pub unchanged: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DirectoryConfigured {
    pub config: DirectoryConfig,
    /// Whether the bind password / client secret was set or replaced; the
    /// secret itself is kept encrypted apart from the log (D7).
    pub secret_changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DirectoryEnabled {
    pub kind: DirectoryKind,
}

/// Why sync was disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisableReason {
    Administrator,
    /// Another directory was enabled in its place (D1).
    Switched,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DirectoryDisabled {
    pub kind: DirectoryKind,
    pub reason: DisableReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExceptionAdded {
    pub exception: Exception,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExceptionRemoved {
    pub exception: Exception,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AdditionAdded {
    pub address: Address,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AdditionRemoved {
    pub address: Address,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncStarted {
    pub run_id: Uuid,
    pub kind: DirectoryKind,
    pub trigger: SyncTrigger,
    pub started_at: DateTime<Utc>,
    /// Another run may start after this instant if this one never finished
    /// (its process died).
    pub lease_until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncCompleted {
    pub run_id: Uuid,
    pub counts: SyncCounts,
    /// T3: directory users take the customer beyond its seat limit.
    pub over_seat_limit: bool,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncFailed {
    pub run_id: Uuid,
    /// A stable code (name_resolution, refused, timeout, tls, bind_rejected,
    /// base_dn_not_found, incomplete, ...).
    pub code: String,
    pub reason: String,
    pub finished_at: DateTime<Utc>,
}

/// The run would have flagged more users than the guard allows; it changed
/// nothing and waits for an administrator (D3.s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncHeld {
    pub run_id: Uuid,
    pub would_flag: u64,
    pub directory_users: u64,
    pub counts: SyncCounts,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncConfirmed {
    pub run_id: Uuid,
    /// The run that applies it.
    pub by_run: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncDiscarded {
    pub run_id: Uuid,
}

/// A held run was replaced by a newer run (Sync Now while it was held):
/// it can no longer be confirmed or discarded (D3.s, issue 11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncSuperseded {
    pub run_id: Uuid,
    /// The run that replaced it.
    pub by_run: Uuid,
}

/// A completed or held run's outcome is visible: appended once the append
/// that recorded it is projected. Its `finished_at` is the run's end
/// (issue 11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncFinished {
    pub run_id: Uuid,
    pub finished_at: DateTime<Utc>,
}

/// A "Test connection" was made (D7): with the saved settings or with
/// settings sent for the test only, where it connected and how it ended.
/// Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DirectoryTested {
    pub kind: DirectoryKind,
    /// The saved settings were tested (false: settings sent with the test).
    pub saved: bool,
    /// A new password / client secret came with the test (false: the
    /// stored one, entered for this same target, was used).
    pub secret_given: bool,
    /// Where it connected: `ldap://host:port` / `ldaps://host:port`, or the
    /// tenant at the login endpoint.
    pub target: String,
    pub ok: bool,
    /// On failure, the test's code (refused, timeout, tls, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Events of the directory aggregate (one per customer, id = customer id).
#[allow(clippy::large_enum_variant)] // stored and sent as data, never on a hot path
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DirectoryEvent {
    DirectoryConfigured(DirectoryConfigured),
    DirectoryEnabled(DirectoryEnabled),
    DirectoryDisabled(DirectoryDisabled),
    ExceptionAdded(ExceptionAdded),
    ExceptionRemoved(ExceptionRemoved),
    AdditionAdded(AdditionAdded),
    AdditionRemoved(AdditionRemoved),
    SyncStarted(SyncStarted),
    SyncCompleted(SyncCompleted),
    SyncFailed(SyncFailed),
    SyncHeld(SyncHeld),
    SyncConfirmed(SyncConfirmed),
    SyncDiscarded(SyncDiscarded),
    SyncSuperseded(SyncSuperseded),
    SyncFinished(SyncFinished),
    DirectoryTested(DirectoryTested),
}

impl DirectoryEvent {
    pub const TYPES: &'static [(&'static str, &'static str)] = &[
        ("DirectoryConfigured", "1.1"),
        ("DirectoryEnabled", "1.0"),
        ("DirectoryDisabled", "1.0"),
        ("ExceptionAdded", "1.0"),
        ("ExceptionRemoved", "1.0"),
        ("AdditionAdded", "1.0"),
        ("AdditionRemoved", "1.0"),
        ("SyncStarted", "1.0"),
        ("SyncCompleted", "1.0"),
        ("SyncFailed", "1.0"),
        ("SyncHeld", "1.0"),
        ("SyncConfirmed", "1.0"),
        ("SyncDiscarded", "1.0"),
        ("SyncSuperseded", "1.0"),
        ("SyncFinished", "1.0"),
        ("DirectoryTested", "1.0"),
    ];

    pub fn type_name(&self) -> &'static str {
        match self {
            DirectoryEvent::DirectoryConfigured(_) => "DirectoryConfigured",
            DirectoryEvent::DirectoryEnabled(_) => "DirectoryEnabled",
            DirectoryEvent::DirectoryDisabled(_) => "DirectoryDisabled",
            DirectoryEvent::ExceptionAdded(_) => "ExceptionAdded",
            DirectoryEvent::ExceptionRemoved(_) => "ExceptionRemoved",
            DirectoryEvent::AdditionAdded(_) => "AdditionAdded",
            DirectoryEvent::AdditionRemoved(_) => "AdditionRemoved",
            DirectoryEvent::SyncStarted(_) => "SyncStarted",
            DirectoryEvent::SyncCompleted(_) => "SyncCompleted",
            DirectoryEvent::SyncFailed(_) => "SyncFailed",
            DirectoryEvent::SyncHeld(_) => "SyncHeld",
            DirectoryEvent::SyncConfirmed(_) => "SyncConfirmed",
            DirectoryEvent::SyncDiscarded(_) => "SyncDiscarded",
            DirectoryEvent::SyncSuperseded(_) => "SyncSuperseded",
            DirectoryEvent::SyncFinished(_) => "SyncFinished",
            DirectoryEvent::DirectoryTested(_) => "DirectoryTested",
        }
    }

    /// The sync run an event belongs to, if any.
    pub fn run_id(&self) -> Option<Uuid> {
        match self {
            DirectoryEvent::SyncStarted(e) => Some(e.run_id),
            DirectoryEvent::SyncCompleted(e) => Some(e.run_id),
            DirectoryEvent::SyncFailed(e) => Some(e.run_id),
            DirectoryEvent::SyncHeld(e) => Some(e.run_id),
            DirectoryEvent::SyncConfirmed(e) => Some(e.run_id),
            DirectoryEvent::SyncDiscarded(e) => Some(e.run_id),
            DirectoryEvent::SyncSuperseded(e) => Some(e.run_id),
            DirectoryEvent::SyncFinished(e) => Some(e.run_id),
            _ => None,
        }
    }
}

impl DomainEvent for DirectoryEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }
    fn event_version(&self) -> String {
        crate::version_of(Self::TYPES, self.type_name()).to_string()
    }
}

/// One directory object as the exceptions screen lists it (D3.o).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct ObjectSummary {
    pub id: String,
    /// `user`, `group` or `public_folder`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The primary address as the directory has it (possibly invalid or unmanaged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// Secondary addresses (`smtp:` values), for alias exceptions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub disabled: bool,
}

/// The directory as last read changed: objects new or different, and
/// objects gone. Recorded only when something changed, in chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DirectoryObjectsChanged {
    pub run_id: Uuid,
    pub kind: DirectoryKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upserted: Vec<ObjectSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// Events of the directory-objects aggregate (one per customer): the
/// projection of the directory as last read (D3.o, E3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DirectoryObjectsEvent {
    DirectoryObjectsChanged(DirectoryObjectsChanged),
}

impl DirectoryObjectsEvent {
    pub const TYPES: &'static [(&'static str, &'static str)] =
        &[("DirectoryObjectsChanged", "1.0")];
    pub fn type_name(&self) -> &'static str {
        "DirectoryObjectsChanged"
    }
}

impl DomainEvent for DirectoryObjectsEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }
    fn event_version(&self) -> String {
        crate::version_of(Self::TYPES, self.type_name()).to_string()
    }
}

/// Why a directory object, or one of its addresses, was not synced by a
/// run (D3.b, D3.h, D3.o, D3.u, issue 11).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// An administrator excluded the object (D3.o).
    Excluded,
    /// The object has no mail address.
    NoAddress,
    /// The object's mail address is not a valid email address.
    InvalidAddress,
    /// The address is in a domain this customer does not manage (D3.b, D3.c).
    UnmanagedDomain,
    /// The object is disabled and "include disabled users" is off (D3.h).
    Disabled,
    /// Several directory objects claim the address (D3.u).
    Contested,
    /// The address belongs to a user that keeps it: a manual or CSV user,
    /// an excluded or disabled one, or a flagged user whose object no
    /// longer claims it (until it is deleted).
    AddressInUse,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Excluded => "excluded",
            SkipReason::NoAddress => "no_address",
            SkipReason::InvalidAddress => "invalid_address",
            SkipReason::UnmanagedDomain => "unmanaged_domain",
            SkipReason::Disabled => "disabled",
            SkipReason::Contested => "contested",
            SkipReason::AddressInUse => "address_in_use",
        }
    }
}

/// What of a directory object a run did not apply.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SkipScope {
    /// The whole object: it is not added (or, for an existing user, not
    /// updated).
    Object,
    /// One alias of the object: not mapped.
    Alias,
    /// The object's new primary address: its user keeps the old one.
    Rename,
}

/// One object (or one address of it) a run did not sync, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct SkippedObject {
    pub object_id: ObjectId,
    /// `user`, `group` or `public_folder`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dn: Option<String>,
    /// The address concerned, as the directory has it (none when the
    /// object has no mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub scope: SkipScope,
    pub reason: SkipReason,
    /// What happened, for people.
    pub detail: String,
}

/// How a directory object claims an address.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ClaimKind {
    /// As its primary address.
    Primary,
    /// As an alias (`smtp:` proxy address).
    Alias,
}

/// A directory object that claims a contested address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Claimant {
    pub object_id: ObjectId,
    /// `user`, `group` or `public_folder`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dn: Option<String>,
    /// The claimant's primary address.
    pub primary: Address,
    pub claim: ClaimKind,
}

/// An address several directory objects claim in one read (D3.u), with
/// every claimant. The user that already owns it and whose object still
/// claims it keeps it (`kept_by`); otherwise nobody gets it until an
/// administrator excludes all claimants but one. The outcome never depends
/// on the order in which a server returns the objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct ContestedAddress {
    pub address: Address,
    /// Sorted by object id.
    pub claimants: Vec<Claimant>,
    /// The object whose user keeps the address, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_by: Option<String>,
}

/// Part of a sync run's report (B4, issue 11): the objects it did not sync
/// and the addresses several objects claimed. Written in the same append as
/// the run's outcome (completed or held), in parts of at most 5,000 items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncReported {
    pub run_id: Uuid,
    /// The part, from 0.
    pub part: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedObject>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contested: Vec<ContestedAddress>,
}

/// A sync run's report is, item for item, the report of an earlier run of
/// the same customer (issue 17): a scheduled run that finds the directory
/// as before records this one small event instead of its skipped objects
/// and contested addresses again. `of_run` is always a run whose report was
/// recorded in full (`SyncReported`), never another repeat; read that run's
/// `SyncReported` events for the items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncReportRepeated {
    pub run_id: Uuid,
    /// The earlier run of the same customer whose report this one is.
    pub of_run: Uuid,
}

/// Events of the sync-report aggregate (one per run, id = run id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SyncReportEvent {
    SyncReported(SyncReported),
    SyncReportRepeated(SyncReportRepeated),
}

impl SyncReportEvent {
    pub const TYPES: &'static [(&'static str, &'static str)] =
        &[("SyncReported", "1.0"), ("SyncReportRepeated", "1.0")];
    pub fn type_name(&self) -> &'static str {
        match self {
            SyncReportEvent::SyncReported(_) => "SyncReported",
            SyncReportEvent::SyncReportRepeated(_) => "SyncReportRepeated",
        }
    }
}

impl DomainEvent for SyncReportEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }
    fn event_version(&self) -> String {
        crate::version_of(Self::TYPES, self.type_name()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d5_tls_verification_is_on_unless_explicitly_turned_off() {
        assert!(TlsSettings::default().verify);
        let s: TlsSettings = serde_json::from_str("{}").unwrap();
        assert!(s.verify);
        let json = r#"{"host":"dc","port":636,"ssl":true,"starttls":false,"bind_user":"u","base_dn":"dc=x"}"#;
        let l: LdapSettings = serde_json::from_str(json).unwrap();
        assert!(
            l.tls.verify,
            "settings without a tls object verify certificates"
        );
    }
}
