//! Directory sync settings (D5, D6) and the events of the directory
//! aggregate: one per customer, holding its directory connection, exceptions,
//! additions and sync runs.

use serde::{Deserialize, Serialize};

/// Which directory a customer syncs from (D1: at most one is enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    pub fn source(self) -> crate::Source {
        match self {
            DirectoryKind::Ldap => crate::Source::Ldap,
            DirectoryKind::Entra => crate::Source::Entra,
        }
    }
}

/// Poll interval (D4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AttributeMap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_addresses: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// An LDAP filter that selects users; overrides the preset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_filter: Option<String>,
    /// An LDAP filter that selects groups; overrides the preset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_filter: Option<String>,
}

/// How TLS certificates are checked. Verification is on unless explicitly
/// turned off.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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

/// The mass-deletion guard (D3.s). A run that would flag more users than
/// either limit is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

fn default_timeout() -> u32 {
    30
}

/// Microsoft Entra ID connection (D6). The client secret is kept apart (D7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
