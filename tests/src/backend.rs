//! A fresh store on either back-end: a new PostgreSQL database, or SQLite in
//! a temporary folder.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use roster_api::AppState;
use roster_events::*;
use roster_projections::Projector;
use roster_store::{Clock, Db, ManualClock, Store};
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
        let store = Store::open(db).await.expect("open store");
        let projector = Arc::new(Projector::new(store.clone(), ""));
        projector.ensure_tables().await.expect("projection tables");
        TestStore {
            backend,
            store,
            projector,
            clock: ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()),
            database_url: pg.as_ref().map(|p| p.url().to_string()),
            data_dir,
            _pg: pg,
        }
    }

    /// The application state the HTTP handlers and services use, with this
    /// store's manual clock. Writes wait for the projector, so call
    /// [`TestStore::spawn_projector`] first or use [`TestStore::project`].
    pub fn app(&self) -> AppState {
        let clock: Arc<dyn Clock> = Arc::new(self.clock.clone());
        let mut state = AppState::new(self.store.clone(), self.projector.clone(), clock);
        state.consistency_timeout = std::time::Duration::from_secs(20);
        state
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
        roster_api::app::create_customer(
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
