//! Sync history (B4, E3) and the directory as last read (D3.o).

use async_trait::async_trait;
use roster_events::{
    DirectoryEvent, DirectoryObjectsEvent, ObjectSummary, SyncConfirmed, SyncSuperseded,
};
use roster_store::{with_tx, Tx};

use crate::{AnyEvent, Decoded, Projection, ProjectionError};

pub struct DirectoryProjection;

pub const RUNS: &str = "sync_runs_v1";
pub const OBJECTS: &str = "directory_objects_v1";
/// One row per customer with a directory: what the scheduler needs (D4).
pub const STATE: &str = "directory_state_v1";

fn counts_json<T: serde::Serialize>(c: &T) -> String {
    serde_json::to_string(c).expect("counts serialise")
}

#[async_trait]
impl Projection for DirectoryProjection {
    fn name(&self) -> &'static str {
        "directory_v1"
    }

    fn reads(&self) -> Option<&'static [&'static str]> {
        Some(&[
            roster_events::DIRECTORY_AGGREGATE,
            roster_events::DIRECTORY_OBJECTS_AGGREGATE,
        ])
    }

    fn tables(&self) -> &'static [&'static str] {
        &[RUNS, OBJECTS, STATE]
    }

    fn ddl(&self, p: &str) -> Vec<String> {
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {p}{RUNS} (
                    run_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, kind TEXT NOT NULL,
                    trigger_kind TEXT NOT NULL, status TEXT NOT NULL, started_at BIGINT NOT NULL,
                    finished_at BIGINT, code TEXT, reason TEXT, counts TEXT,
                    would_flag BIGINT, directory_users BIGINT, over_seat_limit BOOLEAN,
                    decided_by_run TEXT)"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {p}{RUNS}_customer ON {p}{RUNS} (customer_id, started_at, run_id)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {p}{OBJECTS} (
                    customer_id TEXT NOT NULL, object_id TEXT NOT NULL, kind TEXT NOT NULL,
                    dn TEXT, display_name TEXT, mail TEXT, aliases TEXT NOT NULL,
                    disabled BOOLEAN NOT NULL, search TEXT NOT NULL, updated_at BIGINT NOT NULL,
                    PRIMARY KEY (customer_id, object_id))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {p}{STATE} (
                    customer_id TEXT PRIMARY KEY, enabled_kind TEXT, ldap_interval TEXT,
                    entra_interval TEXT, last_started_at BIGINT)"
            ),
        ]
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        p: &str,
        events: &[&Decoded],
    ) -> Result<(), ProjectionError> {
        for d in events {
            match &d.event {
                AnyEvent::Directory(e) => {
                    apply_state(tx, p, d, e).await?;
                    apply_run(tx, p, d, e).await?
                }
                AnyEvent::DirectoryObjects(DirectoryObjectsEvent::DirectoryObjectsChanged(e)) => {
                    let customer = d.meta.customer_id.to_string();
                    upsert_objects(tx, p, &customer, &e.upserted, d.recorded_at).await?;
                    for chunk in e.removed.chunks(500) {
                        let marks: Vec<String> =
                            (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
                        let sql = format!(
                            "DELETE FROM {p}{OBJECTS} WHERE customer_id = $1 AND object_id IN ({})",
                            marks.join(",")
                        );
                        with_tx!(tx, |c| {
                            let mut q = sqlx::query(&sql).bind(&customer);
                            for id in chunk {
                                q = q.bind(id);
                            }
                            q.execute(c).await.map(|_| ())?
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Keeps the scheduler's row of the customer (D4).
async fn apply_state(
    tx: &mut Tx,
    p: &str,
    d: &Decoded,
    e: &DirectoryEvent,
) -> Result<(), ProjectionError> {
    let customer = d.meta.customer_id.to_string();
    let (sql, text, time): (String, Option<String>, Option<i64>) = match e {
        DirectoryEvent::DirectoryConfigured(c) => {
            let column = match c.config.connection.kind() {
                roster_events::DirectoryKind::Ldap => "ldap_interval",
                roster_events::DirectoryKind::Entra => "entra_interval",
            };
            let interval = serde_json::to_value(c.config.poll_interval)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            (
                format!("UPDATE {p}{STATE} SET {column} = $2 WHERE customer_id = $1"),
                interval,
                None,
            )
        }
        DirectoryEvent::DirectoryEnabled(x) => (
            format!("UPDATE {p}{STATE} SET enabled_kind = $2 WHERE customer_id = $1"),
            Some(x.kind.as_str().to_string()),
            None,
        ),
        DirectoryEvent::DirectoryDisabled(_) => (
            format!("UPDATE {p}{STATE} SET enabled_kind = $2 WHERE customer_id = $1"),
            None,
            None,
        ),
        DirectoryEvent::SyncStarted(s) => (
            format!(
                "UPDATE {p}{STATE} SET last_started_at = $3 WHERE customer_id = $1 AND $2 IS NULL"
            ),
            None,
            Some(s.started_at.timestamp_micros()),
        ),
        _ => return Ok(()),
    };
    let insert = format!(
        "INSERT INTO {p}{STATE} (customer_id) VALUES ($1) ON CONFLICT (customer_id) DO NOTHING"
    );
    with_tx!(tx, |c| sqlx::query(&insert)
        .bind(&customer)
        .execute(c)
        .await
        .map(|_| ())?);
    if time.is_some() {
        with_tx!(tx, |c| sqlx::query(&sql)
            .bind(&customer)
            .bind(&text)
            .bind(time)
            .execute(c)
            .await
            .map(|_| ())?);
    } else {
        with_tx!(tx, |c| sqlx::query(&sql)
            .bind(&customer)
            .bind(&text)
            .execute(c)
            .await
            .map(|_| ())?);
    }
    Ok(())
}

async fn apply_run(
    tx: &mut Tx,
    p: &str,
    d: &Decoded,
    e: &DirectoryEvent,
) -> Result<(), ProjectionError> {
    let customer = d.meta.customer_id.to_string();
    match e {
        DirectoryEvent::SyncStarted(s) => {
            let sql = format!(
                "INSERT INTO {p}{RUNS} (run_id, customer_id, kind, trigger_kind, status, started_at)
                 VALUES ($1, $2, $3, $4, 'running', $5)"
            );
            with_tx!(tx, |c| sqlx::query(&sql)
                .bind(s.run_id.to_string())
                .bind(&customer)
                .bind(s.kind.as_str())
                .bind(s.trigger.as_str())
                .bind(s.started_at.timestamp_micros())
                .execute(c)
                .await
                .map(|_| ())?);
        }
        DirectoryEvent::SyncCompleted(s) => {
            let sql = format!(
                "UPDATE {p}{RUNS} SET status = 'completed', counts = $2, over_seat_limit = $3,
                 finished_at = $4 WHERE run_id = $1"
            );
            with_tx!(tx, |c| sqlx::query(&sql)
                .bind(s.run_id.to_string())
                .bind(counts_json(&s.counts))
                .bind(s.over_seat_limit)
                .bind(s.finished_at.timestamp_micros())
                .execute(c)
                .await
                .map(|_| ())?);
        }
        DirectoryEvent::SyncFailed(s) => {
            let sql = format!(
                "UPDATE {p}{RUNS} SET status = CASE WHEN $2 = 'interrupted' THEN 'interrupted' ELSE 'failed' END, code = $2, reason = $3, finished_at = $4 WHERE run_id = $1"
            );
            with_tx!(tx, |c| sqlx::query(&sql)
                .bind(s.run_id.to_string())
                .bind(&s.code)
                .bind(&s.reason)
                .bind(s.finished_at.timestamp_micros())
                .execute(c)
                .await
                .map(|_| ())?);
        }
        DirectoryEvent::SyncHeld(s) => {
            let sql = format!(
                "UPDATE {p}{RUNS} SET status = 'held', counts = $2, would_flag = $3,
                 directory_users = $4, finished_at = $5 WHERE run_id = $1"
            );
            with_tx!(tx, |c| sqlx::query(&sql)
                .bind(s.run_id.to_string())
                .bind(counts_json(&s.counts))
                .bind(s.would_flag as i64)
                .bind(s.directory_users as i64)
                .bind(s.finished_at.timestamp_micros())
                .execute(c)
                .await
                .map(|_| ())?);
        }
        // A held run decided by a later run: confirmed by it, or replaced.
        DirectoryEvent::SyncConfirmed(SyncConfirmed { run_id, by_run })
        | DirectoryEvent::SyncSuperseded(SyncSuperseded { run_id, by_run }) => {
            let status = match e {
                DirectoryEvent::SyncConfirmed(_) => "confirmed",
                _ => "superseded",
            };
            let sql =
                format!("UPDATE {p}{RUNS} SET status = $3, decided_by_run = $2 WHERE run_id = $1");
            with_tx!(tx, |c| sqlx::query(&sql)
                .bind(run_id.to_string())
                .bind(by_run.to_string())
                .bind(status)
                .execute(c)
                .await
                .map(|_| ())?);
        }
        DirectoryEvent::SyncFinished(s) => {
            let sql = format!("UPDATE {p}{RUNS} SET finished_at = $2 WHERE run_id = $1");
            with_tx!(tx, |c| sqlx::query(&sql)
                .bind(s.run_id.to_string())
                .bind(s.finished_at.timestamp_micros())
                .execute(c)
                .await
                .map(|_| ())?);
        }
        DirectoryEvent::SyncDiscarded(s) => {
            let sql = format!("UPDATE {p}{RUNS} SET status = 'discarded' WHERE run_id = $1");
            with_tx!(tx, |c| sqlx::query(&sql)
                .bind(s.run_id.to_string())
                .execute(c)
                .await
                .map(|_| ())?);
        }
        _ => {}
    }
    Ok(())
}

fn search_of(o: &ObjectSummary) -> String {
    let mut s = String::new();
    for v in [&o.mail, &o.display_name, &o.dn].into_iter().flatten() {
        s.push_str(v);
        s.push(' ');
    }
    for a in &o.aliases {
        s.push_str(a);
        s.push(' ');
    }
    s.push_str(&o.id);
    s.to_lowercase()
}

async fn upsert_objects(
    tx: &mut Tx,
    p: &str,
    customer: &str,
    objects: &[ObjectSummary],
    at: i64,
) -> Result<(), ProjectionError> {
    if objects.is_empty() {
        return Ok(());
    }
    let cols = "customer_id, object_id, kind, dn, display_name, mail, aliases, disabled, search, updated_at";
    let tail = "ON CONFLICT (customer_id, object_id) DO UPDATE SET kind = excluded.kind, dn = excluded.dn, \
                display_name = excluded.display_name, mail = excluded.mail, aliases = excluded.aliases, \
                disabled = excluded.disabled, search = excluded.search, updated_at = excluded.updated_at";
    match tx {
        Tx::Pg(t) => {
            macro_rules! col {
                ($f:expr) => {
                    objects.iter().map($f).collect::<Vec<_>>()
                };
            }
            sqlx::query(&format!(
                "INSERT INTO {p}{OBJECTS} ({cols}) SELECT $1, * FROM UNNEST($2::text[], $3::text[], \
                 $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[], $9::text[], $10::int8[]) {tail}"
            ))
            .bind(customer)
            .bind(col!(|o| o.id.clone()))
            .bind(col!(|o| o.kind.clone()))
            .bind(col!(|o| o.dn.clone()))
            .bind(col!(|o| o.display_name.clone()))
            .bind(col!(|o| o.mail.clone()))
            .bind(col!(|o| serde_json::to_string(&o.aliases).unwrap_or_default()))
            .bind(col!(|o| o.disabled))
            .bind(col!(search_of))
            .bind(col!(|_| at))
            .execute(&mut **t)
            .await?;
        }
        Tx::Sqlite(t) => {
            use roster_store::sqlite_bulk::{insert, rows_json};
            let rows = rows_json(objects.iter().map(|o| {
                serde_json::json!([
                    customer,
                    o.id,
                    o.kind,
                    o.dn,
                    o.display_name,
                    o.mail,
                    serde_json::to_string(&o.aliases).unwrap_or_default(),
                    o.disabled,
                    search_of(o),
                    at
                ])
            }));
            insert(
                t,
                &format!("INSERT INTO {p}{OBJECTS} ({cols})"),
                10,
                &rows,
                tail,
            )
            .await?;
        }
    }
    Ok(())
}

/// Where a sync run is in its life, as the history shows it (B4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
    /// Its replica stopped; another failed it and went on (issue 18).
    Interrupted,
    /// Held by the mass-deletion guard (D3.s).
    Held,
    Confirmed,
    Discarded,
    /// A held run replaced by a newer one (issue 11).
    Superseded,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Interrupted,
        RunStatus::Held,
        RunStatus::Confirmed,
        RunStatus::Discarded,
        RunStatus::Superseded,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Held => "held",
            RunStatus::Confirmed => "confirmed",
            RunStatus::Discarded => "discarded",
            RunStatus::Superseded => "superseded",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s.trim())
    }
}

/// A sync run as the history shows it (B4): ids and statuses typed,
/// decoded from the table once.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct RunRow {
    pub run_id: roster_events::RunId,
    pub kind: roster_events::DirectoryKind,
    pub trigger: roster_events::SyncTrigger,
    pub status: RunStatus,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub code: Option<String>,
    pub reason: Option<String>,
    pub counts: Option<roster_events::SyncCounts>,
    pub would_flag: Option<i64>,
    pub directory_users: Option<i64>,
    pub over_seat_limit: Option<bool>,
    pub decided_by_run: Option<roster_events::RunId>,
}

pub(crate) type RunTuple = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<bool>,
    Option<String>,
);

pub(crate) const RUN_COLUMNS: &str =
    "run_id, kind, trigger_kind, status, started_at, finished_at, code, reason, counts, \
     would_flag, directory_users, over_seat_limit, decided_by_run";

pub(crate) fn run_row(t: RunTuple) -> Result<RunRow, sqlx::Error> {
    use crate::users::{typed, typed_opt};
    use roster_events::{DirectoryKind, RunId, SyncTrigger};
    let run_id = |s: &str| RunId::parse(s).ok();
    Ok(RunRow {
        run_id: typed("run_id", t.0, run_id)?,
        kind: typed("kind", t.1, DirectoryKind::parse)?,
        trigger: typed("trigger_kind", t.2, SyncTrigger::parse)?,
        status: typed("status", t.3, RunStatus::parse)?,
        started_at: t.4,
        finished_at: t.5,
        code: t.6,
        reason: t.7,
        counts: t.8.and_then(|c| serde_json::from_str(&c).ok()),
        would_flag: t.9,
        directory_users: t.10,
        over_seat_limit: t.11,
        decided_by_run: typed_opt("decided_by_run", t.12, run_id)?,
    })
}

/// The customer's sync runs, newest first, after the keyset `before`
/// (`started_at`, `run_id`) of the last run of the previous page: runs
/// that share a start time are neither lost nor repeated between pages.
pub async fn runs(
    store: &roster_store::Store,
    customer: roster_events::CustomerId,
    before: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<RunRow>, ProjectionError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM {RUNS} WHERE customer_id = $1
           AND (started_at < $2 OR (started_at = $2 AND run_id < $3))
         ORDER BY started_at DESC, run_id DESC LIMIT $4"
    );
    let (at, id) = before.unwrap_or((i64::MAX, String::new()));
    let rows: Vec<RunTuple> = roster_store::with_db!(store.db(), |p| sqlx::query_as(&sql)
        .bind(customer.to_string())
        .bind(at)
        .bind(&id)
        .bind(limit)
        .fetch_all(p)
        .await?);
    Ok(rows
        .into_iter()
        .map(run_row)
        .collect::<Result<_, sqlx::Error>>()?)
}

/// The page token of a run list: the keyset of its last run.
pub fn runs_cursor(run: &RunRow) -> crate::Cursor {
    crate::Cursor::after(&[&run.started_at.to_string(), &run.run_id.to_string()])
}

/// The keyset a page token of [`runs_cursor`] stands for.
pub fn runs_after(token: &str) -> Result<(i64, String), ProjectionError> {
    let [at, run] = crate::Cursor::read(token)?;
    Ok((crate::Cursor::number(&at)?, run))
}

pub async fn run(
    store: &roster_store::Store,
    customer: roster_events::CustomerId,
    run_id: &str,
) -> Result<Option<RunRow>, ProjectionError> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM {RUNS} WHERE customer_id = $1 AND run_id = $2");
    let row: Option<RunTuple> = roster_store::with_db!(store.db(), |p| sqlx::query_as(&sql)
        .bind(customer.to_string())
        .bind(run_id)
        .fetch_optional(p)
        .await?);
    Ok(row.map(run_row).transpose()?)
}

/// The customers whose scheduled run is due (D4), oldest due first.
pub async fn due(
    store: &roster_store::Store,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(roster_events::CustomerId, roster_events::DirectoryKind)>, ProjectionError> {
    Ok(due_since(store, now)
        .await?
        .into_iter()
        .map(|(c, k, _)| (c, k))
        .collect())
}

/// The customers whose scheduled run is due, with the time it fell due
/// (`None`: never run), oldest first (issue 18: the run queue's order).
pub async fn due_since(
    store: &roster_store::Store,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<
    Vec<(
        roster_events::CustomerId,
        roster_events::DirectoryKind,
        Option<chrono::DateTime<chrono::Utc>>,
    )>,
    ProjectionError,
> {
    let sql = format!(
        "SELECT customer_id, enabled_kind, ldap_interval, entra_interval, last_started_at FROM {STATE}
         WHERE enabled_kind IS NOT NULL"
    );
    // customer, enabled kind, LDAP interval, Entra interval, last start.
    type DueRow = (String, String, Option<String>, Option<String>, Option<i64>);
    let rows: Vec<DueRow> =
        roster_store::with_db!(store.db(), |p| sqlx::query_as(&sql).fetch_all(p).await?);
    let mut out = Vec::new();
    for (customer, kind, ldap, entra, last) in rows {
        let kind = match kind.as_str() {
            "ldap" => roster_events::DirectoryKind::Ldap,
            "entra" => roster_events::DirectoryKind::Entra,
            _ => continue,
        };
        let interval = match kind {
            roster_events::DirectoryKind::Ldap => ldap,
            roster_events::DirectoryKind::Entra => entra,
        };
        let Some(interval) = interval.and_then(|i| {
            serde_json::from_value::<roster_events::PollInterval>(serde_json::Value::String(i)).ok()
        }) else {
            continue;
        };
        let due_at = last.map(|t| roster_store::from_micros(t) + interval.duration());
        if due_at.is_none_or(|d| d <= now) {
            if let Ok(c) = roster_events::CustomerId::parse(&customer) {
                out.push((c, kind, due_at));
            }
        }
    }
    out.sort_by_key(|(c, _, due_at)| (*due_at, c.to_string()));
    Ok(out)
}

type ObjectTuple = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    bool,
);

fn object_of(t: ObjectTuple) -> ObjectSummary {
    ObjectSummary {
        id: t.0,
        kind: t.1,
        dn: t.2,
        display_name: t.3,
        mail: t.4,
        aliases: serde_json::from_str(&t.5).unwrap_or_default(),
        disabled: t.6,
    }
}

/// The directory as last read, all of it (to diff a new read against).
pub async fn object_summaries(
    store: &roster_store::Store,
    customer: roster_events::CustomerId,
) -> Result<std::collections::HashMap<String, ObjectSummary>, ProjectionError> {
    let rows: Vec<ObjectTuple> = match store.db() {
        roster_store::Db::Pg(p) => {
            let sql = format!(
                "SELECT object_id, kind, dn, display_name, mail, aliases, disabled FROM {OBJECTS} WHERE customer_id = $1"
            );
            sqlx::query_as(&sql)
                .bind(customer.to_string())
                .fetch_all(p)
                .await?
        }
        // One JSON value instead of a row each (see `sqlite_json_rows`).
        roster_store::Db::Sqlite(p) => {
            let sql = format!(
                "SELECT json_group_array(json_array(object_id, kind, dn, display_name, mail, \
                 aliases, json(CASE WHEN disabled THEN 'true' ELSE 'false' END))) \
                 FROM {OBJECTS} WHERE customer_id = $1"
            );
            crate::queries::sqlite_json_rows(p, &sql, customer).await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|t| (t.0.clone(), object_of(t)))
        .collect())
}

/// One page of the directory as last read (D3.o), filtered by text and kind,
/// in object id order.
pub async fn objects(
    store: &roster_store::Store,
    customer: roster_events::CustomerId,
    q: Option<&str>,
    kind: Option<&str>,
    page: Option<&str>,
    limit: i64,
) -> Result<(Vec<ObjectSummary>, Option<crate::Cursor>), ProjectionError> {
    let after = match page {
        Some(token) => Some(crate::Cursor::read::<1>(token)?),
        None => None,
    };
    let pattern = q
        .map(|q| q.trim().to_lowercase())
        .filter(|q| !q.is_empty())
        .map(|q| {
            let mut s = String::from("%");
            for c in q.chars() {
                if matches!(c, '%' | '_' | '\\') {
                    s.push('\\');
                }
                s.push(c);
            }
            s.push('%');
            s
        });
    let sql = format!(
        "SELECT object_id, kind, dn, display_name, mail, aliases, disabled FROM {OBJECTS}
         WHERE customer_id = $1 AND object_id > $2
           AND ($3 = '' OR search LIKE $3 ESCAPE '\\')
           AND ($4 = '' OR kind = $4)
         ORDER BY object_id LIMIT $5"
    );
    let mut rows: Vec<ObjectTuple> = roster_store::with_db!(store.db(), |p| sqlx::query_as(&sql)
        .bind(customer.to_string())
        .bind(after.as_ref().map_or("", |[id]| id.as_str()))
        .bind(pattern.unwrap_or_default())
        .bind(kind.unwrap_or(""))
        .bind(limit + 1)
        .fetch_all(p)
        .await?);
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| crate::Cursor::after(&[&r.0]))
    } else {
        None
    };
    Ok((rows.into_iter().map(object_of).collect(), next))
}

/// Where a running sync is (issue 15): its phase and the counts so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPhase {
    /// Reading the directory (a complete snapshot, or the run fails, D3.r).
    Read,
    /// Planning the changes against the current users.
    Plan,
    /// Applying the planned changes.
    Apply,
}

impl RunPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RunPhase::Read => "read",
            RunPhase::Plan => "plan",
            RunPhase::Apply => "apply",
        }
    }
}

/// A sync run's live progress, as the replica running it last recorded it
/// (at each phase change and at most once a second): what Sync Now shows
/// while the run goes on, through every door.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunProgress {
    pub phase: RunPhase,
    /// Objects read from the directory: while reading, the entries
    /// received so far where the reader reports them (LDAP, page by page);
    /// from the `plan` phase on, the objects of the complete read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<u64>,
    /// What the plan will do (known once planned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<roster_events::SyncCounts>,
    /// The planned changes, and how many of them are applied so far.
    #[serde(default)]
    pub steps: u64,
    #[serde(default)]
    pub applied: u64,
    /// When this was recorded (microseconds since the epoch).
    #[serde(default)]
    pub updated_at: i64,
}

impl RunProgress {
    pub fn new(phase: RunPhase) -> Self {
        RunProgress {
            phase,
            read: None,
            planned: None,
            steps: 0,
            applied: 0,
            updated_at: 0,
        }
    }
}

/// A run's live progress, if it recorded any (runs of older versions did
/// not); only within the customer (T1).
pub async fn run_progress(
    store: &roster_store::Store,
    customer: roster_events::CustomerId,
    run_id: &str,
) -> Result<Option<RunProgress>, ProjectionError> {
    let Some((json, at)) = store.db().get_run_progress(customer, run_id).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_str::<RunProgress>(&json)
        .ok()
        .map(|p| RunProgress {
            updated_at: at,
            ..p
        }))
}
