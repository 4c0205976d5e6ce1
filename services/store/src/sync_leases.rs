//! Sync run leases (issue 18): a row per running run naming the replica
//! that holds it and when the lease expires without a heartbeat (see
//! `migrations/*/0500_sync_leases.sql`). Times come from the database's
//! clock, so replicas on hosts with skewed clocks agree.

use std::time::Duration;

use roster_events::CustomerId;
use uuid::Uuid;

use crate::{Db, StoreError};

const PG_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";
const SQLITE_NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)";

/// A lease taken over from a replica that stopped renewing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredLease {
    pub run_id: Uuid,
    pub customer_id: CustomerId,
    /// The replica that held it.
    pub holder: String,
}

fn ttl_micros(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX / 2)
}

impl Db {
    fn now_sql(&self) -> &'static str {
        match self {
            Db::Pg(_) => PG_NOW,
            Db::Sqlite(_) => SQLITE_NOW,
        }
    }

    /// Takes the lease of a run about to start: before its start is
    /// appended, so a replica that stops right after still leaves a lease
    /// that expires.
    pub async fn lease_run(
        &self,
        run_id: Uuid,
        customer: CustomerId,
        holder: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO sync_leases (run_id, customer_id, holder, expires_at)
             VALUES ($1, $2, $3, {} + $4)",
            self.now_sql()
        );
        crate::with_db!(self, |p| sqlx::query(&sql)
            .bind(run_id.to_string())
            .bind(customer.to_string())
            .bind(holder)
            .bind(ttl_micros(ttl))
            .execute(p)
            .await
            .map(|_| ())?);
        Ok(())
    }

    /// The heartbeat: renews the lease if this holder still has it. `false`
    /// when it was taken over (or released).
    pub async fn renew_run_lease(
        &self,
        run_id: Uuid,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE sync_leases SET expires_at = {} + $3 WHERE run_id = $1 AND holder = $2",
            self.now_sql()
        );
        let n = crate::with_db!(self, |p| sqlx::query(&sql)
            .bind(run_id.to_string())
            .bind(holder)
            .bind(ttl_micros(ttl))
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// Ends the lease of a run that finished (or was handed over).
    pub async fn release_run_lease(&self, run_id: Uuid, holder: &str) -> Result<(), StoreError> {
        crate::with_db!(self, |p| sqlx::query(
            "DELETE FROM sync_leases WHERE run_id = $1 AND holder = $2"
        )
        .bind(run_id.to_string())
        .bind(holder)
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// Hands a lease back on shutdown: it expires now, so another replica
    /// takes the run over on its next tick.
    pub async fn expire_run_lease(&self, run_id: Uuid, holder: &str) -> Result<(), StoreError> {
        crate::with_db!(self, |p| sqlx::query(
            "UPDATE sync_leases SET expires_at = 0 WHERE run_id = $1 AND holder = $2"
        )
        .bind(run_id.to_string())
        .bind(holder)
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// Takes over up to `limit` expired leases for `holder` (for `ttl`),
    /// atomically: of several replicas sweeping at once, each lease goes to
    /// one. The caller marks the runs interrupted, then releases them.
    pub async fn take_expired_run_leases(
        &self,
        holder: &str,
        ttl: Duration,
        limit: i64,
    ) -> Result<Vec<ExpiredLease>, StoreError> {
        let now = self.now_sql();
        let lock = match self {
            Db::Pg(_) => "FOR UPDATE SKIP LOCKED",
            Db::Sqlite(_) => "",
        };
        let sql = format!(
            "UPDATE sync_leases SET taken_from = holder, holder = $1, expires_at = {now} + $2
             WHERE run_id IN (SELECT run_id FROM sync_leases WHERE expires_at < {now}
                              ORDER BY expires_at LIMIT $3 {lock})
             RETURNING run_id, customer_id, taken_from"
        );
        let rows: Vec<(String, String, Option<String>)> =
            crate::with_db!(self, |p| sqlx::query_as(&sql)
                .bind(holder)
                .bind(ttl_micros(ttl))
                .bind(limit)
                .fetch_all(p)
                .await?);
        Ok(rows
            .into_iter()
            .filter_map(|(run, customer, from)| {
                Some(ExpiredLease {
                    run_id: Uuid::parse_str(&run).ok()?,
                    customer_id: CustomerId::parse(&customer).ok()?,
                    holder: from.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Whether a run's lease is expired or gone (Sync Now may then take
    /// the customer's run over at once).
    pub async fn run_lease_expired(&self, run_id: Uuid) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT expires_at < {} FROM sync_leases WHERE run_id = $1",
            self.now_sql()
        );
        let row: Option<(bool,)> = crate::with_db!(self, |p| sqlx::query_as(&sql)
            .bind(run_id.to_string())
            .fetch_optional(p)
            .await?);
        Ok(row.is_none_or(|r| r.0))
    }
}

impl Db {
    /// Forgets the lease of a run the log shows ended, whoever held it.
    pub async fn drop_run_lease(&self, run_id: Uuid) -> Result<(), StoreError> {
        crate::with_db!(self, |p| sqlx::query(
            "DELETE FROM sync_leases WHERE run_id = $1"
        )
        .bind(run_id.to_string())
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(())
    }
}
