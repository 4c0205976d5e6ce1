//! Audit (E2, E4): a customer's audit trail, newest first, filtered by
//! address (primary or alias), actor, event type and time range, paged.
//! Each event links to its user (as it was just after the event, B7), the
//! sync run or the import that made it. A filter value that cannot be used
//! is said on the page, with what to type.

use std::collections::HashSet;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use roster_events::{Actor, Address, CorrelationId, Domain};
use roster_projections::console as reads;
use roster_projections::queries::{self, AuditEntry, AuditFilter};
use serde::Deserialize;

use super::history::{actor_label, detail, event_label};
use super::timetravel::{at_link, parse_instant};
use super::view::{self, when};
use super::CustomerPage;
use crate::error::PageError;
use crate::layout::{render, section, Flash, Layout};
use crate::ConsoleState;

/// Events per page.
const PAGE_SIZE: i64 = 50;

/// The event types the filter offers (the ones [`event_label`] words).
pub const EVENT_TYPES: &[&str] = &[
    "UserAdded",
    "UserReturned",
    "ProfileUpdated",
    "AliasMapped",
    "AliasUnmapped",
    "AddressChanged",
    "AddressReleased",
    "FlaggedForDeletion",
    "DeletionCancelled",
    "ConflictIgnored",
    "UserDeactivated",
    "UserReactivated",
    "UserDeleted",
    "RuleAdded",
    "RuleRemoved",
    "DirectoryLinked",
    "AbsenceEnded",
    "ListMembersChanged",
    "CustomerCreated",
    "DomainAdded",
    "DomainRemoved",
    "SeatLimitChanged",
    "ImportCommitted",
    "SyncStarted",
    "SyncFinished",
    "SyncCompleted",
    "SyncFailed",
    "SyncHeld",
    "SyncConfirmed",
    "SyncDiscarded",
    "SyncSuperseded",
    "DirectoryConfigured",
    "DirectoryEnabled",
    "DirectoryDisabled",
    "DirectoryTested",
    "ExceptionAdded",
    "ExceptionRemoved",
    "AdditionAdded",
    "AdditionRemoved",
];

#[derive(Debug, Default, Clone, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub event_type: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub page: String,
}

fn typed(v: &str) -> Option<&str> {
    Some(v.trim()).filter(|v| !v.is_empty())
}

impl AuditQuery {
    /// The filter of the query, or what to fix (the REST filter's rules).
    pub fn filter(&self) -> Result<AuditFilter, String> {
        let address = match typed(&self.address) {
            None => None,
            Some(a) => Some(match Address::parse(a) {
                Ok(addr) => addr.to_string(),
                Err(_) => Domain::parse(a)
                    .map(|d| d.to_string())
                    .map_err(|_| format!("Address “{a}” is not an email address or a domain."))?,
            }),
        };
        let actor = match typed(&self.actor) {
            None => None,
            Some(a) => Some(a.parse::<Actor>().map_err(|_| {
                format!(
                    "Actor “{a}” is not one Roster records: type admin:<id>, token:<id>, \
                     sync:<run id> or system:<name> (click an actor in the list to filter by it)."
                )
            })?),
        };
        let event_type = match typed(&self.event_type) {
            None => None,
            Some(t) if EVENT_TYPES.contains(&t) => Some(t.to_string()),
            Some(t) => return Err(format!("Event type “{t}” is not one of the list.")),
        };
        let time = |field: &str, v: &str| {
            typed(v)
                .map(|v| parse_instant(field, v).map(|t| t.timestamp_micros()))
                .transpose()
        };
        let from = time("From", &self.from)?;
        // "To 09:30" includes 09:30:59.
        let to = time("To", &self.to)?.map(|t| {
            if self.to.trim().len() == "2026-01-01T00:00".len() {
                t + 59_999_999
            } else {
                t
            }
        });
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Err("From is after To: swap them.".into());
            }
        }
        Ok(AuditFilter {
            address,
            actor,
            event_type,
            from,
            to,
            ..AuditFilter::default()
        })
    }

    /// The link of this query with another page, or another actor.
    fn href(&self, base: &str, page: Option<&str>, actor: Option<&str>) -> String {
        let actor = actor.unwrap_or(&self.actor);
        view::href(
            base,
            [
                ("address", self.address.as_str()),
                ("actor", actor),
                ("event_type", self.event_type.as_str()),
                ("from", self.from.as_str()),
                ("to", self.to.as_str()),
                ("page", page.unwrap_or("")),
            ],
        )
    }
}

pub struct EventItem {
    pub when: String,
    pub what: &'static str,
    pub event_type: String,
    pub subject: String,
    pub subject_href: String,
    pub detail: String,
    pub actor: String,
    pub actor_filter_href: String,
    /// The run or import page, with its label.
    pub source: Option<(String, &'static str)>,
}

/// The run an event belongs to: its actor's, or a directory event's `run_id`.
fn run_of(e: &AuditEntry) -> Option<String> {
    if let Actor::Sync(run) = &e.actor {
        return Some(run.hyphenated().to_string());
    }
    if e.aggregate_type == "Directory" || e.aggregate_type == "SyncReport" {
        let p = e
            .payload
            .as_object()
            .and_then(|o| o.values().find_map(|v| v.get("run_id")))
            .or_else(|| e.payload.get("run_id"));
        return p.and_then(|v| v.as_str()).map(str::to_string);
    }
    None
}

fn item(
    c: &str,
    q: &AuditQuery,
    base: &str,
    e: &AuditEntry,
    imports: &HashSet<CorrelationId>,
) -> EventItem {
    let address = e.address.clone();
    let subject = address
        .as_deref()
        .or(e.subject.as_deref())
        .map(view::address)
        .unwrap_or_default();
    let subject_href = match (&address, e.aggregate_type.as_str()) {
        (Some(a), "User") => format!("{}?at={}", view::user_href(c, a), at_link(e.recorded_at)),
        _ => String::new(),
    };
    let source = if let Some(run) = run_of(e) {
        Some((
            format!("{}/runs/{}", view::customer_href(c), view::encode(&run)),
            "Sync run",
        ))
    } else if imports.contains(&e.correlation_id) {
        Some((
            format!("{}/import/{}", view::customer_href(c), e.correlation_id),
            "Import",
        ))
    } else {
        None
    };
    EventItem {
        when: when(e.recorded_at),
        what: event_label(&e.event_type),
        event_type: e.event_type.clone(),
        subject,
        subject_href,
        detail: detail(e),
        actor: actor_label(&e.actor),
        actor_filter_href: q.href(base, None, Some(&e.actor.to_string())),
        source,
    }
}

#[derive(Template)]
#[template(path = "pages/audit.html")]
struct AuditPage {
    layout: Layout,
    name: String,
    action: String,
    clear_href: String,
    query: AuditQuery,
    types: Vec<(&'static str, &'static str, bool)>,
    events: Vec<EventItem>,
    first_href: String,
    next_href: String,
}

/// GET /customers/{c}/audit
pub async fn list(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let c = customer.to_string();
    let base = format!("{}/audit", view::customer_href(&c));
    let mut layout = super::layout(&admin, &row, format!("{}: audit", row.name), section::AUDIT);
    let page = typed(&q.page);
    let found = match q.filter() {
        Ok(filter) => {
            match queries::audit(&state.app.store, customer, &filter, page, PAGE_SIZE).await {
                Ok(found) => Ok(found),
                Err(roster_projections::ProjectionError::Invalid(_)) if page.is_some() => {
                    Err("This page link is not valid any more: start from the first page.".into())
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(m) => Err(m),
    };
    let (events, next, status) = match found {
        Ok(found) => {
            let mut ids: Vec<CorrelationId> =
                found.items.iter().map(|e| e.correlation_id).collect();
            ids.sort();
            ids.dedup();
            let imports = reads::imports_among(&state.app.store, customer, &ids).await?;
            let events = found
                .items
                .iter()
                .map(|e| item(&c, &q, &base, e, &imports))
                .collect();
            (events, found.next_page, StatusCode::OK)
        }
        Err(message) => {
            layout = layout.flash(Flash::error(message));
            (Vec::new(), None, StatusCode::BAD_REQUEST)
        }
    };
    let types = std::iter::once(("", "Every event type", typed(&q.event_type).is_none()))
        .chain(
            EVENT_TYPES
                .iter()
                .map(|t| (*t, event_label(t), q.event_type.trim() == *t)),
        )
        .collect();
    let page_html = render(&AuditPage {
        layout,
        name: row.name.clone(),
        action: base.clone(),
        clear_href: base.clone(),
        types,
        events,
        first_href: if page.is_some() {
            q.href(&base, None, None)
        } else {
            String::new()
        },
        next_href: next
            .as_deref()
            .map(|p| q.href(&base, Some(p), None))
            .unwrap_or_default(),
        query: q,
    });
    Ok((status, page_html).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(f: impl FnOnce(&mut AuditQuery)) -> AuditQuery {
        let mut q = AuditQuery::default();
        f(&mut q);
        q
    }

    #[test]
    fn e4_filters_parse_like_the_api_and_say_what_to_fix() {
        let f = q(|q| q.address = " Sales@Example.ORG ".into())
            .filter()
            .unwrap();
        assert_eq!(f.address.as_deref(), Some("sales@example.org"));
        let f = q(|q| q.address = "example.org".into()).filter().unwrap();
        assert_eq!(f.address.as_deref(), Some("example.org"));
        let e = q(|q| q.address = "not an address".into())
            .filter()
            .unwrap_err();
        assert!(e.contains("is not an email address or a domain"), "{e}");
        let e = q(|q| q.actor = "bob".into()).filter().unwrap_err();
        assert!(e.contains("admin:<id>"), "{e}");
        let f = q(|q| q.actor = "system:reaper".into()).filter().unwrap();
        assert_eq!(f.actor, Some(Actor::System("reaper".into())));
        let e = q(|q| q.event_type = "DROP TABLE".into())
            .filter()
            .unwrap_err();
        assert!(e.contains("not one of the list"), "{e}");
        let e = q(|q| q.from = "yesterday".into()).filter().unwrap_err();
        assert!(e.starts_with("From “yesterday”"), "{e}");
        let e = q(|q| {
            q.from = "2026-03-02T00:00".into();
            q.to = "2026-03-01T00:00".into();
        })
        .filter()
        .unwrap_err();
        assert!(e.contains("swap"), "{e}");
        let f = q(|q| q.to = "2026-03-01T09:30".into()).filter().unwrap();
        assert_eq!(
            f.to,
            Some(
                parse_instant("to", "2026-03-01T09:30:59.999999Z")
                    .unwrap()
                    .timestamp_micros()
            )
        );
    }

    #[test]
    fn e4_every_offered_event_type_has_words() {
        for t in EVENT_TYPES {
            assert_ne!(event_label(t), "Changed", "{t}");
        }
    }

    #[test]
    fn e4_links_keep_the_filters() {
        let query = q(|q| {
            q.address = "a@ex.com".into();
            q.event_type = "UserAdded".into();
        });
        assert_eq!(
            query.href("/a", Some("P"), Some("system:x")),
            "/a?address=a%40ex.com&actor=system%3Ax&event_type=UserAdded&page=P"
        );
    }
}
