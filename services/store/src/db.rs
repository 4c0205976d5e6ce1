//! The database: PostgreSQL when `DATABASE_URL` is set, otherwise an embedded
//! SQLite file in the data directory.
//!
//! Most queries are the same text on both back-ends (parameters are written
//! `$1`, which SQLite also understands); [`with_db!`] compiles one body for
//! each pool type so the code is written once.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::StoreError;

/// Runs the same code against whichever pool the [`Db`] holds.
#[macro_export]
macro_rules! with_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::Db::Pg($pool) => $body,
            $crate::Db::Sqlite($pool) => $body,
        }
    };
}

/// Runs the same code against whichever transaction a [`Tx`] holds; inside,
/// `$conn` is a `&mut` connection usable as an executor.
#[macro_export]
macro_rules! with_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::Tx::Pg(t) => {
                let $conn = &mut **t;
                $body
            }
            $crate::Tx::Sqlite(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}

#[derive(Clone, Debug)]
pub enum Db {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// A write transaction on either back-end.
pub enum Tx {
    Pg(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Pg(t) => t.commit().await?,
            Tx::Sqlite(t) => t.commit().await?,
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

static PG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl Db {
    /// Connects to PostgreSQL at `database_url`, or opens (creating it if
    /// needed) `roster.db` in `data_dir`.
    pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> Result<Db, StoreError> {
        match database_url.filter(|u| !u.trim().is_empty()) {
            Some(url) => Self::connect_postgres(url, 16).await,
            None => Self::open_sqlite(data_dir).await,
        }
    }

    pub async fn connect_postgres(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Config(format!(
                "DATABASE_URL is not a valid PostgreSQL URL ({e}); expected postgres://user@host:port/database"
            ))
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Config(format!("cannot connect to PostgreSQL: {e}")))?;
        Ok(Db::Pg(pool))
    }

    pub async fn open_sqlite(data_dir: &Path) -> Result<Db, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Config(format!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let file = data_dir.join("roster.db");
        make_private(data_dir, &file)?;
        let options = SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            // 16 MiB of page cache a connection: 8 connections stay within
            // 128 MiB (64 MiB each let a 100k-user sync grow past 1 GiB).
            .pragma("cache_size", "-16384");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Config(format!("cannot open SQLite at {}: {e}", file.display()))
            })?;
        Ok(Db::Sqlite(pool))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Pg(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies the log's schema migrations. Idempotent.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Db::Pg(pool) => PG_MIGRATIONS.run(pool).await?,
            Db::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// Begins a write transaction. On SQLite it is `BEGIN IMMEDIATE`, so a
    /// writer never has to upgrade a read lock (which fails at once, whatever
    /// the busy timeout, when another writer went first).
    pub async fn begin_write(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Pg(pool) => Tx::Pg(pool.begin().await?),
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    pub async fn close(&self) {
        with_db!(self, |pool| pool.close().await)
    }
}

/// A shared, cheaply cloned database handle.
pub type SharedDb = Arc<Db>;

/// The embedded database holds every customer's data: its folder is the
/// owner's only (0700) and so are its files (0600). The database file is
/// created private before SQLite opens it; SQLite gives its WAL and shared
/// memory files the database file's mode.
fn make_private(data_dir: &Path, file: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let fail = |what: &Path, e: std::io::Error| {
            StoreError::Config(format!(
                "cannot make {} private to its owner: {e}",
                what.display()
            ))
        };
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(data_dir, e))?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(file, e)),
        }
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        for f in [
            file.to_path_buf(),
            file.with_file_name(format!("{name}-wal")),
            file.with_file_name(format!("{name}-shm")),
        ] {
            if f.exists() {
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| fail(&f, e))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (data_dir, file);
    Ok(())
}
