//! Sync run reports (B4, issue 11): per run, the objects it did not sync
//! (with their reason) and the addresses several objects claimed (with
//! every claimant), from the run's `SyncReported` events. Kept for
//! completed and held runs alike; paged by the API. A run whose report
//! repeats an earlier run's (`SyncReportRepeated`, issue 17) has one row
//! naming that run, and reads as that run's report.

use std::collections::BTreeMap;

use async_trait::async_trait;
use roster_events::{ContestedAddress, SkipScope, SkippedObject, SyncReportEvent};
use roster_store::Tx;

use crate::{AnyEvent, Cursor, Decoded, Projection, ProjectionError};

pub struct RunReportsProjection;

pub const REPORTS: &str = "sync_run_reports_v1";

/// Runs whose report is an earlier run's (of the same customer).
pub const REPEATS: &str = "sync_run_report_repeats_v1";

const SKIPPED: &str = "skipped";
const CONTESTED: &str = "contested";

#[async_trait]
impl Projection for RunReportsProjection {
    fn name(&self) -> &'static str {
        REPORTS
    }

    fn reads(&self) -> Option<&'static [&'static str]> {
        Some(&[roster_events::SYNC_REPORT_AGGREGATE])
    }

    fn tables(&self) -> &'static [&'static str] {
        &[REPORTS, REPEATS]
    }

    fn ddl(&self, p: &str) -> Vec<String> {
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {p}{REPORTS} (
                run_id TEXT NOT NULL, section TEXT NOT NULL, part BIGINT NOT NULL,
                idx BIGINT NOT NULL, customer_id TEXT NOT NULL, scope TEXT, reason TEXT,
                body TEXT NOT NULL, PRIMARY KEY (run_id, section, part, idx))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {p}{REPEATS} (
                run_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, of_run TEXT NOT NULL)"
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
            let e = match &d.event {
                AnyEvent::SyncReport(SyncReportEvent::SyncReported(e)) => e,
                AnyEvent::SyncReport(SyncReportEvent::SyncReportRepeated(e)) => {
                    let sql = format!(
                        "INSERT INTO {p}{REPEATS} (run_id, customer_id, of_run) VALUES ($1, $2, $3) \
                         ON CONFLICT DO NOTHING"
                    );
                    let (run, customer, of) = (
                        e.run_id.to_string(),
                        d.meta.customer_id.to_string(),
                        e.of_run.to_string(),
                    );
                    roster_store::with_tx!(tx, |t| sqlx::query(&sql)
                        .bind(&run)
                        .bind(&customer)
                        .bind(&of)
                        .execute(t)
                        .await
                        .map(|_| ())?);
                    continue;
                }
                _ => continue,
            };
            let mut rows = Rows::default();
            for (i, x) in e.skipped.iter().enumerate() {
                let scope = serde_json::to_value(x.scope).ok();
                rows.push(
                    SKIPPED,
                    i,
                    scope.as_ref().and_then(|v| v.as_str()),
                    Some(x.reason.as_str()),
                    x,
                )?;
            }
            for (i, x) in e.contested.iter().enumerate() {
                rows.push(CONTESTED, i, None, None, x)?;
            }
            let (run, customer) = (e.run_id.to_string(), d.meta.customer_id.to_string());
            rows.insert(tx, p, &run, e.part as i64, &customer).await?;
        }
        Ok(())
    }
}

/// The rows of one report part, column by column.
#[derive(Default)]
struct Rows {
    section: Vec<&'static str>,
    idx: Vec<i64>,
    scope: Vec<Option<String>>,
    reason: Vec<Option<String>>,
    body: Vec<String>,
}

impl Rows {
    fn push<T: serde::Serialize>(
        &mut self,
        section: &'static str,
        idx: usize,
        scope: Option<&str>,
        reason: Option<&str>,
        body: &T,
    ) -> Result<(), ProjectionError> {
        self.section.push(section);
        self.idx.push(idx as i64);
        self.scope.push(scope.map(String::from));
        self.reason.push(reason.map(String::from));
        self.body.push(
            serde_json::to_string(body).map_err(|e| ProjectionError::Invalid(e.to_string()))?,
        );
        Ok(())
    }

    /// One statement on either back-end (a report can hold thousands of rows).
    async fn insert(
        &self,
        tx: &mut Tx,
        p: &str,
        run: &str,
        part: i64,
        customer: &str,
    ) -> Result<(), ProjectionError> {
        let cols = "run_id, part, customer_id, section, idx, scope, reason, body";
        match tx {
            Tx::Pg(t) => {
                sqlx::query(&format!(
                    "INSERT INTO {p}{REPORTS} ({cols}) SELECT $1, $2, $3, * FROM UNNEST($4::text[], \
                     $5::int8[], $6::text[], $7::text[], $8::text[]) ON CONFLICT DO NOTHING"
                ))
                .bind(run)
                .bind(part)
                .bind(customer)
                .bind(&self.section)
                .bind(&self.idx)
                .bind(&self.scope)
                .bind(&self.reason)
                .bind(&self.body)
                .execute(&mut **t)
                .await?;
            }
            Tx::Sqlite(t) => {
                use roster_store::sqlite_bulk::{insert, rows_json};
                let rows = rows_json((0..self.body.len()).map(|i| {
                    serde_json::json!([
                        run,
                        part,
                        customer,
                        self.section[i],
                        self.idx[i],
                        self.scope[i],
                        self.reason[i],
                        self.body[i]
                    ])
                }));
                insert(
                    t,
                    &format!("INSERT INTO {p}{REPORTS} ({cols})"),
                    8,
                    &rows,
                    "ON CONFLICT DO NOTHING",
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// The run whose rows hold run `$2`'s report: `$2` itself, or the earlier
/// run of the same customer (`$1`) it repeats.
fn report_of() -> String {
    format!("COALESCE((SELECT r.of_run FROM {REPEATS} r WHERE r.customer_id = $1 AND r.run_id = $2), $2)")
}

/// The earlier run whose report run `run_id` repeats, if it does (its
/// report reads as that run's).
pub async fn repeat_of(
    store: &roster_store::Store,
    customer: roster_events::CustomerId,
    run_id: &str,
) -> Result<Option<String>, ProjectionError> {
    let sql = format!("SELECT of_run FROM {REPEATS} WHERE customer_id = $1 AND run_id = $2");
    let of: Option<(String,)> = roster_store::with_db!(store.db(), |p| sqlx::query_as(&sql)
        .bind(customer.to_string())
        .bind(run_id)
        .fetch_optional(p)
        .await?);
    Ok(of.map(|(r,)| r))
}

/// How many objects a run did not sync, and addresses it did not apply,
/// by reason; and how many addresses were contested.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReportCounts {
    /// Objects not synced at all, by reason.
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// Aliases not mapped and renames not applied, by reason.
    pub not_applied_by_reason: BTreeMap<String, u64>,
    pub contested: u64,
}

pub async fn counts(
    store: &roster_store::Store,
    customer: roster_events::CustomerId,
    run_id: &str,
) -> Result<ReportCounts, ProjectionError> {
    let sql = format!(
        "SELECT section, scope, reason, COUNT(*) FROM {REPORTS}
         WHERE customer_id = $1 AND run_id = {} GROUP BY section, scope, reason",
        report_of()
    );
    let rows: Vec<(String, Option<String>, Option<String>, i64)> =
        roster_store::with_db!(store.db(), |p| sqlx::query_as(&sql)
            .bind(customer.to_string())
            .bind(run_id)
            .fetch_all(p)
            .await?);
    let object = serde_json::to_value(SkipScope::Object).ok();
    let object = object.as_ref().and_then(|v| v.as_str());
    let mut out = ReportCounts::default();
    for (section, scope, reason, n) in rows {
        let n = n as u64;
        if section == CONTESTED {
            out.contested += n;
            continue;
        }
        let map = if scope.as_deref() == object {
            &mut out.skipped_by_reason
        } else {
            &mut out.not_applied_by_reason
        };
        *map.entry(reason.unwrap_or_default()).or_default() += n;
    }
    Ok(out)
}

async fn page<T: serde::de::DeserializeOwned>(
    store: &roster_store::Store,
    customer: roster_events::CustomerId,
    run_id: &str,
    section: &str,
    token: Option<&str>,
    limit: i64,
) -> Result<(Vec<T>, Option<Cursor>), ProjectionError> {
    let (part, idx) = match token {
        None => (-1, -1),
        Some(t) => {
            let [part, idx] = Cursor::read(t)?;
            (Cursor::number(&part)?, Cursor::number(&idx)?)
        }
    };
    let sql = format!(
        "SELECT part, idx, body FROM {REPORTS}
         WHERE customer_id = $1 AND run_id = {} AND section = $3
           AND (part > $4 OR (part = $4 AND idx > $5))
         ORDER BY part, idx LIMIT $6",
        report_of()
    );
    let mut rows: Vec<(i64, i64, String)> =
        roster_store::with_db!(store.db(), |p| sqlx::query_as(&sql)
            .bind(customer.to_string())
            .bind(run_id)
            .bind(section)
            .bind(part)
            .bind(idx)
            .bind(limit + 1)
            .fetch_all(p)
            .await?);
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| Cursor::after(&[&r.0.to_string(), &r.1.to_string()]))
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(|(_, _, body)| {
            serde_json::from_str(&body).map_err(|e| ProjectionError::Invalid(e.to_string()))
        })
        .collect::<Result<Vec<T>, _>>()?;
    Ok((items, next))
}

/// One page of the objects (and addresses) a run did not sync, in the
/// order the run reported them (by object id).
pub async fn skipped(
    store: &roster_store::Store,
    customer: roster_events::CustomerId,
    run_id: &str,
    token: Option<&str>,
    limit: i64,
) -> Result<(Vec<SkippedObject>, Option<Cursor>), ProjectionError> {
    page(store, customer, run_id, SKIPPED, token, limit).await
}

/// One page of the addresses several objects claimed, by address.
pub async fn contested(
    store: &roster_store::Store,
    customer: roster_events::CustomerId,
    run_id: &str,
    token: Option<&str>,
    limit: i64,
) -> Result<(Vec<ContestedAddress>, Option<Cursor>), ProjectionError> {
    page(store, customer, run_id, CONTESTED, token, limit).await
}
