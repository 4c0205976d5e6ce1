//! Request and response bodies, as documented in the OpenAPI document.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use roster_events::{
    Actor, AggregateId, CorrelationId, CustomerId, FlagReason, Kind, PartnerId, Profile, RuleId,
    RuleKind, Source, Status, UserId,
};
use roster_projections::queries::{AuditEntry, CustomerRow, Licence};
use roster_projections::users::UserRow;
use roster_store::from_micros;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What `#[serde(deny_unknown_fields)]` does, for a body with a flattened
/// part (serde does not allow the two together): declared after the
/// flattened fields and flattened too, it receives every field no other
/// took and refuses the body if there is one. Not in the OpenAPI document.
#[derive(Debug, Default)]
pub struct NoOtherFields;

impl<'de> Deserialize<'de> for NoOtherFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let others = BTreeMap::<String, serde::de::IgnoredAny>::deserialize(d)?;
        match others.into_keys().next() {
            None => Ok(NoOtherFields),
            Some(name) => Err(serde::de::Error::custom(format!(
                "unknown field `{name}` (see /openapi.json)"
            ))),
        }
    }
}

/// A flattened part of a body, read so that an error names its field as
/// for the body's other fields (serde reads a flattened part from a buffer,
/// where the body's reader no longer sees the path).
fn named<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    serde_path_to_error::deserialize(d).map_err(|e| {
        let path = e.path().to_string();
        serde::de::Error::custom(format!("{path}: {}", e.into_inner()))
    })
}

/// The profile of a user (U2) as a body sets it and an answer shows it:
/// each field a text, or null when not set.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ProfileFields {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub home_phone: Option<String>,
    pub mobile: Option<String>,
    pub company: Option<String>,
    pub department: Option<String>,
    pub notes: Option<String>,
}

/// Both conversions between the event's profile and the body's, from one
/// list of the fields (a field missing on either side does not compile).
macro_rules! profile_conversions {
    ($($field:ident),*) => {
        impl From<Profile> for ProfileFields {
            fn from(p: Profile) -> Self {
                ProfileFields { $($field: p.$field),* }
            }
        }
        impl From<ProfileFields> for Profile {
            fn from(p: ProfileFields) -> Self {
                Profile { $($field: p.$field),* }
            }
        }
    };
}
profile_conversions!(first_name, last_name, home_phone, mobile, company, department, notes);

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
pub struct CreateUser {
    /// Primary address, in a managed domain (M1).
    pub address: String,
    #[serde(flatten, deserialize_with = "named")]
    pub profile: ProfileFields,
    /// Secondary addresses, in managed domains.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `user` (default), `distribution_list` or `public_folder`.
    pub kind: Option<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub no_other_fields: NoOtherFields,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateUser {
    /// The profile fields to change: `null` clears one, a field left out
    /// stays as it is (the patch a CSV row applies too).
    #[serde(flatten, deserialize_with = "named")]
    pub profile: roster_csv::ProfilePatch,
    /// The complete new set of aliases; omitted: unchanged.
    pub aliases: Option<Vec<String>>,
    /// `active` or `deactivated`.
    pub status: Option<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub no_other_fields: NoOtherFields,
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
    #[serde(flatten)]
    pub profile: ProfileFields,
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
            profile: r.profile.into(),
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
    #[schema(value_type = String)]
    pub aggregate_id: AggregateId,
    /// The user's primary address when the event happened.
    pub address: Option<String>,
    /// The alias or domain the event is about, if any.
    pub subject: Option<String>,
    /// `token:<id>`, `admin:<id>`, `sync:<run>` or `system:<name>` (E2).
    #[schema(value_type = String)]
    pub actor: Actor,
    /// The request, sync run or import that made the change (E2).
    #[schema(value_type = String)]
    pub correlation_id: CorrelationId,
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
    /// `token:<id>`, `admin:<id>`, `sync:<run>` or `system:<name>`.
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::inputs::from_value;

    /// M1, issue 13: the user bodies flatten their profile fields and still
    /// refuse a field they do not take, naming it.
    #[test]
    fn m1_user_bodies_refuse_unknown_fields_beside_the_flattened_profile() {
        for body in [
            json!({"address": "a@acme.example", "bogus": 1}),
            json!({"address": "a@acme.example", "first_name": "A", "bogus": null}),
        ] {
            let e = from_value::<CreateUser>(body.clone()).unwrap_err();
            assert_eq!(e.code, "invalid_request");
            assert!(
                e.message.contains("unknown field `bogus`"),
                "{body}: {}",
                e.message
            );
        }
        let e = from_value::<UpdateUser>(json!({"notes": "x", "nickname": "y"})).unwrap_err();
        assert!(
            e.message.contains("unknown field `nickname`"),
            "{}",
            e.message
        );
        // A wrong type is named by its field, as for the fields not flattened.
        let e = from_value::<CreateUser>(json!({"address": "a@acme.example", "mobile": 5}))
            .unwrap_err();
        assert!(e.message.contains("mobile: invalid type"), "{}", e.message);
        let e = from_value::<UpdateUser>(json!({"notes": ["x"]})).unwrap_err();
        assert!(e.message.contains("notes: invalid type"), "{}", e.message);
        let e = from_value::<CreateUser>(json!({"first_name": "A"})).unwrap_err();
        assert!(
            e.message.contains("missing field `address`"),
            "{}",
            e.message
        );
    }

    /// M1: a created user's profile fields, and a PATCH's: `null` clears a
    /// field, a field left out stays as it is.
    #[test]
    fn m1_profile_fields_are_read_from_the_flattened_bodies() {
        let c: CreateUser = from_value(json!({
            "address": "a@acme.example", "first_name": "Ann", "notes": "n", "aliases": ["b@acme.example"]
        }))
        .unwrap();
        let p: Profile = c.profile.into();
        assert_eq!(
            (p.first_name.as_deref(), p.notes.as_deref(), p.mobile),
            (Some("Ann"), Some("n"), None)
        );
        assert_eq!(c.aliases, ["b@acme.example"]);
        let u: UpdateUser =
            from_value(json!({"first_name": null, "department": "Sales", "status": "active"}))
                .unwrap();
        assert_eq!(u.profile.first_name, Some(None));
        assert_eq!(u.profile.department, Some(Some("Sales".into())));
        assert_eq!(u.profile.last_name, None);
        assert_eq!(u.status.as_deref(), Some("active"));
    }

    /// U2: an answer shows every profile field, `null` where not set, as
    /// before the fields were flattened.
    #[test]
    fn u2_a_user_view_shows_every_profile_field() {
        let v = serde_json::to_value(ProfileFields::from(Profile {
            company: Some("Acme".into()),
            ..Profile::default()
        }))
        .unwrap();
        assert_eq!(
            v,
            json!({"first_name": null, "last_name": null, "home_phone": null, "mobile": null,
                   "company": "Acme", "department": null, "notes": null})
        );
    }
}
