//! Import (M2): a file dropped or chosen, or pasted text; the sample file;
//! the review (adds, updates, unchanged, errors at their line and column,
//! seats after saving); the commit with live progress; the stale-review
//! message. And the export of the user list. The service is
//! [`roster_app::imports`], as for the API.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use roster_app::imports::{
    self, ImportSettings, ImportStatus, ImportView, InputKind, Outcome, ReviewInput, RowQuery,
};
use roster_csv::ImportOptions;
use roster_events::{CustomerId, ImportId};
use serde::{Deserialize, Serialize};

use super::view::{self, when};
use super::CustomerPage;
use crate::error::PageError;
use crate::layout::{redirect_with, render, section, Flash, Layout};
use crate::session::CurrentAdmin;
use crate::ConsoleState;

/// The largest upload: roster-csv's largest file plus the multipart envelope.
pub const IMPORT_BODY_LIMIT: usize = roster_csv::DEFAULT_MAX_BYTES + 2 * 1024 * 1024;
/// Review rows per page.
const ROWS: i64 = 200;

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route(
            "/customers/{c}/import",
            get(form)
                .post(review)
                .layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .route("/customers/{c}/import/sample.csv", get(sample))
        .route("/customers/{c}/import/{id}", get(show))
        .route("/customers/{c}/import/{id}/progress", get(progress))
        .route("/customers/{c}/import/{id}/commit", post(commit))
}

fn base(c: &(impl std::fmt::Display + ?Sized)) -> String {
    format!("{}/import", view::customer_href(c))
}

#[derive(Template)]
#[template(path = "pages/import.html")]
struct ImportPage {
    layout: Layout,
    csrf: String,
    name: String,
    action: String,
    sample_href: String,
    script: String,
}

/// GET /customers/{c}/import
pub async fn form(scoped: CustomerPage) -> Result<Response, PageError> {
    let CustomerPage { admin, row, .. } = scoped;
    Ok(form_page(&admin, &row, None))
}

fn form_page(
    admin: &CurrentAdmin,
    row: &roster_projections::queries::CustomerRow,
    error: Option<String>,
) -> Response {
    let mut layout = super::layout(
        admin,
        row,
        format!("{}: import users", row.name),
        section::IMPORT,
    );
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    if let Some(e) = error {
        layout = layout.flash(Flash::error(e));
    }
    let page = render(&ImportPage {
        layout,
        csrf: admin.csrf.clone(),
        name: row.name.clone(),
        action: base(&row.customer_id),
        sample_href: format!("{}/sample.csv", base(&row.customer_id)),
        script: crate::assets::url("import.js"),
    });
    (status, page).into_response()
}

/// The file or pasted text of the import form. A browser sends an empty
/// file part when nothing was chosen: that is no file.
async fn input(mut form: Multipart) -> Result<ReviewInput, String> {
    let mut file: Option<(Bytes, Option<String>)> = None;
    let mut text: Option<Bytes> = None;
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "The file is over the limit of {} bytes: split it into smaller files.",
                roster_csv::DEFAULT_MAX_BYTES
            )
        } else {
            format!("The upload could not be read: {}", e.body_text())
        }
    };
    while let Some(field) = form.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or("").to_string();
        let file_name = field
            .file_name()
            .map(str::to_string)
            .filter(|n| !n.is_empty());
        let data = field.bytes().await.map_err(unreadable)?;
        match name.as_str() {
            "file" if !data.is_empty() || file_name.is_some() => file = Some((data, file_name)),
            "text" if !String::from_utf8_lossy(&data).trim().is_empty() => text = Some(data),
            _ => {}
        }
    }
    let (bytes, kind, file_name) = match (file, text) {
        (Some((f, n)), None) => (f, InputKind::Upload, n),
        (None, Some(t)) => (t, InputKind::Text, Some("pasted text".into())),
        (Some(_), Some(_)) => {
            return Err("Send either a file or pasted text, not both: clear one of them.".into())
        }
        (None, None) => {
            return Err("Choose or drop a CSV file, or paste CSV data, then review it.".into())
        }
    };
    Ok(ReviewInput {
        bytes,
        kind,
        file_name,
        options: ImportOptions::default(),
    })
}

/// POST /customers/{c}/import: reviews the file (changes nothing) and shows
/// the review.
pub async fn review(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path(c): Path<String>,
    form: Multipart,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let input = match input(form).await {
        Ok(i) => i,
        Err(e) => return Ok(form_page(&admin, &row, Some(e))),
    };
    let settings = ImportSettings::default();
    match imports::review(&state.app, &admin.actor(), customer, input, &settings).await {
        Ok(id) => Ok(axum::response::Redirect::to(&format!("{}/{id}", base(&c))).into_response()),
        Err(e) => Ok(form_page(
            &admin,
            &row,
            Some(view::message(&PageError::from(e))),
        )),
    }
}

/// GET /customers/{c}/import/sample.csv
pub async fn sample(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Path(c): Path<String>,
) -> Result<Response, PageError> {
    let customer = admin.customer(&state, &c).await?;
    let body = imports::sample(&state.app, customer).await?;
    Ok(csv_response("users-sample.csv", body.into()))
}

fn csv_response(name: &str, body: axum::body::Body) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

#[derive(Debug, Default, Deserialize)]
pub struct RowsQuery {
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub page: String,
}

pub struct RowItem {
    pub line: u64,
    pub address: String,
    pub outcome: &'static str,
    pub outcome_label: &'static str,
    pub errors: Vec<String>,
    pub changes: Vec<String>,
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Add => "Add",
        Outcome::Update => "Update",
        Outcome::Unchanged => "Unchanged",
        Outcome::Error => "Error",
    }
}

impl RowItem {
    fn of(r: &imports::ReviewRow) -> Self {
        let mut changes: Vec<String> = r
            .changes
            .iter()
            .map(|c| {
                let field = c.field.replace('_', " ");
                match (&c.before, &c.after) {
                    (Some(b), Some(a)) => format!("{field}: {b} → {a}"),
                    (None, Some(a)) => format!("{field}: {a}"),
                    (Some(b), None) => format!("{field}: {b} → (cleared)"),
                    (None, None) => field,
                }
            })
            .collect();
        changes.extend(
            r.aliases_added
                .iter()
                .map(|a| format!("alias added: {}", view::address(a))),
        );
        changes.extend(
            r.aliases_removed
                .iter()
                .map(|a| format!("alias removed: {}", view::address(a))),
        );
        if r.returning {
            changes.push("comes back with its earlier history".into());
        }
        RowItem {
            line: r.line,
            address: view::address(&r.address),
            outcome: r.outcome.as_str(),
            outcome_label: outcome_label(r.outcome),
            // M2: every error at its line and column, with what to fix.
            errors: r
                .errors
                .iter()
                .map(|e| match &e.column {
                    Some(col) => format!("Line {}, column “{col}”: {}", r.line, e.message),
                    None => format!("Line {}: {}", r.line, e.message),
                })
                .collect(),
            changes,
        }
    }
}

#[derive(Template)]
#[template(path = "pages/import_review.html")]
struct ReviewPage {
    layout: Layout,
    csrf: String,
    file_name: String,
    stale: String,
    again_href: String,
    encoding: String,
    delimiter: String,
    totals: imports::Totals,
    blank_rows: u64,
    seats: imports::SeatInfo,
    seats_after: u64,
    reviewed_at: String,
    reviewed_by: String,
    expires_at: String,
    warnings: Vec<String>,
    committed: bool,
    changes: u64,
    committable: bool,
    result: String,
    users_href: String,
    commit_action: String,
    progress_href: String,
    self_href: String,
    progress_max: u32,
    progress_value: u32,
    outcome: String,
    rows: Vec<RowItem>,
    filters: Vec<(&'static str, String)>,
    next_href: String,
    script: String,
}

fn import_id(raw: &str) -> Result<ImportId, PageError> {
    ImportId::parse(raw).map_err(|_| PageError::NotFound)
}

async fn load(
    state: &ConsoleState,
    customer: CustomerId,
    id: ImportId,
    query: &RowsQuery,
) -> Result<ImportView, PageError> {
    let outcome = match query.outcome.trim() {
        "" => None,
        o => Some(
            Outcome::parse(o)
                .ok_or_else(|| view::bad("Outcome must be add, update, unchanged or error."))?,
        ),
    };
    let rows = RowQuery {
        page: Some(query.page.trim().to_string()).filter(|p| !p.is_empty()),
        page_size: Some(ROWS),
        outcome,
    };
    Ok(imports::view(&state.app, customer, id, &rows).await?)
}

fn result_line(v: &ImportView) -> String {
    match &v.result {
        Some(r) => format!(
            "Saved {}: {} added, {} updated, {} unchanged, {} not applied (errors), {} skipped.",
            when(r.committed_at.timestamp_micros()),
            r.added,
            r.updated,
            r.unchanged,
            r.rejected,
            r.skipped
        ),
        None => String::new(),
    }
}

fn review_page(
    admin: &CurrentAdmin,
    row: &roster_projections::queries::CustomerRow,
    v: ImportView,
    query: &RowsQuery,
    stale: String,
) -> Response {
    let c = &row.customer_id;
    let href = format!("{}/{}", base(c), v.id);
    let seats_after = v.seats.used + v.totals.add.min(v.seats.free);
    let filters = [
        ("All rows", ""),
        ("Adds", "add"),
        ("Updates", "update"),
        ("Unchanged", "unchanged"),
        ("Errors", "error"),
    ]
    .into_iter()
    .map(|(label, o)| {
        let link = if o.is_empty() {
            href.clone()
        } else {
            format!("{href}?outcome={o}")
        };
        (label, link)
    })
    .collect();
    let next_href = v
        .next_page
        .as_deref()
        .map(|p| {
            format!(
                "{href}?outcome={}&page={}",
                view::encode(query.outcome.trim()),
                view::encode(p)
            )
        })
        .unwrap_or_default();
    let title = format!("{}: import review", row.name);
    render(&ReviewPage {
        layout: super::layout(admin, row, title, section::IMPORT),
        csrf: admin.csrf.clone(),
        file_name: v.file.name.clone().unwrap_or_else(|| "the file".into()),
        stale,
        again_href: base(c),
        encoding: v.file.encoding.clone(),
        delimiter: v.file.delimiter.clone(),
        totals: v.totals,
        blank_rows: v.file.blank_rows,
        seats: v.seats,
        seats_after,
        reviewed_at: when(v.reviewed_at.timestamp_micros()),
        reviewed_by: super::history::actor_label(&v.reviewed_by),
        expires_at: when(v.expires_at.timestamp_micros()),
        warnings: v.file.warnings.iter().map(|w| w.message.clone()).collect(),
        committable: matches!(v.status, ImportStatus::Reviewed | ImportStatus::Committing)
            && v.totals.add + v.totals.update > 0,
        result: result_line(&v),
        users_href: format!("{}/users", view::customer_href(c)),
        commit_action: format!("{href}/commit"),
        progress_href: format!("{href}/progress"),
        progress_max: v.progress.chunks.max(1),
        progress_value: v.progress.committed_chunks,
        committed: v.status == ImportStatus::Committed,
        changes: v.totals.add + v.totals.update,
        outcome: query.outcome.trim().to_string(),
        rows: v.rows.iter().map(RowItem::of).collect(),
        filters,
        next_href,
        self_href: href,
        script: crate::assets::url("import.js"),
    })
}

/// GET /customers/{c}/import/{id}: the review, or the saved result.
pub async fn show(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path((_, id)): Path<(String, String)>,
    Query(query): Query<RowsQuery>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let v = load(&state, customer, import_id(&id)?, &query).await?;
    Ok(review_page(&admin, &row, v, &query, String::new()))
}

#[derive(Serialize)]
pub struct ProgressView {
    pub status: ImportStatus,
    pub chunks: u32,
    pub committed_chunks: u32,
}

/// GET /customers/{c}/import/{id}/progress: what the page's script polls
/// while a commit runs.
pub async fn progress(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Path((c, id)): Path<(String, String)>,
) -> Result<Json<ProgressView>, PageError> {
    let customer = admin.customer(&state, &c).await?;
    let rows = RowQuery {
        page: None,
        page_size: Some(1),
        outcome: None,
    };
    let v = imports::view(&state.app, customer, import_id(&id)?, &rows).await?;
    Ok(Json(ProgressView {
        status: v.status,
        chunks: v.progress.chunks,
        committed_chunks: v.progress.committed_chunks,
    }))
}

/// POST /customers/{c}/import/{id}/commit: applies exactly the reviewed
/// plan; when the users changed since the review, says so and asks for a
/// new review (M2).
pub async fn commit(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path((c, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let id = import_id(&id)?;
    let app = &state.app;
    let settings = ImportSettings::default();
    let done = app
        .written(imports::commit(
            app,
            &admin.actor(),
            customer,
            id,
            &settings,
        ))
        .await;
    match done {
        Ok(c_done) => Ok(redirect_with(
            &format!("{}/{id}", base(&c)),
            Flash::success(format!(
                "Import saved: {} added, {} updated.",
                c_done.result.added, c_done.result.updated
            )),
            state.config.secure(),
        )),
        Err(e) => {
            let message = view::message(&PageError::from(e));
            let query = RowsQuery::default();
            let v = load(&state, customer, id, &query).await?;
            let page = review_page(&admin, &row, v, &query, message);
            Ok((StatusCode::CONFLICT, page).into_response())
        }
    }
}

/// GET /customers/{c}/users.csv: the user list, filtered like the page, as
/// the CSV an import reads back (every cell formula-safe, M2).
pub async fn export(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Path(c): Path<String>,
    Query(query): Query<super::users::ListQuery>,
) -> Result<Response, PageError> {
    let customer = admin.customer(&state, &c).await?;
    let filter = query.filter()?;
    // B7: `?at=` exports the list as it was then.
    let as_of = match query.at.trim() {
        "" => None,
        at => Some(super::timetravel::at_of(at)?),
    };
    Ok(roster_api::export::user_list_csv_of(
        state.app.store.clone(),
        customer,
        filter,
        as_of,
    ))
}
