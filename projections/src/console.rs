//! Read queries of the admin console's pages (issue 14): the partner's
//! customer list with seats and directory status, and a customer's
//! dashboard. Each answers in a handful of indexed queries whatever the
//! number of users, so a page stays fast at 100,000 users.

use std::collections::HashSet;

use roster_events::{CorrelationId, CustomerId, DirectoryKind, PartnerId, PollInterval};
use roster_store::{with_db, Store};
use serde::Serialize;

use crate::customers::CUSTOMERS;
use crate::directory::{run_row, RunRow, RunStatus, RunTuple, RUNS, RUN_COLUMNS, STATE};
use crate::queries::{self, AuditEntry, AuditFilter, Licence};
use crate::users::{typed, typed_opt, USERS};
use crate::ProjectionError;

/// A customer as the partner's customer list shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CustomerSummary {
    pub customer_id: CustomerId,
    pub name: String,
    pub seat_limit: i64,
    /// Users that take a seat (T3: primary addresses of users, active or
    /// flagged; never aliases, lists or public folders).
    pub seats_used: i64,
    /// The enabled directory source (D1).
    pub directory: Option<DirectoryKind>,
    /// Status of the latest sync run, and when it started (microseconds).
    pub last_run_status: Option<RunStatus>,
    pub last_run_at: Option<i64>,
}

impl CustomerSummary {
    pub fn over_limit(&self) -> bool {
        self.seats_used > self.seat_limit
    }
}

type SummaryTuple = (
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// The customers of a partner by name, optionally those whose name or id
/// contains `q` (any case), each with its seats used and directory status,
/// in one query.
pub async fn customer_summaries(
    store: &Store,
    partner: PartnerId,
    q: Option<&str>,
) -> Result<Vec<CustomerSummary>, ProjectionError> {
    let pattern = q.map(str::trim).filter(|q| !q.is_empty()).map(like_pattern);
    let search = if pattern.is_some() {
        " AND (LOWER(c.name) LIKE $2 ESCAPE '\\' OR c.customer_id LIKE $2 ESCAPE '\\')"
    } else {
        ""
    };
    let sql = format!(
        "SELECT c.customer_id, c.name, c.seat_limit,
           (SELECT COUNT(*) FROM {USERS} u WHERE u.customer_id = c.customer_id AND u.kind = 'user'
              AND u.status IN ('active', 'pending_deletion')),
           (SELECT s.enabled_kind FROM {STATE} s WHERE s.customer_id = c.customer_id),
           (SELECT r.status FROM {RUNS} r WHERE r.customer_id = c.customer_id
              ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1),
           (SELECT r.started_at FROM {RUNS} r WHERE r.customer_id = c.customer_id
              ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1)
         FROM {CUSTOMERS} c WHERE c.partner_id = $1{search}
         ORDER BY c.name, c.customer_id"
    );
    let rows: Vec<SummaryTuple> = with_db!(store.db(), |p| {
        let mut query = sqlx::query_as(&sql).bind(partner.to_string());
        if let Some(pattern) = &pattern {
            query = query.bind(pattern);
        }
        query.fetch_all(p).await?
    });
    let summary = |t: SummaryTuple| -> Result<CustomerSummary, sqlx::Error> {
        Ok(CustomerSummary {
            customer_id: typed("customer_id", t.0, |s| CustomerId::parse(s).ok())?,
            name: t.1,
            seat_limit: t.2,
            seats_used: t.3.unwrap_or(0),
            directory: typed_opt("enabled_kind", t.4, DirectoryKind::parse)?,
            last_run_status: typed_opt("status", t.5, RunStatus::parse)?,
            last_run_at: t.6,
        })
    };
    Ok(rows.into_iter().map(summary).collect::<Result<_, _>>()?)
}

fn like_pattern(q: &str) -> String {
    let mut s = String::from("%");
    for c in q.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

/// The directory part of the dashboard: which source is enabled, how
/// often it runs, the last run and when the next one is due (D4).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct DirectoryStatus {
    /// The enabled source; `None` when no source is enabled.
    pub enabled: Option<DirectoryKind>,
    /// The schedule of the enabled source (`6h`, `12h`, `24h`, `3d`, `7d`).
    pub interval: Option<String>,
    pub last_run: Option<RunRow>,
    /// When the scheduler runs it next (microseconds); `None` when no
    /// source is enabled or it never ran (then it runs at the next tick).
    /// A time in the past also means "at the next tick".
    pub next_run_at: Option<i64>,
}

/// What the customer dashboard shows.
#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    /// T3: seats count primary addresses of users only.
    pub licence: Licence,
    pub directory: DirectoryStatus,
    /// D3.s: runs held by the mass-deletion guard, waiting for a decision.
    pub held_runs: Vec<RunRow>,
    /// D3.m: users flagged for deletion (the conflicts view).
    pub conflicts: i64,
    /// The latest events of the customer, newest first.
    pub recent: Vec<AuditEntry>,
}

/// Everything the customer dashboard shows, `recent` events at most.
pub async fn dashboard(
    store: &Store,
    customer: CustomerId,
    recent: i64,
) -> Result<Dashboard, ProjectionError> {
    let licence = queries::licence(store, customer).await?;
    let directory = directory_status(store, customer).await?;
    let held_runs = held_runs(store, customer).await?;
    let conflicts = licence_conflicts(store, customer).await?;
    let recent = queries::audit(store, customer, &AuditFilter::default(), None, recent)
        .await?
        .items;
    Ok(Dashboard {
        licence,
        directory,
        held_runs,
        conflicts,
        recent,
    })
}

async fn licence_conflicts(store: &Store, customer: CustomerId) -> Result<i64, ProjectionError> {
    let sql = format!(
        "SELECT COUNT(*) FROM {USERS} WHERE customer_id = $1 AND status = 'pending_deletion'"
    );
    Ok(with_db!(store.db(), |p| sqlx::query_scalar(&sql)
        .bind(customer.to_string())
        .fetch_one(p)
        .await?))
}

/// D4: the enabled source, its schedule, the last run and the next one.
pub async fn directory_status(
    store: &Store,
    customer: CustomerId,
) -> Result<DirectoryStatus, ProjectionError> {
    let sql = format!(
        "SELECT enabled_kind, ldap_interval, entra_interval, last_started_at FROM {STATE}
         WHERE customer_id = $1"
    );
    type StateRow = (Option<String>, Option<String>, Option<String>, Option<i64>);
    let state: Option<StateRow> = with_db!(store.db(), |p| sqlx::query_as(&sql)
        .bind(customer.to_string())
        .fetch_optional(p)
        .await?);
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM {RUNS} WHERE customer_id = $1
         ORDER BY started_at DESC, run_id DESC LIMIT 1"
    );
    let last: Option<RunTuple> = with_db!(store.db(), |p| sqlx::query_as(&sql)
        .bind(customer.to_string())
        .fetch_optional(p)
        .await?);
    let mut status = DirectoryStatus {
        last_run: last.map(run_row).transpose()?,
        ..DirectoryStatus::default()
    };
    let Some((Some(kind), ldap, entra, last_started)) = state else {
        return Ok(status);
    };
    let interval = if kind == "entra" { entra } else { ldap };
    let parsed = interval.as_ref().and_then(|i| {
        serde_json::from_value::<PollInterval>(serde_json::Value::String(i.clone())).ok()
    });
    // Never run: `None`, due at the scheduler's next tick.
    status.next_run_at = match (parsed, last_started) {
        (Some(i), Some(t)) => {
            Some(t.saturating_add(i.duration().num_microseconds().unwrap_or(i64::MAX)))
        }
        _ => None,
    };
    status.enabled = Some(typed("enabled_kind", kind, DirectoryKind::parse)?);
    status.interval = interval;
    Ok(status)
}

/// D3.s: the customer's held runs, newest first.
pub async fn held_runs(
    store: &Store,
    customer: CustomerId,
) -> Result<Vec<RunRow>, ProjectionError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM {RUNS} WHERE customer_id = $1 AND status = 'held'
         ORDER BY started_at DESC, run_id DESC LIMIT 50"
    );
    let rows: Vec<RunTuple> = with_db!(store.db(), |p| sqlx::query_as(&sql)
        .bind(customer.to_string())
        .fetch_all(p)
        .await?);
    Ok(rows.into_iter().map(run_row).collect::<Result<_, _>>()?)
}

/// Which of these correlation ids are imports of this customer: their
/// events link to the import's page in a user's history (E2). Imports are
/// found among the reviews (`imports`): the Import aggregate's own events
/// are not in the audit trail.
pub async fn imports_among(
    store: &Store,
    customer: CustomerId,
    ids: &[CorrelationId],
) -> Result<HashSet<CorrelationId>, ProjectionError> {
    let mut out = HashSet::new();
    for chunk in ids.chunks(200) {
        let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT import_id FROM imports WHERE customer_id = $1 AND import_id IN ({})",
            marks.join(",")
        );
        let found: Vec<String> = with_db!(store.db(), |p| {
            let mut q = sqlx::query_scalar(&sql).bind(customer.to_string());
            for id in chunk {
                q = q.bind(id.to_string());
            }
            q.fetch_all(p).await?
        });
        for id in found {
            out.insert(typed("import_id", id, |s| CorrelationId::parse(s).ok())?);
        }
    }
    Ok(out)
}
