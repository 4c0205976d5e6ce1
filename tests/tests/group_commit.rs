//! Group commit (issue 17), on PostgreSQL and on SQLite: concurrent appends
//! that queue while the append lock is held are committed together, and
//! one append's refusal (E1 stale version, U1 address taken, T3 seat limit)
//! is that append's alone.
//!
//! Each test holds the append lock from outside the store (PostgreSQL: the
//! advisory lock on another session; SQLite: a write transaction on another
//! connection), starts the appends, and lets go once they are all queued,
//! so that they meet in one group.
//!
//! A streamed append (a sync's, written a piece at a time in one
//! transaction) is one append too: all of it or nothing, invisible until
//! it commits, and the appends that wait for it land after it.

use std::collections::BTreeSet;
use std::time::Duration;

use roster_app::users::{self, NewUser};
use roster_domain::{AddUser, User, UserCommand, UserServices};
use roster_events::*;
use roster_store::{Appended, Batch, Db, Loaded, StoreError};
use roster_tests::backend::addr;
use roster_tests::{both_backends, TestStore};

/// The append lock held from outside the store until [`Held::release`].
enum Held {
    Pg(sqlx::pool::PoolConnection<sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

async fn hold_append_lock(s: &TestStore) -> Held {
    match s.store.db() {
        Db::Pg(pool) => {
            let mut conn = pool.acquire().await.unwrap();
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(roster_store::log::APPEND_LOCK)
                .execute(&mut *conn)
                .await
                .unwrap();
            Held::Pg(conn)
        }
        Db::Sqlite(pool) => Held::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await.unwrap()),
    }
}

impl Held {
    /// Lets go once every append started has had time to queue.
    async fn release(self) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match self {
            Held::Pg(mut conn) => {
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(roster_store::log::APPEND_LOCK)
                    .execute(&mut *conn)
                    .await
                    .unwrap();
            }
            Held::Sqlite(tx) => tx.rollback().await.unwrap(),
        }
    }
}

/// Listens to the log's commit notifications (PostgreSQL: every append
/// transaction notifies `roster_log` once, with its last position); `None`
/// on SQLite, which cannot tell one commit from another.
async fn listen(s: &TestStore) -> Option<sqlx::postgres::PgListener> {
    match s.store.db() {
        Db::Pg(pool) => {
            let mut l = sqlx::postgres::PgListener::connect_with(pool)
                .await
                .unwrap();
            l.listen("roster_log").await.unwrap();
            Some(l)
        }
        Db::Sqlite(_) => None,
    }
}

/// How many transactions committed events after `after`, by their
/// notifications.
async fn commits_after(listener: Option<sqlx::postgres::PgListener>, after: i64) -> Option<usize> {
    let mut l = listener?;
    let mut commits = 0;
    while let Ok(n) = tokio::time::timeout(Duration::from_millis(300), l.recv()).await {
        let last: i64 = n.unwrap().payload().parse().unwrap();
        if last > after {
            commits += 1;
        }
    }
    Some(commits)
}

async fn add_batch(c: CustomerId, address: &str, meta: &EventMeta) -> Batch {
    let id = UserId::new();
    let mut target: Loaded<User> = Loaded::new(id.to_string());
    let mut batch = Batch::new();
    let add = AddUser {
        user_id: id,
        customer_id: c,
        address: addr(address),
        kind: Kind::User,
        source: Source::Manual,
        profile: Profile::default(),
        aliases: vec![],
        directory_id: None,
        members: vec![],
    };
    batch
        .execute(
            &mut target,
            UserCommand::Add(add),
            &UserServices::default(),
            meta,
        )
        .await
        .unwrap();
    batch
}

/// Whether someone holds the address (U1).
async fn claimed(s: &TestStore, address: &str) -> bool {
    s.store
        .db()
        .address_owner(&addr(address))
        .await
        .unwrap()
        .is_some()
}

/// Positions after `start` are gapless, each event is there once, and
/// `recorded_at` never decreases (E1, E6).
async fn assert_log_is_gapless(s: &TestStore, start: i64, expected: usize) {
    let events = s.store.read_from(start, 10_000).await.unwrap();
    let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        (start + 1..=start + expected as i64).collect::<Vec<_>>(),
        "gapless, each once"
    );
    assert!(
        events
            .windows(2)
            .all(|w| w[0].recorded_at <= w[1].recorded_at),
        "E6: recorded_at never decreases"
    );
    assert_eq!(
        s.store.head_position().await.unwrap(),
        start + expected as i64
    );
}

/// E1: 30 appends queued together, one of them on a stale version: only
/// that one is refused (Conflict), every other lands, positions stay
/// gapless, and the answers name the positions each append got.
async fn e1_a_stale_append_in_a_group_is_refused_alone(s: TestStore) {
    let c = s.customer(1_000, &["group.example"]).await;
    let (id, _) = users::add_user(
        &s.app(),
        s.meta(c),
        NewUser {
            address: addr("old@group.example"),
            kind: Kind::User,
            profile: Profile::default(),
            aliases: vec![],
        },
        Source::Manual,
    )
    .await
    .unwrap();
    let start = s.store.head_position().await.unwrap();
    let loaded: Loaded<User> = s.store.load(&id.to_string()).await.unwrap();
    let mut stale_pair = Vec::new();
    let alias = addr("alias@group.example");
    for command in [UserCommand::Deactivate, UserCommand::MapAlias { alias }] {
        let mut target = loaded.clone();
        let mut batch = Batch::new();
        batch
            .execute(&mut target, command, &UserServices::default(), &s.meta(c))
            .await
            .unwrap();
        stale_pair.push(batch);
    }
    let listener = listen(&s).await;
    let held = hold_append_lock(&s).await;
    let mut tasks = Vec::new();
    for (i, batch) in stale_pair.into_iter().enumerate() {
        let store = s.store.clone();
        tasks.push((
            true,
            i,
            tokio::spawn(async move { store.commit(batch).await }),
        ));
    }
    for i in 0..28 {
        let store = s.store.clone();
        let batch = add_batch(c, &format!("g{i}@group.example"), &s.meta(c)).await;
        tasks.push((
            false,
            i,
            tokio::spawn(async move { store.commit(batch).await }),
        ));
    }
    held.release().await;
    let mut stale_ok = 0;
    let mut conflicts = 0;
    let mut appended: Vec<Appended> = Vec::new();
    for (stale, i, t) in tasks {
        match t.await.unwrap() {
            Ok(a) => {
                stale_ok += usize::from(stale);
                appended.push(a);
            }
            Err(StoreError::Conflict) if stale => conflicts += 1,
            Err(e) => panic!("append {i} (stale: {stale}) was refused: {e}"),
        }
    }
    assert_eq!(
        (stale_ok, conflicts),
        (1, 1),
        "exactly one of the stale pair wins"
    );
    assert_eq!(appended.len(), 29);
    assert_log_is_gapless(&s, start, 29).await;
    // Every answer names its own positions, and they do not overlap.
    let mut answered: Vec<i64> = appended.iter().flat_map(|a| a.first..=a.last).collect();
    answered.sort();
    assert_eq!(answered, (start + 1..=start + 29).collect::<Vec<_>>());
    if let Some(n) = commits_after(listener, start).await {
        assert!(
            n <= 2,
            "the queued appends were committed together ({n} commits)"
        );
    }
    // The projections see each user once.
    s.project().await;
    let listed =
        roster_projections::queries::list_users(&s.store, c, &Default::default(), None, 1000)
            .await
            .unwrap()
            .items;
    let addresses: BTreeSet<String> = listed.iter().map(|u| u.address.clone()).collect();
    assert_eq!(listed.len(), addresses.len(), "each user once");
    assert!((0..28).all(|i| addresses.contains(&format!("g{i}@group.example"))));
}

/// U1: 20 additions of one address queued together: exactly one wins, the
/// others are told the address is taken, and nothing of theirs is written.
async fn u1_one_address_claimed_in_one_group_has_one_owner(s: TestStore) {
    let c = s.customer(1_000, &["grouprace.example"]).await;
    let start = s.store.head_position().await.unwrap();
    let held = hold_append_lock(&s).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let app = s.app();
        let meta = s.meta(c);
        tasks.push(tokio::spawn(async move {
            let user = if i % 2 == 0 {
                NewUser {
                    address: addr("contested@grouprace.example"),
                    kind: Kind::User,
                    profile: Profile::default(),
                    aliases: vec![],
                }
            } else {
                NewUser {
                    address: addr(&format!("u{i}@grouprace.example")),
                    kind: Kind::User,
                    profile: Profile::default(),
                    aliases: vec![addr("contested@grouprace.example")],
                }
            };
            users::add_user(&app, meta, user, Source::Manual).await
        }));
    }
    held.release().await;
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), "address_taken", "{e}"),
        }
    }
    assert_eq!(ok, 1, "exactly one claim wins");
    assert_log_is_gapless(&s, start, 1).await;
    assert!(claimed(&s, "contested@grouprace.example").await);
}

/// T3: 20 additions queued together for a customer with 5 free seats:
/// exactly 5 land, the others are over the limit.
async fn t3_a_group_of_additions_never_exceeds_the_seat_limit(s: TestStore) {
    let c = s.customer(5, &["groupseats.example"]).await;
    let start = s.store.head_position().await.unwrap();
    let listener = listen(&s).await;
    let held = hold_append_lock(&s).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let app = s.app();
        let meta = s.meta(c);
        tasks.push(tokio::spawn(async move {
            let user = NewUser {
                address: addr(&format!("s{i}@groupseats.example")),
                kind: Kind::User,
                profile: Profile::default(),
                aliases: vec![],
            };
            users::add_user(&app, meta, user, Source::Manual).await
        }));
    }
    held.release().await;
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), "over_seat_limit", "{e}"),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(s.store.db().seats(c).await.unwrap().used, 5);
    assert_log_is_gapless(&s, start, 5).await;
    if let Some(n) = commits_after(listener, start).await {
        assert!(
            n <= 2,
            "the queued additions were committed together ({n} commits)"
        );
    }
}

/// E1, E6: a streamed append written in pieces is invisible until it
/// commits, holds the appends that come meanwhile until then, and lands
/// as one gapless run of positions before them.
async fn e6_a_streamed_append_is_one_append_and_others_wait_for_it(s: TestStore) {
    let c = s.customer(1_000, &["stream.example"]).await;
    let start = s.store.head_position().await.unwrap();
    let mut append = s.store.begin_streamed().await.unwrap();
    for piece in 0..6 {
        let mut batch = add_batch(c, &format!("p{piece}@stream.example"), &s.meta(c)).await;
        append.write(&mut batch).await.unwrap();
        assert!(batch.is_empty(), "a written piece leaves the batch");
    }
    assert_eq!(append.count(), 6);
    // Nothing is visible yet, and another append waits for the lock.
    assert_eq!(s.store.head_position().await.unwrap(), start);
    let store = s.store.clone();
    let waiting = add_batch(c, "waiting@stream.example", &s.meta(c)).await;
    let other = tokio::spawn(async move { store.commit(waiting).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!other.is_finished(), "an append waits for the streamed one");
    let mut last = add_batch(c, "last@stream.example", &s.meta(c)).await;
    let a = append.commit(&s.store, &mut last).await.unwrap();
    assert_eq!((a.first, a.last, a.count), (start + 1, start + 7, 7));
    let o = other.await.unwrap().unwrap();
    assert_eq!(o.first, start + 8, "the waiting append lands after it");
    assert_log_is_gapless(&s, start, 8).await;
    let at: BTreeSet<i64> = s
        .store
        .read_from(start, 7)
        .await
        .unwrap()
        .iter()
        .map(|e| e.recorded_at)
        .collect();
    assert_eq!(at.len(), 1, "one time for the streamed append (E6)");
}

/// U1, E1: a streamed append whose third piece claims an address another
/// user holds is refused whole: its earlier pieces are not appended, their
/// addresses stay free, and the append lock is free at once. Dropped
/// before its commit, an append leaves nothing either.
async fn u1_a_refused_piece_rolls_back_the_whole_streamed_append(s: TestStore) {
    let c = s.customer(1_000, &["streamrace.example"]).await;
    let taken = add_batch(c, "taken@streamrace.example", &s.meta(c)).await;
    s.store.commit(taken).await.unwrap();
    let start = s.store.head_position().await.unwrap();
    let mut append = s.store.begin_streamed().await.unwrap();
    for piece in ["one", "two"] {
        let mut batch = add_batch(c, &format!("{piece}@streamrace.example"), &s.meta(c)).await;
        append.write(&mut batch).await.unwrap();
    }
    let mut clash = add_batch(c, "taken@streamrace.example", &s.meta(c)).await;
    match append.write(&mut clash).await {
        Err(StoreError::AddressTaken { address }) => {
            assert_eq!(address.as_str(), "taken@streamrace.example")
        }
        other => panic!("expected address_taken, got {other:?}"),
    }
    assert!(append.commit(&s.store, &mut Batch::new()).await.is_err());
    for free in ["one@streamrace.example", "two@streamrace.example"] {
        assert!(!claimed(&s, free).await, "{free} stays free");
    }
    assert_eq!(s.store.head_position().await.unwrap(), start);
    // Dropped half-written: nothing lands, and the lock is let go.
    let mut dropped = s.store.begin_streamed().await.unwrap();
    let mut batch = add_batch(c, "dropped@streamrace.example", &s.meta(c)).await;
    dropped.write(&mut batch).await.unwrap();
    drop(dropped);
    let after = add_batch(c, "after@streamrace.example", &s.meta(c)).await;
    let a = tokio::time::timeout(Duration::from_secs(10), s.store.commit(after))
        .await
        .expect("the append lock is free")
        .unwrap();
    assert_eq!(a.first, start + 1);
    assert_log_is_gapless(&s, start, 1).await;
    assert!(!claimed(&s, "dropped@streamrace.example").await);
}

both_backends!(
    e1_a_stale_append_in_a_group_is_refused_alone,
    u1_one_address_claimed_in_one_group_has_one_owner,
    t3_a_group_of_additions_never_exceeds_the_seat_limit,
    e6_a_streamed_append_is_one_append_and_others_wait_for_it,
    u1_a_refused_piece_rolls_back_the_whole_streamed_append,
);
