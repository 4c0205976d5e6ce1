//! The user list (U2, U3): one row per user, list or public folder, with
//! aliases grouped under their primary and the user's rules.
//!
//! A batch is applied in memory: the rows it touches are loaded in one
//! query, the events folded onto them by [`UserRow::apply`] (a pure function,
//! also used by time travel), and written back in a few set-wise statements.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use roster_events::*;
use roster_store::{with_tx, Backend, Tx};
use serde::Serialize;
use sqlx::Row;

use crate::{AnyEvent, Decoded, Projection, ProjectionError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRow {
    pub rule_id: RuleId,
    pub kind: RuleKind,
    pub value: String,
    pub created_at: i64,
}

/// A user as the list shows it: ids and statuses typed, decoded from the
/// table once (a value no type accepts is a corrupt row, an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    pub user_id: UserId,
    pub customer_id: CustomerId,
    pub address: String,
    pub kind: Kind,
    pub source: Source,
    pub status: Status,
    pub profile: Profile,
    pub aliases: Vec<String>,
    pub rules: Vec<RuleRow>,
    pub directory_id: Option<ObjectId>,
    /// Members of a distribution list (U4).
    pub members: Vec<String>,
    pub flag_reason: Option<FlagReason>,
    pub flagged_at: Option<i64>,
    pub delete_at: Option<i64>,
    /// The absence an administrator ignored (D3.m) or a deactivation lifted.
    pub ignored_reason: Option<FlagReason>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
    pub version: i64,
    pub last_position: i64,
}

fn us(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

impl UserRow {
    fn new(user_id: UserId, customer_id: CustomerId, at: i64) -> Self {
        UserRow {
            user_id,
            customer_id,
            address: String::new(),
            kind: Kind::User,
            source: Source::Manual,
            status: Status::Active,
            profile: Profile::default(),
            aliases: vec![],
            rules: vec![],
            directory_id: None,
            members: vec![],
            flag_reason: None,
            flagged_at: None,
            delete_at: None,
            ignored_reason: None,
            created_at: at,
            updated_at: at,
            deleted_at: None,
            version: 0,
            last_position: 0,
        }
    }

    /// The row of a user as it is added or comes back (U6).
    fn added(user_id: UserId, e: &UserAdded, at: i64) -> UserRow {
        UserRow {
            address: e.address.to_string(),
            kind: e.kind,
            source: e.source,
            profile: e.profile.clone(),
            aliases: e.aliases.iter().map(|a| a.to_string()).collect(),
            directory_id: e.directory_id.clone(),
            members: e.members.iter().map(|a| a.to_string()).collect(),
            ..UserRow::new(user_id, e.customer_id, at)
        }
    }

    /// The lower-case text `q` searches: addresses and names.
    pub fn search_text(&self) -> String {
        let mut s = self.address.clone();
        for a in &self.aliases {
            s.push(' ');
            s.push_str(a);
        }
        for v in [&self.profile.first_name, &self.profile.last_name]
            .into_iter()
            .flatten()
        {
            s.push(' ');
            s.push_str(v);
        }
        s.to_lowercase()
    }

    fn clear_flag(&mut self) {
        self.flag_reason = None;
        self.flagged_at = None;
        self.delete_at = None;
    }

    /// The user id of a user event: its aggregate id.
    pub fn id_of(d: &Decoded) -> Result<UserId, ProjectionError> {
        UserId::parse(&d.aggregate_id)
            .map_err(|e| ProjectionError::Invalid(format!("the user event at {}: {e}", d.position)))
    }

    /// Folds one user event onto the row (or creates it) of the user `id`
    /// ([`UserRow::id_of`] the event). Pure.
    pub fn fold(row: Option<UserRow>, id: UserId, d: &Decoded, e: &UserEvent) -> UserRow {
        let at = d.recorded_at;
        let mut row = row.unwrap_or_else(|| UserRow::new(id, d.meta.customer_id, at));
        match e {
            UserEvent::UserAdded(e) | UserEvent::UserReturned(UserReturned { user: e, .. }) => {
                row = UserRow::added(id, e, at)
            }
            UserEvent::ProfileUpdated(e) => row.profile = e.profile.clone(),
            UserEvent::AliasMapped(e) => {
                let a = e.alias.to_string();
                if !row.aliases.contains(&a) {
                    row.aliases.push(a);
                    row.aliases.sort();
                }
            }
            UserEvent::AliasUnmapped(e) => row.aliases.retain(|a| a != e.alias.as_str()),
            UserEvent::FlaggedForDeletion(e) => {
                row.status = Status::PendingDeletion;
                row.flag_reason = Some(e.reason);
                row.flagged_at = Some(us(e.flagged_at));
                row.delete_at = e.delete_at.map(us);
                row.ignored_reason = None;
            }
            UserEvent::DeletionCancelled(_) => {
                row.status = Status::Active;
                row.clear_flag();
            }
            UserEvent::ConflictIgnored(e) => {
                row.status = Status::Active;
                row.clear_flag();
                row.ignored_reason = Some(e.reason);
            }
            UserEvent::UserDeactivated(e) => {
                row.status = Status::Deactivated;
                row.clear_flag();
                if let Some(r) = e.lifted_flag {
                    row.ignored_reason = Some(r);
                }
            }
            UserEvent::UserReactivated(_) => row.status = Status::Active,
            UserEvent::UserDeleted(e) => {
                row.status = Status::Deleted;
                row.deleted_at = Some(us(e.deleted_at));
                row.aliases.clear();
                row.rules.clear();
                row.clear_flag();
                row.ignored_reason = None;
            }
            UserEvent::RuleAdded(e) => row.rules.push(RuleRow {
                rule_id: e.rule_id,
                kind: e.kind,
                value: e.value.clone(),
                created_at: at,
            }),
            UserEvent::RuleRemoved(e) => row.rules.retain(|r| r.rule_id != e.rule_id),
            // The new primary is set below, like every event's address.
            UserEvent::AddressChanged(_) => {}
            UserEvent::DirectoryLinked(e) => {
                row.source = e.source;
                row.directory_id = Some(e.directory_id.clone());
            }
            UserEvent::AbsenceEnded(_) => row.ignored_reason = None,
            UserEvent::ListMembersChanged(e) => {
                row.members = e.members.iter().map(|a| a.to_string()).collect()
            }
            UserEvent::AddressReleased(_) => {}
        }
        row.address = match e {
            // Between the two halves of a rename in a cycle (one append) the
            // user has no primary address: a reader of that prefix never
            // sees the address twice (U1).
            UserEvent::AddressReleased(_) => String::new(),
            _ => e.address().to_string(),
        };
        row.updated_at = at;
        row.version = d.sequence;
        row.last_position = d.position;
        row
    }
}

pub struct UsersProjection;

pub const USERS: &str = "users_v2";
pub const ALIASES: &str = "user_aliases_v2";
pub const RULES: &str = "user_rules_v2";

/// How much of a user's search text PostgreSQL's list index holds
/// (`search_key`): 400 characters are at most 1,600 bytes, which with the
/// key columns stays under a B-tree entry's limit of 2,704 bytes.
pub const SEARCH_KEY_CHARS: usize = 400;

pub(crate) const COLUMNS: &str =
    "user_id, customer_id, address, kind, source, status, first_name, last_name, \
     home_phone, mobile, company, department, notes, flag_reason, flagged_at, delete_at, \
     ignored_reason, created_at, updated_at, deleted_at, version, last_position, search, \
     directory_id, members";

/// The columns [`decode_row`] reads: [`COLUMNS`] without `search`, the
/// search text, which only the database reads (it is most of a row's
/// bytes, and a resync reads every user of the customer, issue 17).
pub(crate) const ROW_COLUMNS: &str =
    "user_id, customer_id, address, kind, source, status, first_name, last_name, \
     home_phone, mobile, company, department, notes, flag_reason, flagged_at, delete_at, \
     ignored_reason, created_at, updated_at, deleted_at, version, last_position, \
     directory_id, members";

/// A row of [`ROW_COLUMNS`] as the database holds it, before its ids and
/// names are typed. Deserializes from a JSON array of the columns in that
/// order (SQLite's `json_array`, see [`crate::queries::current_users`]).
#[derive(serde::Deserialize)]
pub(crate) struct RawUserRow {
    user_id: String,
    customer_id: String,
    address: String,
    kind: String,
    source: String,
    status: String,
    profile: [Option<String>; 7],
    flag_reason: Option<String>,
    flagged_at: Option<i64>,
    delete_at: Option<i64>,
    ignored_reason: Option<String>,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    version: i64,
    last_position: i64,
    directory_id: Option<String>,
    members: String,
}

/// The JSON array of one row's [`ROW_COLUMNS`] in SQLite, in the order
/// [`RawUserRow`] reads them (the profile's seven as one array).
pub(crate) const ROW_JSON_SQLITE: &str =
    "json_array(user_id, customer_id, address, kind, source, status, \
     json_array(first_name, last_name, home_phone, mobile, company, department, notes), \
     flag_reason, flagged_at, delete_at, ignored_reason, created_at, updated_at, deleted_at, \
     version, last_position, directory_id, members)";

impl RawUserRow {
    /// The row typed; a value its type does not accept is a corrupt row.
    pub(crate) fn typed(self) -> Result<UserRow, sqlx::Error> {
        Ok(UserRow {
            user_id: typed("user_id", self.user_id, |s| UserId::parse(s).ok())?,
            customer_id: typed("customer_id", self.customer_id, |s| {
                CustomerId::parse(s).ok()
            })?,
            address: self.address,
            kind: typed("kind", self.kind, Kind::parse)?,
            source: typed("source", self.source, Source::parse)?,
            status: typed("status", self.status, Status::parse)?,
            profile: Profile::from_fields(self.profile),
            aliases: vec![],
            rules: vec![],
            flag_reason: typed_opt("flag_reason", self.flag_reason, FlagReason::parse)?,
            flagged_at: self.flagged_at,
            delete_at: self.delete_at,
            ignored_reason: typed_opt("ignored_reason", self.ignored_reason, FlagReason::parse)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
            version: self.version,
            last_position: self.last_position,
            directory_id: self.directory_id.map(ObjectId),
            members: serde_json::from_str(&self.members).unwrap_or_default(),
        })
    }
}

/// A row whose first columns are [`ROW_COLUMNS`], read by position (a
/// resync reads every user of the customer: looking each of 24 columns up
/// by name cost more than reading it, issue 17).
pub(crate) fn decode_row<R: Row>(r: &R) -> Result<UserRow, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'x> String: sqlx::Decode<'x, R::Database> + sqlx::Type<R::Database>,
    for<'x> Option<String>: sqlx::Decode<'x, R::Database> + sqlx::Type<R::Database>,
    for<'x> i64: sqlx::Decode<'x, R::Database> + sqlx::Type<R::Database>,
    for<'x> Option<i64>: sqlx::Decode<'x, R::Database> + sqlx::Type<R::Database>,
{
    let text = |i: usize| r.try_get::<String, _>(i);
    let maybe = |i: usize| r.try_get::<Option<String>, _>(i);
    RawUserRow {
        user_id: text(0)?,
        customer_id: text(1)?,
        address: text(2)?,
        kind: text(3)?,
        source: text(4)?,
        status: text(5)?,
        profile: [
            maybe(6)?,
            maybe(7)?,
            maybe(8)?,
            maybe(9)?,
            maybe(10)?,
            maybe(11)?,
            maybe(12)?,
        ],
        flag_reason: maybe(13)?,
        flagged_at: r.try_get(14)?,
        delete_at: r.try_get(15)?,
        ignored_reason: maybe(16)?,
        created_at: r.try_get(17)?,
        updated_at: r.try_get(18)?,
        deleted_at: r.try_get(19)?,
        version: r.try_get(20)?,
        last_position: r.try_get(21)?,
        directory_id: maybe(22)?,
        members: text(23)?,
    }
    .typed()
}

/// A column's text as its type; a value the type does not accept is a
/// corrupt row, named with the column and the value.
pub(crate) fn typed<T>(
    column: &str,
    value: String,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, sqlx::Error> {
    parse(&value).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: format!(
            "a corrupt read-model row: {value:?} is not a {column}; rebuild the projections (`roster rebuild`)"
        )
        .into(),
    })
}

/// [`typed`] for a column that may be NULL.
pub(crate) fn typed_opt<T>(
    column: &str,
    value: Option<String>,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, sqlx::Error> {
    value.map(|v| typed(column, v, parse)).transpose()
}

/// The rule rows of a query `(user_id, rule_id, kind, value, created_at)`.
pub(crate) fn rule_of(
    (_, rule_id, kind, value, created_at): (String, String, String, String, i64),
) -> Result<RuleRow, sqlx::Error> {
    Ok(RuleRow {
        rule_id: typed("rule_id", rule_id, |s| RuleId::parse(s).ok())?,
        kind: typed("kind", kind, RuleKind::parse)?,
        value,
        created_at,
    })
}

/// Reads rows by user id from tables with the given prefix, aliases and rules included.
pub(crate) async fn load_rows(
    tx: &mut Tx,
    prefix: &str,
    ids: &[String],
) -> Result<HashMap<String, UserRow>, sqlx::Error> {
    let mut rows: HashMap<String, UserRow> = HashMap::new();
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let marks = marks.join(",");
        let sql = format!("SELECT {ROW_COLUMNS} FROM {prefix}{USERS} WHERE user_id IN ({marks})");
        let found: Vec<UserRow> = with_tx!(tx, |c| {
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            let raw = q.fetch_all(&mut *c).await?;
            raw.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?
        });
        for r in found {
            rows.insert(r.user_id.to_string(), r);
        }
        let sql = format!(
            "SELECT user_id, address FROM {prefix}{ALIASES} WHERE user_id IN ({marks}) ORDER BY address"
        );
        let aliases: Vec<(String, String)> = with_tx!(tx, |c| {
            let mut q = sqlx::query_as(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(&mut *c).await?
        });
        for (u, a) in aliases {
            if let Some(r) = rows.get_mut(&u) {
                r.aliases.push(a);
            }
        }
        let sql = format!(
            "SELECT user_id, rule_id, kind, value, created_at FROM {prefix}{RULES} \
             WHERE user_id IN ({marks}) ORDER BY created_at, rule_id"
        );
        let rules: Vec<(String, String, String, String, i64)> = with_tx!(tx, |c| {
            let mut q = sqlx::query_as(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(&mut *c).await?
        });
        for rule in rules {
            if let Some(r) = rows.get_mut(&rule.0) {
                r.rules.push(rule_of(rule)?);
            }
        }
    }
    Ok(rows)
}

fn members_json(r: &UserRow) -> String {
    serde_json::to_string(&r.members).expect("strings serialise")
}

/// The upsert of a whole row: every column but the key takes the new value.
const UPSERT_TAIL: &str = "ON CONFLICT (user_id) DO UPDATE SET customer_id = excluded.customer_id, \
        address = excluded.address, kind = excluded.kind, source = excluded.source, \
        status = excluded.status, first_name = excluded.first_name, last_name = excluded.last_name, \
        home_phone = excluded.home_phone, mobile = excluded.mobile, company = excluded.company, \
        department = excluded.department, notes = excluded.notes, flag_reason = excluded.flag_reason, \
        flagged_at = excluded.flagged_at, delete_at = excluded.delete_at, \
        ignored_reason = excluded.ignored_reason, created_at = excluded.created_at, \
        updated_at = excluded.updated_at, deleted_at = excluded.deleted_at, \
        version = excluded.version, last_position = excluded.last_position, search = excluded.search, \
        directory_id = excluded.directory_id, members = excluded.members";

/// Writes the rows, their aliases and their rules, replacing what the
/// tables held for the users of `existing` (users new in this batch have
/// nothing to replace: an initial sync deletes nothing).
async fn store_rows(
    tx: &mut Tx,
    prefix: &str,
    rows: &[&UserRow],
    existing: &[String],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Pg(t) => {
            let ids: Vec<&str> = existing.iter().map(String::as_str).collect();
            pg_upsert_users(t, prefix, rows).await?;
            pg_replace_aliases(t, prefix, rows, &ids).await?;
            pg_replace_rules(t, prefix, rows, &ids).await
        }
        Tx::Sqlite(t) => sqlite_store_rows(t, prefix, rows, existing).await,
    }
}

type PgTx = sqlx::Transaction<'static, sqlx::Postgres>;

/// One statement for all rows: a column array per field.
async fn pg_upsert_users(t: &mut PgTx, prefix: &str, rows: &[&UserRow]) -> Result<(), sqlx::Error> {
    macro_rules! col {
        ($f:expr) => {
            rows.iter().map($f).collect::<Vec<_>>()
        };
    }
    let sql = format!(
        "INSERT INTO {prefix}{USERS} ({COLUMNS}) SELECT * FROM UNNEST($1::text[], $2::text[], \
         $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], \
         $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::int8[], \
         $16::int8[], $17::text[], $18::int8[], $19::int8[], $20::int8[], $21::int8[], \
         $22::int8[], $23::text[], $24::text[], $25::text[]) {UPSERT_TAIL}"
    );
    sqlx::query(&sql)
        .bind(col!(|r| r.user_id.to_string()))
        .bind(col!(|r| r.customer_id.to_string()))
        .bind(col!(|r| r.address.clone()))
        .bind(col!(|r| r.kind.as_str()))
        .bind(col!(|r| r.source.as_str()))
        .bind(col!(|r| r.status.as_str()))
        .bind(col!(|r| r.profile.first_name.clone()))
        .bind(col!(|r| r.profile.last_name.clone()))
        .bind(col!(|r| r.profile.home_phone.clone()))
        .bind(col!(|r| r.profile.mobile.clone()))
        .bind(col!(|r| r.profile.company.clone()))
        .bind(col!(|r| r.profile.department.clone()))
        .bind(col!(|r| r.profile.notes.clone()))
        .bind(col!(|r| r.flag_reason.map(FlagReason::as_str)))
        .bind(col!(|r| r.flagged_at))
        .bind(col!(|r| r.delete_at))
        .bind(col!(|r| r.ignored_reason.map(FlagReason::as_str)))
        .bind(col!(|r| r.created_at))
        .bind(col!(|r| r.updated_at))
        .bind(col!(|r| r.deleted_at))
        .bind(col!(|r| r.version))
        .bind(col!(|r| r.last_position))
        .bind(col!(|r| r.search_text()))
        .bind(col!(|r| r.directory_id.as_ref().map(ObjectId::to_string)))
        .bind(col!(|r| members_json(r)))
        .execute(&mut **t)
        .await?;
    Ok(())
}

async fn pg_replace_aliases(
    t: &mut PgTx,
    prefix: &str,
    rows: &[&UserRow],
    ids: &[&str],
) -> Result<(), sqlx::Error> {
    if !ids.is_empty() {
        sqlx::query(&format!(
            "DELETE FROM {prefix}{ALIASES} WHERE user_id = ANY($1::text[])"
        ))
        .bind(ids)
        .execute(&mut **t)
        .await?;
    }
    let (mut au, mut aa, mut ac) = (vec![], vec![], vec![]);
    for r in rows {
        for a in &r.aliases {
            au.push(r.user_id.to_string());
            aa.push(a.as_str());
            ac.push(r.customer_id.to_string());
        }
    }
    if !au.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO {prefix}{ALIASES} (user_id, address, customer_id) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])"
        ))
        .bind(&au)
        .bind(&aa)
        .bind(&ac)
        .execute(&mut **t)
        .await?;
    }
    Ok(())
}

async fn pg_replace_rules(
    t: &mut PgTx,
    prefix: &str,
    rows: &[&UserRow],
    ids: &[&str],
) -> Result<(), sqlx::Error> {
    if !ids.is_empty() {
        sqlx::query(&format!(
            "DELETE FROM {prefix}{RULES} WHERE user_id = ANY($1::text[])"
        ))
        .bind(ids)
        .execute(&mut **t)
        .await?;
    }
    let (mut ri, mut ru, mut rc, mut rk, mut rv, mut rt) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in rows {
        for rule in &r.rules {
            ri.push(rule.rule_id.to_string());
            ru.push(r.user_id.to_string());
            rc.push(r.customer_id.to_string());
            rk.push(rule.kind.as_str());
            rv.push(rule.value.as_str());
            rt.push(rule.created_at);
        }
    }
    if !ri.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO {prefix}{RULES} (rule_id, user_id, customer_id, kind, value, created_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[])"
        ))
        .bind(&ri)
        .bind(&ru)
        .bind(&rc)
        .bind(&rk)
        .bind(&rv)
        .bind(&rt)
        .execute(&mut **t)
        .await?;
    }
    Ok(())
}

/// SQLite: one statement per table for all rows (`json_each`, see
/// `roster_store::sqlite_bulk`), as on PostgreSQL.
async fn sqlite_store_rows(
    t: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    prefix: &str,
    rows: &[&UserRow],
    existing: &[String],
) -> Result<(), sqlx::Error> {
    use roster_store::sqlite_bulk::{in_keys, insert, rows_json};
    use serde_json::json;
    let users = rows_json(rows.iter().map(|r| {
        json!([
            r.user_id.to_string(),
            r.customer_id.to_string(),
            r.address,
            r.kind.as_str(),
            r.source.as_str(),
            r.status.as_str(),
            r.profile.first_name,
            r.profile.last_name,
            r.profile.home_phone,
            r.profile.mobile,
            r.profile.company,
            r.profile.department,
            r.profile.notes,
            r.flag_reason.map(FlagReason::as_str),
            r.flagged_at,
            r.delete_at,
            r.ignored_reason.map(FlagReason::as_str),
            r.created_at,
            r.updated_at,
            r.deleted_at,
            r.version,
            r.last_position,
            r.search_text(),
            r.directory_id.as_ref().map(ObjectId::as_str),
            members_json(r),
        ])
    }));
    insert(
        t,
        &format!("INSERT INTO {prefix}{USERS} ({COLUMNS})"),
        25,
        &users,
        UPSERT_TAIL,
    )
    .await?;
    drop(users);
    let ids = rows_json(existing.iter().map(|id| json!(id)));
    for table in [ALIASES, RULES] {
        if existing.is_empty() {
            break;
        }
        sqlx::query(&format!(
            "DELETE FROM {prefix}{table} WHERE user_id {}",
            in_keys("$1")
        ))
        .bind(&ids)
        .execute(&mut **t)
        .await?;
    }
    let aliases = rows_json(rows.iter().flat_map(|r| {
        let (u, c) = (r.user_id.to_string(), r.customer_id.to_string());
        r.aliases.iter().map(move |a| json!([u, a, c]))
    }));
    insert(
        t,
        &format!("INSERT INTO {prefix}{ALIASES} (user_id, address, customer_id)"),
        3,
        &aliases,
        "",
    )
    .await?;
    let rules = rows_json(rows.iter().flat_map(|r| {
        let (u, c) = (r.user_id.to_string(), r.customer_id.to_string());
        r.rules.iter().map(move |rule| {
            json!([
                rule.rule_id.to_string(),
                u,
                c,
                rule.kind.as_str(),
                rule.value,
                rule.created_at
            ])
        })
    }));
    insert(
        t,
        &format!(
            "INSERT INTO {prefix}{RULES} (rule_id, user_id, customer_id, kind, value, created_at)"
        ),
        6,
        &rules,
        "",
    )
    .await?;
    Ok(())
}

#[async_trait]
impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        USERS
    }

    fn reads(&self) -> Option<&'static [&'static str]> {
        Some(&[USER_AGGREGATE])
    }

    fn tables(&self) -> &'static [&'static str] {
        &[USERS, ALIASES, RULES]
    }

    fn ddl(&self, p: &str) -> Vec<String> {
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {p}{USERS} (
                    user_id TEXT PRIMARY KEY,
                    customer_id TEXT NOT NULL,
                    address TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    source TEXT NOT NULL,
                    status TEXT NOT NULL,
                    first_name TEXT, last_name TEXT, home_phone TEXT, mobile TEXT,
                    company TEXT, department TEXT, notes TEXT,
                    flag_reason TEXT, flagged_at BIGINT, delete_at BIGINT, ignored_reason TEXT,
                    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, deleted_at BIGINT,
                    version BIGINT NOT NULL, last_position BIGINT NOT NULL,
                    search TEXT NOT NULL, directory_id TEXT, members TEXT NOT NULL)"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {p}{USERS}_customer_status ON {p}{USERS} (customer_id, status)"
            ),
            // The deletions due (D3.d): only users pending deletion are in
            // it, so a bulk of new or updated active users does not write it
            // (issue 17: one index fewer per row of an initial sync). The
            // predicate is the due query's own, which both back-ends need to
            // use a partial index.
            format!(
                "CREATE INDEX IF NOT EXISTS {p}{USERS}_due_pending ON {p}{USERS} (delete_at) \
                 WHERE status = 'pending_deletion' AND delete_at IS NOT NULL"
            ),
            format!("DROP INDEX IF EXISTS {p}{USERS}_due"),
            // Licence counts (T3) of the dashboard, the user list and the
            // customer list: an index-only count, not a table scan, at
            // 100,000 users (issue 14; 62 ms -> 24 ms on PostgreSQL,
            // 113 ms -> 17 ms on SQLite).
            format!(
                "CREATE INDEX IF NOT EXISTS {p}{USERS}_customer_kind_status ON {p}{USERS} (customer_id, kind, status)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {p}{ALIASES} (
                    user_id TEXT NOT NULL, address TEXT NOT NULL, customer_id TEXT NOT NULL,
                    PRIMARY KEY (user_id, address))"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {p}{ALIASES}_customer_address ON {p}{ALIASES} (customer_id, address)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {p}{RULES} (
                    rule_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, customer_id TEXT NOT NULL,
                    kind TEXT NOT NULL, value TEXT NOT NULL, created_at BIGINT NOT NULL)"
            ),
            format!("CREATE INDEX IF NOT EXISTS {p}{RULES}_user ON {p}{RULES} (user_id)"),
        ]
    }

    /// The user list's order and its search (issue 14: a page of a search
    /// within 100 ms at 100,000 users; `q` is a substring of `search`,
    /// `LIKE '%q%'`, which no ordinary index serves). Both back-ends keep
    /// the list's order with the filtered columns and the searched text in
    /// one index, so a search or a filter is decided on the index alone,
    /// in the list's order, and only the page's rows are read from the
    /// table: the worst case (a `q` that matches nothing) walks the
    /// customer's entries of one index (30-50 ms at 100,000 users).
    ///
    /// - PostgreSQL: `(customer_id, address, user_id)` with `status`,
    ///   `kind`, `source` and the first [`SEARCH_KEY_CHARS`] characters of
    ///   `search` included (`search_key`, a generated column: a B-tree
    ///   entry holds at most 2,704 bytes, which a user with sixty aliases
    ///   exceeds). The few users whose text is longer (`search_more`) have
    ///   a partial index of their own, which the list reads beside the
    ///   first ([`crate::queries::list_users`]). This replaces the
    ///   `pg_trgm` GIN index of earlier versions (issue 17): it put about
    ///   85 trigram entries per user into the index, 4.5 s of the
    ///   database's 6.4 s for 100,000 customer-shaped users in psql on
    ///   this machine, against 2.0 s without it; the pending list that
    ///   deferred the merge did not remove the cost of extracting and
    ///   writing the entries.
    /// - SQLite: the same index with the whole `search` (SQLite has no
    ///   entry size limit). It replaces the narrower index of earlier
    ///   versions, which the planner would otherwise prefer.
    fn backend_ddl(&self, p: &str, backend: Backend) -> Vec<String> {
        match backend {
            Backend::Postgres => vec![
                format!(
                    "ALTER TABLE {p}{USERS} ADD COLUMN IF NOT EXISTS search_key TEXT \
                     GENERATED ALWAYS AS (left(search, {SEARCH_KEY_CHARS})) STORED"
                ),
                format!(
                    "ALTER TABLE {p}{USERS} ADD COLUMN IF NOT EXISTS search_more BOOLEAN \
                     GENERATED ALWAYS AS (length(search) > {SEARCH_KEY_CHARS}) STORED"
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS {p}{USERS}_customer_address_search ON {p}{USERS} \
                     (customer_id, address, user_id) INCLUDE (status, kind, source, search_key)"
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS {p}{USERS}_search_more ON {p}{USERS} \
                     (customer_id, address, user_id) WHERE search_more"
                ),
                format!("DROP INDEX IF EXISTS {p}{USERS}_customer_address"),
                format!("DROP INDEX IF EXISTS {p}{USERS}_search_trgm"),
            ],
            Backend::Sqlite => vec![
                format!(
                    "CREATE INDEX IF NOT EXISTS {p}{USERS}_customer_address_search ON {p}{USERS} \
                     (customer_id, address, user_id, status, kind, source, search)"
                ),
                format!("DROP INDEX IF EXISTS {p}{USERS}_customer_address"),
            ],
        }
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        prefix: &str,
        events: &[&Decoded],
    ) -> Result<(), ProjectionError> {
        let mut ids: Vec<String> = events
            .iter()
            .filter(|d| matches!(d.event, AnyEvent::User(_)))
            .map(|d| d.aggregate_id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        ids.sort();
        ids.dedup();
        // New users (first event is sequence 1) need no lookup.
        let existing: Vec<String> = {
            let mut first_seq: BTreeMap<&str, i64> = BTreeMap::new();
            for d in events {
                if matches!(d.event, AnyEvent::User(_)) {
                    first_seq
                        .entry(d.aggregate_id.as_str())
                        .or_insert(d.sequence);
                }
            }
            first_seq
                .into_iter()
                .filter(|(_, s)| *s > 1)
                .map(|(id, _)| id.to_string())
                .collect()
        };
        let mut rows = if existing.is_empty() {
            HashMap::new()
        } else {
            load_rows(tx, prefix, &existing).await?
        };
        for d in events {
            if let AnyEvent::User(e) = &d.event {
                let id = UserRow::id_of(d)?;
                let row = rows.remove(&d.aggregate_id);
                rows.insert(d.aggregate_id.clone(), UserRow::fold(row, id, d, e));
            }
        }
        let mut out: Vec<&UserRow> = rows.values().collect();
        out.sort_by_key(|r| r.user_id);
        store_rows(tx, prefix, &out, &existing).await?;
        Ok(())
    }
}

#[cfg(test)]
mod row_columns_tests {
    use super::*;

    /// `decode_row` reads by position: the columns must stay in this order.
    #[test]
    fn u3_row_columns_are_in_the_order_decode_row_reads_them() {
        let names: Vec<&str> = ROW_COLUMNS.split(',').map(str::trim).collect();
        assert_eq!(
            names,
            [
                "user_id",
                "customer_id",
                "address",
                "kind",
                "source",
                "status",
                "first_name",
                "last_name",
                "home_phone",
                "mobile",
                "company",
                "department",
                "notes",
                "flag_reason",
                "flagged_at",
                "delete_at",
                "ignored_reason",
                "created_at",
                "updated_at",
                "deleted_at",
                "version",
                "last_position",
                "directory_id",
                "members"
            ]
        );
        // Every column written but `search` is read back.
        let written: Vec<&str> = COLUMNS
            .split(',')
            .map(str::trim)
            .filter(|c| *c != "search")
            .collect();
        assert_eq!(names, written);
    }
}
