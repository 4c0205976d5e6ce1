//! A fresh PostgreSQL database per test on the shared server.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};

use crate::error::{Error, Result};
use crate::process::{sh_quote, ExitCleanup};

/// The server used when `ROSTER_TEST_PG` is not set.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Every database the harness creates is named `<prefix><pid>_<random>`.
pub const DB_PREFIX: &str = "roster_test_";

/// A database created for one test, dropped (its connections terminated
/// first) by [`PgDb::drop_now`] or, best-effort, on drop. Databases left by
/// test processes that died are dropped by the next [`PgDb::create`] on the
/// same machine.
#[derive(Debug)]
pub struct PgDb {
    admin_url: String,
    url: String,
    name: String,
    dropped: bool,
    _exit_cleanup: ExitCleanup,
}

/// `url` with its database path replaced by `db` (query kept).
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn pg_err(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
    let context = context.into();
    move |source| Error::Postgres { context, source }
}

async fn admin_connection(admin_url: &str) -> Result<PgConnection> {
    let opts: PgConnectOptions = admin_url
        .parse()
        .map_err(pg_err(format!("parsing {admin_url}")))?;
    let hint = "is PostgreSQL running? run deploy/test-deps.sh, or set ROSTER_TEST_PG";
    tokio::time::timeout(Duration::from_secs(15), opts.connect())
        .await
        .map_err(|_| Error::Invalid(format!("connecting to {admin_url} timed out; {hint}")))?
        .map_err(pg_err(format!("connecting to {admin_url}; {hint}")))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn drop_database(conn: &mut PgConnection, name: &str) -> Result<()> {
    // FORCE (PostgreSQL 13+) terminates the database's sessions; terminate
    // them explicitly as well so that older servers work too.
    let _ = sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .execute(&mut *conn)
    .await;
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    conn.execute(sql.as_str())
        .await
        .map_err(pg_err(format!("dropping database {name}")))?;
    Ok(())
}

fn is_local(url: &str) -> bool {
    let after = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host_part = after.split(['/', '?']).next().unwrap_or("");
    let host = host_part.rsplit('@').next().unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    matches!(host, "" | "127.0.0.1" | "localhost" | "[::1]" | "::1")
}

/// Drops databases whose creating process (on this machine) no longer runs.
async fn sweep_stale(conn: &mut PgConnection) {
    let like = format!("{}%", DB_PREFIX.replace('_', "\\_"));
    let names: Vec<(String,)> =
        match sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(like)
            .fetch_all(&mut *conn)
            .await
        {
            Ok(n) => n,
            Err(_) => return,
        };
    for (name,) in names {
        let pid = name
            .strip_prefix(DB_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = drop_database(conn, &name).await;
            }
        }
    }
}

impl PgDb {
    /// Creates a uniquely named database on the server in `ROSTER_TEST_PG`
    /// (default [`DEFAULT_PG_URL`]).
    pub async fn create() -> Result<PgDb> {
        let admin_url = std::env::var("ROSTER_TEST_PG")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_PG_URL.to_string());
        PgDb::create_on(&admin_url).await
    }

    /// Creates a uniquely named database on the server of `admin_url` (a
    /// URL whose user may create databases).
    pub async fn create_on(admin_url: &str) -> Result<PgDb> {
        let mut conn = admin_connection(admin_url).await?;
        if is_local(admin_url) {
            sweep_stale(&mut conn).await;
        }
        let name = format!(
            "{DB_PREFIX}{}_{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        conn.execute(format!("CREATE DATABASE {}", quote_ident(&name)).as_str())
            .await
            .map_err(pg_err(format!("creating database {name}")))?;
        let _ = conn.close().await;
        let exit_cleanup = ExitCleanup::register(&format!(
            "psql {} -qc {}",
            sh_quote(admin_url),
            sh_quote(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&name)
            ))
        ));
        Ok(PgDb {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_string(),
            name,
            dropped: false,
            _exit_cleanup: exit_cleanup,
        })
    }

    /// The database's URL (same server and user as the admin URL).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection pool to the database (at most 5 connections).
    pub async fn pool(&self) -> Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(15))
            .connect(&self.url)
            .await
            .map_err(pg_err(format!("connecting to {}", self.url)))
    }

    /// Drops the database now, terminating its connections.
    pub async fn drop_now(mut self) -> Result<()> {
        self.dropped = true;
        let mut conn = admin_connection(&self.admin_url).await?;
        let r = drop_database(&mut conn, &self.name).await;
        let _ = conn.close().await;
        r
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop is synchronous and may run inside (or outside) a runtime: do
        // the async work on a thread with its own small runtime.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut conn) = admin_connection(&admin_url).await {
                        let _ = drop_database(&mut conn, &name).await;
                        let _ = conn.close().await;
                    }
                });
            }
        });
        let _ = handle.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
        assert!(is_local("postgres://postgres@127.0.0.1:5432/postgres"));
        assert!(is_local("postgres://u:p@localhost/db"));
        assert!(!is_local("postgres://u:p@db.internal:5432/db"));
    }
}
