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

    /// Rolls back now (dropping a transaction rolls it back only when its
    /// connection is next used, and on PostgreSQL its locks are held until
    /// then). A failure is ignored: the connection is then discarded, which
    /// ends the transaction too.
    pub async fn rollback(self) {
        let _ = match self {
            Tx::Pg(t) => t.rollback().await,
            Tx::Sqlite(t) => t.rollback().await,
        };
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

/// The PostgreSQL pool's size and how long a query waits for a connection
/// (`ROSTER_DB_MAX_CONNECTIONS`, `ROSTER_DB_ACQUIRE_TIMEOUT_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// Also bounds connecting: while the database is down a request fails
    /// (503 `unavailable`) after this long instead of hanging (issue 16).
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 16,
            acquire_timeout: Duration::from_millis(1500),
        }
    }
}

/// Held while one process migrates and creates what a fresh database needs
/// (schema, projection tables, the first token): other processes starting
/// at the same time wait for it (issue 16). Released by
/// [`StartupLock::release`], or when the process ends.
pub struct StartupLock {
    inner: LockInner,
}

enum LockInner {
    Pg(sqlx::pool::PoolConnection<sqlx::Postgres>),
    Sqlite(sqlx::SqliteConnection),
}

/// The advisory lock key of the startup lock ("roster-startup").
const STARTUP_LOCK_KEY: i64 = 0x726f_7374_6572_0001;

impl StartupLock {
    pub async fn release(self) {
        match self.inner {
            LockInner::Pg(mut conn) => {
                if sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(STARTUP_LOCK_KEY)
                    .execute(&mut *conn)
                    .await
                    .is_err()
                {
                    // The session ends with the connection, and the lock with it.
                    let _ = conn.close().await;
                }
            }
            LockInner::Sqlite(mut conn) => {
                use sqlx::Connection;
                let _ = sqlx::query("COMMIT").execute(&mut conn).await;
                let _ = conn.close().await;
            }
        }
    }
}

/// Compresses the large values a session writes (a run's directory
/// objects, its report, a projection's long rows) with LZ4 instead of
/// PostgreSQL's default pglz, when the server offers LZ4 and its operator
/// has not chosen a method (`default_toast_compression` at its default).
/// The 23.7 MB of directory objects and report an initial sync of
/// 100,000 users logs took pglz 0.40-0.45 s to store and LZ4 0.26-0.29 s,
/// about 15% larger (issue 17); LZ4 also decompresses faster. Values already stored stay as
/// they are: PostgreSQL reads either.
const PREFER_LZ4: &str = "SELECT set_config('default_toast_compression', 'lz4', false) \
     FROM pg_settings WHERE name = 'default_toast_compression' \
     AND source = 'default' AND 'lz4' = ANY(enumvals)";

async fn prefer_lz4(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(PREFER_LZ4).execute(conn).await.map(|_| ())
}

impl Db {
    /// Connects to PostgreSQL at `database_url`, or opens (creating it if
    /// needed) `roster.db` in `data_dir`.
    pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> Result<Db, StoreError> {
        Self::connect_with(database_url, data_dir, PoolSettings::default()).await
    }

    /// [`Db::connect`] with the PostgreSQL pool's settings.
    pub async fn connect_with(
        database_url: Option<&str>,
        data_dir: &Path,
        pool: PoolSettings,
    ) -> Result<Db, StoreError> {
        match database_url.filter(|u| !u.trim().is_empty()) {
            Some(url) => Self::connect_postgres_with(url, pool).await,
            None => Self::open_sqlite(data_dir).await,
        }
    }

    pub async fn connect_postgres(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        Self::connect_postgres_with(
            url,
            PoolSettings {
                max_connections,
                ..PoolSettings::default()
            },
        )
        .await
    }

    pub async fn connect_postgres_with(
        url: &str,
        settings: PoolSettings,
    ) -> Result<Db, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Config(format!(
                "DATABASE_URL is not a valid PostgreSQL URL ({e}); expected postgres://user@host:port/database"
            ))
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            // A connection keeps its socket buffers as large as the largest
            // message it sent or received: a bulk's arrays, a COPY piece, a
            // directory's read state (14 MB at 100,000 users, ten times that
            // at a million). Each goes back to the pool with its usual 8 KiB
            // buffers instead, so idle connections do not hold a bulk's
            // memory until they close (issue 17).
            .after_connect(|conn, _| Box::pin(async move { prefer_lz4(conn).await }))
            .after_release(|conn, _| {
                Box::pin(async move {
                    sqlx::Connection::shrink_buffers(conn);
                    Ok(true)
                })
            })
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
        // Several processes opening a fresh file at once (replicas, or
        // `roster migrate` beside a starting server) race to switch it to
        // WAL; SQLite answers the loser SQLITE_BUSY at once, without its
        // busy handler (which would deadlock there). The switch is done by
        // then, so opening again succeeds: a few tries, a moment apart.
        let mut tries = 0;
        let pool = loop {
            match SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options.clone())
                .await
            {
                Ok(pool) => break pool,
                Err(e) if tries < 10 && is_busy(&e) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
                Err(e) => {
                    return Err(StoreError::Config(format!(
                        "cannot open SQLite at {}: {e}",
                        file.display()
                    )))
                }
            }
        };
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

    /// Takes the startup lock, waiting (and saying so every 5 s) while
    /// another process holds it: a PostgreSQL advisory lock on a connection
    /// of the pool, or an exclusive transaction on `roster.db.lock` beside
    /// the SQLite file.
    pub async fn startup_lock(&self) -> Result<StartupLock, StoreError> {
        let started = std::time::Instant::now();
        let mut said = Duration::ZERO;
        let mut wait = |what: &str| {
            let waited = started.elapsed();
            if waited >= said + Duration::from_secs(5) {
                said = waited;
                tracing::info!(
                    waited_secs = waited.as_secs(),
                    "waiting for another roster process to finish {what}"
                );
            }
        };
        match self {
            Db::Pg(pool) => {
                let mut conn = pool.acquire().await?;
                loop {
                    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                        .bind(STARTUP_LOCK_KEY)
                        .fetch_one(&mut *conn)
                        .await?;
                    if got {
                        return Ok(StartupLock {
                            inner: LockInner::Pg(conn),
                        });
                    }
                    wait("migrating (PostgreSQL advisory lock)");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Db::Sqlite(pool) => {
                // An exclusive transaction on a small lock database beside
                // the data (released on commit, or when the process ends).
                use sqlx::{ConnectOptions, Connection};
                let db_file = pool.connect_options().get_filename().to_path_buf();
                let path = db_file.with_file_name("roster.db.lock");
                // Private like the database beside it (no data, but the
                // folder's files are the owner's only).
                #[cfg(unix)]
                {
                    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
                    let _ = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path);
                    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
                }
                let mut conn = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .busy_timeout(Duration::ZERO)
                    .connect()
                    .await
                    .map_err(|e| {
                        StoreError::Config(format!("cannot open {}: {e}", path.display()))
                    })?;
                loop {
                    match sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await {
                        Ok(_) => {
                            return Ok(StartupLock {
                                inner: LockInner::Sqlite(conn),
                            })
                        }
                        Err(e) if is_busy(&e) => {
                            wait("migrating (lock database)");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => {
                            let _ = conn.close().await;
                            return Err(StoreError::Config(format!(
                                "cannot lock {}: {e}",
                                path.display()
                            )));
                        }
                    }
                }
            }
        }
    }

    /// Connections of the pool in use and idle (metrics).
    pub fn pool_connections(&self) -> (u32, u32) {
        with_db!(self, |pool| {
            let idle = pool.num_idle() as u32;
            (pool.size().saturating_sub(idle), idle)
        })
    }

    /// The pool's maximum size (metrics).
    pub fn pool_max(&self) -> u32 {
        with_db!(self, |pool| pool.options().get_max_connections())
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

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), the answers worth retrying.
fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("5") | Some("6")))
}
