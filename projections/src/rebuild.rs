//! `roster rebuild`: replays the whole log into fresh projection tables and
//! swaps them in (E3); and table dumps to compare two sets of tables.

use std::collections::BTreeMap;

use roster_store::{with_db, with_tx, Store};
use sqlx::Row;

use crate::{ProjectionError, Projector};

pub const REBUILD_PREFIX: &str = "rebuild_";

#[derive(Debug, Clone, Default)]
pub struct RebuildReport {
    pub events: i64,
    pub tables: Vec<String>,
    pub swapped: bool,
}

/// Drops any earlier rebuild tables, replays the log into new ones, and
/// (with `swap`) replaces the live tables by them in one transaction.
pub async fn rebuild(store: &Store, swap: bool) -> Result<RebuildReport, ProjectionError> {
    let fresh = Projector::new(store.clone(), REBUILD_PREFIX);
    drop_tables(store, REBUILD_PREFIX).await?;
    fresh.ensure_tables().await?;
    let reached = fresh.catch_up().await?;
    let mut report = RebuildReport {
        events: reached,
        tables: table_names(),
        swapped: false,
    };
    if swap {
        let live = Projector::new(store.clone(), "");
        live.ensure_tables().await?;
        let mut tx = store.db().begin_write().await?;
        if let roster_store::Tx::Pg(t) = &mut tx {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(0x526f_7374_6572_5072_i64)
                .execute(&mut **t)
                .await?;
        }
        for p in crate::all_projections() {
            for table in p.tables() {
                let del = format!("DELETE FROM {table}");
                let copy = match &mut tx {
                    // Generated columns (the user list's `search_key`) are
                    // computed, not copied: name the others.
                    roster_store::Tx::Pg(t) => {
                        let cols: String = sqlx::query_scalar(
                            "SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position) \
                             FROM information_schema.columns \
                             WHERE table_schema = current_schema() AND table_name = $1 \
                               AND is_generated = 'NEVER'",
                        )
                        .bind(table)
                        .fetch_one(&mut **t)
                        .await?;
                        format!(
                            "INSERT INTO {table} ({cols}) SELECT {cols} FROM {REBUILD_PREFIX}{table}"
                        )
                    }
                    roster_store::Tx::Sqlite(_) => {
                        format!("INSERT INTO {table} SELECT * FROM {REBUILD_PREFIX}{table}")
                    }
                };
                let drop = format!("DROP TABLE {REBUILD_PREFIX}{table}");
                for sql in [del, copy, drop] {
                    with_tx!(&mut tx, |c| sqlx::query(&sql)
                        .execute(c)
                        .await
                        .map(|_| ())?);
                }
            }
            let rebuilt = format!("{REBUILD_PREFIX}{}", p.name());
            with_tx!(&mut tx, |c| sqlx::query(
                "UPDATE projection_checkpoints SET position =
                   (SELECT position FROM projection_checkpoints WHERE name = $1)
                 WHERE name = $2"
            )
            .bind(&rebuilt)
            .bind(p.name())
            .execute(&mut *c)
            .await
            .map(|_| ())?);
            for sql in [
                "DELETE FROM projection_checkpoints WHERE name = $1",
                "DELETE FROM projection_failures WHERE name = $1",
            ] {
                with_tx!(&mut tx, |c| sqlx::query(sql)
                    .bind(&rebuilt)
                    .execute(c)
                    .await
                    .map(|_| ())?);
            }
            with_tx!(&mut tx, |c| sqlx::query(
                "DELETE FROM projection_failures WHERE name = $1"
            )
            .bind(p.name())
            .execute(c)
            .await
            .map(|_| ())?);
        }
        tx.commit().await?;
        report.swapped = true;
    }
    Ok(report)
}

fn table_names() -> Vec<String> {
    crate::all_projections()
        .iter()
        .flat_map(|p| p.tables().iter().map(|t| t.to_string()))
        .collect()
}

/// Drops every projection table with this prefix (only used for rebuild tables).
pub async fn drop_tables(store: &Store, prefix: &str) -> Result<(), ProjectionError> {
    assert!(
        !prefix.is_empty(),
        "refusing to drop the live projection tables"
    );
    for t in table_names() {
        let sql = format!("DROP TABLE IF EXISTS {prefix}{t}");
        with_db!(store.db(), |p| sqlx::query(&sql)
            .execute(p)
            .await
            .map(|_| ())?);
    }
    for p in crate::all_projections() {
        with_db!(store.db(), |c| sqlx::query(
            "DELETE FROM projection_checkpoints WHERE name = $1"
        )
        .bind(format!("{prefix}{}", p.name()))
        .execute(c)
        .await
        .map(|_| ())?);
    }
    Ok(())
}

/// Every row of every projection table with `prefix`, as text, in a stable
/// order: two sets of tables are equal when their dumps are.
pub async fn dump(
    store: &Store,
    prefix: &str,
) -> Result<BTreeMap<String, Vec<Vec<Option<String>>>>, ProjectionError> {
    let mut out = BTreeMap::new();
    for t in table_names() {
        let sql = format!("SELECT * FROM {prefix}{t}");
        let mut rows: Vec<Vec<Option<String>>> = with_db!(store.db(), |p| {
            let raw = sqlx::query(&sql).fetch_all(p).await?;
            raw.iter()
                .map(|r| {
                    (0..r.columns().len())
                        .map(|i| {
                            if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
                                v.map(|v| v.to_string())
                            } else if let Ok(v) = r.try_get::<Option<bool>, _>(i) {
                                v.map(|v| v.to_string())
                            } else {
                                r.try_get::<Option<String>, _>(i).ok().flatten()
                            }
                        })
                        .collect()
                })
                .collect()
        });
        rows.sort();
        out.insert(t, rows);
    }
    Ok(out)
}
