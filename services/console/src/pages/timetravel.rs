//! Time travel (B7): the user list of a customer as it was at a chosen
//! instant (`/customers/{c}/users?at=...`), and a user's page as it was
//! then (`/customers/{c}/users/{address}?at=...`): its state at that
//! instant and its history up to it. Both are computed from the log
//! ([`roster_projections::timetravel`]) and are read-only: no edit,
//! delete or add button.

use std::collections::HashSet;

use askama::Template;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use roster_events::{Address, CorrelationId, Status};
use roster_projections::console as reads;
use roster_projections::queries;
use roster_projections::timetravel;

use super::history::{timeline, HistoryItem};
use super::users::{ListQuery, UserItem, PAGE_SIZE};
use super::view;
use super::CustomerPage;
use crate::error::PageError;
use crate::layout::{render, section, Layout};
use crate::ConsoleState;

/// An instant as typed: a date-time field's `YYYY-MM-DDTHH:MM[:SS]` (UTC),
/// a date (its midnight, UTC) or RFC 3339 with an offset.
pub fn parse_instant(field: &str, raw: &str) -> Result<DateTime<Utc>, String> {
    let s = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "{field} “{s}” is not a date and time: use YYYY-MM-DD HH:MM (UTC), for example 2026-03-01T09:30."
    ))
}

/// The value of a date-time field for an instant (UTC, to the minute).
pub fn field_value(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M").to_string()
}

/// The instant of an `at` parameter, or a bad request saying what to fix.
/// A time typed to the minute means the end of that minute: "as of 09:30"
/// includes what happened at 09:30:59.
pub fn at_of(raw: &str) -> Result<DateTime<Utc>, PageError> {
    let t = parse_instant("Show as of", raw).map_err(view::bad)?;
    let to_minute = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .any(|f| NaiveDateTime::parse_from_str(raw.trim(), f).is_ok());
    Ok(if to_minute {
        t + chrono::Duration::microseconds(59_999_999)
    } else {
        t
    })
}

fn in_words(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[derive(Template)]
#[template(path = "pages/users_past.html")]
struct PastUsersPage {
    layout: Layout,
    name: String,
    at: String,
    at_value: String,
    action: String,
    export_href: String,
    live_href: String,
    filter: ListQuery,
    users: Vec<UserItem>,
    first_href: String,
    next_href: String,
}

/// The link of a page of the past list: the filters, `at`, the page.
fn list_href(base: &str, query: &ListQuery, page: Option<&str>) -> String {
    view::href(
        base,
        [
            ("at", query.at.as_str()),
            ("q", &query.q),
            ("page", page.unwrap_or("")),
        ],
    )
}

/// GET /customers/{c}/users?at=...: the list as it was then.
pub async fn list(
    state: &ConsoleState,
    scoped: CustomerPage,
    query: ListQuery,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let at = at_of(&query.at)?;
    let filter = query.filter()?;
    let page = Some(query.page.trim()).filter(|p| !p.is_empty());
    let found = timetravel::users_as_of(&state.app.store, customer, at, &filter, page, PAGE_SIZE)
        .await
        .map_err(|e| match e {
            roster_projections::ProjectionError::Invalid(_) if page.is_some() => {
                view::bad("This page link is not valid any more: start from the first page.")
            }
            other => other.into(),
        })?;
    let c = customer.to_string();
    let base = format!("{}/users", view::customer_href(&c));
    let at_param = view::encode(query.at.trim());
    let users = found
        .items
        .iter()
        .map(|r| {
            let mut item = UserItem::of(&c, r);
            item.href = format!("{}?at={at_param}", item.href);
            item
        })
        .collect();
    let layout = super::layout(
        &admin,
        &row,
        format!("{}: users as of {}", row.name, in_words(at)),
        section::USERS,
    );
    Ok(render(&PastUsersPage {
        layout,
        name: row.name.clone(),
        at: in_words(at),
        at_value: field_value(at),
        live_href: base.clone(),
        export_href: list_href(&format!("{base}.csv"), &query, None),
        first_href: if page.is_some() {
            list_href(&base, &query, None)
        } else {
            String::new()
        },
        next_href: found
            .next_page
            .as_deref()
            .map(|p| list_href(&base, &query, Some(p)))
            .unwrap_or_default(),
        action: base,
        users,
        filter: query,
    }))
}

#[derive(Template)]
#[template(path = "pages/user_past.html")]
struct PastUserPage {
    layout: Layout,
    at: String,
    live_href: String,
    list_href: String,
    user: UserItem,
    fields: Vec<(&'static str, String)>,
    members: Vec<String>,
    history: Vec<HistoryItem>,
}

/// GET /customers/{c}/users/{address}?at=...: the user as it was then.
pub async fn show(
    state: &ConsoleState,
    scoped: CustomerPage,
    address: &str,
    raw_at: &str,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let at = at_of(raw_at)?;
    let address = Address::parse(address).map_err(|_| PageError::NotFound)?;
    let store = &state.app.store;
    let rows = timetravel::users_at(store, customer, at).await?;
    // The user that had this primary address then: a live one first.
    let user = rows
        .into_values()
        .filter(|r| r.address == address.as_str())
        .min_by_key(|r| (r.status == Status::Deleted, r.user_id.to_string()))
        .ok_or(PageError::NotFound)?;
    let until = at.timestamp_micros();
    let events: Vec<_> = queries::history(store, customer, &user.address)
        .await?
        .into_iter()
        .filter(|e| e.recorded_at <= until)
        .collect();
    let mut ids: Vec<CorrelationId> = events.iter().map(|e| e.correlation_id).collect();
    ids.sort();
    ids.dedup();
    let imports: HashSet<CorrelationId> = reads::imports_among(store, customer, &ids).await?;
    let c = customer.to_string();
    let p = &user.profile;
    let fields = [
        ("Home phone", &p.home_phone),
        ("Mobile", &p.mobile),
        ("Company", &p.company),
        ("Department", &p.department),
        ("Notes", &p.notes),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
    .collect();
    let live_href = view::user_href(&c, &user.address);
    let layout = super::layout(
        &admin,
        &row,
        format!("{} as of {}", view::address(&user.address), in_words(at)),
        section::USERS,
    );
    Ok(render(&PastUserPage {
        layout,
        at: in_words(at),
        list_href: format!(
            "{}/users?at={}",
            view::customer_href(&c),
            view::encode(raw_at.trim())
        ),
        fields,
        members: user.members.iter().map(|m| view::address(m)).collect(),
        history: timeline(&c, &events, &imports),
        user: UserItem::of(&c, &user),
        live_href,
    }))
}

/// An instant (microseconds) as an `at` query value, exact to the
/// microsecond: the audit links a user event to the user just after it.
pub fn at_link(us: i64) -> String {
    view::encode(
        &roster_store::from_micros(us).to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b7_instants_as_typed() {
        let t = parse_instant("at", "2026-03-01T09:30").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-01T09:30:00+00:00");
        let t = parse_instant("at", "2026-03-01").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-01T00:00:00+00:00");
        let t = parse_instant("at", "2026-03-01T10:30:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-01T09:30:00+00:00");
        let e = parse_instant("From", "yesterday").unwrap_err();
        assert!(
            e.starts_with("From “yesterday” is not a date and time"),
            "{e}"
        );
    }

    #[test]
    fn b7_a_minute_includes_its_seconds() {
        let t = at_of("2026-03-01T09:30").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-01T09:30:59.999999+00:00");
        let exact = at_of("2026-03-01T09:30:10Z").unwrap();
        assert_eq!(exact.to_rfc3339(), "2026-03-01T09:30:10+00:00");
        assert!(at_of("soon").is_err());
    }
}
