//! CSV downloads (M2, D3.m): whole lists streamed page by page as UTF-8
//! CSV with BOM and CRLF, through roster-csv's writer, so that no cell can
//! start a formula (`=`, `+`, `-`, `@`, tab, carriage return), and an
//! import undoes exactly what the export escaped
//! ([`roster_csv::escape_formula`], [`roster_csv::unescape_cell`]).
//!
//! [`csv_download`] streams any paged list; [`user_cells`] are a user in
//! the canonical columns ([`roster_csv::USER_HEADER`]), which an import
//! reads back as unchanged: export, import and export give the same bytes.
//! The user list export is [`user_list_csv`]; the conflicts view builds
//! its export from the same pieces (its own columns after the user's).

use roster_events::ids::display_address;
use std::future::Future;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use roster_csv::{CsvWriter, ExportOptions, USER_HEADER};
use roster_events::{CustomerId, FlagReason};
use roster_projections::queries::{self, Page, UserFilter};
use roster_projections::users::UserRow;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The media type of every CSV download.
pub const CSV_CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// Rows fetched per page while streaming.
const PAGE: i64 = 1_000;

/// Whether a list request asks for CSV: `?format=csv`, or an `Accept`
/// header that prefers `text/csv` to JSON. `?format=json` forces JSON;
/// another format is an error.
pub fn wants_csv(headers: &HeaderMap, format: Option<&str>) -> ApiResult<bool> {
    match format.map(|f| f.trim().to_ascii_lowercase()).as_deref() {
        Some("csv") => return Ok(true),
        Some("json") => return Ok(false),
        Some("") | None => {}
        Some(_) => return Err(ApiError::invalid("format must be json or csv")),
    }
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    // The first of text/csv and application/json that the client lists wins;
    // a list without text/csv gets JSON.
    let mut best: Option<(bool, f32)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let csv = match media.as_str() {
            "text/csv" => true,
            "application/json" => false,
            _ => continue,
        };
        if best.is_none_or(|(_, bq)| q > bq) {
            best = Some((csv, q));
        }
    }
    Ok(best.is_some_and(|(csv, q)| csv && q > 0.0))
}

/// Aliases as people read them (U-label domains), joined by `sep`.
fn display_aliases(aliases: &[String], sep: &str) -> String {
    aliases
        .iter()
        .map(|a| display_address(a))
        .collect::<Vec<_>>()
        .join(sep)
}

/// The cells of a user in the order of [`USER_HEADER`] (aliases joined with
/// `"; "`), before formula escaping, which the writer does.
pub fn user_cells(row: &UserRow) -> Vec<String> {
    let p = &row.profile;
    let f = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        display_address(&row.address),
        f(&p.first_name),
        f(&p.last_name),
        display_aliases(&row.aliases, "; "),
        f(&p.home_phone),
        f(&p.mobile),
        f(&p.company),
        f(&p.department),
        f(&p.notes),
    ]
}

/// A CSV download streamed page by page: the header, then the cells of
/// every item of every page `fetch` returns (it gets the previous page's
/// `next_page`), in UTF-8 with BOM, CRLF, every cell formula-safe. Memory
/// stays at one page whatever the list's length. An error while streaming
/// ends the download early (the status line is already sent) and is logged.
pub fn csv_download<T, F, Fut, C>(
    file_name: &str,
    header: Vec<String>,
    fetch: F,
    cells: C,
) -> Response
where
    T: Send + 'static,
    F: FnMut(Option<String>) -> Fut + Send + 'static,
    Fut: Future<Output = ApiResult<Page<T>>> + Send + 'static,
    C: Fn(&T) -> Vec<String> + Send + Sync + 'static,
{
    struct State<F, C> {
        fetch: F,
        cells: C,
        header: Option<Vec<String>>,
        next: Option<String>,
        done: bool,
    }
    let state = State {
        fetch,
        cells,
        header: Some(header),
        next: None,
        done: false,
    };
    let stream = futures::stream::try_unfold(state, |mut s| async move {
        if s.done {
            return Ok::<_, std::io::Error>(None);
        }
        let page = (s.fetch)(s.next.take()).await.map_err(|e| {
            tracing::error!(code = e.code, message = %e.message, "a CSV download stopped early");
            std::io::Error::other(e.message)
        })?;
        let first = s.header.is_some();
        let mut writer = CsvWriter::new(
            Vec::with_capacity(64 * 1024),
            &ExportOptions {
                bom: first,
                ..ExportOptions::default()
            },
        )?;
        if let Some(h) = s.header.take() {
            writer.write_record(h)?;
        }
        for item in &page.items {
            writer.write_record((s.cells)(item))?;
        }
        let bytes = Bytes::from(writer.into_inner()?);
        s.next = page.next_page.map(String::from);
        s.done = s.next.is_none();
        Ok(Some((bytes, s)))
    });
    let disposition = format!("attachment; filename=\"{}\"", file_name.replace('"', ""));
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CSV_CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// The user list of a customer, filtered like the JSON list, as a CSV
/// download in the canonical import columns (so an export imports back as
/// unchanged); `as_of` exports the list as it was then (B7).
pub fn user_list_csv(
    state: AppState,
    customer: CustomerId,
    filter: UserFilter,
    as_of: Option<DateTime<Utc>>,
) -> Response {
    user_list_csv_of(state.store.clone(), customer, filter, as_of)
}

/// [`user_list_csv`] from a store: the admin console's Export (issue 14)
/// gives the same bytes as the API's.
pub fn user_list_csv_of(
    store: roster_store::Store,
    customer: CustomerId,
    filter: UserFilter,
    as_of: Option<DateTime<Utc>>,
) -> Response {
    let header = USER_HEADER.iter().map(|h| h.to_string()).collect();
    let fetch = move |page: Option<String>| {
        let store = store.clone();
        let filter = filter.clone();
        async move {
            let page = match as_of {
                Some(at) => {
                    roster_projections::timetravel::users_as_of(
                        &store,
                        customer,
                        at,
                        &filter,
                        page.as_deref(),
                        PAGE,
                    )
                    .await?
                }
                None => {
                    queries::list_users(&store, customer, &filter, page.as_deref(), PAGE).await?
                }
            };
            Ok(page)
        }
    };
    csv_download("users.csv", header, fetch, user_cells)
}

/// The header of the conflicts export (D3.m).
pub const CONFLICTS_HEADER: [&str; 8] = [
    "email",
    "first_name",
    "last_name",
    "source",
    "reason",
    "flagged_at",
    "delete_at",
    "aliases",
];

fn rfc3339(us: Option<i64>) -> String {
    us.map(|t| roster_store::from_micros(t).to_rfc3339())
        .unwrap_or_default()
}

/// The cells of a flagged user in the order of [`CONFLICTS_HEADER`], before
/// formula escaping, which the writer does.
pub fn conflict_cells(row: &UserRow) -> Vec<String> {
    let p = &row.profile;
    vec![
        display_address(&row.address),
        p.first_name.clone().unwrap_or_default(),
        p.last_name.clone().unwrap_or_default(),
        crate::dto::source_label(row.source).to_string(),
        row.flag_reason
            .map(FlagReason::as_str)
            .unwrap_or_default()
            .to_string(),
        rfc3339(row.flagged_at),
        rfc3339(row.delete_at),
        display_aliases(&row.aliases, ";"),
    ]
}

/// The conflicts view's Export (D3.m): the users flagged for deletion,
/// filtered like the JSON view, streamed page by page like the user list,
/// formula-safe (M2).
pub fn conflicts_csv(state: AppState, customer: CustomerId, filter: UserFilter) -> Response {
    conflicts_csv_of(state.store.clone(), customer, filter)
}

/// [`conflicts_csv`] from a store: the admin console's Export of its User
/// Conflicts page (issue 15) gives the same bytes as the API's.
pub fn conflicts_csv_of(
    store: roster_store::Store,
    customer: CustomerId,
    filter: UserFilter,
) -> Response {
    let header = CONFLICTS_HEADER.iter().map(|h| h.to_string()).collect();
    let fetch = move |page: Option<String>| {
        let store = store.clone();
        let filter = filter.clone();
        async move { Ok(queries::list_users(&store, customer, &filter, page.as_deref(), PAGE).await?) }
    };
    csv_download("conflicts.csv", header, fetch, conflict_cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn m2_csv_is_chosen_by_format_or_accept() {
        assert!(wants_csv(&HeaderMap::new(), Some("csv")).unwrap());
        assert!(wants_csv(&HeaderMap::new(), Some("CSV")).unwrap());
        assert!(!wants_csv(&accept("text/csv"), Some("json")).unwrap());
        assert!(wants_csv(&HeaderMap::new(), Some("xml")).is_err());
        assert!(wants_csv(&accept("text/csv"), None).unwrap());
        assert!(wants_csv(&accept("text/csv, application/json;q=0.5"), None).unwrap());
        assert!(!wants_csv(&accept("application/json, text/csv;q=0.5"), None).unwrap());
        assert!(!wants_csv(&accept("*/*"), None).unwrap());
        assert!(!wants_csv(&HeaderMap::new(), None).unwrap());
        assert!(!wants_csv(&accept("text/csv;q=0"), None).unwrap());
    }
}
