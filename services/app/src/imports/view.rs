//! What a review shows: its status, file, totals, seats, the commit's
//! progress and result, and a page of its rows; and the sample file.

use roster_domain::Import;
use roster_events::*;
use roster_projections::Cursor;
use roster_store::{from_micros, micros, Loaded};

use super::{
    corrupt, header_of, load_header, parse_plans, ImportStatus, ImportView, Outcome, Progress,
    ReviewRow, RowQuery, DEFAULT_PAGE, MAX_PAGE,
};
use crate::error::{AppError, AppResult};
use crate::App;

/// A review with one page of its rows (T1: only within its customer).
pub async fn view(
    app: &App,
    customer: CustomerId,
    import_id: ImportId,
    query: &RowQuery,
) -> AppResult<ImportView> {
    let header = load_header(app, customer, import_id).await?;
    let review = header_of(&header)?;
    let import: Loaded<Import> = app.store.load(&import_id.to_string()).await?;
    let limit = query.page_size.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::invalid(format!(
            "page_size must be between 1 and {MAX_PAGE}"
        )));
    }
    // The shared keyset token (E3-style paging everywhere): the last row
    // number served.
    let after = match query.page.as_deref().filter(|p| !p.trim().is_empty()) {
        Some(p) => {
            let [row] = Cursor::read(p)?;
            Some(Cursor::number(&row)?)
                .filter(|n| *n >= 0)
                .ok_or_else(|| AppError::invalid("page is not a token this API returned"))?
        }
        None => -1,
    };
    let db = app.store.db();
    let mut records = db
        .import_rows(
            &header.import_id,
            after,
            query.outcome.map(Outcome::as_str),
            limit + 1,
        )
        .await?;
    let next_page = if records.len() as i64 > limit {
        records.truncate(limit as usize);
        records
            .last()
            .map(|r| Cursor::after(&[&r.row_no.to_string()]))
    } else {
        None
    };
    // A review of a header-only file has no rows to delete.
    let rows_available = !records.is_empty()
        || review.totals.rows == 0
        || db.import_has_rows(&header.import_id).await?;
    let rows = parse_plans(records)?
        .into_iter()
        .map(|(n, p)| ReviewRow::of(n, p))
        .collect();
    let now = micros(app.clock.now());
    let result = match &header.result {
        Some(r) => Some(serde_json::from_str(r).map_err(corrupt)?),
        None => None,
    };
    let status = if import.state.completed.is_some() || header.status == "committed" {
        ImportStatus::Committed
    } else if import.state.committed_chunks > 0 {
        ImportStatus::Committing
    } else if now > header.expires_at {
        ImportStatus::Expired
    } else {
        ImportStatus::Reviewed
    };
    Ok(ImportView {
        id: import_id,
        customer_id: header.customer_id,
        status,
        reviewed_by: header.reviewed_by.parse().map_err(corrupt)?,
        reviewed_at: from_micros(header.reviewed_at),
        expires_at: from_micros(header.expires_at),
        file: review.file,
        totals: review.totals,
        seats: review.seats,
        directory_sync: review.directory_sync,
        progress: Progress {
            chunks: header.chunks as u32,
            committed_chunks: if import.state.completed.is_some() {
                header.chunks as u32
            } else {
                import.state.committed_chunks
            },
        },
        result,
        rows_available,
        rows,
        next_page,
    })
}

/// The sample file (M2): the canonical columns and three users in the
/// customer's first managed domain (`example.com` when it has none yet).
pub async fn sample(app: &App, customer: CustomerId) -> AppResult<String> {
    let domains = app.store.db().managed_domains(customer).await?;
    let domain = domains
        .first()
        .map(|d| d.as_str().to_string())
        .unwrap_or_else(|| "example.com".into());
    Ok(roster_csv::sample_csv(&domain))
}
