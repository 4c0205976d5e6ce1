//! Request and response bodies, as documented in the OpenAPI document.

use chrono::{DateTime, Utc};
use roster_events::{
    CustomerId, FlagReason, Kind, PartnerId, RuleId, RuleKind, Source, Status, UserId,
};
use roster_projections::queries::{AuditEntry, CustomerRow, Licence};
use roster_projections::users::UserRow;
use roster_store::from_micros;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `null` clears a field; a missing field leaves it unchanged.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    /// Display name.
    pub name: String,
    /// Seats (T3): manual and CSV additions beyond it are refused.
    pub seat_limit: u64,
    /// Domains to manage from the start.
    #[serde(default)]
    pub domains: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomer {
    /// A new seat limit (partner administrators only).
    pub seat_limit: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DomainView {
    pub domain: String,
    pub added_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LicenceView {
    pub seat_limit: i64,
    /// Active and flagged users; lists, public folders, aliases and deactivated users do not count.
    pub seats_used: i64,
    /// True when directory sync took the customer beyond its limit (T3).
    pub over_limit: bool,
    pub users_active: i64,
    pub users_pending_deletion: i64,
    pub users_deactivated: i64,
    pub distribution_lists: i64,
    pub public_folders: i64,
    pub aliases: i64,
}

impl From<Licence> for LicenceView {
    fn from(l: Licence) -> Self {
        LicenceView {
            seat_limit: l.seat_limit,
            seats_used: l.seats_used,
            over_limit: l.over_limit,
            users_active: l.users_active,
            users_pending_deletion: l.users_pending_deletion,
            users_deactivated: l.users_deactivated,
            distribution_lists: l.distribution_lists,
            public_folders: l.public_folders,
            aliases: l.aliases,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerView {
    #[schema(value_type = String)]
    pub id: CustomerId,
    #[schema(value_type = String)]
    pub partner_id: PartnerId,
    pub name: String,
    pub seat_limit: i64,
    pub domains: Vec<DomainView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub licence: Option<LicenceView>,
}

impl CustomerView {
    pub fn from_row(c: CustomerRow, licence: Option<Licence>) -> Self {
        CustomerView {
            id: c.customer_id,
            partner_id: c.partner_id,
            name: c.name,
            seat_limit: c.seat_limit,
            domains: c
                .domains
                .into_iter()
                .map(|d| DomainView {
                    domain: roster_events::ids::display_domain(&d.domain),
                    added_at: from_micros(d.added_at),
                })
                .collect(),
            created_at: from_micros(c.created_at),
            updated_at: from_micros(c.updated_at),
            licence: licence.map(Into::into),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerList {
    pub customers: Vec<CustomerView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    /// A domain name; internationalised names may be given in either form
    /// (`bücher.example` or `xn--bcher-kva.example`), compared as A-labels
    /// and shown as U-labels.
    pub domain: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DomainList {
    pub domains: Vec<DomainView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DomainRemoval {
    pub domain: String,
    /// Users deleted because their primary address was in the domain (D3.n).
    pub users_deleted: Vec<String>,
    /// Aliases removed from users whose primary domain is still managed.
    pub aliases_removed: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Primary address, in a managed domain (M1).
    pub address: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub home_phone: Option<String>,
    pub mobile: Option<String>,
    pub company: Option<String>,
    pub department: Option<String>,
    pub notes: Option<String>,
    /// Secondary addresses, in managed domains.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `user` (default), `distribution_list` or `public_folder`.
    pub kind: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub home_phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub mobile: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub company: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub department: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
    /// The complete new set of aliases; omitted: unchanged.
    pub aliases: Option<Vec<String>>,
    /// `active` or `deactivated`.
    pub status: Option<String>,
}

impl UpdateUser {
    /// The profile fields as the patch the application applies (the same
    /// type as a CSV row's).
    pub fn profile(&self) -> roster_csv::ProfilePatch {
        roster_csv::ProfilePatch {
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            home_phone: self.home_phone.clone(),
            mobile: self.mobile.clone(),
            company: self.company.clone(),
            department: self.department.clone(),
            notes: self.notes.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlagView {
    /// `missing` or `disabled` (D3.h).
    #[schema(value_type = String)]
    pub reason: FlagReason,
    pub flagged_at: Option<DateTime<Utc>>,
    /// When the user will be deleted; absent when delete-after is "never".
    pub delete_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    #[schema(value_type = String)]
    pub id: RuleId,
    /// `allow` or `deny`.
    #[schema(value_type = String)]
    pub kind: RuleKind,
    /// A sender address or domain.
    pub value: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    #[schema(value_type = String)]
    pub id: UserId,
    pub address: String,
    /// `user`, `distribution_list` or `public_folder`.
    #[schema(value_type = String)]
    pub kind: Kind,
    /// `ldap`, `entra`, `manual`, `csv` or `smtp`.
    #[schema(value_type = String)]
    pub source: Source,
    /// The source as administrators know it (entra is shown as Azure).
    pub source_label: String,
    /// `active`, `pending_deletion`, `deactivated` or `deleted`.
    #[schema(value_type = String)]
    pub status: Status,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub home_phone: Option<String>,
    pub mobile: Option<String>,
    pub company: Option<String>,
    pub department: Option<String>,
    pub notes: Option<String>,
    /// Secondary addresses, grouped under the primary (U3).
    pub aliases: Vec<String>,
    /// For a distribution list: its members' primary addresses (D3.c);
    /// empty for users and public folders.
    pub members: Vec<String>,
    pub flag: Option<FlagView>,
    pub rules: Vec<RuleView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

pub fn source_label(source: Source) -> &'static str {
    match source {
        Source::Ldap => "LDAP",
        Source::Entra => "Azure",
        Source::Manual => "Manual",
        Source::Csv => "CSV",
        Source::Smtp => "SMTP",
    }
}

impl From<UserRow> for UserView {
    fn from(r: UserRow) -> Self {
        UserView {
            id: r.user_id,
            address: roster_events::ids::display_address(&r.address),
            kind: r.kind,
            source_label: source_label(r.source).to_string(),
            source: r.source,
            status: r.status,
            first_name: r.profile.first_name,
            last_name: r.profile.last_name,
            home_phone: r.profile.home_phone,
            mobile: r.profile.mobile,
            company: r.profile.company,
            department: r.profile.department,
            notes: r.profile.notes,
            aliases: r
                .aliases
                .iter()
                .map(|a| roster_events::ids::display_address(a))
                .collect(),
            members: r
                .members
                .iter()
                .map(|a| roster_events::ids::display_address(a))
                .collect(),
            flag: r.flag_reason.map(|reason| FlagView {
                reason,
                flagged_at: r.flagged_at.map(from_micros),
                delete_at: r.delete_at.map(from_micros),
            }),
            rules: r
                .rules
                .into_iter()
                .map(|x| RuleView {
                    id: x.rule_id,
                    kind: x.kind,
                    value: roster_events::ids::display_address_or_domain(&x.value),
                    created_at: from_micros(x.created_at),
                })
                .collect(),
            created_at: from_micros(r.created_at),
            updated_at: from_micros(r.updated_at),
            deleted_at: r.deleted_at.map(from_micros),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
    /// Pass as `page` to get the next page; absent on the last page.
    #[schema(value_type = Option<String>)]
    pub next_page: Option<roster_projections::Cursor>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// The user as it was at this instant (RFC 3339), computed from the log
    /// (B7): the user whose primary address this was then, 404 when there
    /// was none (or it was deleted).
    pub as_of: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Part of an address (primary or alias) or of a first or last name, any case.
    pub q: Option<String>,
    /// `active`, `pending_deletion`, `deactivated` or `deleted`; default: all but deleted.
    pub status: Option<String>,
    /// `ldap`, `entra`, `manual`, `csv` or `smtp`.
    pub source: Option<String>,
    /// The user list as it was at this instant (RFC 3339), computed from the log.
    pub as_of: Option<String>,
    /// The `next_page` token of the previous page.
    pub page: Option<String>,
    /// 1 to 1000; default 100.
    pub page_size: Option<i64>,
    /// `csv` downloads the whole filtered list as CSV in the import
    /// columns (also chosen by `Accept: text/csv`); `json` (default) pages.
    pub format: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    /// `allow` or `deny`.
    pub kind: String,
    /// A sender address (sender@example.com) or a domain (example.com).
    pub value: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    pub rules: Vec<RuleView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RuleQuery {
    /// The id of the rule to delete.
    pub rule_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    /// Position in the log's global order.
    pub position: i64,
    pub time: DateTime<Utc>,
    pub event_type: String,
    pub event_version: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The user's primary address when the event happened.
    pub address: Option<String>,
    /// The alias or domain the event is about, if any.
    pub subject: Option<String>,
    /// `token:<id>`, `sync:<run>` or `system:<name>` (E2).
    pub actor: String,
    pub correlation_id: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        AuditView {
            position: e.position,
            time: from_micros(e.recorded_at),
            event_type: e.event_type,
            event_version: e.event_version,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            address: e
                .address
                .as_deref()
                .map(roster_events::ids::display_address),
            subject: e
                .subject
                .as_deref()
                .map(roster_events::ids::display_address_or_domain),
            actor: e.actor,
            correlation_id: e.correlation_id,
            payload: e.payload,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub events: Vec<AuditView>,
    #[schema(value_type = Option<String>)]
    pub next_page: Option<roster_projections::Cursor>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    pub address: String,
    pub events: Vec<AuditView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Events about this address (primary, alias or domain).
    pub address: Option<String>,
    /// `token:<id>`, `sync:<run>` or `system:<name>`.
    pub actor: Option<String>,
    /// An event type, such as UserAdded.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// From this instant (RFC 3339), inclusive.
    pub from: Option<String>,
    /// Up to this instant (RFC 3339), inclusive.
    pub to: Option<String>,
    pub page: Option<String>,
    pub page_size: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ready`, `database unavailable` or `projections behind`.
    pub status: &'static str,
    pub backend: &'static str,
    pub log_head: i64,
    /// The position every projection has reached (the smallest checkpoint).
    pub projected: i64,
    /// How far each projection is behind the log's head.
    pub projections: Vec<ProjectionReadiness>,
}

/// One projection's distance to the log's head (`/readyz`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionReadiness {
    /// The projection, with its version (`users_v2`).
    pub name: String,
    pub position: i64,
    /// Events committed but not yet applied.
    pub behind_events: i64,
    /// Age of the oldest event not yet applied, in seconds.
    pub behind_seconds: f64,
    /// Within the configured lag (ROSTER_READY_MAX_LAG_EVENTS, ROSTER_READY_MAX_LAG_SECS).
    pub ready: bool,
}

impl From<roster_projections::ProjectionLag> for ProjectionReadiness {
    fn from(l: roster_projections::ProjectionLag) -> Self {
        ProjectionReadiness {
            name: l.name,
            position: l.position,
            behind_events: l.behind_events,
            behind_seconds: l.behind_seconds,
            ready: l.ready,
        }
    }
}
