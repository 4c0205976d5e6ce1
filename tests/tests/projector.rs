//! The projector's failure handling and versioning (issue 9, E3): a
//! transient database error is retried and never recorded or skipped; one
//! projection's new version replays that projection only.

use std::sync::Arc;
use std::time::Duration;

use roster_app::users::{self, Edit, NewUser};
use roster_events::*;
use roster_projections::{queries, rebuild, ProjectionError, Projector};
use roster_tests::backend::{addr, projected_rows};
use roster_tests::{both_backends, Backend, TestStore};
use sqlx::Connection;

fn user(address: &str) -> NewUser {
    NewUser {
        address: addr(address),
        kind: Kind::User,
        profile: Profile {
            first_name: Some("First".into()),
            ..Profile::default()
        },
        aliases: vec![],
    }
}

async fn failures(s: &TestStore) -> i64 {
    roster_store::with_db!(s.store.db(), |p| sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM projection_failures"
    )
    .fetch_one(p)
    .await
    .unwrap())
}

async fn checkpoints(s: &TestStore) -> Vec<(String, i64)> {
    roster_store::with_db!(s.store.db(), |p| sqlx::query_as::<_, (String, i64)>(
        "SELECT name, position FROM projection_checkpoints ORDER BY name"
    )
    .fetch_all(p)
    .await
    .unwrap())
}

/// A row of the user list locked by another PostgreSQL connection past the
/// projector's lock timeout: the step fails as transient, nothing is
/// recorded as failed and nothing skipped; once the lock is released the
/// event is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e3_a_transient_lock_timeout_is_retried_never_recorded_and_applied_after_release() {
    let s = TestStore::new(Backend::Postgres).await;
    let c = s.customer(10, &["lock.example"]).await;
    let app = s.app();
    users::add_user(&app, s.meta(c), user("ann@lock.example"), Source::Manual)
        .await
        .unwrap();
    s.project().await;

    // Another connection holds ann's row.
    let mut holder = sqlx::PgConnection::connect(s.database_url.as_deref().unwrap())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    let locked: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM {} WHERE customer_id = $1 AND address = $2 FOR UPDATE) l",
        roster_projections::users::USERS
    ))
    .bind(c.to_string())
    .bind("ann@lock.example")
    .fetch_one(&mut holder)
    .await
    .unwrap();
    assert_eq!(locked, 1);

    let mut edit = Edit::default();
    edit.profile.first_name = Some(Some("Changed".into()));
    users::edit_user(&app, s.meta(c), addr("ann@lock.example"), edit)
        .await
        .unwrap();
    let head = s.store.head_position().await.unwrap();

    let projector =
        Projector::new(s.store.clone(), "").with_lock_timeout(Duration::from_millis(200));
    for _ in 0..2 {
        let e = projector.step().await.expect_err("the row is locked");
        assert!(e.is_transient(), "a lock timeout is transient: {e}");
        assert!(!matches!(e, ProjectionError::Retrying { .. }));
    }
    assert_eq!(failures(&s).await, 0, "nothing recorded as failed");
    assert!(
        projector.checkpoint().await.unwrap() < head,
        "nothing skipped"
    );

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    assert_eq!(projector.catch_up().await.unwrap(), head);
    let ann = queries::user_by_address(&s.store, c, "ann@lock.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ann.profile.first_name.as_deref(), Some("Changed"));
    assert_eq!(failures(&s).await, 0);
}

/// A new version of one projection (its checkpoint and tables gone) is
/// replayed alone: the other projections keep their checkpoints at every
/// step, and nothing is recorded as failed.
async fn e3_a_new_version_of_one_projection_replays_only_that_projection(s: TestStore) {
    let c = s.customer(100, &["v.example"]).await;
    let app = s.app();
    for i in 0..20 {
        users::add_user(
            &app,
            s.meta(c),
            user(&format!("u{i:02}@v.example")),
            Source::Manual,
        )
        .await
        .unwrap();
    }
    let head = s.project().await;
    let before = rebuild::dump(&s.store, "").await.unwrap();
    let all = roster_projections::all_projections();
    let users = all
        .iter()
        .find(|p| p.name().starts_with("users_"))
        .expect("the user list projection");
    for t in users.tables() {
        let sql = format!("DELETE FROM {t}");
        roster_store::with_db!(s.store.db(), |p| sqlx::query(&sql)
            .execute(p)
            .await
            .map(|_| ())
            .unwrap());
    }
    roster_store::with_db!(s.store.db(), |p| sqlx::query(
        "DELETE FROM projection_checkpoints WHERE name = $1"
    )
    .bind(users.name())
    .execute(p)
    .await
    .map(|_| ())
    .unwrap());
    let others: Vec<(String, i64)> = checkpoints(&s)
        .await
        .into_iter()
        .filter(|(n, _)| all.iter().any(|p| p.name() == n))
        .collect();
    assert_eq!(others.len(), all.len() - 1);
    assert!(others.iter().all(|(_, p)| *p == head), "{others:?}");

    let projector = Projector::new(s.store.clone(), "").with_batch_size(3);
    while projector.step().await.unwrap() > 0 {
        let now = checkpoints(&s).await;
        for (name, position) in &others {
            assert!(
                now.contains(&(name.clone(), *position)),
                "{name} keeps its checkpoint {position}: {now:?}"
            );
        }
    }
    assert_eq!(projector.checkpoint().await.unwrap(), head);
    assert_eq!(rebuild::dump(&s.store, "").await.unwrap(), before);
    assert_eq!(failures(&s).await, 0, "no spurious failures");
}

both_backends!(e3_a_new_version_of_one_projection_replays_only_that_projection);

/// `/readyz` answers 503 while a projection is both more than the allowed
/// events behind the log's head and its oldest unapplied event older than
/// the allowed age; the body says how far behind each projection is.
async fn e3_readyz_is_503_until_every_projection_is_within_the_lag(s: TestStore) {
    let c = s.customer(100, &["r.example"]).await;
    s.project().await;
    let mut state = roster_api::AppState::new(s.app(), s.sync());
    state.ready_lag = roster_projections::LagLimits {
        max_events: 3,
        max_age: Duration::from_secs(5),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = roster_api::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let readyz = || async {
        let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.unwrap())
    };
    let add = |i: usize| {
        let state = state.clone();
        let meta = s.meta(c);
        async move {
            users::add_user(
                &state,
                meta,
                user(&format!("u{i}@r.example")),
                Source::Manual,
            )
            .await
            .unwrap();
        }
    };
    let (status, v) = readyz().await;
    assert_eq!(status, 200, "caught up: {v}");
    assert_eq!(v["status"], "ready");

    // Ten events not applied, ten seconds old: a replay, not a burst.
    for i in 0..10 {
        add(i).await;
    }
    s.clock.advance(chrono::Duration::seconds(10));
    let head = s.store.head_position().await.unwrap();
    let (status, v) = readyz().await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["status"], "projections behind");
    assert_eq!(v["log_head"], head);
    let projections = v["projections"].as_array().unwrap();
    assert_eq!(
        projections.len(),
        roster_projections::all_projections().len()
    );
    for p in projections {
        assert_eq!(p["behind_events"], 10, "{p}");
        assert!(p["behind_seconds"].as_f64().unwrap() >= 10.0, "{p}");
        assert_eq!(p["ready"], false);
        assert_eq!(p["position"], head - 10);
    }

    s.project().await;
    let (status, v) = readyz().await;
    assert_eq!(status, 200, "{v}");
    assert!(v["projections"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["behind_events"] == 0 && p["ready"] == true));

    // Within the events allowed, however old: ready.
    for i in 10..13 {
        add(i).await;
    }
    s.clock.advance(chrono::Duration::seconds(60));
    assert_eq!(readyz().await.0, 200);
    // More than allowed but fresh (a burst being worked off): ready; once
    // the oldest is older than allowed: not.
    for i in 13..20 {
        add(i).await;
    }
    s.clock.advance(chrono::Duration::seconds(1));
    let (status, v) = readyz().await;
    assert_eq!(
        status, 503,
        "the oldest unapplied event is a minute old: {v}"
    );
    s.project().await;
    for i in 20..30 {
        add(i).await;
    }
    let (status, v) = readyz().await;
    assert_eq!(status, 200, "ten events, all just committed: {v}");
    s.clock.advance(chrono::Duration::seconds(6));
    let (status, v) = readyz().await;
    assert_eq!(status, 503, "{v}");
}

both_backends!(e3_readyz_is_503_until_every_projection_is_within_the_lag);

/// Planner statistics of the projection tables as PostgreSQL knows them:
/// `reltuples` is -1 until the table is analysed.
async fn reltuples(s: &TestStore, table: &str) -> f32 {
    let roster_store::Db::Pg(p) = s.store.db() else {
        unreachable!("PostgreSQL only")
    };
    sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = $1")
        .bind(table)
        .fetch_one(p)
        .await
        .unwrap()
}

/// Issue 14 (pages within 100 ms at 100,000 users): after a bulk of events
/// (an initial sync, an import, a replay) the projector refreshes the
/// planner statistics of the projection tables on PostgreSQL once caught
/// up, so the console's pages are planned on the real table, not on an
/// empty one, before autovacuum comes by. Fewer events leave them to
/// autovacuum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_a_bulk_of_events_refreshes_the_planner_statistics() {
    let s = TestStore::new(Backend::Postgres).await;
    let c = s.customer(100, &["bulk.example"]).await;
    let app = s.app();
    for i in 0..30 {
        users::add_user(
            &app,
            s.meta(c),
            user(&format!("u{i:02}@bulk.example")),
            Source::Manual,
        )
        .await
        .unwrap();
    }
    let users_table = roster_projections::users::USERS;
    let bulk = Projector::new(s.store.clone(), "bulk_")
        .with_batch_size(8)
        .with_analyze_after(20);
    bulk.ensure_tables().await.unwrap();
    bulk.catch_up().await.unwrap();
    let lazy = Projector::new(s.store.clone(), "lazy_").with_batch_size(8);
    lazy.ensure_tables().await.unwrap();
    lazy.catch_up().await.unwrap();
    // The refresh runs in the background once the bulk is projected.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while reltuples(&s, &format!("bulk_{users_table}")).await < 30.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "analysed after the bulk"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        reltuples(&s, &format!("lazy_{users_table}")).await < 0.0,
        "below the threshold: left to autovacuum"
    );
}

/// A piece of `n` new users `u{from}..` of the customer, staged in `batch`.
async fn stage_users(batch: &mut roster_store::Batch, meta: &EventMeta, from: usize, n: usize) {
    let mut seats = roster_app::seats::Seats {
        used: 0,
        limit: 1_000_000,
    };
    for i in from..from + n {
        let id = UserId::new();
        let mut target = roster_store::Loaded::<roster_domain::User>::new(id.to_string());
        let add = roster_domain::AddUser {
            user_id: id,
            customer_id: meta.customer_id,
            address: addr(&format!("u{i:05}@beside.example")),
            kind: Kind::User,
            source: Source::Ldap,
            profile: Profile {
                first_name: Some(format!("First {i}")),
                department: Some("Sales".into()),
                ..Profile::default()
            },
            aliases: vec![addr(&format!("alias{i:05}@beside.example"))],
            directory_id: None,
            members: vec![],
        };
        users::stage_add(batch, &mut target, add, &mut seats, meta)
            .await
            .unwrap();
    }
}

async fn users_shown(s: &TestStore, c: CustomerId) -> i64 {
    let sql = format!(
        "SELECT COUNT(*) FROM {} WHERE customer_id = $1",
        roster_projections::users::USERS
    );
    roster_store::with_db!(s.store.db(), |p| sqlx::query_scalar(&sql)
        .bind(c.to_string())
        .fetch_one(p)
        .await
        .unwrap())
}

/// A PostgreSQL store with one customer of `beside.example`, projected:
/// the store, the customer, its event metadata and the checkpoints.
async fn beside_store() -> (TestStore, CustomerId, EventMeta, Vec<(String, i64)>) {
    let s = TestStore::new(Backend::Postgres).await;
    let c = s.customer(1_000_000, &["beside.example"]).await;
    s.project().await;
    let meta = s.meta(c);
    let before = checkpoints(&s).await;
    (s, c, meta, before)
}

/// Replays the log through `last` into `fresh_` tables (made if missing)
/// and asserts every projection table equals its fresh copy, row for row.
async fn assert_equals_fresh_replay(s: &TestStore, last: i64, what: &str) {
    let fresh = Projector::new(s.store.clone(), "fresh_");
    fresh.ensure_tables().await.unwrap();
    assert_eq!(fresh.catch_up().await.unwrap(), last);
    assert_eq!(
        projected_rows(s, "").await,
        projected_rows(s, "fresh_").await,
        "{what}"
    );
}

/// Every checkpoint at `last`, and the read models equal to the log
/// projected afresh: an append projected whole beside it.
async fn assert_projected_whole(s: &TestStore, last: i64, what: &str) {
    assert!(checkpoints(s).await.iter().all(|(_, p)| *p == last));
    assert_equals_fresh_replay(s, last, what).await;
}

/// An append of three pieces of 300 users written, with `projector`'s
/// projection beside it open and tapping them.
async fn three_pieces_beside(
    s: &TestStore,
    projector: &Arc<Projector>,
    meta: &EventMeta,
) -> (roster_store::StreamedAppend, roster_projections::Beside) {
    let mut append = s.store.begin_streamed().await.unwrap();
    let beside = projector
        .beside(append.first() - 1)
        .expect("PostgreSQL with 32 connections");
    append.tap(beside.tap());
    for piece in 0..3 {
        let mut batch = roster_store::Batch::new();
        stage_users(&mut batch, meta, piece * 300, 300).await;
        append.write(&mut batch).await.unwrap();
    }
    (append, beside)
}

/// Issue 17 (E3, D3.r): the pieces of an open append are projected beside
/// it, in transactions that commit only after the append. Nothing is shown
/// while the append is open; an append rolled back leaves the projections
/// and their checkpoints as they were (and the projector free to step);
/// a committed one is shown through its last event, row for row as the
/// log projected afresh; pieces beyond the budget are left to the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i17_an_append_projected_beside_it_is_shown_after_its_commit_as_the_log_projects_it() {
    let (s, c, meta, before) = beside_store().await;

    // Rolled back after three pieces the lanes have taken.
    let (append, beside) = three_pieces_beside(&s, &s.projector, &meta).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(users_shown(&s, c).await, 0, "nothing shown while open");
    append.rollback().await;
    drop(beside);
    let stepped = tokio::time::timeout(Duration::from_secs(30), s.projector.step()).await;
    assert_eq!(stepped.expect("the projector steps again").unwrap(), 0);
    assert_eq!(checkpoints(&s).await, before, "checkpoints where they were");
    assert_eq!(users_shown(&s, c).await, 0);

    // Committed: shown through its last event without a step of the projector.
    let (append, beside) = three_pieces_beside(&s, &s.projector, &meta).await;
    let mut last = roster_store::Batch::new();
    stage_users(&mut last, &meta, 900, 100).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(users_shown(&s, c).await, 0, "nothing shown while open");
    let a = append.commit(&s.store, &mut last).await.unwrap();
    assert_eq!(a.count, 1_000, "one event a user");
    assert_eq!(beside.commit(a.last).await, Some(a.last));
    assert_eq!(users_shown(&s, c).await, 1_000);
    assert_projected_whole(
        &s,
        a.last,
        "projected beside the append = the log projected afresh",
    )
    .await;

    // Over the budget: a small piece is taken, the large one after it is
    // not, and the projector projects it from the log.
    let small = Arc::new(Projector::new(s.store.clone(), "").with_beside_bytes(64 * 1024));
    let mut append = s.store.begin_streamed().await.unwrap();
    let beside = small.beside(append.first() - 1).unwrap();
    append.tap(beside.tap());
    let mut batch = roster_store::Batch::new();
    stage_users(&mut batch, &meta, 1_000, 10).await;
    append.write(&mut batch).await.unwrap();
    let taken = append.first() - 1 + 10;
    stage_users(&mut batch, &meta, 1_010, 500).await;
    let a = append.commit(&s.store, &mut batch).await.unwrap();
    assert_eq!(
        beside.commit(a.last).await,
        Some(taken),
        "the first piece only"
    );
    assert_eq!(small.catch_up().await.unwrap(), a.last);
    assert_eq!(users_shown(&s, c).await, 1_510);
    assert_equals_fresh_replay(&s, a.last, "the rest projected from the log").await;
}

/// `n` directory objects `o{from}..` of the customer in one
/// `DirectoryObjectsChanged` event, staged in `batch`.
async fn stage_objects(
    batch: &mut roster_store::Batch,
    target: &mut roster_store::Loaded<roster_domain::DirectoryObjects>,
    meta: &EventMeta,
    from: usize,
    n: usize,
) {
    let change = DirectoryObjectsChanged {
        run_id: uuid::Uuid::new_v4(),
        kind: DirectoryKind::Ldap,
        upserted: (from..from + n)
            .map(|i| ObjectSummary {
                id: format!("o{i:05}"),
                kind: "user".into(),
                dn: Some(format!("cn=o{i:05},dc=beside,dc=example")),
                display_name: Some(format!("Object {i}")),
                mail: Some(format!("o{i:05}@beside.example")),
                aliases: vec![format!("other{i:05}@beside.example")],
                disabled: i % 7 == 0,
            })
            .collect(),
        removed: vec![],
    };
    if let Err(never) = batch.execute(target, change, &(), meta).await {
        match never {}
    }
}

/// An append of users, a piece of directory objects alone, and users
/// again (600 users, 400 objects in two events), written with
/// `projector`'s projection beside it open and tapping them; the batch to
/// stage the rest in, and the objects' aggregate.
async fn users_and_objects_beside(
    s: &TestStore,
    projector: &Arc<Projector>,
    meta: &EventMeta,
) -> (
    roster_store::StreamedAppend,
    roster_projections::Beside,
    roster_store::Batch,
    roster_store::Loaded<roster_domain::DirectoryObjects>,
) {
    let mut append = s.store.begin_streamed().await.unwrap();
    let beside = projector
        .beside(append.first() - 1)
        .expect("PostgreSQL with 32 connections");
    append.tap(beside.tap());
    let mut objects =
        roster_store::Loaded::<roster_domain::DirectoryObjects>::new(meta.customer_id.to_string());
    let mut batch = roster_store::Batch::new();
    stage_users(&mut batch, meta, 0, 300).await;
    append.write(&mut batch).await.unwrap();
    stage_objects(&mut batch, &mut objects, meta, 0, 200).await;
    stage_objects(&mut batch, &mut objects, meta, 200, 200).await;
    append.write(&mut batch).await.unwrap();
    stage_users(&mut batch, meta, 300, 300).await;
    append.write(&mut batch).await.unwrap();
    (append, beside, batch, objects)
}

/// Another connection holding `table` locked against every write, until it
/// rolls back.
async fn lock_out(s: &TestStore, table: &str) -> sqlx::PgConnection {
    let mut holder = sqlx::PgConnection::connect(s.database_url.as_deref().unwrap())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query(&format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

/// After a lane failed beside the append committed through `last`: the
/// projection beside it reports nothing reached, no lane committed any of
/// it, nothing is recorded as failed; the log then projects the whole
/// append (`users` users), row for row as a fresh replay.
async fn assert_left_to_the_log(
    s: &TestStore,
    projector: &Projector,
    beside: roster_projections::Beside,
    (c, before): (CustomerId, &[(String, i64)]),
    last: i64,
    users: i64,
) {
    assert_eq!(
        beside.commit(last).await,
        None,
        "a lane failed: the log projects the append"
    );
    assert_eq!(checkpoints(s).await, before, "no lane committed any of it");
    assert_eq!(users_shown(s, c).await, 0, "every lane rolled back");
    assert_eq!(failures(s).await, 0, "nothing recorded as failed");

    assert_eq!(projector.catch_up().await.unwrap(), last);
    assert_eq!(users_shown(s, c).await, users);
    assert_eq!(failures(s).await, 0);
    assert_equals_fresh_replay(
        s,
        last,
        "the log projected after a failed lane = a fresh replay",
    )
    .await;
}

/// Issue 17 (E3, D3.r): the lanes beside an open append each work through
/// their own queue and are handed only the pieces holding events they
/// read: a piece of directory objects alone between pieces of users is
/// skipped by the user list's lane and applied by the objects' lane. The
/// append is projected beside it whole, row for row as the log projected
/// afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i17_lanes_beside_an_append_skip_the_pieces_they_do_not_read() {
    let (s, c, meta, _) = beside_store().await;
    let (append, beside, mut batch, mut objects) =
        users_and_objects_beside(&s, &s.projector, &meta).await;
    stage_objects(&mut batch, &mut objects, &meta, 400, 100).await;
    let a = append.commit(&s.store, &mut batch).await.unwrap();
    assert_eq!(a.count, 603);
    assert_eq!(
        beside.commit(a.last).await,
        Some(a.last),
        "every piece projected beside the append"
    );
    assert_eq!(users_shown(&s, c).await, 600);
    let sql = format!(
        "SELECT COUNT(*) FROM {} WHERE customer_id = $1",
        roster_projections::directory::OBJECTS
    );
    let objects_shown: i64 = roster_store::with_db!(s.store.db(), |p| sqlx::query_scalar(&sql)
        .bind(c.to_string())
        .fetch_one(p)
        .await
        .unwrap());
    assert_eq!(objects_shown, 500);
    assert_projected_whole(
        &s,
        a.last,
        "lanes that skip pieces = the log projected afresh",
    )
    .await;
}

/// Issue 17 (E3, D3.r): the lanes beside an append are independent but
/// commit together. The directory objects' lane failing (its table locked
/// by another connection past the lock timeout) while the user list's
/// lane applied every user rolls every lane back: no user is shown from
/// the lanes, no checkpoint moves, and the log then projects the whole
/// append, row for row as a fresh replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i17_an_objects_lane_failing_beside_an_append_rolls_back_the_user_list_too() {
    let (s, c, meta, before) = beside_store().await;
    let projector =
        Arc::new(Projector::new(s.store.clone(), "").with_lock_timeout(Duration::from_millis(200)));
    let mut holder = lock_out(&s, roster_projections::directory::OBJECTS).await;
    let (append, beside, mut batch, _) = users_and_objects_beside(&s, &projector, &meta).await;
    // Past the lock timeout: the objects' lane has failed.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let a = append.commit(&s.store, &mut batch).await.unwrap();
    assert_eq!(a.count, 602);
    assert_left_to_the_log(&s, &projector, beside, (c, &before), a.last, 600).await;
}

/// Issue 17 (E3, D3.r): a lane that fails beside an open append (the user
/// list locked by another connection past the lock timeout) rolls every
/// lane back; the append commits regardless, its projection beside it
/// reports nothing reached, nothing is recorded as failed, and the log
/// projects the whole append once the lock is gone, row for row as a
/// fresh replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i17_a_lane_failing_beside_an_append_leaves_the_append_to_the_log() {
    let (s, c, meta, before) = beside_store().await;
    let projector =
        Arc::new(Projector::new(s.store.clone(), "").with_lock_timeout(Duration::from_millis(200)));

    // Another connection keeps every write out of the user list.
    let mut holder = lock_out(&s, roster_projections::users::USERS).await;
    let (append, beside) = three_pieces_beside(&s, &projector, &meta).await;
    // Past the lock timeout: the user-list lane has failed.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let mut last = roster_store::Batch::new();
    stage_users(&mut last, &meta, 900, 100).await;
    let a = append.commit(&s.store, &mut last).await.unwrap();
    assert_eq!(a.count, 1_000);
    assert_left_to_the_log(&s, &projector, beside, (c, &before), a.last, 1_000).await;
}
