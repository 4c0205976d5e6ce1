//! CSV import with review (M2, with M1, T3, U1, U6, D3.g): an application
//! service in two steps.
//!
//! **Review** reads a file with roster-csv, checks every row against the
//! store in bulk (managed domains, the owner of every address, tombstones,
//! the users the file names, the seat limit, the enabled directory) and
//! classifies it: add, update, unchanged or error. It changes no user: it
//! stores the plan (every row's outcome; for additions and updates the
//! target user, its version, the resulting profile and aliases, and the
//! chunk it is committed in) in `imports` / `import_rows`.
//!
//! **Commit** applies exactly that plan with source `csv`, every event
//! correlated by the import id. It first refuses (`review_stale`) when any
//! user the plan names changed, an address it claims was taken, the free
//! seats no longer fit its additions, or directory sync or the managed
//! domains changed. The plan is applied in chunks, each one atomic append
//! that also carries the [`Import`] aggregate's `ImportChunkCommitted`, so
//! the log records how far a commit got: committing again continues after
//! the last committed chunk, and a completed import answers with its first
//! result and applies nothing. See docs/imports.md.

use chrono::{DateTime, Utc};
use roster_csv::ImportOptions;
use roster_events::*;
use roster_store::{ImportRecord, ImportRowRecord};
use serde::{Deserialize, Serialize};

use crate::error::{AppError, AppResult};
use crate::App;

mod chunk;
mod commit;
mod plan;
mod review;
mod view;

pub use commit::commit;
use plan::{addition_changes, PlanRow};
pub use review::review;
pub use view::{sample, view};

/// How imports behave; [`ImportSettings::default`] is what the API uses.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    /// Additions and updates per chunk, each chunk one atomic append.
    pub chunk_rows: usize,
    /// How long a review can be committed.
    pub review_ttl: chrono::Duration,
    /// The largest file accepted, in bytes.
    pub max_bytes: usize,
    /// Testing only: the commit stops with an error right after chunk N
    /// has been appended, as a crash would.
    pub fail_after_chunk: Option<u32>,
}

/// Additions and updates per chunk (one append each).
pub const CHUNK_ROWS: usize = 5_000;
/// Reviews can be committed for this many hours.
pub const REVIEW_TTL_HOURS: i64 = 24;

impl Default for ImportSettings {
    fn default() -> Self {
        ImportSettings {
            chunk_rows: CHUNK_ROWS,
            review_ttl: chrono::Duration::hours(REVIEW_TTL_HOURS),
            max_bytes: roster_csv::DEFAULT_MAX_BYTES,
            fail_after_chunk: None,
        }
    }
}

/// Users loaded per query while reviewing or checking.
const LOAD_CHUNK: usize = 5_000;
/// Rows per page of a review, by default and at most.
pub const DEFAULT_PAGE: i64 = 1_000;
pub const MAX_PAGE: i64 = 10_000;

/// A row's outcome in the review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new user (or a deleted one that returns, U6).
    Add,
    /// An existing user whose fields or aliases change.
    Update,
    /// An existing user that already matches the row.
    Unchanged,
    /// Not applied: see the row's errors.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Add => "add",
            Outcome::Update => "update",
            Outcome::Unchanged => "unchanged",
            Outcome::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Outcome::Add,
            Outcome::Update,
            Outcome::Unchanged,
            Outcome::Error,
        ]
        .into_iter()
        .find(|o| o.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// One problem of a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RowIssue {
    /// The header of the cell at fault, as written in the file.
    pub column: Option<String>,
    /// Stable: the roster-csv row codes (`invalid_address`,
    /// `duplicate_address`, `too_long`, `invalid_encoding`, ...) and `unmanaged_domain`,
    /// `address_taken`, `over_seat_limit`, `directory_managed`, `invalid_field`.
    pub code: String,
    /// What is wrong and what to fix.
    pub message: String,
}

/// A field a row sets: its value before (absent for an addition) and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldChange {
    /// `first_name`, `last_name`, `home_phone`, `mobile`, `company`, `department` or `notes`.
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What the person sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// A multipart file upload.
    Upload,
    /// The request body as the file (`text/csv`, ...).
    Body,
    /// Pasted text.
    Text,
}

/// A file to review.
pub struct ReviewInput {
    pub bytes: bytes::Bytes,
    pub kind: InputKind,
    pub file_name: Option<String>,
    pub options: ImportOptions,
}

/// A header cell and the column it was read as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ColumnInfo {
    /// As written in the file.
    pub name: String,
    /// The canonical column, or absent when the column is ignored.
    pub column: Option<String>,
}

/// Something accepted that may not be what the person meant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileNote {
    /// `unknown_column`, `shadowed_column`, `unnamed_column_has_values` or
    /// `mixed_encoding`.
    pub code: String,
    pub message: String,
}

/// How the file was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileInfo {
    pub name: Option<String>,
    pub input: InputKind,
    pub bytes: u64,
    /// `utf-8`, `utf-16le`, `utf-16be` or `windows-1252`.
    pub encoding: String,
    pub bom: bool,
    /// `comma`, `semicolon` or `tab`.
    pub delimiter: String,
    pub header_line: u64,
    pub columns: Vec<ColumnInfo>,
    pub warnings: Vec<FileNote>,
    /// Rows whose cells are all empty (`,,,,`), ignored (issue 14).
    #[serde(default)]
    pub blank_rows: u64,
}

/// Rows by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Totals {
    pub rows: u64,
    pub add: u64,
    pub update: u64,
    pub unchanged: u64,
    pub error: u64,
}

/// The customer's seats at review (T3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeatInfo {
    pub limit: u64,
    pub used: u64,
    /// How many users the file could add.
    pub free: u64,
}

/// The stored review, beside its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ReviewInfo {
    file: FileInfo,
    totals: Totals,
    seats: SeatInfo,
    /// The directory sync enabled at review (`ldap` / `entra`).
    directory_sync: Option<DirectoryKind>,
}

/// A row as the review shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewRow {
    /// The row's number among the file's data rows, from 0.
    pub row: u64,
    /// Physical line where the row starts (1 = the file's first line).
    pub line: u64,
    pub address: String,
    pub outcome: Outcome,
    /// The existing user (update, unchanged), or the user an addition creates.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub user_id: Option<UserId>,
    /// The existing user's source (`ldap`, `entra`, `manual`, `csv`, `smtp`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub source: Option<Source>,
    /// A deleted user with this address comes back with its history (U6).
    pub returning: bool,
    /// The fields the row sets (for an error row: would set).
    pub changes: Vec<FieldChange>,
    pub aliases_added: Vec<String>,
    pub aliases_removed: Vec<String>,
    pub errors: Vec<RowIssue>,
}

impl ReviewRow {
    fn of(row_no: i64, p: PlanRow) -> Self {
        let changes = match (&p.profile, p.outcome) {
            (Some(profile), Outcome::Add) if p.changes.is_empty() => addition_changes(profile),
            _ => p.changes,
        };
        ReviewRow {
            row: row_no as u64,
            line: p.line,
            address: p.address,
            outcome: p.outcome,
            user_id: p.user_id,
            source: p.source,
            returning: p.returning,
            changes,
            aliases_added: p.aliases_added.iter().map(|a| a.to_string()).collect(),
            aliases_removed: p.aliases_removed.iter().map(|a| a.to_string()).collect(),
            errors: p.errors,
        }
    }
}

/// How far a commit got.
#[derive(Debug, Clone, Copy, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Progress {
    pub chunks: u32,
    pub committed_chunks: u32,
}

/// A reviewed row the commit did not apply, because what it was planned on
/// changed while a multi-chunk commit ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkippedView {
    pub line: u64,
    pub address: String,
    /// `changed_since_review`, `address_taken`, `over_seat_limit` or `unmanaged_domain`.
    pub code: String,
    pub reason: String,
}

/// What a commit applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitResult {
    pub import_id: String,
    /// `committed`.
    pub status: String,
    pub chunks: u32,
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Rows the review reported as errors (not applied).
    pub rejected: u64,
    pub skipped: u64,
    pub skipped_rows: Vec<SkippedView>,
    pub committed_by: String,
    pub committed_at: DateTime<Utc>,
}

/// Where a review is: `reviewed` (commit it), `committing` (a commit
/// started and has not finished), `committed`, or `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    Reviewed,
    Committing,
    Committed,
    Expired,
}

/// A review with one page of its rows.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportView {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: ImportId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub customer_id: CustomerId,
    /// `reviewed` (commit it), `committing` (a commit started and has not
    /// finished: commit again to complete it), `committed`, or `expired`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: ImportStatus,
    /// Who reviewed it (E2): `token:<id>` or `admin:<id>`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reviewed_by: Actor,
    pub reviewed_at: DateTime<Utc>,
    /// A review can be committed until then.
    pub expires_at: DateTime<Utc>,
    pub file: FileInfo,
    pub totals: Totals,
    pub seats: SeatInfo,
    /// The directory sync that was enabled at review (`ldap`, `entra`):
    /// rows that would change its users were reported, not planned.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub directory_sync: Option<DirectoryKind>,
    pub progress: Progress,
    pub result: Option<CommitResult>,
    /// False once the rows of an old review have been deleted.
    pub rows_available: bool,
    pub rows: Vec<ReviewRow>,
    /// Pass as `page` for the next rows; absent on the last page.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub next_page: Option<roster_projections::Cursor>,
}

/// Which rows of a review to show.
#[derive(Debug, Clone, Default)]
pub struct RowQuery {
    pub page: Option<String>,
    pub page_size: Option<i64>,
    pub outcome: Option<Outcome>,
}

/// The result of [`commit`].
pub struct Committed {
    pub result: CommitResult,
    /// The log position to wait for (0 when nothing was appended).
    pub position: i64,
    /// A repeated commit of a completed import: nothing was applied.
    pub replayed: bool,
}

fn stale(reasons: &[String], total: usize) -> AppError {
    let shown: Vec<&str> = reasons.iter().take(10).map(String::as_str).collect();
    let more = if total > shown.len() {
        format!(" and {} more", total - shown.len())
    } else {
        String::new()
    };
    AppError::conflict(
        "review_stale",
        format!(
            "the user list changed since this file was reviewed ({}{more}): nothing was applied; review the file again and commit the new review",
            shown.join("; ")
        ),
    )
}

fn not_found() -> AppError {
    AppError::not_found("no such import for this customer")
}

fn corrupt(e: impl std::fmt::Display) -> AppError {
    AppError::internal(format!("a stored import cannot be read: {e}"))
}

fn header_of(record: &ImportRecord) -> AppResult<ReviewInfo> {
    serde_json::from_str(&record.review).map_err(corrupt)
}

async fn load_header(
    app: &App,
    customer: CustomerId,
    import_id: ImportId,
) -> AppResult<ImportRecord> {
    match app.store.db().import(&import_id.to_string()).await? {
        Some(h) if h.customer_id == customer => Ok(h),
        _ => Err(not_found()),
    }
}

fn parse_plans(records: Vec<ImportRowRecord>) -> AppResult<Vec<(i64, PlanRow)>> {
    records
        .into_iter()
        .map(|r| Ok((r.row_no, serde_json::from_str(&r.plan).map_err(corrupt)?)))
        .collect()
}

/// The directory sync the customer has enabled: its rows are reported, not
/// planned (D3.a), and a change of it makes a review stale.
async fn enabled_directory(app: &App, customer: CustomerId) -> AppResult<Option<DirectoryKind>> {
    let directory = app
        .store
        .load::<roster_domain::Directory>(&customer.to_string())
        .await?;
    Ok(directory.state.enabled)
}
