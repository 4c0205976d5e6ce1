//! Directory objects (users, groups), application permissions, and the
//! property tables that drive `$select`, `$filter` and delta tracking.
//!
//! Property names, types and "returned by default" flags follow the Graph v1.0
//! resource pages for [user] and [group]; the per-operator `$filter` support
//! (default vs. advanced query) follows the tables of [advanced queries].
//!
//! [user]: https://learn.microsoft.com/graph/api/resources/user
//! [group]: https://learn.microsoft.com/graph/api/resources/group
//! [advanced queries]: https://learn.microsoft.com/graph/aad-advanced-queries

use serde::{Deserialize, Serialize};

/// A Microsoft Entra ID user as the emulator stores it.
///
/// Field names map to the Graph property of the same name in camelCase
/// (`given_name` is `givenName`, `business_phones` is `businessPhones`, ...).
/// An empty `id` asks the emulator to assign a GUID when the user is added.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct User {
    /// Object id (GUID string). Empty: assigned on insert.
    pub id: String,
    /// `accountEnabled`: `false` for a disabled account.
    pub account_enabled: bool,
    /// `businessPhones` (a collection; Graph allows one number).
    pub business_phones: Vec<String>,
    /// `city`.
    pub city: Option<String>,
    /// `companyName`.
    pub company_name: Option<String>,
    /// `country`.
    pub country: Option<String>,
    /// `createdDateTime` (ISO 8601, UTC). Empty: set on insert.
    pub created_date_time: Option<String>,
    /// `department`.
    pub department: Option<String>,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `employeeId`.
    pub employee_id: Option<String>,
    /// `givenName`.
    pub given_name: Option<String>,
    /// `jobTitle`.
    pub job_title: Option<String>,
    /// `mail`: the primary SMTP address.
    pub mail: Option<String>,
    /// `mailNickname`.
    pub mail_nickname: Option<String>,
    /// `mobilePhone`.
    pub mobile_phone: Option<String>,
    /// `officeLocation`.
    pub office_location: Option<String>,
    /// `onPremisesSyncEnabled`.
    pub on_premises_sync_enabled: Option<bool>,
    /// `otherMails`.
    pub other_mails: Vec<String>,
    /// `preferredLanguage`.
    pub preferred_language: Option<String>,
    /// `proxyAddresses`: `SMTP:` (primary), `smtp:` (aliases), `X500:`, `SIP:` ...
    pub proxy_addresses: Vec<String>,
    /// `surname`.
    pub surname: Option<String>,
    /// `userPrincipalName`.
    pub user_principal_name: String,
    /// `userType`: `Member` or `Guest`.
    pub user_type: Option<String>,
}

impl User {
    /// An enabled member user with `userPrincipalName` and `mail` set to
    /// `upn`, and a matching primary `SMTP:` proxy address.
    pub fn new(upn: &str) -> Self {
        let nickname = upn.split('@').next().unwrap_or(upn).to_string();
        User {
            account_enabled: true,
            user_principal_name: upn.to_string(),
            mail: Some(upn.to_string()),
            mail_nickname: Some(nickname.clone()),
            display_name: Some(nickname),
            proxy_addresses: vec![format!("SMTP:{upn}")],
            user_type: Some("Member".into()),
            ..User::default()
        }
    }

    /// Sets `givenName`, `surname` and `displayName` ("Given Surname").
    pub fn named(mut self, given: &str, surname: &str) -> Self {
        self.given_name = Some(given.to_string());
        self.surname = Some(surname.to_string());
        self.display_name = Some(format!("{given} {surname}"));
        self
    }

    /// Sets the object id.
    pub fn with_id(mut self, id: &str) -> Self {
        self.id = id.to_string();
        self
    }
}

/// A Microsoft Entra ID group as the emulator stores it (members are kept
/// apart, see [`crate::Tenant::set_group_members`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Group {
    /// Object id (GUID string). Empty: assigned on insert.
    pub id: String,
    /// `createdDateTime` (ISO 8601, UTC). Empty: set on insert.
    pub created_date_time: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `groupTypes`: contains `Unified` for Microsoft 365 groups,
    /// `DynamicMembership` for dynamic groups.
    pub group_types: Vec<String>,
    /// `mail`: the group's SMTP address.
    pub mail: Option<String>,
    /// `mailEnabled`.
    pub mail_enabled: bool,
    /// `mailNickname`.
    pub mail_nickname: Option<String>,
    /// `proxyAddresses`.
    pub proxy_addresses: Vec<String>,
    /// `securityEnabled`.
    pub security_enabled: bool,
    /// `visibility`: `Private`, `Public` or `HiddenMembership`.
    pub visibility: Option<String>,
}

impl Group {
    /// A mail-enabled distribution group (`mailEnabled` true,
    /// `securityEnabled` false, no `groupTypes`) with address `mail`.
    pub fn distribution(display_name: &str, mail: &str) -> Self {
        Group {
            display_name: Some(display_name.to_string()),
            mail: Some(mail.to_string()),
            mail_enabled: true,
            mail_nickname: Some(mail.split('@').next().unwrap_or(mail).to_string()),
            proxy_addresses: vec![format!("SMTP:{mail}")],
            ..Group::default()
        }
    }

    /// A Microsoft 365 group (`groupTypes` = `["Unified"]`, mail- and
    /// security-enabled).
    pub fn unified(display_name: &str, mail: &str) -> Self {
        Group {
            group_types: vec!["Unified".into()],
            security_enabled: true,
            visibility: Some("Private".into()),
            ..Group::distribution(display_name, mail)
        }
    }

    /// A security group without mail (`mailEnabled` false).
    pub fn security(display_name: &str) -> Self {
        Group {
            display_name: Some(display_name.to_string()),
            mail_nickname: Some(display_name.replace(' ', "")),
            security_enabled: true,
            ..Group::default()
        }
    }

    /// Sets the object id.
    pub fn with_id(mut self, id: &str) -> Self {
        self.id = id.to_string();
        self
    }
}

/// Microsoft Graph application permissions (app roles) the emulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    /// `User.Read.All`
    UserReadAll,
    /// `User.ReadWrite.All`
    UserReadWriteAll,
    /// `Group.Read.All`
    GroupReadAll,
    /// `Group.ReadWrite.All`
    GroupReadWriteAll,
    /// `GroupMember.Read.All`
    GroupMemberReadAll,
    /// `Directory.Read.All`
    DirectoryReadAll,
    /// `Directory.ReadWrite.All`
    DirectoryReadWriteAll,
}

impl Permission {
    /// Every permission the emulator knows.
    pub const ALL: [Permission; 7] = [
        Permission::UserReadAll,
        Permission::UserReadWriteAll,
        Permission::GroupReadAll,
        Permission::GroupReadWriteAll,
        Permission::GroupMemberReadAll,
        Permission::DirectoryReadAll,
        Permission::DirectoryReadWriteAll,
    ];

    /// The permission's name as it appears in the token's `roles` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::UserReadAll => "User.Read.All",
            Permission::UserReadWriteAll => "User.ReadWrite.All",
            Permission::GroupReadAll => "Group.Read.All",
            Permission::GroupReadWriteAll => "Group.ReadWrite.All",
            Permission::GroupMemberReadAll => "GroupMember.Read.All",
            Permission::DirectoryReadAll => "Directory.Read.All",
            Permission::DirectoryReadWriteAll => "Directory.ReadWrite.All",
        }
    }

    /// Parses a permission name (`User.Read.All`, ...), case-insensitively.
    pub fn parse(name: &str) -> Option<Permission> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(name))
    }
}

/// Why a delta response reports an object as removed (`@removed.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemovedReason {
    /// `changed`: deleted, but restorable from `deletedItems` (soft delete).
    Changed,
    /// `deleted`: permanently deleted.
    Deleted,
}

impl RemovedReason {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            RemovedReason::Changed => "changed",
            RemovedReason::Deleted => "deleted",
        }
    }
}

// ---------------------------------------------------------------------------
// Property tables
// ---------------------------------------------------------------------------

/// A property value borrowed from an object, ready to be serialised or
/// compared by `$filter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Str(&'a str),
    Bool(bool),
    Strs(&'a [String]),
    EmptyArr,
}

impl Val<'_> {
    pub(crate) fn opt(s: &Option<String>) -> Val<'_> {
        match s {
            Some(s) => Val::Str(s),
            None => Val::Null,
        }
    }
}

/// Support of one `$filter` operator on one property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sup {
    /// Not supported.
    No,
    /// Works by default.
    D,
    /// Requires advanced query parameters.
    A,
}

use Sup::{No, A, D};

/// `$filter` support of a property, one field per operator, as in the
/// tables of the advanced-queries page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ops {
    pub eq: Sup,
    pub ne: Sup,
    pub not: Sup,
    pub ge_le: Sup,
    pub in_: Sup,
    pub starts: Sup,
    pub ends: Sup,
    pub null: Sup,
    pub count: Sup,
}

const fn ops(eq: Sup, ne: Sup, not: Sup, ge_le: Sup, in_: Sup, starts: Sup, null: Sup) -> Ops {
    Ops {
        eq,
        ne,
        not,
        ge_le,
        in_,
        starts,
        ends: No,
        null,
        count: No,
    }
}

const fn with_ends(mut o: Ops, ends: Sup) -> Ops {
    o.ends = ends;
    o
}

const fn with_count(mut o: Ops) -> Ops {
    o.count = A;
    o
}

const NONE: Ops = ops(No, No, No, No, No, No, No);
const BOOL: Ops = ops(D, A, A, No, D, No, No);
const ID: Ops = ops(D, A, A, No, D, No, No);
const TEXT: Ops = ops(D, A, A, D, D, D, A);
const ALL_ADV: Ops = ops(A, A, A, A, A, A, A);
const COLL_EQ: Ops = ops(D, No, A, No, No, No, No);

/// Kind of a property, used to validate `$filter` literals and lambdas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Bool,
    StrColl,
    /// Complex or date values the emulator returns but cannot filter on.
    Opaque,
    /// Complex collections.
    OpaqueColl,
}

/// One property of an entity type.
pub(crate) struct PropDef<T: 'static> {
    pub name: &'static str,
    pub kind: Kind,
    /// Returned when no `$select` is given.
    pub default: bool,
    pub ops: Ops,
    /// Changes are tracked by delta (the emulator can change it).
    pub tracked: bool,
    pub get: fn(&T) -> Val<'_>,
}

const fn p<T: 'static>(
    name: &'static str,
    kind: Kind,
    default: bool,
    ops: Ops,
    get: fn(&T) -> Val<'_>,
) -> PropDef<T> {
    PropDef {
        name,
        kind,
        default,
        ops,
        tracked: true,
        get,
    }
}

fn null<T>(_: &T) -> Val<'_> {
    Val::Null
}
fn empty<T>(_: &T) -> Val<'_> {
    Val::EmptyArr
}

/// A property Graph knows but the emulator does not model: returned as
/// `null` (or `[]`) when selected, not filterable.
const fn unmodelled<T: 'static>(name: &'static str, coll: bool) -> PropDef<T> {
    PropDef {
        name,
        kind: if coll { Kind::OpaqueColl } else { Kind::Opaque },
        default: false,
        ops: NONE,
        tracked: false,
        get: if coll {
            empty::<T> as fn(&T) -> Val<'_>
        } else {
            null::<T>
        },
    }
}

/// Entity types served by the emulator.
pub(crate) trait Entity: Sized + 'static {
    /// OData type name, e.g. `microsoft.graph.user`.
    const ODATA_TYPE: &'static str;
    /// Resource name used in directory error messages, e.g. `User`.
    const RESOURCE: &'static str;
    /// Entity set name, e.g. `users`.
    const SET: &'static str;
    /// All known properties, in the order of the default representation.
    fn props() -> &'static [PropDef<Self>];
    /// Properties that can only be read on a single object: selecting them
    /// on a collection answers 501.
    fn single_only() -> &'static [&'static str] {
        &[]
    }
    fn id(&self) -> &str;
}

/// Looks a property up by name, case-insensitively (Graph's query
/// parameters are not case-sensitive).
pub(crate) fn find_prop<T: Entity>(name: &str) -> Option<(usize, &'static PropDef<T>)> {
    T::props()
        .iter()
        .enumerate()
        .find(|(_, d)| d.name.eq_ignore_ascii_case(name))
}

static USER_PROPS: [PropDef<User>; 45] = [
    // Returned by default, in the order of the List users example.
    p(
        "businessPhones",
        Kind::StrColl,
        true,
        COLL_EQ,
        |u: &User| Val::Strs(&u.business_phones),
    ),
    p("displayName", Kind::Str, true, TEXT, |u: &User| {
        Val::opt(&u.display_name)
    }),
    p("givenName", Kind::Str, true, TEXT, |u: &User| {
        Val::opt(&u.given_name)
    }),
    p("jobTitle", Kind::Str, true, TEXT, |u: &User| {
        Val::opt(&u.job_title)
    }),
    p("mail", Kind::Str, true, with_ends(TEXT, A), |u: &User| {
        Val::opt(&u.mail)
    }),
    p("mobilePhone", Kind::Str, true, ALL_ADV, |u: &User| {
        Val::opt(&u.mobile_phone)
    }),
    p("officeLocation", Kind::Str, true, ALL_ADV, |u: &User| {
        Val::opt(&u.office_location)
    }),
    p("preferredLanguage", Kind::Str, true, ALL_ADV, |u: &User| {
        Val::opt(&u.preferred_language)
    }),
    p("surname", Kind::Str, true, TEXT, |u: &User| {
        Val::opt(&u.surname)
    }),
    p(
        "userPrincipalName",
        Kind::Str,
        true,
        with_ends(TEXT, A),
        |u: &User| Val::Str(&u.user_principal_name),
    ),
    p("id", Kind::Str, true, ID, |u: &User| Val::Str(&u.id)),
    // Returned only on $select.
    p("accountEnabled", Kind::Bool, false, BOOL, |u: &User| {
        Val::Bool(u.account_enabled)
    }),
    p("city", Kind::Str, false, TEXT, |u: &User| Val::opt(&u.city)),
    p("companyName", Kind::Str, false, ALL_ADV, |u: &User| {
        Val::opt(&u.company_name)
    }),
    p("country", Kind::Str, false, TEXT, |u: &User| {
        Val::opt(&u.country)
    }),
    p("createdDateTime", Kind::Opaque, false, NONE, |u: &User| {
        Val::opt(&u.created_date_time)
    }),
    p("department", Kind::Str, false, TEXT, |u: &User| {
        Val::opt(&u.department)
    }),
    p("employeeId", Kind::Str, false, TEXT, |u: &User| {
        Val::opt(&u.employee_id)
    }),
    p("mailNickname", Kind::Str, false, TEXT, |u: &User| {
        Val::opt(&u.mail_nickname)
    }),
    p(
        "onPremisesSyncEnabled",
        Kind::Bool,
        false,
        ops(D, A, A, No, D, No, D),
        |u: &User| match u.on_premises_sync_enabled {
            Some(b) => Val::Bool(b),
            None => Val::Null,
        },
    ),
    p(
        "otherMails",
        Kind::StrColl,
        false,
        with_count(with_ends(ops(D, No, A, D, D, D, No), A)),
        |u: &User| Val::Strs(&u.other_mails),
    ),
    p(
        "proxyAddresses",
        Kind::StrColl,
        false,
        with_count(with_ends(ops(D, No, A, D, No, D, No), A)),
        |u: &User| Val::Strs(&u.proxy_addresses),
    ),
    p(
        "userType",
        Kind::Str,
        false,
        ops(D, A, A, No, D, No, A),
        |u: &User| Val::opt(&u.user_type),
    ),
    // Known to Graph, not modelled: null (or []) when selected.
    unmodelled("ageGroup", false),
    unmodelled("assignedLicenses", true),
    unmodelled("assignedPlans", true),
    unmodelled("creationType", false),
    unmodelled("deletedDateTime", false),
    unmodelled("employeeHireDate", false),
    unmodelled("employeeType", false),
    unmodelled("externalUserState", false),
    unmodelled("faxNumber", false),
    unmodelled("identities", true),
    unmodelled("imAddresses", true),
    unmodelled("lastPasswordChangeDateTime", false),
    unmodelled("onPremisesDistinguishedName", false),
    unmodelled("onPremisesDomainName", false),
    unmodelled("onPremisesExtensionAttributes", false),
    unmodelled("onPremisesImmutableId", false),
    unmodelled("onPremisesLastSyncDateTime", false),
    unmodelled("onPremisesSamAccountName", false),
    unmodelled("onPremisesSecurityIdentifier", false),
    unmodelled("onPremisesUserPrincipalName", false),
    unmodelled("postalCode", false),
    unmodelled("usageLocation", false),
];

impl Entity for User {
    const ODATA_TYPE: &'static str = "microsoft.graph.user";
    const RESOURCE: &'static str = "User";
    const SET: &'static str = "users";
    fn props() -> &'static [PropDef<User>] {
        &USER_PROPS
    }
    fn single_only() -> &'static [&'static str] {
        // "The following properties are only supported when retrieving a
        // single user" (List users).
        &[
            "aboutMe",
            "birthday",
            "hireDate",
            "interests",
            "mySite",
            "pastProjects",
            "preferredName",
            "responsibilities",
            "schools",
            "skills",
            "mailboxSettings",
        ]
    }
    fn id(&self) -> &str {
        &self.id
    }
}

static GROUP_PROPS: [PropDef<Group>; 34] = [
    p("id", Kind::Str, true, ID, |g: &Group| Val::Str(&g.id)),
    unmodelled_default("deletedDateTime", false),
    unmodelled_default("classification", false),
    p("createdDateTime", Kind::Opaque, true, NONE, |g: &Group| {
        Val::opt(&g.created_date_time)
    }),
    unmodelled_default("creationOptions", true),
    p(
        "description",
        Kind::Str,
        true,
        ops(D, A, A, D, No, D, No),
        |g: &Group| Val::opt(&g.description),
    ),
    p("displayName", Kind::Str, true, TEXT, |g: &Group| {
        Val::opt(&g.display_name)
    }),
    unmodelled_default("expirationDateTime", false),
    p("groupTypes", Kind::StrColl, true, COLL_EQ, |g: &Group| {
        Val::Strs(&g.group_types)
    }),
    unmodelled_default("isAssignableToRole", false),
    p("mail", Kind::Str, true, with_ends(TEXT, A), |g: &Group| {
        Val::opt(&g.mail)
    }),
    p(
        "mailEnabled",
        Kind::Bool,
        true,
        ops(D, A, A, No, No, No, No),
        |g: &Group| Val::Bool(g.mail_enabled),
    ),
    p("mailNickname", Kind::Str, true, TEXT, |g: &Group| {
        Val::opt(&g.mail_nickname)
    }),
    unmodelled_default("membershipRule", false),
    unmodelled_default("membershipRuleProcessingState", false),
    unmodelled_default("onPremisesDomainName", false),
    unmodelled_default("onPremisesLastSyncDateTime", false),
    unmodelled_default("onPremisesNetBiosName", false),
    unmodelled_default("onPremisesSamAccountName", false),
    unmodelled_default("onPremisesSecurityIdentifier", false),
    unmodelled_default("onPremisesSyncEnabled", false),
    unmodelled_default("preferredDataLocation", false),
    unmodelled_default("preferredLanguage", false),
    p(
        "proxyAddresses",
        Kind::StrColl,
        true,
        with_count(with_ends(ops(D, No, A, D, No, D, No), A)),
        |g: &Group| Val::Strs(&g.proxy_addresses),
    ),
    unmodelled_default("renewedDateTime", false),
    unmodelled_default("resourceBehaviorOptions", true),
    unmodelled_default("resourceProvisioningOptions", true),
    p("securityEnabled", Kind::Bool, true, BOOL, |g: &Group| {
        Val::Bool(g.security_enabled)
    }),
    unmodelled_default("securityIdentifier", false),
    unmodelled_default("theme", false),
    p("visibility", Kind::Str, true, NONE, |g: &Group| {
        Val::opt(&g.visibility)
    }),
    unmodelled_default("onPremisesProvisioningErrors", true),
    unmodelled_default("serviceProvisioningErrors", true),
    unmodelled("licenseProcessingState", false),
];

/// Like [`unmodelled`], but part of the default representation.
const fn unmodelled_default<T: 'static>(name: &'static str, coll: bool) -> PropDef<T> {
    let mut d = unmodelled(name, coll);
    d.default = true;
    d
}

impl Entity for Group {
    const ODATA_TYPE: &'static str = "microsoft.graph.group";
    const RESOURCE: &'static str = "Group";
    const SET: &'static str = "groups";
    fn props() -> &'static [PropDef<Group>] {
        &GROUP_PROPS
    }
    fn single_only() -> &'static [&'static str] {
        // "Returned only on $select. Supported only on the Get group API".
        &[
            "allowExternalSenders",
            "autoSubscribeNewMembers",
            "hideFromAddressLists",
            "hideFromOutlookClients",
            "isSubscribedByMail",
            "unseenCount",
        ]
    }
    fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_lookup_is_case_insensitive() {
        assert_eq!(
            find_prop::<User>("proxyaddresses").unwrap().1.name,
            "proxyAddresses"
        );
        assert!(find_prop::<User>("nope").is_none());
        assert!(find_prop::<Group>("MAILENABLED").is_some());
    }

    #[test]
    fn permissions_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        assert_eq!(
            Permission::parse("user.read.all"),
            Some(Permission::UserReadAll)
        );
    }
}
