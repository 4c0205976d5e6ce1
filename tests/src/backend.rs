//! A fresh store on either back-end: a new PostgreSQL database, or SQLite in
//! a temporary folder.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use roster_app::App;
use roster_events::*;
use roster_projections::Projector;
use roster_store::{Clock, Db, ManualClock, Store};
use roster_sync::SyncService;
use roster_testkit::PgDb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A store, its projector and a manual clock, on a back-end of its own.
pub struct TestStore {
    pub backend: Backend,
    pub store: Store,
    pub projector: Arc<Projector>,
    pub clock: ManualClock,
    pub database_url: Option<String>,
    pub data_dir: tempfile::TempDir,
    /// The key that seals this store's directory secrets.
    pub key: roster_store::SecretKey,
    _pg: Option<PgDb>,
}

impl TestStore {
    pub async fn new(backend: Backend) -> TestStore {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let (db, pg) = match backend {
            Backend::Postgres => {
                let pg = PgDb::create()
                    .await
                    .expect("create a PostgreSQL test database");
                let db = Db::connect_postgres(pg.url(), 32).await.expect("connect");
                (db, Some(pg))
            }
            Backend::Sqlite => (
                Db::open_sqlite(data_dir.path()).await.expect("open sqlite"),
                None,
            ),
        };
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap());
        let store = Store::open(db)
            .await
            .expect("open store")
            .with_clock(Arc::new(clock.clone()));
        let projector = Arc::new(Projector::new(store.clone(), ""));
        projector.ensure_tables().await.expect("projection tables");
        TestStore {
            backend,
            store,
            projector,
            clock,
            database_url: pg.as_ref().map(|p| p.url().to_string()),
            data_dir,
            key: roster_store::SecretKey::generate(),
            _pg: pg,
        }
    }

    /// The application layer with this store's manual clock. Writes return
    /// their log position; [`roster_app::App::settle`] waits for the
    /// projector, so call [`TestStore::spawn_projector`] first or use
    /// [`TestStore::project`].
    pub fn app(&self) -> App {
        let clock: Arc<dyn Clock> = Arc::new(self.clock.clone());
        let mut app = App::new(self.store.clone(), self.projector.clone(), clock);
        app.consistency_timeout = std::time::Duration::from_secs(20);
        app
    }

    /// The directory sync service on this store, with its key and the
    /// tests' outbound allowance.
    pub fn sync(&self) -> SyncService {
        let app = self.app();
        let outbound = self.outbound();
        let readers = Arc::new(roster_sync::DefaultReaders::new(outbound.clone()));
        let mut sync = SyncService::new(
            app.store,
            app.projector,
            app.clock,
            self.key.clone(),
            readers,
            roster_sync::RunConfig::default(),
        );
        sync.outbound = outbound;
        sync
    }

    fn outbound(&self) -> Arc<roster_sync::OutboundPolicy> {
        Arc::new(
            roster_sync::OutboundPolicy::parse(crate::process::TEST_ALLOW_OUTBOUND)
                .expect("the tests' outbound allowance"),
        )
    }

    /// Runs the projector in the background for the life of the test.
    pub fn spawn_projector(&self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        std::mem::forget(tx);
        tokio::spawn(
            self.projector
                .clone()
                .run(rx, std::time::Duration::from_millis(20)),
        );
    }

    /// Catches the projections up with the log.
    pub async fn project(&self) -> i64 {
        self.projector.catch_up().await.expect("projector")
    }

    pub fn meta(&self, customer: CustomerId) -> EventMeta {
        EventMeta {
            customer_id: customer,
            actor: Actor::System("test".into()),
            correlation_id: CorrelationId::new(),
            time: self.clock.now(),
        }
    }

    /// Creates a customer of a new partner with the given domains.
    pub async fn customer(&self, seat_limit: u64, domains: &[&str]) -> CustomerId {
        let id = CustomerId::new();
        let domains = domains.iter().map(|d| Domain::parse(d).unwrap()).collect();
        roster_app::customers::create_customer(
            &self.app(),
            self.meta(id),
            PartnerId::new(),
            "Test customer".into(),
            seat_limit,
            domains,
        )
        .await
        .expect("create customer");
        id
    }
}

pub fn addr(s: &str) -> Address {
    Address::parse(s).expect("valid address")
}

/// Every row of every projection table named with `prefix` (PostgreSQL),
/// as sorted JSON texts: the live tables (`""`) against a projector's
/// replay of the log into fresh ones.
pub async fn projected_rows(s: &TestStore, prefix: &str) -> Vec<String> {
    let roster_store::Db::Pg(pool) = s.store.db() else {
        panic!("projected_rows reads PostgreSQL tables")
    };
    let mut out = Vec::new();
    for p in roster_projections::all_projections() {
        for t in p.tables() {
            let sql = format!("SELECT row_to_json(t)::text FROM {prefix}{t} t ORDER BY 1");
            let rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(pool).await.unwrap();
            out.extend(rows.into_iter().map(|r| format!("{t}: {r}")));
        }
    }
    out
}

/// Every row of every table of the store, as text (to search for secrets).
pub async fn dump_everything(s: &TestStore) -> String {
    use sqlx::Row;
    let tables: Vec<String> = match s.store.db() {
        roster_store::Db::Pg(p) => sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(p)
        .await
        .unwrap(),
        roster_store::Db::Sqlite(p) => {
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(p)
                .await
                .unwrap()
        }
    };
    let mut out = String::new();
    for t in tables {
        let sql = format!("SELECT * FROM \"{t}\"");
        roster_store::with_db!(s.store.db(), |p| {
            for row in sqlx::query(&sql).fetch_all(p).await.unwrap() {
                for i in 0..row.columns().len() {
                    if let Ok(Some(v)) = row.try_get::<Option<String>, _>(i) {
                        out.push_str(&v);
                    } else if let Ok(Some(v)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                        out.push_str(&String::from_utf8_lossy(&v));
                    } else if let Ok(Some(v)) = row.try_get::<Option<serde_json::Value>, _>(i) {
                        out.push_str(&v.to_string());
                    }
                    out.push('\t');
                }
                out.push('\n');
            }
        });
    }
    out
}
