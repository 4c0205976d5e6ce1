//! Sync history (B4, E3) and the directory as last read (D3.o).

use async_trait::async_trait;
use roster_events::{DirectoryEvent, DirectoryObjectsEvent, ObjectSummary};
use roster_store::{with_tx, Tx};

use crate::{AnyEvent, Decoded, Projection, ProjectionError};

pub struct DirectoryProjection;

pub const RUNS: &str = "sync_runs_v1";
pub const OBJECTS: &str = "directory_objects_v1";

fn counts_json<T: serde::Serialize>(c: &T) -> String {
    serde_json::to_string(c).expect("counts serialise")
}

#[async_trait]
impl Projection for DirectoryProjection {
    fn name(&self) -> &'static str {
        "directory_v1"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[RUNS, OBJECTS]
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
                AnyEvent::Directory(e) => apply_run(tx, p, d, e).await?,
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
            let trigger = serde_json::to_value(s.trigger)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            with_tx!(tx, |c| sqlx::query(&sql)
                .bind(s.run_id.to_string())
                .bind(&customer)
                .bind(s.kind.as_str())
                .bind(&trigger)
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
                "UPDATE {p}{RUNS} SET status = 'failed', code = $2, reason = $3, finished_at = $4 WHERE run_id = $1"
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
        DirectoryEvent::SyncConfirmed(s) => {
            let sql = format!(
                "UPDATE {p}{RUNS} SET status = 'confirmed', decided_by_run = $2 WHERE run_id = $1"
            );
            with_tx!(tx, |c| sqlx::query(&sql)
                .bind(s.run_id.to_string())
                .bind(s.by_run.to_string())
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
            let sql = format!(
                "INSERT INTO {p}{OBJECTS} ({cols}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) {tail}"
            );
            for o in objects {
                sqlx::query(&sql)
                    .bind(customer)
                    .bind(&o.id)
                    .bind(&o.kind)
                    .bind(&o.dn)
                    .bind(&o.display_name)
                    .bind(&o.mail)
                    .bind(serde_json::to_string(&o.aliases).unwrap_or_default())
                    .bind(o.disabled)
                    .bind(search_of(o))
                    .bind(at)
                    .execute(&mut **t)
                    .await?;
            }
        }
    }
    Ok(())
}
