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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use axum::body::Bytes;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use roster_csv::{Column, FileError, ImportFile, ImportOptions, ProfilePatch, RowOutcome};
use roster_domain::{
    AddUser, Directory, Import, ImportCommand, SeatUsage, User, UserCommand, UserServices,
};
use roster_events::*;
use roster_store::{from_micros, micros, Batch, ImportRecord, ImportRowRecord, Loaded, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

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

/// How many times a chunk is retried after concurrent changes.
const ATTEMPTS: usize = 8;
/// Users loaded per query while reviewing or checking.
const LOAD_CHUNK: usize = 5_000;
/// Rows per page of a review, by default and at most.
pub const DEFAULT_PAGE: i64 = 1_000;
pub const MAX_PAGE: i64 = 10_000;

/// A row's outcome in the review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldChange {
    /// `first_name`, `last_name`, `home_phone`, `mobile`, `company`, `department` or `notes`.
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The stored plan of one row: what the review shows, and what the commit
/// needs to apply it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PlanRow {
    line: u64,
    /// The primary address, normalised; as written when it is invalid.
    address: String,
    outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<UserId>,
    /// The user's version (aggregate sequence) the plan was made on; 0 for
    /// a new user.
    #[serde(default)]
    version: i64,
    /// A deleted user with this address comes back (U6).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    returning: bool,
    /// The existing user's source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<Source>,
    /// The whole profile after the row (additions and updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<Profile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    changes: Vec<FieldChange>,
    /// For an addition: all its aliases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    aliases_added: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    aliases_removed: Vec<Address>,
    /// Rows (by row number) that release an address this row claims; they
    /// are in the same chunk, and this row is applied only with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    after: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    errors: Vec<RowIssue>,
}

impl PlanRow {
    fn error(&mut self, column: Option<&str>, code: &str, message: String) {
        self.outcome = Outcome::Error;
        self.errors.push(RowIssue {
            column: column.map(str::to_string),
            code: code.to_string(),
            message,
        });
    }

    /// Addresses this row claims when applied: an addition's primary and
    /// aliases, an update's new aliases.
    fn claims(&self) -> Vec<Address> {
        let mut out = Vec::new();
        if self.outcome == Outcome::Add {
            if let Ok(a) = Address::parse(&self.address) {
                out.push(a);
            }
        }
        out.extend(self.aliases_added.iter().cloned());
        out
    }

    /// Whether the commit must compare the user's version (existing users
    /// and returning ones; a new user's id is the plan's own).
    fn has_version(&self) -> bool {
        self.user_id.is_some() && self.version > 0
    }
}

/// What the person sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    pub bytes: Bytes,
    pub kind: InputKind,
    pub file_name: Option<String>,
    pub options: ImportOptions,
}

/// A header cell and the column it was read as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ColumnInfo {
    /// As written in the file.
    pub name: String,
    /// The canonical column, or absent when the column is ignored.
    pub column: Option<String>,
}

/// Something accepted that may not be what the person meant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileNote {
    /// `unknown_column`, `shadowed_column`, `unnamed_column_has_values` or
    /// `mixed_encoding`.
    pub code: String,
    pub message: String,
}

/// How the file was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
}

/// Rows by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    pub rows: u64,
    pub add: u64,
    pub update: u64,
    pub unchanged: u64,
    pub error: u64,
}

/// The customer's seats at review (T3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewRow {
    /// The row's number among the file's data rows, from 0.
    pub row: u64,
    /// Physical line where the row starts (1 = the file's first line).
    pub line: u64,
    pub address: String,
    pub outcome: Outcome,
    /// The existing user (update, unchanged), or the user an addition creates.
    pub user_id: Option<String>,
    /// The existing user's source (`ldap`, `entra`, `manual`, `csv`, `smtp`).
    pub source: Option<String>,
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
            user_id: p.user_id.map(|u| u.to_string()),
            source: p.source.map(|s| s.as_str().to_string()),
            returning: p.returning,
            changes,
            aliases_added: p.aliases_added.iter().map(|a| a.to_string()).collect(),
            aliases_removed: p.aliases_removed.iter().map(|a| a.to_string()).collect(),
            errors: p.errors,
        }
    }
}

/// How far a commit got.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Progress {
    pub chunks: u32,
    pub committed_chunks: u32,
}

/// A reviewed row the commit did not apply, because what it was planned on
/// changed while a multi-chunk commit ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SkippedView {
    pub line: u64,
    pub address: String,
    /// `changed_since_review`, `address_taken`, `over_seat_limit` or `unmanaged_domain`.
    pub code: String,
    pub reason: String,
}

/// What a commit applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

/// A review with one page of its rows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportView {
    pub id: String,
    pub customer_id: String,
    /// `reviewed` (commit it), `committing` (a commit started and has not
    /// finished: commit again to complete it), `committed`, or `expired`.
    pub status: String,
    pub reviewed_by: String,
    pub reviewed_at: DateTime<Utc>,
    /// A review can be committed until then.
    pub expires_at: DateTime<Utc>,
    pub file: FileInfo,
    pub totals: Totals,
    pub seats: SeatInfo,
    /// The directory sync that was enabled at review (`ldap`, `entra`):
    /// rows that would change its users were reported, not planned.
    pub directory_sync: Option<String>,
    pub progress: Progress,
    pub result: Option<CommitResult>,
    /// False once the rows of an old review have been deleted.
    pub rows_available: bool,
    pub rows: Vec<ReviewRow>,
    /// Pass as `page` for the next rows; absent on the last page.
    pub next_page: Option<String>,
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

/// A file error as the API answers it.
pub fn file_error(e: FileError) -> ApiError {
    match e {
        FileError::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            e.to_string(),
        ),
        FileError::TooManyRows { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.code(), e.to_string())
        }
        _ => ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()),
    }
}

fn stale(reasons: &[String], total: usize) -> ApiError {
    let shown: Vec<&str> = reasons.iter().take(10).map(String::as_str).collect();
    let more = if total > shown.len() {
        format!(" and {} more", total - shown.len())
    } else {
        String::new()
    };
    ApiError::new(
        StatusCode::CONFLICT,
        "review_stale",
        format!(
            "the user list changed since this file was reviewed ({}{more}): nothing was applied; review the file again and commit the new review",
            shown.join("; ")
        ),
    )
}

fn not_found() -> ApiError {
    ApiError::not_found("no such import for this customer")
}

fn corrupt(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("a stored import cannot be read: {e}"))
}

fn column_name(file: &ImportFile, column: Column) -> String {
    file.header
        .iter()
        .find(|h| h.column == Some(column))
        .map(|h| h.name.clone())
        .unwrap_or_else(|| column.name().to_string())
}

fn file_info(file: &ImportFile, name: Option<String>, kind: InputKind, bytes: usize) -> FileInfo {
    FileInfo {
        name,
        input: kind,
        bytes: bytes as u64,
        encoding: file.encoding.as_str().to_string(),
        bom: file.bom,
        delimiter: file.delimiter.name().to_string(),
        header_line: file.header_line,
        columns: file
            .header
            .iter()
            .map(|h| ColumnInfo {
                name: h.name.clone(),
                column: h.column.map(|c| c.name().to_string()),
            })
            .collect(),
        warnings: file
            .warnings
            .iter()
            .map(|w| FileNote {
                code: serde_json::to_value(w)
                    .ok()
                    .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_string))
                    .unwrap_or_default(),
                message: w.to_string(),
            })
            .collect(),
    }
}

/// Union-find over row indexes: rows that hand an address to each other
/// are committed in one chunk.
struct Groups(Vec<usize>);

impl Groups {
    fn new(n: usize) -> Self {
        Groups((0..n).collect())
    }
    fn root(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }
    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.root(a), self.root(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// A parsed row being planned.
struct Work {
    plan: PlanRow,
    address: Option<Address>,
    patch: Option<ProfilePatch>,
    aliases: Option<Vec<Address>>,
    /// Set for a row whose primary address belongs to a user of this customer.
    existing: Option<UserId>,
}

/// Reviews a file: reads it, checks every row against the store, stores
/// the plan. Changes no user. Returns the new import's id.
pub async fn review(
    state: &AppState,
    actor: &Actor,
    customer: CustomerId,
    input: ReviewInput,
    settings: &ImportSettings,
) -> ApiResult<ImportId> {
    let db = state.store.db();
    let now = state.clock.now();
    if let Err(e) = db.purge_expired_imports(micros(now)).await {
        tracing::warn!(error = %e, "could not delete expired import reviews");
    }
    let ReviewInput {
        bytes,
        kind,
        file_name,
        mut options,
    } = input;
    options.max_bytes = settings.max_bytes;
    let size = bytes.len();
    let started = std::time::Instant::now();
    let file = tokio::task::spawn_blocking(move || roster_csv::parse_import(&bytes, &options))
        .await
        .map_err(ApiError::internal)?
        .map_err(file_error)?;

    let seats = db.seats(customer).await?;
    let domains: BTreeSet<Domain> = db.managed_domains(customer).await?.into_iter().collect();
    let directory = state
        .store
        .load::<Directory>(&customer.to_string())
        .await?
        .state
        .enabled;
    let parsed_s = started.elapsed().as_secs_f64();
    let info = file_info(&file, file_name, kind, size);
    let email_col = column_name(&file, Column::Email);
    let alias_col = column_name(&file, Column::Aliases);

    let addresses: Vec<Address> = file.addresses().map(|(_, _, a)| a.clone()).collect();
    let owners = db.address_owners_bulk(&addresses).await?;
    drop(addresses);

    // Pass 1: the rows as read, the target of each, checks of single rows.
    let mut work: Vec<Work> = Vec::with_capacity(file.rows.len());
    for row in file.rows {
        match row {
            RowOutcome::Rejected(r) => work.push(Work {
                plan: PlanRow {
                    line: r.line,
                    address: r.address_text,
                    outcome: Outcome::Error,
                    user_id: None,
                    version: 0,
                    returning: false,
                    source: None,
                    profile: None,
                    changes: vec![],
                    aliases_added: vec![],
                    aliases_removed: vec![],
                    after: vec![],
                    errors: r
                        .errors
                        .into_iter()
                        .map(|e| RowIssue {
                            column: e.column,
                            code: e.kind.code().to_string(),
                            message: e.kind.to_string(),
                        })
                        .collect(),
                },
                address: None,
                patch: None,
                aliases: None,
                existing: None,
            }),
            RowOutcome::Parsed(p) => {
                let mut plan = PlanRow {
                    line: p.line,
                    address: p.address.to_string(),
                    outcome: Outcome::Add,
                    user_id: None,
                    version: 0,
                    returning: false,
                    source: None,
                    profile: None,
                    changes: vec![],
                    aliases_added: vec![],
                    aliases_removed: vec![],
                    after: vec![],
                    errors: vec![],
                };
                if !domains.contains(&p.address.domain()) {
                    plan.error(
                        Some(&email_col),
                        "unmanaged_domain",
                        format!(
                            "{} is not a managed domain of this customer: add the domain first, or correct the address",
                            p.address.domain()
                        ),
                    );
                }
                for a in p.aliases.iter().flatten() {
                    if !domains.contains(&a.domain()) {
                        plan.error(
                            Some(&alias_col),
                            "unmanaged_domain",
                            format!(
                                "alias {a}: {} is not a managed domain of this customer: add the domain first, or remove the alias",
                                a.domain()
                            ),
                        );
                    }
                }
                let mut existing = None;
                match owners.get(&p.address) {
                    Some(o) if o.customer_id != customer => plan.error(
                        Some(&email_col),
                        "address_taken",
                        format!(
                            "{} already belongs to a user, alias or list outside this customer",
                            p.address
                        ),
                    ),
                    Some(o) if o.primary => existing = Some(o.owner),
                    _ => {}
                }
                work.push(Work {
                    plan,
                    address: Some(p.address),
                    patch: Some(p.profile),
                    aliases: p.aliases,
                    existing,
                });
            }
        }
    }

    // Tombstones of the addresses to add (U6: a returning address is the same user).
    let to_add: Vec<Address> = work
        .iter()
        .filter(|w| w.existing.is_none())
        .filter_map(|w| w.address.clone())
        .collect();
    let tombstones = db.tombstones_bulk(customer, &to_add).await?;
    drop(to_add);

    // Pass 2: the users the file names, loaded in slices; each row's plan.
    let mut wanted: HashMap<UserId, usize> = HashMap::new();
    for (i, w) in work.iter().enumerate() {
        if let Some(id) = w.existing {
            wanted.insert(id, i);
        } else if let Some(id) = w.address.as_ref().and_then(|a| tombstones.get(a)) {
            wanted.insert(*id, i);
        }
    }
    let mut primaries: HashMap<UserId, Address> = HashMap::new();
    let ids: Vec<String> = wanted.keys().map(|u| u.to_string()).collect();
    // Two slices in flight: one is decoded while the next is read.
    let slices: Vec<Vec<String>> = ids.chunks(LOAD_CHUNK).map(<[String]>::to_vec).collect();
    let mut slices = futures::stream::iter(slices)
        .map(|slice| {
            let store = state.store.clone();
            async move { store.load_many::<User>(&slice).await }
        })
        .buffered(2);
    while let Some(loaded) = slices.next().await {
        let loaded = loaded?;
        for (id, user) in loaded {
            let Ok(uid) = UserId::parse(&id) else {
                continue;
            };
            let Some(&i) = wanted.get(&uid) else { continue };
            let w = &mut work[i];
            if w.existing.is_some() {
                plan_update(w, uid, user, directory, &email_col);
                if let Some(a) = &w.address {
                    primaries.insert(uid, a.clone());
                }
            } else if user.state.exists() && user.state.status == Status::Deleted {
                w.plan.user_id = Some(uid);
                w.plan.version = user.version;
                w.plan.returning = true;
            }
        }
    }
    for w in work.iter_mut() {
        if w.existing.is_none() && w.address.is_some() {
            plan_add(w);
        }
    }

    // Pass 3: addresses the rows claim. One held by another user of this
    // customer is allowed only when that user's row in this file releases it.
    let row_of_user: HashMap<UserId, usize> = work
        .iter()
        .enumerate()
        .filter_map(|(i, w)| w.existing.map(|u| (u, i)))
        .collect();
    let mut deps: Vec<(usize, usize, Address)> = Vec::new();
    let mut unknown_owner: Vec<(usize, Address, UserId, bool)> = Vec::new();
    for i in 0..work.len() {
        if !matches!(work[i].plan.outcome, Outcome::Add | Outcome::Update) {
            continue;
        }
        let own = work[i].plan.user_id;
        for x in work[i].plan.claims() {
            let Some(o) = owners.get(&x) else { continue };
            let is_primary = work[i].address.as_ref() == Some(&x);
            let column = if is_primary { &email_col } else { &alias_col };
            if o.customer_id != customer {
                work[i].plan.error(
                    Some(column),
                    "address_taken",
                    format!("{x} already belongs to a user, alias or list outside this customer"),
                );
            } else if Some(o.owner) == own {
                continue;
            } else if o.primary {
                unknown_owner.push((i, x, o.owner, true));
            } else {
                match row_of_user.get(&o.owner) {
                    Some(&g)
                        if work[g].plan.outcome == Outcome::Update
                            && work[g].plan.aliases_removed.contains(&x) =>
                    {
                        deps.push((i, g, x));
                    }
                    _ => unknown_owner.push((i, x, o.owner, false)),
                }
            }
        }
    }
    for (i, x, owner, primary) in unknown_owner {
        let holder = match primaries.get(&owner) {
            Some(a) => Some(a.clone()),
            None => db.primary_of(owner).await?,
        };
        let holder = holder
            .map(|a| a.to_string())
            .unwrap_or_else(|| "another user".into());
        let is_row_primary = work[i].address.as_ref() == Some(&x);
        let column = if is_row_primary {
            &email_col
        } else {
            &alias_col
        };
        let message = if primary {
            format!(
                "{x} is the address of another user ({holder}): it cannot also be an alias here"
            )
        } else {
            format!(
                "{x} is an alias of {holder}: remove it from that user first (in this file, with an aliases cell without it, or in the user list)"
            )
        };
        work[i].plan.error(Some(column), "address_taken", message);
    }
    // A row that needs an address released by a row that is not applied is
    // not applied either (repeat: that may stop further rows).
    loop {
        let mut changed = false;
        for (taker, giver, x) in &deps {
            if work[*giver].plan.outcome != Outcome::Update
                && work[*taker].plan.outcome != Outcome::Error
            {
                let line = work[*giver].plan.line;
                let column = if work[*taker].address.as_ref() == Some(x) {
                    &email_col
                } else {
                    &alias_col
                };
                work[*taker].plan.error(
                    Some(column),
                    "address_taken",
                    format!("{x} is released by the row on line {line}, which is not applied: fix that row first"),
                );
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }

    // Pass 4: T3, additions beyond the free seats, in file order.
    let free = seats.limit.saturating_sub(seats.used);
    let mut adds = 0u64;
    for w in work.iter_mut() {
        if w.plan.outcome != Outcome::Add {
            continue;
        }
        adds += 1;
        if adds > free {
            w.plan.error(
                Some(&email_col),
                "over_seat_limit",
                format!(
                    "the customer has {} seats and {} are in use, so this file can add {free} users and this row would be addition {adds}: raise the seat limit, or remove users or rows",
                    seats.limit, seats.used
                ),
            );
        }
    }

    let checked_s = started.elapsed().as_secs_f64();
    // Pass 5: chunks. Rows that hand addresses to each other share one.
    let mut groups = Groups::new(work.len());
    for (taker, giver, _) in &deps {
        if work[*taker].plan.outcome != Outcome::Error {
            groups.join(*taker, *giver);
            let g = *giver as u64;
            if !work[*taker].plan.after.contains(&g) {
                work[*taker].plan.after.push(g);
            }
        }
    }
    let chunk_rows = settings.chunk_rows.max(1);
    let mut chunk_of_group: HashMap<usize, i64> = HashMap::new();
    let mut chunk_of_row: Vec<Option<i64>> = vec![None; work.len()];
    let (mut current, mut filled) = (0i64, 0usize);
    let mut chunks = 0i64;
    for i in 0..work.len() {
        if !matches!(work[i].plan.outcome, Outcome::Add | Outcome::Update) {
            continue;
        }
        let root = groups.root(i);
        let chunk = match chunk_of_group.get(&root) {
            Some(c) => *c,
            None => {
                if filled >= chunk_rows {
                    current += 1;
                    filled = 0;
                }
                chunk_of_group.insert(root, current);
                current
            }
        };
        filled += 1;
        chunk_of_row[i] = Some(chunk);
        chunks = chunks.max(chunk + 1);
    }

    // Store the review.
    let mut totals = Totals {
        rows: work.len() as u64,
        ..Totals::default()
    };
    for w in &work {
        match w.plan.outcome {
            Outcome::Add => totals.add += 1,
            Outcome::Update => totals.update += 1,
            Outcome::Unchanged => totals.unchanged += 1,
            Outcome::Error => totals.error += 1,
        }
    }
    let review = ReviewInfo {
        file: info,
        totals,
        seats: SeatInfo {
            limit: seats.limit,
            used: seats.used,
            free,
        },
        directory_sync: directory,
    };
    let import_id = ImportId::new();
    let header = ImportRecord {
        import_id: import_id.to_string(),
        customer_id: customer,
        reviewed_by: actor.to_string(),
        reviewed_at: micros(now),
        expires_at: micros(now + settings.review_ttl),
        status: "reviewed".into(),
        chunks,
        review: serde_json::to_string(&review).map_err(ApiError::internal)?,
        committed_by: None,
        committed_at: None,
        result: None,
    };
    let mut writer = db.begin_import(&header).await?;
    let mut records = Vec::with_capacity(LOAD_CHUNK.min(work.len()));
    for (i, w) in work.into_iter().enumerate() {
        let mut plan = w.plan;
        if plan.outcome == Outcome::Error {
            // An error row keeps what it would have set, not its profile.
            if w.existing.is_none() && plan.changes.is_empty() {
                if let Some(profile) = &plan.profile {
                    plan.changes = addition_changes(profile);
                }
            }
            plan.profile = None;
            plan.after.clear();
        }
        records.push(ImportRowRecord {
            row_no: i as i64,
            line: plan.line as i64,
            outcome: plan.outcome.as_str().to_string(),
            chunk: chunk_of_row[i],
            plan: serde_json::to_string(&plan).map_err(ApiError::internal)?,
        });
        if records.len() == LOAD_CHUNK {
            writer.rows(&records).await?;
            records.clear();
        }
    }
    writer.rows(&records).await?;
    writer.finish().await?;
    let total_s = started.elapsed().as_secs_f64();
    tracing::info!(
        import_id = %import_id,
        rows = totals.rows,
        parse_s = parsed_s,
        checks_s = checked_s - parsed_s,
        store_s = total_s - checked_s,
        total_s,
        "import reviewed"
    );
    metrics::counter!("roster_import_reviews_total").increment(1);
    metrics::counter!("roster_import_rows_reviewed_total").increment(totals.rows);
    Ok(import_id)
}

/// Plans a row for an existing user: the profile after the row, the alias
/// changes (a present aliases column is the user's whole new set), and
/// whether the enabled directory manages the user (D3.a: reported, not
/// applied).
fn plan_update(
    w: &mut Work,
    uid: UserId,
    user: Loaded<User>,
    directory: Option<DirectoryKind>,
    email_col: &str,
) {
    let state = user.state;
    w.plan.user_id = Some(uid);
    w.plan.version = user.version;
    w.plan.source = state.source;
    if !state.exists() || state.status == Status::Deleted {
        w.plan.error(
            Some(email_col),
            "conflict",
            "the user changed while the file was being reviewed: review the file again".into(),
        );
        return;
    }
    let patch = w.patch.take().unwrap_or_default();
    // As the user would store it (trimmed, blank as absent), so that the
    // review shows exactly what the commit changes.
    let next = patch.applied_to(&state.profile).normalised();
    w.plan.changes = state
        .profile
        .fields()
        .iter()
        .zip(next.fields().iter())
        .filter(|((_, before), (_, after))| before != after)
        .map(|((field, before), (_, after))| FieldChange {
            field: field.to_string(),
            before: (*before).clone(),
            after: (*after).clone(),
        })
        .collect();
    if let Some(wanted) = w.aliases.take() {
        let wanted: BTreeSet<Address> = wanted.into_iter().collect();
        w.plan.aliases_added = wanted.difference(&state.aliases).cloned().collect();
        w.plan.aliases_removed = state.aliases.difference(&wanted).cloned().collect();
    }
    let changes = !w.plan.changes.is_empty()
        || !w.plan.aliases_added.is_empty()
        || !w.plan.aliases_removed.is_empty();
    if let Err((field, reason)) = next.check() {
        w.plan
            .error(None, "invalid_field", format!("{field} {reason}"));
    }
    w.plan.profile = Some(next);
    if w.plan.outcome == Outcome::Error {
        return;
    }
    if !changes {
        w.plan.outcome = Outcome::Unchanged;
        return;
    }
    let managed_by = match (directory, state.source) {
        (Some(kind), Some(source)) if source.is_directory() => Some((kind, source)),
        _ => None,
    };
    match managed_by {
        Some((kind, source)) => w.plan.error(
            Some(email_col),
            "directory_managed",
            format!(
                "{} comes from the directory ({}) and {} sync is on, so the directory decides its fields and aliases: change it in the directory (this row is reported, not applied)",
                w.plan.address,
                source.as_str(),
                kind.as_str()
            ),
        ),
        None => w.plan.outcome = Outcome::Update,
    }
}

/// Plans a row that adds a user (or brings a deleted one back, U6).
fn plan_add(w: &mut Work) {
    let patch = w.patch.take().unwrap_or_default();
    let profile = patch.to_new_profile().normalised();
    // An addition's changes are its profile's fields: they are derived when
    // shown ([`addition_changes`]), not kept twice for every row of a large
    // file.
    w.plan.aliases_added = w.aliases.take().unwrap_or_default();
    if let Err((field, reason)) = profile.check() {
        w.plan
            .error(None, "invalid_field", format!("{field} {reason}"));
    }
    w.plan.profile = Some(profile);
    if w.plan.user_id.is_none() {
        w.plan.user_id = Some(UserId::new());
    }
    if w.plan.outcome != Outcome::Error {
        w.plan.outcome = Outcome::Add;
    }
}

/// The fields an addition sets: every field of its profile that has a value.
fn addition_changes(profile: &Profile) -> Vec<FieldChange> {
    profile
        .fields()
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(field, v)| FieldChange {
            field: field.to_string(),
            before: None,
            after: (*v).clone(),
        })
        .collect()
}

fn header_of(record: &ImportRecord) -> ApiResult<ReviewInfo> {
    serde_json::from_str(&record.review).map_err(corrupt)
}

async fn load_header(
    state: &AppState,
    customer: CustomerId,
    import_id: ImportId,
) -> ApiResult<ImportRecord> {
    match state.store.db().import(&import_id.to_string()).await? {
        Some(h) if h.customer_id == customer => Ok(h),
        _ => Err(not_found()),
    }
}

fn parse_plans(records: Vec<ImportRowRecord>) -> ApiResult<Vec<(i64, PlanRow)>> {
    records
        .into_iter()
        .map(|r| Ok((r.row_no, serde_json::from_str(&r.plan).map_err(corrupt)?)))
        .collect()
}

/// A review with one page of its rows (T1: only within its customer).
pub async fn view(
    state: &AppState,
    customer: CustomerId,
    import_id: ImportId,
    query: &RowQuery,
) -> ApiResult<ImportView> {
    let header = load_header(state, customer, import_id).await?;
    let review = header_of(&header)?;
    let import: Loaded<Import> = state.store.load(&import_id.to_string()).await?;
    let limit = query.page_size.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "page_size must be between 1 and {MAX_PAGE}"
        )));
    }
    // The shared keyset token (E3-style paging everywhere): the last row
    // number served.
    let after = match query.page.as_deref().filter(|p| !p.trim().is_empty()) {
        Some(p) => roster_projections::queries::decode_cursor(p, 1)?[0]
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::invalid("page is not a token this API returned"))?,
        None => -1,
    };
    let db = state.store.db();
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
            .map(|r| roster_projections::queries::encode_cursor(&[&r.row_no.to_string()]))
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
    let now = micros(state.clock.now());
    let result = match &header.result {
        Some(r) => Some(serde_json::from_str(r).map_err(corrupt)?),
        None => None,
    };
    let status = if import.state.completed.is_some() || header.status == "committed" {
        "committed"
    } else if import.state.committed_chunks > 0 {
        "committing"
    } else if now > header.expires_at {
        "expired"
    } else {
        "reviewed"
    };
    Ok(ImportView {
        id: header.import_id.clone(),
        customer_id: header.customer_id.to_string(),
        status: status.into(),
        reviewed_by: header.reviewed_by.clone(),
        reviewed_at: from_micros(header.reviewed_at),
        expires_at: from_micros(header.expires_at),
        file: review.file,
        totals: review.totals,
        seats: review.seats,
        directory_sync: review.directory_sync.map(|k| k.as_str().to_string()),
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

/// Commits a review: applies exactly its plan, or refuses when what it was
/// planned on changed; continues an interrupted commit; answers a repeated
/// commit of a completed import with its first result.
pub async fn commit(
    state: &AppState,
    actor: &Actor,
    customer: CustomerId,
    import_id: ImportId,
    settings: &ImportSettings,
) -> ApiResult<Committed> {
    let started = std::time::Instant::now();
    let header = load_header(state, customer, import_id).await?;
    let review = header_of(&header)?;
    let id = import_id.to_string();
    let import: Loaded<Import> = state.store.load(&id).await?;
    if import.state.completed.is_some() {
        let result = finished(state, &header, &import.state).await?;
        return Ok(Committed {
            result,
            position: 0,
            replayed: true,
        });
    }
    let chunks = u32::try_from(header.chunks).map_err(corrupt)?;
    if import.state.committed_chunks == 0 {
        let now = state.clock.now();
        // Rows gone means an old review was purged; a header-only file
        // never had any, and commits to an import that applied nothing.
        let purged = review.totals.rows > 0 && !state.store.db().import_has_rows(&id).await?;
        if micros(now) > header.expires_at || purged {
            return Err(ApiError::new(
                StatusCode::GONE,
                "review_expired",
                format!(
                    "the review expired at {}: upload the file again for a new review",
                    from_micros(header.expires_at).to_rfc3339()
                ),
            ));
        }
        check_stale(state, customer, &header, &review).await?;
    }
    let checked_s = started.elapsed().as_secs_f64();
    let mut position = 0;
    let mut next = import.state.committed_chunks;
    while next < chunks {
        if let Some(p) =
            commit_chunk(state, actor, customer, import_id, next, chunks, &review).await?
        {
            position = p;
            if settings.fail_after_chunk == Some(next) {
                return Err(ApiError::internal(format!(
                    "injected failure after chunk {next} of import {import_id}"
                )));
            }
        }
        next += 1;
    }
    if chunks == 0 {
        position = complete_empty(state, actor, customer, import_id, &review).await?;
    }
    let import: Loaded<Import> = state.store.load(&id).await?;
    if import.state.completed.is_none() {
        return Err(ApiError::internal(format!(
            "import {import_id}: every chunk is committed but the import is not complete"
        )));
    }
    let result = finished(state, &header, &import.state).await?;
    tracing::info!(
        import_id = %import_id,
        chunks,
        added = result.added,
        updated = result.updated,
        check_s = checked_s,
        apply_s = started.elapsed().as_secs_f64() - checked_s,
        "import committed"
    );
    metrics::counter!("roster_import_commits_total").increment(1);
    Ok(Committed {
        result,
        position,
        replayed: false,
    })
}

/// The result of a completed import, from the log; stored with the review
/// the first time, and answered from there afterwards.
async fn finished(
    state: &AppState,
    header: &ImportRecord,
    import: &Import,
) -> ApiResult<CommitResult> {
    if let Some(r) = &header.result {
        return serde_json::from_str(r).map_err(corrupt);
    }
    let fresh = state.store.db().import(&header.import_id).await?;
    if let Some(r) = fresh.and_then(|h| h.result) {
        return serde_json::from_str(&r).map_err(corrupt);
    }
    let done = import
        .completed
        .as_ref()
        .ok_or_else(|| ApiError::internal("the import is not complete"))?;
    // Who committed, and when: the completing event's metadata (E2).
    let history = roster_store::history::<Import>(&state.store, &header.import_id).await?;
    let meta = history
        .iter()
        .rev()
        .find(|(_, e)| matches!(e, ImportEvent::ImportCommitted(_)))
        .map(|(stored, _)| EventMeta::from_json(&stored.metadata))
        .ok_or_else(|| ApiError::internal("the import has no ImportCommitted event"))?
        .map_err(corrupt)?;
    let result = CommitResult {
        import_id: header.import_id.clone(),
        status: "committed".into(),
        chunks: done.chunks,
        added: done.added,
        updated: done.updated,
        unchanged: done.unchanged,
        rejected: done.rejected,
        skipped: done.skipped,
        skipped_rows: import
            .skipped
            .iter()
            .map(|s| SkippedView {
                line: s.line,
                address: s.address.to_string(),
                code: s.code.clone(),
                reason: s.reason.clone(),
            })
            .collect(),
        committed_by: meta.actor.to_string(),
        committed_at: meta.time,
    };
    let text = serde_json::to_string(&result).map_err(ApiError::internal)?;
    state
        .store
        .db()
        .finish_import(
            &header.import_id,
            &result.committed_by,
            micros(result.committed_at),
            &text,
        )
        .await?;
    Ok(result)
}

/// The checks before anything is applied: every user the plan names is at
/// the version it was reviewed at, every address it claims is still free
/// (or released by the plan), no tombstone appeared for a new address (U6),
/// the additions fit the free seats (T3), and directory sync and the
/// managed domains are as they were.
async fn check_stale(
    state: &AppState,
    customer: CustomerId,
    header: &ImportRecord,
    review: &ReviewInfo,
) -> ApiResult<()> {
    let db = state.store.db();
    let mut reasons = Reasons::default();
    let directory = state
        .store
        .load::<Directory>(&customer.to_string())
        .await?
        .state
        .enabled;
    if directory != review.directory_sync {
        reasons.note("directory sync was enabled, disabled or switched".into());
    }
    if review.totals.add > 0 {
        let seats = db.seats(customer).await?;
        if seats.used + review.totals.add > seats.limit {
            reasons.note(format!(
                "{} of the customer's {} seats are in use now, so the {} additions no longer fit",
                seats.used, seats.limit, review.totals.add
            ));
        }
    }
    let domains: HashSet<Domain> = db.managed_domains(customer).await?.into_iter().collect();
    let mut unmanaged: BTreeSet<Domain> = BTreeSet::new();
    // The plan's chunks, then its unchanged rows.
    let mut chunk = 0;
    let mut after = -1;
    loop {
        let plans = if chunk < header.chunks {
            chunk += 1;
            parse_plans(db.import_chunk(&header.import_id, chunk - 1).await?)?
        } else {
            let records = db
                .import_rows(
                    &header.import_id,
                    after,
                    Some("unchanged"),
                    LOAD_CHUNK as i64,
                )
                .await?;
            if records.is_empty() {
                break;
            }
            after = records.last().map(|r| r.row_no).unwrap_or(after);
            parse_plans(records)?
        };
        let plans = &plans;
        let ids: Vec<String> = plans
            .iter()
            .filter(|(_, p)| p.has_version())
            .filter_map(|(_, p)| p.user_id.map(|u| u.to_string()))
            .collect();
        let versions = db.aggregate_versions(USER_AGGREGATE, &ids).await?;
        let fresh: Vec<Address> = plans
            .iter()
            .filter(|(_, p)| p.outcome == Outcome::Add && !p.returning)
            .filter_map(|(_, p)| Address::parse(&p.address).ok())
            .collect();
        let tombstones = db.tombstones_bulk(customer, &fresh).await?;
        let claimed: Vec<Address> = plans.iter().flat_map(|(_, p)| p.claims()).collect();
        let owners = db.address_owners_bulk(&claimed).await?;
        let by_row: HashMap<u64, &PlanRow> = plans.iter().map(|(n, p)| (*n as u64, p)).collect();
        for (_, p) in plans {
            if p.has_version() {
                let now = p
                    .user_id
                    .and_then(|u| versions.get(&u.to_string()).copied())
                    .unwrap_or(0);
                if now != p.version {
                    reasons.note(format!("{} (line {}) changed", p.address, p.line));
                    continue;
                }
            }
            if p.outcome == Outcome::Add && !p.returning {
                if let Ok(a) = Address::parse(&p.address) {
                    if tombstones.contains_key(&a) {
                        reasons.note(format!(
                            "{} (line {}) was added and deleted",
                            p.address, p.line
                        ));
                        continue;
                    }
                }
            }
            for x in p.claims() {
                if !domains.contains(&x.domain()) {
                    unmanaged.insert(x.domain());
                }
                if let Some(o) = owners.get(&x) {
                    let released = p
                        .after
                        .iter()
                        .filter_map(|g| by_row.get(g))
                        .any(|g| g.user_id == Some(o.owner));
                    if Some(o.owner) != p.user_id && !released {
                        reasons.note(format!("{x} (line {}) is now used by another user", p.line));
                    }
                }
            }
        }
    }
    for d in unmanaged {
        reasons.note(format!("{d} is no longer a managed domain"));
    }
    if reasons.total > 0 {
        return Err(stale(&reasons.shown, reasons.total));
    }
    Ok(())
}

/// Why a review is stale: the first few reasons, and how many there are.
#[derive(Default)]
struct Reasons {
    shown: Vec<String>,
    total: usize,
}

impl Reasons {
    fn note(&mut self, reason: String) {
        self.total += 1;
        if self.shown.len() < 10 {
            self.shown.push(reason);
        }
    }
}

/// Why a planned row was not applied in a later chunk.
struct Skip {
    code: &'static str,
    reason: String,
}

/// Commits one chunk: its rows' events with the Import aggregate's record
/// of the chunk (and, with the last chunk, of the import's completion) in
/// one append. Returns the last position, or `None` when another commit of
/// the same import appended this chunk first.
#[allow(clippy::too_many_arguments)]
async fn commit_chunk(
    state: &AppState,
    actor: &Actor,
    customer: CustomerId,
    import_id: ImportId,
    chunk: u32,
    chunks: u32,
    review: &ReviewInfo,
) -> ApiResult<Option<i64>> {
    let db = state.store.db();
    let id = import_id.to_string();
    let started = std::time::Instant::now();
    let plans = parse_plans(db.import_chunk(&id, i64::from(chunk)).await?)?;
    let read_s = started.elapsed().as_secs_f64();
    let mut skips: BTreeMap<i64, Skip> = BTreeMap::new();
    let mut last_error: Option<StoreError> = None;
    for _ in 0..ATTEMPTS {
        let mut import: Loaded<Import> = state.store.load(&id).await?;
        if import.state.completed.is_some() || import.state.committed_chunks > chunk {
            return Ok(None);
        }
        // Before the first chunk is applied, any change refuses the whole
        // commit: nothing is applied yet, so a new review is cheap and exact.
        let first = import.state.committed_chunks == 0;
        let ids: Vec<String> = plans
            .iter()
            .filter(|(_, p)| p.has_version())
            .filter_map(|(_, p)| p.user_id.map(|u| u.to_string()))
            .collect();
        let mut users = state.store.load_many::<User>(&ids).await?;
        let mut changed = Vec::new();
        for (n, p) in &plans {
            if skips.contains_key(n) || !p.has_version() {
                continue;
            }
            let version = p
                .user_id
                .and_then(|u| users.get(&u.to_string()))
                .map_or(0, |u| u.version);
            if version != p.version {
                changed.push(format!("{} (line {}) changed", p.address, p.line));
                skips.insert(
                    *n,
                    Skip {
                        code: "changed_since_review",
                        reason: "the user changed after the review, while the import was being committed".into(),
                    },
                );
            }
        }
        if first && !changed.is_empty() {
            let total = changed.len();
            return Err(stale(&changed, total));
        }
        let seats = db.seats(customer).await?;
        let mut free = seats.limit.saturating_sub(seats.used);
        for (n, p) in &plans {
            if p.outcome != Outcome::Add || skips.contains_key(n) {
                continue;
            }
            if free == 0 {
                if first {
                    return Err(stale(
                        &[format!(
                            "{} of the customer's {} seats are in use now, so the additions no longer fit",
                            seats.used, seats.limit
                        )],
                        1,
                    ));
                }
                skips.insert(
                    *n,
                    Skip {
                        code: "over_seat_limit",
                        reason: format!(
                            "the customer's {} seats filled up while the import was being committed",
                            seats.limit
                        ),
                    },
                );
            } else {
                free -= 1;
            }
        }
        propagate_skips(&plans, &mut skips);

        let meta = EventMeta {
            customer_id: customer,
            actor: actor.clone(),
            correlation_id: import_id.into(),
            time: state.clock.now(),
        };
        let mut batch = Batch::new();
        let (mut added, mut updated) = (0u64, 0u64);
        let mut failed: Option<(i64, String)> = None;
        // Releases first, so that an address handed from one row to another
        // is free when it is claimed.
        for (n, p) in &plans {
            if p.outcome != Outcome::Update || skips.contains_key(n) {
                continue;
            }
            let Some(target) = p.user_id.and_then(|u| users.get_mut(&u.to_string())) else {
                continue;
            };
            for alias in &p.aliases_removed {
                if let Err(e) = batch
                    .execute(
                        target,
                        UserCommand::UnmapAlias {
                            alias: alias.clone(),
                            reason: UnmapReason::Manual,
                        },
                        &UserServices::default(),
                        &meta,
                    )
                    .await
                {
                    failed = Some((*n, e.to_string()));
                    break;
                }
            }
            if failed.is_some() {
                break;
            }
        }
        let mut used = seats.used;
        if failed.is_none() {
            for (n, p) in &plans {
                if skips.contains_key(n) {
                    continue;
                }
                let Some(uid) = p.user_id else { continue };
                let key = uid.to_string();
                let target = users.entry(key.clone()).or_insert_with(|| Loaded::new(key));
                let outcome = match p.outcome {
                    Outcome::Add => {
                        let address = Address::parse(&p.address).map_err(corrupt)?;
                        let services = UserServices {
                            seats: Some(SeatUsage {
                                used,
                                limit: seats.limit,
                            }),
                        };
                        used += 1;
                        added += 1;
                        batch
                            .execute(
                                target,
                                UserCommand::Add(AddUser {
                                    user_id: uid,
                                    customer_id: customer,
                                    address,
                                    kind: Kind::User,
                                    source: Source::Csv,
                                    profile: p.profile.clone().unwrap_or_default(),
                                    aliases: p.aliases_added.clone(),
                                    directory_id: None,
                                    members: vec![],
                                }),
                                &services,
                                &meta,
                            )
                            .await
                    }
                    Outcome::Update => {
                        updated += 1;
                        let mut r = Ok(0);
                        if !p.changes.is_empty() {
                            r = batch
                                .execute(
                                    target,
                                    UserCommand::UpdateProfile {
                                        profile: p.profile.clone().unwrap_or_default(),
                                    },
                                    &UserServices::default(),
                                    &meta,
                                )
                                .await;
                        }
                        for alias in &p.aliases_added {
                            if r.is_err() {
                                break;
                            }
                            r = batch
                                .execute(
                                    target,
                                    UserCommand::MapAlias {
                                        alias: alias.clone(),
                                    },
                                    &UserServices::default(),
                                    &meta,
                                )
                                .await;
                        }
                        r
                    }
                    Outcome::Unchanged | Outcome::Error => Ok(0),
                };
                if let Err(e) = outcome {
                    failed = Some((*n, e.to_string()));
                    break;
                }
            }
        }
        if let Some((n, reason)) = failed {
            // The aggregate refused what the checks let through: the user is
            // not as it was reviewed.
            let p = &plans
                .iter()
                .find(|(m, _)| *m == n)
                .expect("row of the chunk")
                .1;
            if first {
                return Err(stale(
                    &[format!("{} (line {}): {reason}", p.address, p.line)],
                    1,
                ));
            }
            skips.insert(
                n,
                Skip {
                    code: "changed_since_review",
                    reason,
                },
            );
            continue;
        }
        let skipped: Vec<SkippedRow> = skips
            .iter()
            .filter_map(|(n, s)| {
                let p = &plans.iter().find(|(m, _)| m == n)?.1;
                Some(SkippedRow {
                    line: p.line,
                    address: Address::parse(&p.address).ok()?,
                    code: s.code.to_string(),
                    reason: s.reason.clone(),
                })
            })
            .collect();
        batch
            .execute(
                &mut import,
                ImportCommand::CommitChunk {
                    import_id,
                    chunk,
                    chunks,
                    added,
                    updated,
                    skipped,
                },
                &(),
                &meta,
            )
            .await
            .map_err(ApiError::internal)?;
        if chunk + 1 == chunks {
            batch
                .execute(
                    &mut import,
                    ImportCommand::Complete {
                        import_id,
                        chunks,
                        unchanged: review.totals.unchanged,
                        rejected: review.totals.error,
                    },
                    &(),
                    &meta,
                )
                .await
                .map_err(ApiError::internal)?;
        }
        if added > 0 {
            batch.guard(customer, Guard::SeatLimit);
        }
        let staged_s = started.elapsed().as_secs_f64();
        match state.store.commit(batch).await {
            Ok(appended) => {
                tracing::debug!(
                    import_id = %import_id,
                    chunk,
                    rows = plans.len(),
                    read_s,
                    stage_s = staged_s - read_s,
                    append_s = started.elapsed().as_secs_f64() - staged_s,
                    "import chunk committed"
                );
                metrics::counter!("roster_import_rows_committed_total").increment(added + updated);
                return Ok(Some(appended.last));
            }
            Err(e @ StoreError::Conflict) => {
                last_error = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(StoreError::OverSeatLimit { used, limit }) => {
                if first {
                    return Err(stale(
                        &[format!(
                            "{used} of the customer's {limit} seats would be in use"
                        )],
                        1,
                    ));
                }
                last_error = Some(StoreError::OverSeatLimit { used, limit });
            }
            Err(StoreError::AddressTaken { address }) => {
                let hit: Vec<i64> = plans
                    .iter()
                    .filter(|(n, p)| !skips.contains_key(n) && p.claims().contains(&address))
                    .map(|(n, _)| *n)
                    .collect();
                if first || hit.is_empty() {
                    return Err(stale(
                        &[format!("{address} is now used by another user")],
                        1,
                    ));
                }
                for n in hit {
                    skips.insert(
                        n,
                        Skip {
                            code: "address_taken",
                            reason: format!(
                                "{address} was taken by another user while the import was being committed"
                            ),
                        },
                    );
                }
            }
            Err(StoreError::UnmanagedDomain { domain }) => {
                let hit: Vec<i64> = plans
                    .iter()
                    .filter(|(n, p)| {
                        !skips.contains_key(n) && p.claims().iter().any(|a| a.domain() == domain)
                    })
                    .map(|(n, _)| *n)
                    .collect();
                if first || hit.is_empty() {
                    return Err(stale(
                        &[format!("{domain} is no longer a managed domain")],
                        1,
                    ));
                }
                for n in hit {
                    skips.insert(
                        n,
                        Skip {
                            code: "unmanaged_domain",
                            reason: format!(
                                "{domain} stopped being a managed domain while the import was being committed"
                            ),
                        },
                    );
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last_error
        .map(ApiError::from)
        .unwrap_or_else(|| ApiError::internal("the chunk could not be committed")))
}

/// A row that needs an address released by a skipped row is skipped too.
fn propagate_skips(plans: &[(i64, PlanRow)], skips: &mut BTreeMap<i64, Skip>) {
    loop {
        let mut more = Vec::new();
        for (n, p) in plans {
            if skips.contains_key(n) {
                continue;
            }
            if let Some(g) = p.after.iter().find(|g| skips.contains_key(&(**g as i64))) {
                let line = plans
                    .iter()
                    .find(|(m, _)| *m == *g as i64)
                    .map_or(0, |(_, q)| q.line);
                more.push((
                    *n,
                    Skip {
                        code: "address_taken",
                        reason: format!(
                            "an address this row takes over is released by the row on line {line}, which was not applied"
                        ),
                    },
                ));
            }
        }
        if more.is_empty() {
            return;
        }
        for (n, s) in more {
            skips.insert(n, s);
        }
    }
}

/// A plan without additions or updates: the commit only records the import.
async fn complete_empty(
    state: &AppState,
    actor: &Actor,
    customer: CustomerId,
    import_id: ImportId,
    review: &ReviewInfo,
) -> ApiResult<i64> {
    let id = import_id.to_string();
    for _ in 0..ATTEMPTS {
        let mut import: Loaded<Import> = state.store.load(&id).await?;
        if import.state.completed.is_some() {
            return Ok(0);
        }
        let meta = EventMeta {
            customer_id: customer,
            actor: actor.clone(),
            correlation_id: import_id.into(),
            time: state.clock.now(),
        };
        let mut batch = Batch::new();
        batch
            .execute(
                &mut import,
                ImportCommand::Complete {
                    import_id,
                    chunks: 0,
                    unchanged: review.totals.unchanged,
                    rejected: review.totals.error,
                },
                &(),
                &meta,
            )
            .await
            .map_err(ApiError::internal)?;
        match state.store.commit(batch).await {
            Ok(a) => return Ok(a.last),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::from(StoreError::Conflict))
}

/// The sample file (M2): the canonical columns and three users in the
/// customer's first managed domain (`example.com` when it has none yet).
pub async fn sample(state: &AppState, customer: CustomerId) -> ApiResult<String> {
    let domains = state.store.db().managed_domains(customer).await?;
    let domain = domains
        .first()
        .map(|d| d.as_str().to_string())
        .unwrap_or_else(|| "example.com".into());
    Ok(roster_csv::sample_csv(&domain))
}
