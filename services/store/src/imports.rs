//! Storage of CSV import reviews (M2) and the bulk look-ups a review and a
//! commit need: managed domains, tombstones (U6) and aggregate versions of
//! many users at once.
//!
//! A review is working data, not history: the plan it settled on is kept
//! in `imports` / `import_rows` until it expires, so that a commit applies
//! exactly what was reviewed. What a commit applied is in the log.

use std::collections::HashMap;

use roster_events::{Address, CustomerId, Domain, UserId};

use crate::{with_db, with_tx, Db, StoreError, Tx};

/// Rows per INSERT statement.
const INSERT_CHUNK: usize = 5_000;
/// Keys per look-up statement (PostgreSQL takes them as one array; SQLite
/// binds each, and allows at most 32,766 parameters).
const PG_LOOKUP: usize = 10_000;
const SQLITE_LOOKUP: usize = 900;

/// The stored header of an import review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRecord {
    pub import_id: String,
    pub customer_id: CustomerId,
    /// The actor that reviewed the file (`token:<id>`).
    pub reviewed_by: String,
    /// Microseconds since the Unix epoch.
    pub reviewed_at: i64,
    pub expires_at: i64,
    /// `reviewed` until the commit completes, then `committed`.
    pub status: String,
    /// How many chunks the plan's additions and updates are committed in.
    pub chunks: i64,
    /// JSON: how the file was read, totals, seats and directory state.
    pub review: String,
    pub committed_by: Option<String>,
    pub committed_at: Option<i64>,
    /// JSON: the commit's result.
    pub result: Option<String>,
}

/// One stored row of a review, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRowRecord {
    /// The row's index among the file's data rows, from 0.
    pub row_no: i64,
    /// Physical line of the row in the file.
    pub line: i64,
    /// `add`, `update`, `unchanged` or `error`.
    pub outcome: String,
    /// The chunk an addition or update is committed in.
    pub chunk: Option<i64>,
    /// JSON: the row's plan and what the review shows of it.
    pub plan: String,
}

type HeaderTuple = (
    String,
    String,
    String,
    i64,
    i64,
    String,
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
);

const HEADER_COLUMNS: &str = "import_id, customer_id, reviewed_by, reviewed_at, expires_at, \
     status, chunks, review, committed_by, committed_at, result";

fn header_of(t: HeaderTuple) -> Result<ImportRecord, StoreError> {
    Ok(ImportRecord {
        import_id: t.0,
        customer_id: CustomerId::parse(&t.1).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        reviewed_by: t.2,
        reviewed_at: t.3,
        expires_at: t.4,
        status: t.5,
        chunks: t.6,
        review: t.7,
        committed_by: t.8,
        committed_at: t.9,
        result: t.10,
    })
}

type RowTuple = (i64, i64, String, Option<i64>, String);

fn row_of(t: RowTuple) -> ImportRowRecord {
    ImportRowRecord {
        row_no: t.0,
        line: t.1,
        outcome: t.2,
        chunk: t.3,
        plan: t.4,
    }
}

/// Writes a review: its header, then its rows in as many calls to
/// [`ImportWriter::rows`] as suit the caller, in one transaction, so that a
/// review is stored whole or not at all.
pub struct ImportWriter {
    tx: Tx,
    import_id: String,
}

impl ImportWriter {
    /// Adds rows of the review.
    pub async fn rows(&mut self, rows: &[ImportRowRecord]) -> Result<(), StoreError> {
        for chunk in rows.chunks(INSERT_CHUNK) {
            match &mut self.tx {
                Tx::Pg(t) => {
                    let n = chunk.len();
                    let (mut nos, mut lines, mut outcomes, mut chunks, mut plans) = (
                        Vec::with_capacity(n),
                        Vec::with_capacity(n),
                        Vec::with_capacity(n),
                        Vec::with_capacity(n),
                        Vec::with_capacity(n),
                    );
                    for r in chunk {
                        nos.push(r.row_no);
                        lines.push(r.line);
                        outcomes.push(r.outcome.as_str());
                        chunks.push(r.chunk);
                        plans.push(r.plan.as_str());
                    }
                    sqlx::query(
                        "INSERT INTO import_rows (import_id, row_no, line, outcome, chunk, plan)
                         SELECT $1, * FROM UNNEST($2::int8[], $3::int8[], $4::text[], $5::int8[], $6::text[])",
                    )
                    .bind(&self.import_id)
                    .bind(&nos)
                    .bind(&lines)
                    .bind(&outcomes)
                    .bind(&chunks)
                    .bind(&plans)
                    .execute(&mut **t)
                    .await?;
                }
                Tx::Sqlite(t) => {
                    // One statement per chunk (issue 17: a review of
                    // 100,000 rows made 100,000 round trips here).
                    let rows = crate::sqlite_bulk::rows_json(chunk.iter().map(|r| {
                        (
                            &self.import_id,
                            r.row_no,
                            r.line,
                            r.outcome.as_str(),
                            r.chunk,
                            r.plan.as_str(),
                        )
                    }));
                    crate::sqlite_bulk::insert(
                        t,
                        "INSERT INTO import_rows (import_id, row_no, line, outcome, chunk, plan)",
                        6,
                        &rows,
                        "",
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Commits the review.
    pub async fn finish(self) -> Result<(), StoreError> {
        self.tx.commit().await
    }
}

/// Binds a list of keys as `IN (...)` on SQLite or `= ANY($n)` on
/// PostgreSQL and runs `sql` (which holds `{keys}` where the condition
/// goes, after `$1` .. `$fixed`) once per slice of keys.
macro_rules! lookup {
    ($db:expr, $sql:expr, $fixed:expr, $keys:expr, $row:ty) => {{
        let mut out: Vec<$row> = Vec::new();
        match $db {
            Db::Pg(p) => {
                for slice in $keys.chunks(PG_LOOKUP) {
                    let sql =
                        $sql.replace("{keys}", &format!("= ANY(${}::text[])", $fixed.len() + 1));
                    let mut q = sqlx::query_as::<_, $row>(&sql);
                    for f in $fixed.iter() {
                        q = q.bind(f.as_str());
                    }
                    out.extend(q.bind(slice).fetch_all(p).await?);
                }
            }
            Db::Sqlite(p) => {
                for slice in $keys.chunks(SQLITE_LOOKUP) {
                    let marks: Vec<String> = (0..slice.len())
                        .map(|i| format!("${}", $fixed.len() + 1 + i))
                        .collect();
                    let sql = $sql.replace("{keys}", &format!("IN ({})", marks.join(",")));
                    let mut q = sqlx::query_as::<_, $row>(&sql);
                    for f in $fixed.iter() {
                        q = q.bind(f.as_str());
                    }
                    for k in slice {
                        q = q.bind(k.as_str());
                    }
                    out.extend(q.fetch_all(p).await?);
                }
            }
        }
        out
    }};
}

impl Db {
    /// Starts writing a review: its header now, its rows through the
    /// returned writer, all in one transaction.
    pub async fn begin_import(&self, header: &ImportRecord) -> Result<ImportWriter, StoreError> {
        let mut tx = self.begin_write().await?;
        with_tx!(&mut tx, |c| {
            sqlx::query(&format!(
            "INSERT INTO imports ({HEADER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&header.import_id)
        .bind(header.customer_id.to_string())
        .bind(&header.reviewed_by)
        .bind(header.reviewed_at)
        .bind(header.expires_at)
        .bind(&header.status)
        .bind(header.chunks)
        .bind(&header.review)
        .bind(&header.committed_by)
        .bind(header.committed_at)
        .bind(&header.result)
        .execute(c)
        .await
        .map(|_| ())?
        });
        Ok(ImportWriter {
            tx,
            import_id: header.import_id.clone(),
        })
    }

    /// The header of a review.
    pub async fn import(&self, import_id: &str) -> Result<Option<ImportRecord>, StoreError> {
        let sql = format!("SELECT {HEADER_COLUMNS} FROM imports WHERE import_id = $1");
        let row: Option<HeaderTuple> = with_db!(self, |p| sqlx::query_as(&sql)
            .bind(import_id)
            .fetch_optional(p)
            .await?);
        row.map(header_of).transpose()
    }

    /// Rows of a review after `after_row_no` in file order, at most
    /// `limit`, optionally only those with one outcome.
    pub async fn import_rows(
        &self,
        import_id: &str,
        after_row_no: i64,
        outcome: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ImportRowRecord>, StoreError> {
        let rows: Vec<RowTuple> = match outcome {
            Some(o) => with_db!(self, |p| sqlx::query_as(
                "SELECT row_no, line, outcome, chunk, plan FROM import_rows
                 WHERE import_id = $1 AND row_no > $2 AND outcome = $3 ORDER BY row_no LIMIT $4"
            )
            .bind(import_id)
            .bind(after_row_no)
            .bind(o)
            .bind(limit)
            .fetch_all(p)
            .await?),
            None => with_db!(self, |p| sqlx::query_as(
                "SELECT row_no, line, outcome, chunk, plan FROM import_rows
                 WHERE import_id = $1 AND row_no > $2 ORDER BY row_no LIMIT $3"
            )
            .bind(import_id)
            .bind(after_row_no)
            .bind(limit)
            .fetch_all(p)
            .await?),
        };
        Ok(rows.into_iter().map(row_of).collect())
    }

    /// The rows of one chunk of a plan, in file order.
    pub async fn import_chunk(
        &self,
        import_id: &str,
        chunk: i64,
    ) -> Result<Vec<ImportRowRecord>, StoreError> {
        let rows: Vec<RowTuple> = with_db!(self, |p| sqlx::query_as(
            "SELECT row_no, line, outcome, chunk, plan FROM import_rows
             WHERE import_id = $1 AND chunk = $2 ORDER BY row_no"
        )
        .bind(import_id)
        .bind(chunk)
        .fetch_all(p)
        .await?);
        Ok(rows.into_iter().map(row_of).collect())
    }

    /// Whether the review's rows are still stored (they are deleted some
    /// time after the review expired).
    pub async fn import_has_rows(&self, import_id: &str) -> Result<bool, StoreError> {
        let n: Option<i64> = with_db!(self, |p| sqlx::query_scalar(
            "SELECT row_no FROM import_rows WHERE import_id = $1 LIMIT 1"
        )
        .bind(import_id)
        .fetch_optional(p)
        .await?);
        Ok(n.is_some())
    }

    /// Records that the commit of an import completed, with its result.
    pub async fn finish_import(
        &self,
        import_id: &str,
        committed_by: &str,
        committed_at: i64,
        result: &str,
    ) -> Result<(), StoreError> {
        with_db!(self, |p| {
            sqlx::query(
            "UPDATE imports SET status = 'committed', committed_by = $2, committed_at = $3, result = $4
             WHERE import_id = $1"
        )
        .bind(import_id)
        .bind(committed_by)
        .bind(committed_at)
        .bind(result)
        .execute(p)
        .await
        .map(|_| ())?
        });
        Ok(())
    }

    /// Deletes what expired reviews no longer need: reviews whose commit
    /// never started lose everything; committed ones keep their header and
    /// result. A commit that started and did not finish keeps its plan, so
    /// that it can always be completed. Returns the rows deleted.
    pub async fn purge_expired_imports(&self, now: i64) -> Result<u64, StoreError> {
        const NEVER_STARTED: &str = "expires_at < $1 AND status = 'reviewed' AND NOT EXISTS \
             (SELECT 1 FROM events e WHERE e.aggregate_type = 'Import' AND e.aggregate_id = imports.import_id)";
        let mut n = 0;
        n += with_db!(self, |p| sqlx::query(
            "DELETE FROM import_rows WHERE import_id IN \
             (SELECT import_id FROM imports WHERE expires_at < $1 AND status = 'committed')"
        )
        .bind(now)
        .execute(p)
        .await?
        .rows_affected());
        n += with_db!(self, |p| {
            sqlx::query(&format!(
            "DELETE FROM import_rows WHERE import_id IN (SELECT import_id FROM imports WHERE {NEVER_STARTED})"
        ))
        .bind(now)
        .execute(p)
        .await?
        .rows_affected()
        });
        n += with_db!(self, |p| sqlx::query(&format!(
            "DELETE FROM imports WHERE {NEVER_STARTED}"
        ))
        .bind(now)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n)
    }

    /// The domains a customer manages now (T2).
    pub async fn managed_domains(&self, customer: CustomerId) -> Result<Vec<Domain>, StoreError> {
        let rows: Vec<String> = with_db!(self, |p| sqlx::query_scalar(
            "SELECT domain FROM domain_claims WHERE customer_id = $1 ORDER BY domain"
        )
        .bind(customer.to_string())
        .fetch_all(p)
        .await?);
        rows.iter()
            .map(|d| Domain::parse(d).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    /// The deleted users that last held these primary addresses in this
    /// customer (U6), in bulk.
    pub async fn tombstones_bulk(
        &self,
        customer: CustomerId,
        addresses: &[Address],
    ) -> Result<HashMap<Address, UserId>, StoreError> {
        let keys: Vec<String> = addresses.iter().map(|a| a.as_str().to_string()).collect();
        let fixed = [customer.to_string()];
        let rows = lookup!(
            self,
            "SELECT address, owner_id FROM address_tombstones WHERE customer_id = $1 AND address {keys}",
            fixed,
            keys,
            (String, String)
        );
        rows.into_iter()
            .map(|(a, o)| {
                Ok((
                    Address::parse(&a).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    UserId::parse(&o).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                ))
            })
            .collect()
    }

    /// The sequence of the last event of each of these aggregates (absent:
    /// no event), in bulk: what optimistic concurrency compares.
    pub async fn aggregate_versions(
        &self,
        aggregate_type: &str,
        ids: &[String],
    ) -> Result<HashMap<String, i64>, StoreError> {
        let fixed = [aggregate_type.to_string()];
        let rows = lookup!(
            self,
            "SELECT aggregate_id, MAX(sequence) FROM events WHERE aggregate_type = $1 AND aggregate_id {keys} GROUP BY aggregate_id",
            fixed,
            ids,
            (String, i64)
        );
        Ok(rows.into_iter().collect())
    }

    /// The primary address each of these users of `customer` holds now
    /// (absent: none), in few statements. Found through the customer's
    /// claims, not an index of owners: an index of the owners' random ids
    /// cost every claim of a bulk a third of its insert (issue 17), and
    /// only the messages of a review look owners up.
    pub async fn primaries_bulk(
        &self,
        customer: CustomerId,
        owners: &[UserId],
    ) -> Result<HashMap<UserId, Address>, StoreError> {
        let keys: Vec<String> = owners.iter().map(ToString::to_string).collect();
        let fixed = [customer.to_string()];
        let rows = lookup!(
            self,
            "SELECT owner_id, address FROM address_claims WHERE customer_id = $1 AND is_primary AND owner_id {keys}",
            fixed,
            keys,
            (String, String)
        );
        let corrupt = |e: roster_events::IdError| StoreError::Corrupt(e.to_string());
        rows.into_iter()
            .map(|(o, a)| {
                Ok((
                    UserId::parse(&o).map_err(corrupt)?,
                    Address::parse(&a).map_err(corrupt)?,
                ))
            })
            .collect()
    }

    /// The owners of many addresses at once, in few statements (bulk
    /// paths such as an import of 100,000 rows): (customer, owner, primary).
    pub async fn address_owners_bulk(
        &self,
        addresses: &[Address],
    ) -> Result<HashMap<Address, crate::AddressOwner>, StoreError> {
        let keys: Vec<String> = addresses.iter().map(|a| a.as_str().to_string()).collect();
        let fixed: [String; 0] = [];
        let rows = lookup!(
            self,
            "SELECT address, customer_id, owner_id, is_primary FROM address_claims WHERE address {keys}",
            fixed,
            keys,
            (String, String, String, bool)
        );
        let corrupt = |e: roster_events::IdError| StoreError::Corrupt(e.to_string());
        rows.into_iter()
            .map(|(a, c, o, primary)| {
                Ok((
                    Address::parse(&a).map_err(corrupt)?,
                    crate::AddressOwner {
                        customer_id: CustomerId::parse(&c).map_err(corrupt)?,
                        owner: UserId::parse(&o).map_err(corrupt)?,
                        primary,
                    },
                ))
            })
            .collect()
    }
}
