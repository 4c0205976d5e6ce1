//! Queries on the read models, as the API serves them.

use std::collections::HashMap;

use roster_events::{
    Actor, AggregateId, CorrelationId, CustomerId, Kind, PartnerId, Source, Status, UserId,
};
use roster_store::{with_db, Store, StoredEvent};
use serde::Serialize;
use sqlx::Row;

use crate::audit::{AUDIT, AUDIT_ADDRESSES};
use crate::customers::{CUSTOMERS, DOMAINS};
use crate::users::{
    decode_row, rule_of, typed, RawUserRow, UserRow, ALIASES, ROW_COLUMNS, ROW_JSON_SQLITE, RULES,
    USERS,
};
use crate::{Cursor, ProjectionError};

/// One page of results and the opaque token of the next one.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page: Option<Cursor>,
}

#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Substring of an address (primary or alias) or a name, any case.
    pub q: Option<String>,
    /// Only this status; by default every status but `deleted`.
    pub status: Option<Status>,
    pub source: Option<Source>,
    /// Only users, only distribution lists or only public folders (U4).
    pub kind: Option<Kind>,
}

pub const MAX_PAGE: i64 = 1_000;

fn like_pattern(q: &str) -> String {
    let mut s = String::with_capacity(q.len() + 2);
    s.push('%');
    for c in q.trim().to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

/// A query text with numbered parameters, built piece by piece.
enum Bind {
    S(String),
    I(i64),
}

struct Sql {
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn new(text: impl Into<String>) -> Self {
        Sql {
            text: text.into(),
            binds: Vec::new(),
        }
    }
    /// Adds a parameter and returns its placeholder.
    fn s(&mut self, v: impl Into<String>) -> String {
        self.binds.push(Bind::S(v.into()));
        format!("${}", self.binds.len())
    }
    fn i(&mut self, v: i64) -> String {
        self.binds.push(Bind::I(v));
        format!("${}", self.binds.len())
    }
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }
}

macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                Bind::S(s) => q.bind(s),
                Bind::I(i) => q.bind(i),
            };
        }
        q
    }};
}

/// Adds aliases and rules to rows.
async fn fill(store: &Store, rows: &mut [UserRow]) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    let index: HashMap<String, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.user_id.to_string(), i))
        .collect();
    let ids: Vec<String> = rows.iter().map(|r| r.user_id.to_string()).collect();
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let marks = marks.join(",");
        let sql = format!(
            "SELECT user_id, address FROM {ALIASES} WHERE user_id IN ({marks}) ORDER BY address"
        );
        let aliases: Vec<(String, String)> = with_db!(store.db(), |p| {
            let mut q = sqlx::query_as(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(p).await?
        });
        for (u, a) in aliases {
            if let Some(i) = index.get(&u) {
                rows[*i].aliases.push(a);
            }
        }
        let sql = format!(
            "SELECT user_id, rule_id, kind, value, created_at FROM {RULES} WHERE user_id IN ({marks}) \
             ORDER BY created_at, rule_id"
        );
        let rules: Vec<(String, String, String, String, i64)> = with_db!(store.db(), |p| {
            let mut q = sqlx::query_as(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(p).await?
        });
        for rule in rules {
            if let Some(i) = index.get(&rule.0) {
                rows[*i].rules.push(rule_of(rule)?);
            }
        }
    }
    Ok(())
}

/// The user list of a customer (U3: aliases grouped under their primary),
/// filtered, in address order, paged by keyset so that pages stay stable
/// while users are added or removed.
pub async fn list_users(
    store: &Store,
    customer: CustomerId,
    filter: &UserFilter,
    page: Option<&str>,
    limit: i64,
) -> Result<Page<UserRow>, ProjectionError> {
    let limit = limit.clamp(1, MAX_PAGE);
    // The conditions every form of the query shares, after `customer_id`.
    let mut q = Sql::new(String::new());
    let customer_p = q.s(customer.to_string());
    let mut conds = match filter.status {
        Some(s) => {
            let p = q.s(s.as_str());
            format!(" AND status = {p}")
        }
        None => {
            let p = q.s(Status::Deleted.as_str());
            format!(" AND status <> {p}")
        }
    };
    if let Some(s) = filter.source {
        let p = q.s(s.as_str());
        conds.push_str(&format!(" AND source = {p}"));
    }
    if let Some(k) = filter.kind {
        let p = q.s(k.as_str());
        conds.push_str(&format!(" AND kind = {p}"));
    }
    if let Some(token) = page {
        let [address, user] = Cursor::read(token)?;
        let a = q.s(address);
        let u = q.s(user);
        // `address >= a` first: PostgreSQL starts the index scan there
        // instead of filtering every earlier row (32 ms -> 0.1 ms in the
        // middle of 100,000 users).
        conds.push_str(&format!(
            " AND address >= {a} AND (address > {a} OR user_id > {u})"
        ));
    }
    let order = format!(" ORDER BY address, user_id LIMIT {}", limit + 1);
    let pattern = filter
        .q
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(|text| q.s(like_pattern(text)));
    let base = format!("FROM {USERS} WHERE customer_id = {customer_p}{conds}");
    q.text = match (pattern, store.db()) {
        (None, _) => format!("SELECT {ROW_COLUMNS} {base}{order}"),
        (Some(p), roster_store::Db::Sqlite(_)) => {
            format!("SELECT {ROW_COLUMNS} {base} AND search LIKE {p} ESCAPE '\\'{order}")
        }
        // PostgreSQL's list index holds the first characters of the text
        // (`search_key`, see `UsersProjection::backend_ddl`): the page's
        // ids are found on that index alone (an index-only scan decides
        // `LIKE` without reading the table), beside those of the few
        // users with a longer text (`search_more`, their own partial
        // index, whose whole text is read); then only the page's rows
        // are read. A match inside the first characters is a match of the
        // text, and one beyond them is found by the second half, so the
        // union is exactly the users whose text contains `q`.
        (Some(p), roster_store::Db::Pg(_)) => format!(
            "SELECT {ROW_COLUMNS} FROM {USERS} WHERE customer_id = {customer_p} AND user_id IN (\
             SELECT user_id FROM (SELECT user_id {base} AND search_key LIKE {p} ESCAPE '\\'{order}) a \
             UNION ALL \
             SELECT user_id FROM (SELECT user_id {base} AND search_more AND search LIKE {p} ESCAPE '\\'{order}) b\
             ){order}"
        ),
    };
    // Planned for its values every time, never as a cached generic plan:
    // PostgreSQL switches a prepared statement to a plan for "any value"
    // after five runs, and for `kind = $n` or `search LIKE $n` that plan
    // walks the whole list in address order looking for 50 public
    // folders among 100,000 users (issue 14: 230 ms in the console
    // benchmark), where a plan for the value reads the 50 from an index.
    // Planning costs about a tenth of a millisecond.
    let mut rows: Vec<UserRow> = with_db!(store.db(), |p| {
        let raw = bind_all!(sqlx::query(&q.text).persistent(false), &q.binds)
            .fetch_all(p)
            .await?;
        raw.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?
    });
    let next_page = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| Cursor::after(&[r.address.as_str(), &r.user_id.to_string()]))
    } else {
        None
    };
    fill(store, &mut rows).await?;
    Ok(Page {
        items: rows,
        next_page,
    })
}

/// The live (not deleted) user whose primary address this is, with its
/// aliases and rules, in one query (one snapshot, one round trip: every
/// manual edit answers with it, issue 17).
pub async fn user_by_address(
    store: &Store,
    customer: CustomerId,
    address: &str,
) -> Result<Option<UserRow>, ProjectionError> {
    let (aliases, rules) = match store.db() {
        roster_store::Db::Pg(_) => (
            "COALESCE(json_agg(a.address ORDER BY a.address), '[]')::text",
            "COALESCE(json_agg(json_build_array(r.rule_id, r.kind, r.value, r.created_at) \
             ORDER BY r.created_at, r.rule_id), '[]')::text",
        ),
        roster_store::Db::Sqlite(_) => (
            "json_group_array(a.address ORDER BY a.address)",
            "json_group_array(json_array(r.rule_id, r.kind, r.value, r.created_at) \
             ORDER BY r.created_at, r.rule_id)",
        ),
    };
    let sql = format!(
        "SELECT {ROW_COLUMNS}, \
         (SELECT {aliases} FROM {ALIASES} a WHERE a.user_id = u.user_id) AS alias_list, \
         (SELECT {rules} FROM {RULES} r WHERE r.user_id = u.user_id) AS rule_list \
         FROM {USERS} u WHERE customer_id = $1 AND address = $2 AND status <> 'deleted'"
    );
    let row = with_db!(store.db(), |p| {
        let raw = sqlx::query(&sql)
            .bind(customer.to_string())
            .bind(address)
            .fetch_optional(p)
            .await?;
        match raw {
            None => None,
            Some(raw) => {
                let mut row = decode_row(&raw)?;
                let aliases: String = raw.try_get("alias_list")?;
                let rules: String = raw.try_get("rule_list")?;
                row.aliases = json_column("alias_list", &aliases)?;
                let rules: Vec<(String, String, String, i64)> = json_column("rule_list", &rules)?;
                for (rule_id, kind, value, created_at) in rules {
                    row.rules
                        .push(rule_of((String::new(), rule_id, kind, value, created_at))?);
                }
                Some(row)
            }
        }
    });
    Ok(row)
}

/// A JSON column built by the query itself; a value that does not parse is
/// a corrupt row.
fn json_column<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: Box::new(e),
    })
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CustomerRow {
    pub customer_id: CustomerId,
    pub partner_id: PartnerId,
    pub name: String,
    pub seat_limit: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub domains: Vec<DomainRow>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DomainRow {
    pub domain: String,
    pub added_at: i64,
}

async fn domains_of(store: &Store, customer: &str) -> Result<Vec<DomainRow>, ProjectionError> {
    let sql =
        format!("SELECT domain, added_at FROM {DOMAINS} WHERE customer_id = $1 ORDER BY domain");
    let rows: Vec<(String, i64)> = with_db!(store.db(), |p| sqlx::query_as(&sql)
        .bind(customer)
        .fetch_all(p)
        .await?);
    Ok(rows
        .into_iter()
        .map(|(domain, added_at)| DomainRow { domain, added_at })
        .collect())
}

pub async fn domains(
    store: &Store,
    customer: CustomerId,
) -> Result<Vec<DomainRow>, ProjectionError> {
    domains_of(store, &customer.to_string()).await
}

type CustomerTuple = (String, String, String, i64, i64, i64);

/// A customer row with its domains; ids decoded once.
async fn customer_row(store: &Store, t: CustomerTuple) -> Result<CustomerRow, ProjectionError> {
    let (customer_id, partner_id, name, seat_limit, created_at, updated_at) = t;
    let domains = domains_of(store, &customer_id).await?;
    Ok(CustomerRow {
        customer_id: typed("customer_id", customer_id, |s| CustomerId::parse(s).ok())?,
        partner_id: typed("partner_id", partner_id, |s| PartnerId::parse(s).ok())?,
        name,
        seat_limit,
        created_at,
        updated_at,
        domains,
    })
}

pub async fn customer(
    store: &Store,
    id: CustomerId,
) -> Result<Option<CustomerRow>, ProjectionError> {
    let sql = format!(
        "SELECT customer_id, partner_id, name, seat_limit, created_at, updated_at FROM {CUSTOMERS} WHERE customer_id = $1"
    );
    let row: Option<CustomerTuple> = with_db!(store.db(), |p| sqlx::query_as(&sql)
        .bind(id.to_string())
        .fetch_optional(p)
        .await?);
    match row {
        None => Ok(None),
        Some(t) => Ok(Some(customer_row(store, t).await?)),
    }
}

/// The customers of a partner, by name.
pub async fn customers_of_partner(
    store: &Store,
    partner: PartnerId,
) -> Result<Vec<CustomerRow>, ProjectionError> {
    let sql = format!(
        "SELECT customer_id, partner_id, name, seat_limit, created_at, updated_at FROM {CUSTOMERS}
         WHERE partner_id = $1 ORDER BY name, customer_id"
    );
    let rows: Vec<CustomerTuple> = with_db!(store.db(), |p| sqlx::query_as(&sql)
        .bind(partner.to_string())
        .fetch_all(p)
        .await?);
    let mut out = Vec::with_capacity(rows.len());
    for t in rows {
        out.push(customer_row(store, t).await?);
    }
    Ok(out)
}

/// Licence usage of a customer (T3).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Licence {
    pub seat_limit: i64,
    /// Users that take a seat: active or flagged users (not lists, public
    /// folders, aliases or deactivated users).
    pub seats_used: i64,
    pub over_limit: bool,
    pub users_active: i64,
    pub users_pending_deletion: i64,
    pub users_deactivated: i64,
    pub distribution_lists: i64,
    pub public_folders: i64,
    pub aliases: i64,
}

pub async fn licence(store: &Store, customer: CustomerId) -> Result<Licence, ProjectionError> {
    let sql = format!(
        "SELECT kind, status, COUNT(*) FROM {USERS} WHERE customer_id = $1 AND status <> 'deleted' GROUP BY kind, status"
    );
    let counts: Vec<(String, String, i64)> = with_db!(store.db(), |p| sqlx::query_as(&sql)
        .bind(customer.to_string())
        .fetch_all(p)
        .await?);
    let mut l = Licence::default();
    for (kind, status, n) in counts {
        match (kind.as_str(), status.as_str()) {
            ("user", "active") => l.users_active += n,
            ("user", "pending_deletion") => l.users_pending_deletion += n,
            ("user", "deactivated") => l.users_deactivated += n,
            ("distribution_list", _) => l.distribution_lists += n,
            ("public_folder", _) => l.public_folders += n,
            _ => {}
        }
    }
    l.seats_used = l.users_active + l.users_pending_deletion;
    let sql = format!("SELECT COUNT(*) FROM {ALIASES} WHERE customer_id = $1");
    l.aliases = with_db!(store.db(), |p| sqlx::query_scalar(&sql)
        .bind(customer.to_string())
        .fetch_one(p)
        .await?);
    let sql = format!("SELECT seat_limit FROM {CUSTOMERS} WHERE customer_id = $1");
    let limit: Option<i64> = with_db!(store.db(), |p| sqlx::query_scalar(&sql)
        .bind(customer.to_string())
        .fetch_optional(p)
        .await?);
    l.seat_limit = limit.unwrap_or(0);
    l.over_limit = l.seats_used > l.seat_limit;
    Ok(l)
}

/// One audit entry with the event's payload; ids and the actor decoded
/// once, here.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub position: i64,
    pub recorded_at: i64,
    pub event_type: String,
    pub event_version: String,
    /// `User`, `Customer`, `Directory`, `DirectoryObjects` or `SyncReport`.
    pub aggregate_type: String,
    pub aggregate_id: AggregateId,
    pub address: Option<String>,
    pub subject: Option<String>,
    pub actor: Actor,
    pub correlation_id: CorrelationId,
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Events about this address, as primary or as the alias or domain concerned.
    pub address: Option<String>,
    pub actor: Option<Actor>,
    pub event_type: Option<String>,
    /// Inclusive bounds, microseconds.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Only events of one request, sync run or import.
    pub correlation_id: Option<CorrelationId>,
    /// Only events of this aggregate type (`User`, `Customer`, `Directory`).
    pub aggregate_type: Option<String>,
}

type AuditTuple = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
);

/// Audit rows decoded, with their events' payloads.
async fn with_payloads(
    store: &Store,
    rows: Vec<AuditTuple>,
) -> Result<Vec<AuditEntry>, ProjectionError> {
    let positions: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let events: HashMap<i64, StoredEvent> = store
        .read_positions(&positions)
        .await?
        .into_iter()
        .map(|e| (e.position, e))
        .collect();
    entries(rows, &events)
}

/// Audit rows decoded, with the payloads of `events` (by position).
fn entries(
    rows: Vec<AuditTuple>,
    events: &HashMap<i64, StoredEvent>,
) -> Result<Vec<AuditEntry>, ProjectionError> {
    let entry = |(
        position,
        recorded_at,
        event_type,
        aggregate_type,
        aggregate_id,
        address,
        subject,
        actor,
        correlation_id,
    ): AuditTuple| {
        let stored = events.get(&position);
        Ok(AuditEntry {
            position,
            recorded_at,
            event_type,
            event_version: stored.map(|e| e.event_version.clone()).unwrap_or_default(),
            aggregate_type,
            aggregate_id: typed("aggregate_id", aggregate_id, |s| AggregateId::parse(s).ok())?,
            address,
            subject,
            actor: typed("actor", actor, |s| s.parse().ok())?,
            correlation_id: typed("correlation_id", correlation_id, |s| {
                CorrelationId::parse(s).ok()
            })?,
            payload: stored
                .map(|e| e.payload.value())
                .transpose()
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?
                .unwrap_or(serde_json::Value::Null),
        })
    };
    Ok(rows
        .into_iter()
        .map(entry)
        .collect::<Result<_, sqlx::Error>>()?)
}

/// A sync run's per-user changes: the user events it wrote, newest first
/// (B4, E2), as the run page and the API show them. A run's events are
/// one append with its end (D3.r), so a run still running has none to
/// show, and none are looked for: while the run appends, the projector
/// writes them beside the append, uncommitted (issue 17), and the newest
/// entries of the run's index are those, which every look would pass one
/// by one (10 ms a look at 100,000 users, polled every second or so).
pub async fn run_changes(
    store: &Store,
    customer: CustomerId,
    run: &crate::directory::RunRow,
    page: Option<&str>,
    limit: i64,
) -> Result<Page<AuditEntry>, ProjectionError> {
    if run.status == crate::directory::RunStatus::Running {
        return Ok(Page {
            items: Vec::new(),
            next_page: None,
        });
    }
    let filter = AuditFilter {
        correlation_id: Some(run.run_id.into()),
        aggregate_type: Some(roster_events::USER_AGGREGATE.to_string()),
        ..AuditFilter::default()
    };
    audit(store, customer, &filter, page, limit).await
}

/// The audit trail of a customer, newest first, paged by position (E4).
pub async fn audit(
    store: &Store,
    customer: CustomerId,
    filter: &AuditFilter,
    page: Option<&str>,
    limit: i64,
) -> Result<Page<AuditEntry>, ProjectionError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut q = Sql::new(format!(
        "SELECT position, recorded_at, event_type, aggregate_type, aggregate_id, address, subject, actor, correlation_id
         FROM {AUDIT} WHERE customer_id = $1"
    ));
    q.s(customer.to_string());
    if let Some(a) = &filter.address {
        // Every address the event touches (primary, aliases, previous and
        // next), and the domain or object id of other events.
        let p = q.s(a.trim().to_lowercase());
        let raw = q.s(a.clone());
        q.push(&format!(
            " AND (subject = {raw} OR position IN (SELECT position FROM {AUDIT_ADDRESSES} \
             WHERE customer_id = $1 AND address = {p}))"
        ));
    }
    if let Some(a) = &filter.actor {
        let p = q.s(a.to_string());
        q.push(&format!(" AND actor = {p}"));
    }
    if let Some(t) = &filter.event_type {
        let p = q.s(t.clone());
        q.push(&format!(" AND event_type = {p}"));
    }
    if let Some(c) = &filter.correlation_id {
        let p = q.s(c.to_string());
        q.push(&format!(" AND correlation_id = {p}"));
    }
    if let Some(t) = &filter.aggregate_type {
        let p = q.s(t.clone());
        q.push(&format!(" AND aggregate_type = {p}"));
    }
    if let Some(f) = filter.from {
        let p = q.i(f);
        q.push(&format!(" AND recorded_at >= {p}"));
    }
    if let Some(t) = filter.to {
        let p = q.i(t);
        q.push(&format!(" AND recorded_at <= {p}"));
    }
    if let Some(token) = page {
        let [position] = Cursor::read(token)?;
        let p = q.i(Cursor::number(&position)?);
        q.push(&format!(" AND position < {p}"));
    }
    q.push(&format!(" ORDER BY position DESC LIMIT {}", limit + 1));
    // Planned for its values each time (not a prepared statement's generic
    // plan): a page of the newest entries that match is a walk of an index
    // that either finds them at once or finds none. The generic plan,
    // estimated from a correlation id's average frequency, walked the whole
    // trail backwards by position for a run with no user changes yet (a
    // run's page polled during a resync: 20-60 ms a poll at 90,000 events,
    // instead of 0.05 ms; issue 17).
    let mut rows: Vec<AuditTuple> = with_db!(store.db(), |p| {
        bind_all!(sqlx::query_as(&q.text).persistent(false), &q.binds)
            .fetch_all(p)
            .await?
    });
    let next_page = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| Cursor::after(&[&r.0.to_string()]))
    } else {
        None
    };
    Ok(Page {
        items: with_payloads(store, rows).await?,
        next_page,
    })
}

/// Every event of the users that have had this primary address in this
/// customer, oldest first, including events before a rename or a deletion
/// (E4, U6). Empty when no user ever had it.
pub async fn history(
    store: &Store,
    customer: CustomerId,
    address: &str,
) -> Result<Vec<AuditEntry>, ProjectionError> {
    let sql = format!(
        "SELECT DISTINCT a.aggregate_id FROM {AUDIT_ADDRESSES} x JOIN {AUDIT} a ON a.position = x.position \
         WHERE x.customer_id = $1 AND x.address = $3 AND a.address = $2 AND a.aggregate_type = 'User'"
    );
    let ids: Vec<String> = with_db!(store.db(), |p| sqlx::query_scalar(&sql)
        .bind(customer.to_string())
        .bind(address)
        .bind(address.trim().to_lowercase())
        .fetch_all(p)
        .await?);
    if ids.is_empty() {
        return Ok(vec![]);
    }
    // The users' events are read by the log's own key (aggregate type and
    // id), then their audit rows by position within the customer: the audit
    // trail keeps no index of aggregate ids, whose random keys cost every
    // row of a bulk a page write of its own (issue 17).
    let events: HashMap<i64, StoredEvent> = store
        .read_aggregates(roster_events::USER_AGGREGATE, &ids)
        .await?
        .into_iter()
        .map(|e| (e.position, e))
        .collect();
    let mut positions: Vec<i64> = events.keys().copied().collect();
    positions.sort_unstable();
    let mut out = Vec::new();
    for chunk in positions.chunks(200) {
        let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT position, recorded_at, event_type, aggregate_type, aggregate_id, address, subject, actor, correlation_id
             FROM {AUDIT} WHERE customer_id = $1 AND position IN ({}) ORDER BY position",
            marks.join(",")
        );
        let rows: Vec<AuditTuple> = with_db!(store.db(), |p| {
            let mut q = sqlx::query_as(&sql).bind(customer.to_string());
            for position in chunk {
                q = q.bind(position);
            }
            q.fetch_all(p).await?
        });
        out.extend(entries(rows, &events)?);
    }
    // Oldest first: the chunks are in order of position, and so is each.
    Ok(out)
}

/// Every live (not deleted) user of a customer with its aliases, in two
/// queries whatever the size (the reconciler's input). The two run at once
/// on two connections, and the users are decoded as they arrive rather
/// than after the last one (issue 17).
pub async fn current_users(
    store: &Store,
    customer: CustomerId,
) -> Result<Vec<UserRow>, ProjectionError> {
    use futures::TryStreamExt;
    let sql =
        format!("SELECT {ROW_COLUMNS} FROM {USERS} WHERE customer_id = $1 AND status <> 'deleted'");
    let alias_sql =
        format!("SELECT user_id, address FROM {ALIASES} WHERE customer_id = $1 ORDER BY address");
    let users = async {
        let rows: Vec<UserRow> = match store.db() {
            roster_store::Db::Pg(p) => {
                let mut rows = Vec::new();
                let mut stream = sqlx::query(&sql).bind(customer.to_string()).fetch(p);
                while let Some(raw) = stream.try_next().await? {
                    rows.push(decode_row(&raw)?);
                }
                rows
            }
            roster_store::Db::Sqlite(p) => {
                let sql = format!(
                    "SELECT json_group_array({ROW_JSON_SQLITE}) FROM {USERS} \
                     WHERE customer_id = $1 AND status <> 'deleted'"
                );
                let raw: Vec<RawUserRow> = sqlite_json_rows(p, &sql, customer).await?;
                raw.into_iter()
                    .map(RawUserRow::typed)
                    .collect::<Result<_, _>>()?
            }
        };
        Ok::<_, ProjectionError>(rows)
    };
    let aliases = async {
        let aliases: Vec<(String, String)> = with_db!(store.db(), |p| sqlx::query_as(&alias_sql)
            .bind(customer.to_string())
            .fetch_all(p)
            .await?);
        Ok::<_, ProjectionError>(aliases)
    };
    let (rows, aliases) = tokio::join!(users, aliases);
    let (mut rows, aliases) = (rows?, aliases?);
    // Keyed by the typed id, not a string made for each of the customer's
    // users (a resync loads them all, issue 17).
    let index: HashMap<UserId, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.user_id, i))
        .collect();
    for (u, a) in aliases {
        if let Some(i) = UserId::parse(&u).ok().and_then(|u| index.get(&u)) {
            rows[*i].aliases.push(a);
        }
    }
    Ok(rows)
}

/// SQLite: the rows of `sql`, a `SELECT json_group_array(json_array(...))`
/// over one customer (`$1`), in one value. sqlx hands each row of a SQLite
/// result from its worker thread to the task and copies every value: for
/// 100,000 rows that took 1.2-2.0 s where the one JSON text takes a
/// fraction (issue 17).
pub(crate) async fn sqlite_json_rows<T: serde::de::DeserializeOwned>(
    pool: &sqlx::SqlitePool,
    sql: &str,
    customer: CustomerId,
) -> Result<Vec<T>, ProjectionError> {
    let (json,): (String,) = sqlx::query_as(sql)
        .bind(customer.to_string())
        .fetch_one(pool)
        .await?;
    serde_json::from_str(&json).map_err(|e| {
        ProjectionError::Database(sqlx::Error::Decode(
            format!("a corrupt read-model row: {e}; rebuild the projections (`roster rebuild`)")
                .into(),
        ))
    })
}

/// Flagged users whose delete-after delay has passed (D3.i), oldest first.
pub async fn due_for_deletion(
    store: &Store,
    now_micros: i64,
    limit: i64,
) -> Result<Vec<(CustomerId, UserId)>, ProjectionError> {
    let sql = format!(
        "SELECT customer_id, user_id FROM {USERS}
         WHERE status = 'pending_deletion' AND delete_at IS NOT NULL AND delete_at <= $1
         ORDER BY delete_at, user_id LIMIT $2"
    );
    let rows: Vec<(String, String)> = with_db!(store.db(), |p| sqlx::query_as(&sql)
        .bind(now_micros)
        .bind(limit)
        .fetch_all(p)
        .await?);
    let typed_pair = |(c, u): (String, String)| {
        Ok((
            typed("customer_id", c, |s| CustomerId::parse(s).ok())?,
            typed("user_id", u, |s| UserId::parse(s).ok())?,
        ))
    };
    Ok(rows
        .into_iter()
        .map(typed_pair)
        .collect::<Result<_, sqlx::Error>>()?)
}
