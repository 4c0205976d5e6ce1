//! Events of the user aggregate: one user, distribution list or public folder.
//!
//! Every event carries `address`, the primary address the user had when the
//! event happened, and the resulting values (E1, "self-sufficient"), so that
//! projections and subscribers compute nothing.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{Address, CustomerId, ObjectId, RuleId, UserId};

/// Where a user came from (U2). `entra` is shown to administrators as Azure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Ldap,
    Entra,
    Manual,
    Csv,
    Smtp,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Ldap,
        Source::Entra,
        Source::Manual,
        Source::Csv,
        Source::Smtp,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Ldap => "ldap",
            Source::Entra => "entra",
            Source::Manual => "manual",
            Source::Csv => "csv",
            Source::Smtp => "smtp",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
    }
    /// Directory sources are the system of truth for their users (D3.a).
    pub fn is_directory(self) -> bool {
        matches!(self, Source::Ldap | Source::Entra)
    }
}

/// User status (U2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Active,
    /// Flagged for deletion; access disabled (D3.h, D3.i).
    PendingDeletion,
    Deactivated,
    Deleted,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Active,
        Status::PendingDeletion,
        Status::Deactivated,
        Status::Deleted,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::PendingDeletion => "pending_deletion",
            Status::Deactivated => "deactivated",
            Status::Deleted => "deleted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// What a recipient is (U4). Only users count against the licence (T3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    User,
    DistributionList,
    PublicFolder,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::DistributionList => "distribution_list",
            Kind::PublicFolder => "public_folder",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Kind::User, Kind::DistributionList, Kind::PublicFolder]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
    }
    /// T3: a user is one primary address; lists and public folders never count.
    pub fn counts_against_licence(self) -> bool {
        self == Kind::User
    }
}

/// The editable fields of a user (U2). `None` means "not set".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub struct Profile {
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
}

/// The longest value each profile field may hold, in characters.
pub const NAME_MAX: usize = 256;
pub const PHONE_MAX: usize = 64;
pub const NOTES_MAX: usize = 4096;

impl Profile {
    /// The limit of a field, by name.
    pub fn limit_of(field: &str) -> usize {
        match field {
            "home_phone" | "mobile" => PHONE_MAX,
            "notes" => NOTES_MAX,
            _ => NAME_MAX,
        }
    }

    /// The first field that is too long or holds a control character
    /// (other than a line break in notes), with what is wrong.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (name, value) in self.fields() {
            let Some(v) = value else { continue };
            let max = Self::limit_of(name);
            if v.chars().count() > max {
                return Err((name, format!("is longer than {max} characters")));
            }
            let multiline = name == "notes";
            if v.chars()
                .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\r' || c == '\t')))
            {
                return Err((name, "holds a control character".to_string()));
            }
        }
        Ok(())
    }

    /// A profile from its seven values in the order of [`Profile::fields`]
    /// (first name, last name, home phone, mobile, company, department,
    /// notes), as compact stores keep them.
    pub fn from_fields(values: [Option<String>; 7]) -> Profile {
        let [first_name, last_name, home_phone, mobile, company, department, notes] = values;
        Profile {
            first_name,
            last_name,
            home_phone,
            mobile,
            company,
            department,
            notes,
        }
    }

    /// Field names and values, for validation messages and exports.
    pub fn fields(&self) -> [(&'static str, &Option<String>); 7] {
        [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("home_phone", &self.home_phone),
            ("mobile", &self.mobile),
            ("company", &self.company),
            ("department", &self.department),
            ("notes", &self.notes),
        ]
    }

    pub fn fields_mut(&mut self) -> [(&'static str, &mut Option<String>); 7] {
        [
            ("first_name", &mut self.first_name),
            ("last_name", &mut self.last_name),
            ("home_phone", &mut self.home_phone),
            ("mobile", &mut self.mobile),
            ("company", &mut self.company),
            ("department", &mut self.department),
            ("notes", &mut self.notes),
        ]
    }

    /// Trims every field and turns blank ones into `None`, so that "" and
    /// "  " never count as a change.
    pub fn normalised(mut self) -> Self {
        for (_, v) in self.fields_mut() {
            if let Some(s) = v.take() {
                let t = s.trim();
                if !t.is_empty() {
                    *v = Some(t.to_string());
                }
            }
        }
        self
    }
}

/// Why a user was flagged for deletion (D3.h). An open set: subscribers
/// treat a reason they do not know as "flagged for another reason" (new
/// reasons arrive with a minor version, see docs/events.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlagReason {
    /// The directory no longer returns the user.
    Missing,
    /// The user is disabled in the directory.
    Disabled,
    /// The directory still returns the user's object, but its primary
    /// address is now in a domain this customer does not manage (issue 12).
    UnmanagedDomain,
    /// The directory still returns the user's object, but without a mail
    /// address (issue 12).
    NoAddress,
}

impl FlagReason {
    pub const ALL: [FlagReason; 4] = [
        FlagReason::Missing,
        FlagReason::Disabled,
        FlagReason::UnmanagedDomain,
        FlagReason::NoAddress,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            FlagReason::Missing => "missing",
            FlagReason::Disabled => "disabled",
            FlagReason::UnmanagedDomain => "unmanaged_domain",
            FlagReason::NoAddress => "no_address",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s.trim())
    }
}

/// Why a user was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeletionReason {
    /// An administrator deleted the user (M1).
    Manual,
    /// The delete-after delay of a flag passed (D3.i).
    DelayExpired,
    /// An administrator chose Delete in the conflicts view (D3.m).
    ConflictDeleted,
    /// The user's primary domain stopped being managed (D3.n).
    DomainRemoved,
}

impl DeletionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionReason::Manual => "manual",
            DeletionReason::DelayExpired => "delay_expired",
            DeletionReason::ConflictDeleted => "conflict_deleted",
            DeletionReason::DomainRemoved => "domain_removed",
        }
    }
}

/// Why an alias was unmapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnmapReason {
    #[default]
    Manual,
    /// The directory no longer lists it.
    Directory,
    /// Its domain stopped being managed (D3.n).
    DomainRemoved,
}

/// Why a deletion flag was lifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The directory returned the user again, enabled (D3.j).
    ReturnedByDirectory,
    /// An administrator lifted it.
    Administrator,
}

/// A sender rule of one user (U5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    Allow,
    Deny,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Allow => "allow",
            RuleKind::Deny => "deny",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [RuleKind::Allow, RuleKind::Deny]
            .into_iter()
            .find(|k| k.as_str() == s.trim())
    }
}

/// Who a returning user was before deletion (U6), so that the archive
/// service can restore the mail archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EarlierIdentity {
    pub user_id: UserId,
    pub address: Address,
    pub source: Source,
    pub deleted_at: DateTime<Utc>,
    pub deletion_reason: DeletionReason,
}

// The payload of `UserAdded`, and the fields `UserReturned` carries
// besides the earlier identity: a user as it is added or comes back, so
// that every fold handles both with one function. (A `//` comment: the
// JSON Schema of `UserAdded` stays as published.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserAdded {
    pub user_id: UserId,
    pub customer_id: CustomerId,
    pub address: Address,
    #[serde(default)]
    pub kind: Kind,
    pub source: Source,
    #[serde(default)]
    pub profile: Profile,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<Address>,
    /// The directory object this user comes from (its stable id), for
    /// directory-sourced users (D3.e); a changed address of the same object
    /// is a rename.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_id: Option<ObjectId>,
    /// For distribution lists: the members' addresses (U4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Address>,
}

// A deleted user comes back (U6): the fields of `UserAdded`, flattened so
// that the JSON keeps them at the same level, then the earlier identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserReturned {
    #[serde(flatten)]
    pub user: UserAdded,
    pub earlier: EarlierIdentity,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProfileUpdated {
    pub address: Address,
    /// The whole profile after the change.
    pub profile: Profile,
    /// The names of the fields that changed.
    pub changed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AliasMapped {
    pub address: Address,
    pub alias: Address,
    /// When the alias moved from another user in the same sync run: that
    /// user's primary address after the run (issue 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_from: Option<Address>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AliasUnmapped {
    pub address: Address,
    pub alias: Address,
    #[serde(default)]
    pub reason: UnmapReason,
    /// When the alias moves to another user in the same sync run: that
    /// user's primary address after the run (issue 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_to: Option<Address>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FlaggedForDeletion {
    pub address: Address,
    pub reason: FlagReason,
    pub flagged_at: DateTime<Utc>,
    /// `None` when delete-after is "never" (D3.i).
    pub delete_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeletionCancelled {
    pub address: Address,
    pub reason: CancelReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConflictIgnored {
    pub address: Address,
    /// The absence that is ignored until the directory returns the user (D3.m).
    pub reason: FlagReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserDeactivated {
    pub address: Address,
    /// A deletion flag lifted by the deactivation (conflict action, D3.m):
    /// the user is kept, deactivated, and not flagged again for the same
    /// absence until the directory returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted_flag: Option<FlagReason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserReactivated {
    pub address: Address,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserDeleted {
    pub address: Address,
    /// Aliases released with the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<Address>,
    pub reason: DeletionReason,
    pub deleted_at: DateTime<Utc>,
    /// Rules removed with the user (U5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules_removed: Vec<RuleId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuleAdded {
    pub address: Address,
    pub rule_id: RuleId,
    pub kind: RuleKind,
    /// A sender address or domain.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuleRemoved {
    pub address: Address,
    pub rule_id: RuleId,
}

/// The primary address of the same directory object changed: a rename of
/// the same user, who keeps its rules and history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AddressChanged {
    /// The new primary address.
    pub address: Address,
    pub previous: Address,
    /// When the new primary was another user's address before this sync
    /// run (its primary or an alias): that user's primary after the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_from: Option<Address>,
    /// When `previous` goes to another user in the same sync run: that
    /// user's primary after the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_to: Option<Address>,
}

/// The first half of a rename inside a cycle of renames (two users swapping
/// their addresses, a rotation of three or more): the user gives up its
/// primary `address` so that another user can take it, and takes `next`
/// with the [`AddressChanged`] that follows in the same append (the same
/// sync run, the same commit). Between the two events the user has no
/// primary address, so no prefix of the log ever shows an address owned
/// twice (U1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AddressReleased {
    /// The primary address given up.
    pub address: Address,
    /// The primary address the user takes next, in the same append.
    pub next: Address,
    /// The user that takes `address` in the same sync run, by its primary
    /// address after the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_to: Option<Address>,
}

/// The user is now managed by a directory object: a manual or earlier-source
/// user taken over after a switch (D2), or an object recreated with the same
/// address. Carries the resulting source and object id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DirectoryLinked {
    pub address: Address,
    pub source: Source,
    pub directory_id: ObjectId,
    pub previous_source: Source,
}

/// The directory returned a user whose absence an administrator had
/// ignored: the ignore no longer applies (D3.m).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AbsenceEnded {
    pub address: Address,
}

/// A distribution list's members, after the change (U4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListMembersChanged {
    pub address: Address,
    pub members: Vec<Address>,
}

/// Every event of the user aggregate. The variant name is the stable event
/// type; [`DomainEvent::event_version`] its schema version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UserEvent {
    UserAdded(UserAdded),
    UserReturned(UserReturned),
    ProfileUpdated(ProfileUpdated),
    AliasMapped(AliasMapped),
    AliasUnmapped(AliasUnmapped),
    FlaggedForDeletion(FlaggedForDeletion),
    DeletionCancelled(DeletionCancelled),
    ConflictIgnored(ConflictIgnored),
    UserDeactivated(UserDeactivated),
    UserReactivated(UserReactivated),
    UserDeleted(UserDeleted),
    RuleAdded(RuleAdded),
    RuleRemoved(RuleRemoved),
    AddressChanged(AddressChanged),
    DirectoryLinked(DirectoryLinked),
    AbsenceEnded(AbsenceEnded),
    ListMembersChanged(ListMembersChanged),
    AddressReleased(AddressReleased),
}

impl UserEvent {
    /// Every (event type, current version) of this aggregate.
    pub const TYPES: &'static [(&'static str, &'static str)] = &[
        ("UserAdded", "1.1"),
        ("UserReturned", "1.1"),
        ("ProfileUpdated", "1.0"),
        ("AliasMapped", "1.1"),
        ("AliasUnmapped", "1.1"),
        ("FlaggedForDeletion", "1.1"),
        ("DeletionCancelled", "1.0"),
        ("ConflictIgnored", "1.1"),
        ("UserDeactivated", "1.1"),
        ("UserReactivated", "1.0"),
        ("UserDeleted", "1.0"),
        ("RuleAdded", "1.0"),
        ("RuleRemoved", "1.0"),
        ("AddressChanged", "1.1"),
        ("DirectoryLinked", "1.0"),
        ("AbsenceEnded", "1.0"),
        ("ListMembersChanged", "1.0"),
        ("AddressReleased", "1.0"),
    ];

    pub fn type_name(&self) -> &'static str {
        match self {
            UserEvent::UserAdded(_) => "UserAdded",
            UserEvent::UserReturned(_) => "UserReturned",
            UserEvent::ProfileUpdated(_) => "ProfileUpdated",
            UserEvent::AliasMapped(_) => "AliasMapped",
            UserEvent::AliasUnmapped(_) => "AliasUnmapped",
            UserEvent::FlaggedForDeletion(_) => "FlaggedForDeletion",
            UserEvent::DeletionCancelled(_) => "DeletionCancelled",
            UserEvent::ConflictIgnored(_) => "ConflictIgnored",
            UserEvent::UserDeactivated(_) => "UserDeactivated",
            UserEvent::UserReactivated(_) => "UserReactivated",
            UserEvent::UserDeleted(_) => "UserDeleted",
            UserEvent::RuleAdded(_) => "RuleAdded",
            UserEvent::RuleRemoved(_) => "RuleRemoved",
            UserEvent::AddressChanged(_) => "AddressChanged",
            UserEvent::DirectoryLinked(_) => "DirectoryLinked",
            UserEvent::AbsenceEnded(_) => "AbsenceEnded",
            UserEvent::ListMembersChanged(_) => "ListMembersChanged",
            UserEvent::AddressReleased(_) => "AddressReleased",
        }
    }

    /// The user's primary address when the event happened.
    pub fn address(&self) -> &Address {
        match self {
            UserEvent::UserAdded(e) | UserEvent::UserReturned(UserReturned { user: e, .. }) => {
                &e.address
            }
            UserEvent::ProfileUpdated(e) => &e.address,
            UserEvent::AliasMapped(e) => &e.address,
            UserEvent::AliasUnmapped(e) => &e.address,
            UserEvent::FlaggedForDeletion(e) => &e.address,
            UserEvent::DeletionCancelled(e) => &e.address,
            UserEvent::ConflictIgnored(e) => &e.address,
            UserEvent::UserDeactivated(e) => &e.address,
            UserEvent::UserReactivated(e) => &e.address,
            UserEvent::UserDeleted(e) => &e.address,
            UserEvent::RuleAdded(e) => &e.address,
            UserEvent::RuleRemoved(e) => &e.address,
            UserEvent::AddressChanged(e) => &e.address,
            UserEvent::DirectoryLinked(e) => &e.address,
            UserEvent::AbsenceEnded(e) => &e.address,
            UserEvent::ListMembersChanged(e) => &e.address,
            // The address given up: what the event is about.
            UserEvent::AddressReleased(e) => &e.address,
        }
    }

    /// A second address the event is about (an alias), for audit queries.
    pub fn subject_address(&self) -> Option<&Address> {
        match self {
            UserEvent::AliasMapped(e) => Some(&e.alias),
            UserEvent::AliasUnmapped(e) => Some(&e.alias),
            UserEvent::UserReturned(e) if e.earlier.address != e.user.address => {
                Some(&e.earlier.address)
            }
            UserEvent::AddressChanged(e) => Some(&e.previous),
            UserEvent::AddressReleased(e) => Some(&e.next),
            _ => None,
        }
    }
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }
    fn event_version(&self) -> String {
        crate::version_of(Self::TYPES, self.type_name()).to_string()
    }
}
