//! The store suite, on PostgreSQL and on SQLite: the log's order and
//! concurrency, and the claims that keep cross-aggregate rules (U1, T2, T3).

use std::collections::BTreeSet;
use std::sync::Arc;

use roster_app::customers;
use roster_app::users::{self, Edit, NewUser};
use roster_domain::{Customer, CustomerCommand, User, UserCommand, UserServices};
use roster_events::*;
use roster_store::read_state::Packing;
use roster_store::{Batch, Clock, Loaded, StoreError};
use roster_tests::backend::addr;
use roster_tests::{both_backends, TestStore};

fn new_user(address: &str, aliases: &[&str]) -> NewUser {
    NewUser {
        address: addr(address),
        kind: Kind::User,
        profile: Profile::default(),
        aliases: aliases.iter().map(|a| addr(a)).collect(),
    }
}

async fn e1_appends_are_read_back_in_global_order(s: TestStore) {
    let c = s.customer(100, &["order.example"]).await;
    let app = s.app();
    for i in 0..5 {
        users::add_user(
            &app,
            s.meta(c),
            new_user(&format!("u{i}@order.example"), &[]),
            Source::Manual,
        )
        .await
        .unwrap();
    }
    let events = s.store.read_from(0, 1000).await.unwrap();
    let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "gapless, in order"
    );
    assert_eq!(events[0].event_type, "CustomerCreated");
    assert!(events
        .iter()
        .all(|e| e.customer_id.as_deref() == Some(c.to_string().as_str())));
    let meta = EventMeta::from_text(events[1].metadata.get()).expect("E2 metadata on every event");
    assert_eq!(meta.customer_id, c);
    assert_eq!(s.store.head_position().await.unwrap(), events.len() as i64);
}

/// Issue 17: a read within a byte budget is the prefix of the plain read
/// that ends at the first event bringing the payloads' text to the budget
/// (at least one event), whatever the limit and the budget.
async fn e1_a_read_within_a_byte_budget_is_a_prefix_of_the_log(s: TestStore) {
    let c = s.customer(100, &["bytes.example"]).await;
    let app = s.app();
    for i in 0..12 {
        let mut user = new_user(&format!("u{i}@bytes.example"), &[]);
        user.profile.notes = Some("n".repeat((i % 4) * 1_000));
        users::add_user(&app, s.meta(c), user, Source::Manual)
            .await
            .unwrap();
    }
    let all = s.store.read_from(0, 1_000).await.unwrap();
    assert!(all.len() > 12);
    for after in [0, 3, all.len() as i64 - 1] {
        for limit in [1, 5, 1_000] {
            for budget in [1, 500, 2_500, 6_000, 1 << 30] {
                let plain = s.store.read_from(after, limit).await.unwrap();
                let mut want = Vec::new();
                let mut bytes = 0;
                for e in plain {
                    if bytes >= budget {
                        break;
                    }
                    bytes += e.payload.get().len() as i64;
                    want.push(e);
                }
                let got = s
                    .store
                    .read_from_within(after, limit, budget)
                    .await
                    .unwrap();
                assert_eq!(got, want, "after {after}, limit {limit}, budget {budget}");
                assert!(!got.is_empty(), "at least one event");
            }
        }
    }
}

both_backends!(e1_a_read_within_a_byte_budget_is_a_prefix_of_the_log);

/// B1, issue 17: a reader's plain state is compressed by the store and a
/// state the reader compressed itself is kept as given; either comes back
/// as the reader's bytes. A compressed state that would read as one of the
/// store's own blocks is refused, and the kept one stays.
async fn b1_read_states_come_back_as_the_reader_gave_them(s: TestStore) {
    let c = s.customer(10, &["state.example"]).await;
    let db = s.store.db();
    let now = chrono::Utc::now();
    let plain: Vec<u8> = (0..50_000u32)
        .flat_map(|i| format!("RLD1 user{i}@state.example\n").into_bytes())
        .collect();
    db.put_read_state(c, "ldap", plain.clone(), Packing::ByStore, now)
        .await
        .unwrap();
    assert_eq!(db.get_read_state(c, "ldap").await.unwrap(), Some(plain));
    let compressed = b"RLD2 bytes the reader compressed".to_vec();
    db.put_read_state(c, "ldap", compressed.clone(), Packing::ByReader, now)
        .await
        .unwrap();
    assert_eq!(
        db.get_read_state(c, "ldap").await.unwrap().as_ref(),
        Some(&compressed)
    );
    let refused = db
        .put_read_state(
            c,
            "ldap",
            b"RLZ4 looks packed".to_vec(),
            Packing::ByReader,
            now,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Corrupt(_))),
        "{refused:?}"
    );
    assert_eq!(
        db.get_read_state(c, "ldap").await.unwrap(),
        Some(compressed)
    );
    assert_eq!(db.get_read_state(c, "entra").await.unwrap(), None);
}
both_backends!(b1_read_states_come_back_as_the_reader_gave_them);

async fn e1_a_stale_version_is_a_conflict(s: TestStore) {
    let c = s.customer(100, &["stale.example"]).await;
    let (id, _) = users::add_user(
        &s.app(),
        s.meta(c),
        new_user("a@stale.example", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    let loaded: Loaded<User> = s.store.load(&id.to_string()).await.unwrap();
    assert_eq!(loaded.version, 1);
    let mut first = loaded.clone();
    let mut second = loaded;
    let mut b1 = Batch::new();
    b1.execute(
        &mut first,
        UserCommand::Deactivate,
        &UserServices::default(),
        &s.meta(c),
    )
    .await
    .unwrap();
    let mut b2 = Batch::new();
    b2.execute(
        &mut second,
        UserCommand::MapAlias {
            alias: addr("b@stale.example"),
        },
        &UserServices::default(),
        &s.meta(c),
    )
    .await
    .unwrap();
    s.store.commit(b1).await.unwrap();
    let err = s.store.commit(b2).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    // Nothing of the refused batch is applied: its alias claim is not held.
    assert!(s
        .store
        .db()
        .address_owner(&addr("b@stale.example"))
        .await
        .unwrap()
        .is_none());
}

/// Stages 1,200 new directory users whose notes hold a comma, quotes, a
/// newline, a carriage return, a tab and backslashes, one before `N` and
/// one before `.` (what a `COPY` stream must carry intact: its text
/// format's escapes, null and end marker).
async fn stage_bulk_users(s: &TestStore, c: CustomerId, batch: &mut Batch) {
    for i in 0..1_200 {
        let uid = UserId::new();
        let mut target: Loaded<User> = Loaded::new(uid.to_string());
        batch
            .execute(
                &mut target,
                UserCommand::Add(roster_domain::AddUser {
                    user_id: uid,
                    customer_id: c,
                    address: addr(&format!("bulk{i}@bulk.example")),
                    kind: Kind::User,
                    source: Source::Ldap,
                    profile: Profile {
                        notes: Some(format!(
                            "line one, \"quoted\"\nline two {i}\r\ta\\b \\N \\."
                        )),
                        ..Profile::default()
                    },
                    aliases: vec![],
                    directory_id: None,
                    members: vec![],
                }),
                &UserServices::default(),
                &s.meta(c),
            )
            .await
            .unwrap();
    }
}

/// The same through a bulk append (1,200 events, streamed with COPY on
/// PostgreSQL): the stale user refuses the whole append, new users included.
async fn e1_a_stale_version_in_a_bulk_append_is_a_conflict(s: TestStore) {
    let c = s.customer(10_000, &["bulk.example"]).await;
    let (id, _) = users::add_user(
        &s.app(),
        s.meta(c),
        new_user("a@bulk.example", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    let loaded: Loaded<User> = s.store.load(&id.to_string()).await.unwrap();
    let (mut first, mut second) = (loaded.clone(), loaded);
    let mut b1 = Batch::new();
    b1.execute(
        &mut first,
        UserCommand::Deactivate,
        &UserServices::default(),
        &s.meta(c),
    )
    .await
    .unwrap();
    let mut b2 = Batch::new();
    b2.execute(
        &mut second,
        UserCommand::Deactivate,
        &UserServices::default(),
        &s.meta(c),
    )
    .await
    .unwrap();
    stage_bulk_users(&s, c, &mut b2).await;
    s.store.commit(b1).await.unwrap();
    let head = s.store.head_position().await.unwrap();
    let err = s.store.commit(b2).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(
        s.store.head_position().await.unwrap(),
        head,
        "nothing appended"
    );
    assert!(s
        .store
        .db()
        .address_owner(&addr("bulk0@bulk.example"))
        .await
        .unwrap()
        .is_none());
    // A fresh bulk append goes through, and its events read back exactly
    // (quotes, commas and newlines in payloads survive the CSV stream).
    let mut b3 = Batch::new();
    stage_bulk_users(&s, c, &mut b3).await;
    let a = s.store.commit(b3).await.unwrap();
    assert_eq!((a.first, a.count), (head + 1, 1_200));
    s.project().await;
    let u = roster_projections::queries::user_by_address(&s.store, c, "bulk7@bulk.example")
        .await
        .unwrap()
        .expect("projected");
    assert_eq!(
        u.profile.notes.as_deref(),
        Some("line one, \"quoted\"\nline two 7\r\ta\\b \\N \\.")
    );
}

/// A tailing reader never skips an event committed late by a concurrent
/// writer: it sees every position exactly once and never a position before
/// all lower ones.
async fn e1_a_tailing_reader_never_skips_a_late_commit(s: TestStore) {
    let c = s.customer(10_000, &["tail.example"]).await;
    let start = s.store.head_position().await.unwrap();
    let writers = 8;
    let per_writer = 40;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let store = s.store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = start;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let batch = store.read_from(after, 7).await.unwrap();
                for e in &batch {
                    assert_eq!(
                        e.position,
                        after + 1,
                        "the reader saw a gap at {}",
                        after + 1
                    );
                    after = e.position;
                    seen.push(e.position);
                }
                if batch.is_empty() && finished {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut tasks = Vec::new();
    for w in 0..writers {
        let app = s.app();
        let meta = s.meta(c);
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                users::add_user(
                    &app,
                    meta.clone(),
                    new_user(&format!("w{w}-{i}@tail.example"), &[]),
                    Source::Manual,
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let expected: Vec<i64> = (start + 1..=start + (writers * per_writer) as i64).collect();
    assert_eq!(seen, expected);
}

/// U1: 50 concurrent requests claim one address, as a primary or as an
/// alias of different users: exactly one owner remains.
async fn u1_fifty_concurrent_claims_of_one_address_leave_one_owner(s: TestStore) {
    let c = s.customer(1_000, &["race.example"]).await;
    let app = s.app();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = app.clone();
        let meta = s.meta(c);
        tasks.push(tokio::spawn(async move {
            let user = if i % 2 == 0 {
                new_user("contested@race.example", &[])
            } else {
                new_user(&format!("u{i}@race.example"), &["contested@race.example"])
            };
            users::add_user(&app, meta, user, Source::Manual).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), "address_taken", "{e}"),
        }
    }
    assert_eq!(ok, 1, "exactly one claim wins");
    let owner = s
        .store
        .db()
        .address_owner(&addr("contested@race.example"))
        .await
        .unwrap();
    assert!(owner.is_some());
    s.project().await;
    let users =
        roster_projections::queries::list_users(&s.store, c, &Default::default(), None, 1000)
            .await
            .unwrap()
            .items;
    let holders = users
        .iter()
        .filter(|u| {
            u.address == "contested@race.example"
                || u.aliases.iter().any(|a| a == "contested@race.example")
        })
        .count();
    assert_eq!(holders, 1);
    assert_eq!(users.len(), 1, "the losers were not half-applied");
}

/// T2: 50 customers claim one domain at once: exactly one manages it.
async fn t2_fifty_concurrent_domain_claims_leave_one_customer(s: TestStore) {
    let mut customers = Vec::new();
    for _ in 0..50 {
        customers.push(s.customer(10, &[]).await);
    }
    let mut tasks = Vec::new();
    for c in &customers {
        let app = s.app();
        let meta = s.meta(*c);
        tasks.push(tokio::spawn(async move {
            customers::customer_command(
                &app,
                meta,
                CustomerCommand::AddDomain {
                    domain: Domain::parse("Shared.Example").unwrap(),
                },
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), "domain_taken", "{e}"),
        }
    }
    assert_eq!(ok, 1);
    let owner = s
        .store
        .db()
        .domain_owner(&Domain::parse("shared.example").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(customers.contains(&owner));
    // The losers' aggregates do not think they manage it.
    let mut managing = 0;
    for c in &customers {
        let cust: Loaded<Customer> = s.store.load(&c.to_string()).await.unwrap();
        managing += cust.state.domains.len();
    }
    assert_eq!(managing, 1);
}

/// T3: concurrent manual additions never take a customer beyond its seat limit.
async fn t3_concurrent_manual_additions_never_exceed_the_seat_limit(s: TestStore) {
    let c = s.customer(5, &["seats.example"]).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let app = s.app();
        let meta = s.meta(c);
        tasks.push(tokio::spawn(async move {
            users::add_user(
                &app,
                meta,
                new_user(&format!("s{i}@seats.example"), &[]),
                Source::Manual,
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), "over_seat_limit", "{e}"),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(s.store.db().seats(c).await.unwrap().used, 5);
    // Aliases and lists never take a seat (T3, U4).
    let list = NewUser {
        kind: Kind::DistributionList,
        ..new_user("team@seats.example", &[])
    };
    users::add_user(&s.app(), s.meta(c), list, Source::Manual)
        .await
        .unwrap();
}

/// U6: a deleted user that is added again is the same user, and the event says so.
async fn u6_a_returning_user_keeps_its_identity(s: TestStore) {
    let c = s.customer(10, &["return.example"]).await;
    let app = s.app();
    let (id, _) = users::add_user(
        &app,
        s.meta(c),
        new_user("back@return.example", &["b@return.example"]),
        Source::Manual,
    )
    .await
    .unwrap();
    let at = s.clock.now();
    users::user_command(&app, s.meta(c), &addr("back@return.example"), || {
        UserCommand::Delete {
            reason: DeletionReason::Manual,
            at,
        }
    })
    .await
    .unwrap();
    assert!(
        s.store
            .db()
            .address_owner(&addr("b@return.example"))
            .await
            .unwrap()
            .is_none(),
        "aliases released"
    );
    let (again, _) = users::add_user(
        &app,
        s.meta(c),
        new_user("back@return.example", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    assert_eq!(again, id);
    let history = roster_store::history::<User>(&s.store, &id.to_string())
        .await
        .unwrap();
    let UserEvent::UserReturned(ret) = &history.last().unwrap().1 else {
        panic!("expected UserReturned, got {:?}", history.last());
    };
    assert_eq!(ret.earlier.user_id, id);
    assert_eq!(ret.earlier.address.as_str(), "back@return.example");
    assert_eq!(ret.earlier.deletion_reason, DeletionReason::Manual);
}

/// D3.n: removing a domain deletes at once the users whose primary address
/// is in it and strips its aliases from the others; the domain is then free.
async fn d3n_removing_a_domain_deletes_its_users_and_strips_its_aliases(s: TestStore) {
    let c = s.customer(10, &["keep.example", "drop.example"]).await;
    let app = s.app();
    users::add_user(
        &app,
        s.meta(c),
        new_user("ann@keep.example", &["ann@drop.example", "a2@keep.example"]),
        Source::Manual,
    )
    .await
    .unwrap();
    users::add_user(
        &app,
        s.meta(c),
        new_user("bob@drop.example", &["bob@keep.example"]),
        Source::Manual,
    )
    .await
    .unwrap();
    users::user_command(&app, s.meta(c), &addr("bob@drop.example"), || {
        UserCommand::AddRule {
            rule_id: RuleId::new(),
            kind: RuleKind::Deny,
            value: "spam.example".into(),
        }
    })
    .await
    .unwrap();
    let removal = customers::remove_domain(&app, s.meta(c), Domain::parse("drop.example").unwrap())
        .await
        .unwrap();
    assert_eq!(removal.users_deleted, vec![addr("bob@drop.example")]);
    assert_eq!(removal.aliases_removed, vec![addr("ann@drop.example")]);
    let db = s.store.db();
    assert!(
        db.address_owner(&addr("bob@keep.example"))
            .await
            .unwrap()
            .is_none(),
        "the deleted user's other aliases go too"
    );
    assert!(db
        .address_owner(&addr("a2@keep.example"))
        .await
        .unwrap()
        .is_some());
    assert!(db
        .domain_owner(&Domain::parse("drop.example").unwrap())
        .await
        .unwrap()
        .is_none());
    s.project().await;
    let bob = roster_projections::queries::list_users(
        &s.store,
        c,
        &roster_projections::queries::UserFilter {
            status: Some(Status::Deleted),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap()
    .items;
    assert_eq!(bob.len(), 1);
    assert!(bob[0].rules.is_empty(), "U5: rules removed with the user");
    assert!(
        bob[0].flag_reason.is_none(),
        "deleted at once, not a conflict"
    );
    let ann = roster_projections::queries::user_by_address(&s.store, c, "ann@keep.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ann.aliases, vec!["a2@keep.example".to_string()]);
    // Another customer can now manage the domain.
    let other = s.customer(10, &[]).await;
    customers::customer_command(
        &app,
        s.meta(other),
        CustomerCommand::AddDomain {
            domain: Domain::parse("drop.example").unwrap(),
        },
    )
    .await
    .unwrap();
}

/// Aliases in unmanaged domains, or owned by others, are refused whole.
async fn m1_nothing_is_half_applied(s: TestStore) {
    let c = s.customer(10, &["half.example"]).await;
    let app = s.app();
    users::add_user(
        &app,
        s.meta(c),
        new_user("taken@half.example", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    let err = users::add_user(
        &app,
        s.meta(c),
        new_user("new@half.example", &["taken@half.example"]),
        Source::Manual,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "address_taken");
    let err = users::add_user(
        &app,
        s.meta(c),
        new_user("new@half.example", &["x@elsewhere.example"]),
        Source::Manual,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "unmanaged_domain");
    assert!(s
        .store
        .db()
        .address_owner(&addr("new@half.example"))
        .await
        .unwrap()
        .is_none());
    // An edit whose alias is taken changes nothing, not even the profile.
    let mut edit = Edit {
        aliases: Some(vec![addr("taken@half.example")]),
        ..Default::default()
    };
    edit.profile.first_name = Some(Some("Changed".into()));
    users::add_user(
        &app,
        s.meta(c),
        new_user("edit@half.example", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    let err = users::edit_user(&app, s.meta(c), addr("edit@half.example"), edit)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "address_taken");
    s.project().await;
    let u = roster_projections::queries::user_by_address(&s.store, c, "edit@half.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.profile.first_name, None);
    // A customer whose second domain is taken is not created at all.
    let other = CustomerId::new();
    let err = customers::create_customer(
        &app,
        s.meta(other),
        PartnerId::new(),
        "Other".into(),
        10,
        vec![
            Domain::parse("fresh.example").unwrap(),
            Domain::parse("half.example").unwrap(),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "domain_taken");
    assert!(s
        .store
        .db()
        .customer_partner(other)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .store
        .db()
        .domain_owner(&Domain::parse("fresh.example").unwrap())
        .await
        .unwrap()
        .is_none());
}

/// Stages `n` new users of `c` from `source`, user `i` with the address and
/// aliases `user(i)` gives; returns the batch and the users' ids.
async fn stage_users(
    s: &TestStore,
    c: CustomerId,
    n: usize,
    source: Source,
    user: impl Fn(usize) -> (Address, Vec<Address>),
) -> (Batch, Vec<UserId>) {
    let mut batch = Batch::new();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let uid = UserId::new();
        let mut target: Loaded<User> = Loaded::new(uid.to_string());
        let (address, aliases) = user(i);
        let add = roster_domain::AddUser {
            user_id: uid,
            customer_id: c,
            address,
            kind: Kind::User,
            source,
            profile: Profile::default(),
            aliases,
            directory_id: None,
            members: vec![],
        };
        batch
            .execute(
                &mut target,
                UserCommand::Add(add),
                &UserServices::default(),
                &s.meta(c),
            )
            .await
            .unwrap();
        ids.push(uid);
    }
    (batch, ids)
}

/// Stages `n` new directory users `n{i}@{domain}`; user `extra.0` also
/// claims the alias `extra.1`.
async fn stage_new_users(
    s: &TestStore,
    c: CustomerId,
    domain: &str,
    n: usize,
    extra: Option<(usize, &str)>,
) -> Batch {
    let user = |i| {
        let aliases = match extra {
            Some((at, alias)) if at == i => vec![addr(alias)],
            _ => vec![],
        };
        (addr(&format!("n{i}@{domain}")), aliases)
    };
    stage_users(s, c, n, Source::Ldap, user).await.0
}

/// U1 (and T2) in a bulk append (issue 17: one statement per run of claims
/// on both back-ends): one refused claim in the middle of a run of 5,201
/// address claims refuses the whole append with the error that claim gets
/// alone, the same on PostgreSQL and SQLite, and leaves nothing behind; the
/// same users without it are appended whole, across several statements.
async fn u1_a_refused_claim_in_the_middle_of_a_bulk_append_refuses_it_whole(s: TestStore) {
    let domain = "u1bulk.example";
    let n = 5_200;
    let c = s.customer(100_000, &[domain]).await;
    users::add_user(
        &s.app(),
        s.meta(c),
        new_user("taken@u1bulk.example", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    let db = s.store.db();
    let holder = db
        .address_owner(&addr("taken@u1bulk.example"))
        .await
        .unwrap();
    let head = s.store.head_position().await.unwrap();
    let seats = db.seats(c).await.unwrap();
    let cases = [
        // Held before the append.
        (
            "taken@u1bulk.example",
            StoreError::AddressTaken {
                address: addr("taken@u1bulk.example"),
            },
        ),
        // Claimed earlier in the same run.
        (
            "n2599@u1bulk.example",
            StoreError::AddressTaken {
                address: addr("n2599@u1bulk.example"),
            },
        ),
        // T2: in a domain the customer does not manage.
        (
            "x@elsewhere.example",
            StoreError::UnmanagedDomain {
                domain: Domain::parse("elsewhere.example").unwrap(),
            },
        ),
    ];
    for (alias, expected) in cases {
        let batch = stage_new_users(&s, c, domain, n, Some((n / 2, alias))).await;
        let err = s.store.commit(batch).await.unwrap_err();
        assert_eq!(format!("{err:?}"), format!("{expected:?}"), "alias {alias}");
        assert_eq!(s.store.head_position().await.unwrap(), head, "no event");
        for i in [0, n / 2 - 1, n / 2, n - 1] {
            let a = addr(&format!("n{i}@{domain}"));
            assert_eq!(db.address_owner(&a).await.unwrap(), None, "{a} not held");
        }
        assert_eq!(
            db.address_owner(&addr("taken@u1bulk.example"))
                .await
                .unwrap(),
            holder
        );
        assert_eq!(db.seats(c).await.unwrap(), seats, "no seat taken");
    }
    let batch = stage_new_users(&s, c, domain, n, None).await;
    let appended = s.store.commit(batch).await.unwrap();
    assert_eq!((appended.first, appended.count), (head + 1, n));
    let positions: Vec<i64> = s
        .store
        .read_from(head, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, (head + 1..=head + n as i64).collect::<Vec<_>>());
    let all: Vec<Address> = (0..n).map(|i| addr(&format!("n{i}@{domain}"))).collect();
    assert_eq!(db.address_owners(&all).await.unwrap().len(), n);
    assert_eq!(db.seats(c).await.unwrap().used, seats.used + n as u64);
}

/// U1 across the statements of one run of claims (issue 17: on PostgreSQL
/// the held addresses are looked up before a plain insert): an alias that
/// a later statement claims for another user, taken by an earlier statement
/// of the same append, refuses the append whole with that address, and
/// leaves no claim of either statement behind.
async fn u1_an_address_taken_by_an_earlier_statement_of_the_run_refuses_the_append(s: TestStore) {
    let domain = "u1runs.example";
    // More claims than one statement takes (10,000).
    let n = 10_050;
    let c = s.customer(100_000, &[domain]).await;
    let head = s.store.head_position().await.unwrap();
    let seats = s.store.db().seats(c).await.unwrap();
    let taken = format!("n7@{domain}");
    let batch = stage_new_users(&s, c, domain, n, Some((n - 1, &taken))).await;
    let err = s.store.commit(batch).await.unwrap_err();
    assert_eq!(
        format!("{err:?}"),
        format!(
            "{:?}",
            StoreError::AddressTaken {
                address: addr(&taken)
            }
        )
    );
    assert_eq!(s.store.head_position().await.unwrap(), head, "no event");
    let all: Vec<Address> = (0..n).map(|i| addr(&format!("n{i}@{domain}"))).collect();
    assert!(s.store.db().address_owners(&all).await.unwrap().is_empty());
    assert_eq!(s.store.db().seats(c).await.unwrap(), seats, "no seat taken");
}

/// U1: the holders a CSV review names in its messages (issue 17: the claims
/// have no index of owners; they are found among the customer's claims in
/// few statements). Over SQLite's 900 keys a statement: each owner's
/// primary address and never an alias; another customer's users, a deleted
/// user and an unknown id are absent.
async fn u1_the_primary_addresses_of_many_owners_are_found_in_bulk(s: TestStore) {
    let domain = "holders.example";
    let c = s.customer(100_000, &[domain]).await;
    let other = s.customer(10, &["elsewhere.example"]).await;
    let n = 2_000;
    let (batch, ids) = stage_users(&s, c, n, Source::Csv, |i| {
        let aliases = if i % 3 == 0 {
            vec![addr(&format!("a{i}@{domain}"))]
        } else {
            vec![]
        };
        (addr(&format!("p{i}@{domain}")), aliases)
    })
    .await;
    let expected: std::collections::HashMap<UserId, Address> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, addr(&format!("p{i}@{domain}"))))
        .collect();
    s.store.commit(batch).await.unwrap();
    let app = s.app();
    let (outsider, _) = users::add_user(
        &app,
        s.meta(other),
        new_user("zed@elsewhere.example", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    let (gone, _) = users::add_user(
        &app,
        s.meta(c),
        new_user("gone@holders.example", &["g@holders.example"]),
        Source::Manual,
    )
    .await
    .unwrap();
    let at = s.clock.now();
    users::user_command(&app, s.meta(c), &addr("gone@holders.example"), || {
        UserCommand::Delete {
            reason: DeletionReason::Manual,
            at,
        }
    })
    .await
    .unwrap();
    let mut owners: Vec<UserId> = expected.keys().copied().collect();
    owners.extend([outsider, gone, UserId::new()]);
    let found = s.store.db().primaries_bulk(c, &owners).await.unwrap();
    assert_eq!(found, expected);
    assert!(s
        .store
        .db()
        .primaries_bulk(c, &[])
        .await
        .unwrap()
        .is_empty());
}

/// The seats `address_claims` holds for a customer, counted row by row.
async fn counted_seats(s: &TestStore, c: CustomerId) -> u64 {
    let sql = "SELECT COUNT(*) FROM address_claims WHERE customer_id = $1 AND seat";
    let n: i64 = match s.store.db() {
        roster_store::Db::Pg(p) => {
            sqlx::query_scalar(sql)
                .bind(c.to_string())
                .fetch_one(p)
                .await
        }
        roster_store::Db::Sqlite(p) => {
            sqlx::query_scalar(sql)
                .bind(c.to_string())
                .fetch_one(p)
                .await
        }
    }
    .unwrap();
    n as u64
}

/// T3: the seat counter the store keeps beside the limit (issue 17, so
/// that a seat check reads one row) equals the seats claimed, counted row
/// by row, after every kind of change that takes or frees a seat, in one
/// customer and not in another.
async fn t3_the_seat_counter_equals_the_seats_claimed_after_every_change(s: TestStore) {
    let c = s.customer(10_000, &["count.example", "gone.example"]).await;
    let other = s.customer(10_000, &["other.example"]).await;
    let app = s.app();
    let check = |step: &'static str| {
        let s = &s;
        async move {
            for customer in [c, other] {
                let seats = s.store.db().seats(customer).await.unwrap();
                assert_eq!(seats.used, counted_seats(s, customer).await, "after {step}");
            }
        }
    };
    check("creating the customers").await;
    for (address, aliases) in [
        (
            "ann@count.example",
            vec!["a1@count.example", "a2@gone.example"],
        ),
        ("bob@gone.example", vec!["b1@count.example"]),
        ("cid@count.example", vec![]),
    ] {
        users::add_user(&app, s.meta(c), new_user(address, &aliases), Source::Manual)
            .await
            .unwrap();
    }
    users::add_user(
        &app,
        s.meta(other),
        new_user("oz@other.example", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    let list = NewUser {
        kind: Kind::DistributionList,
        ..new_user("team@count.example", &[])
    };
    users::add_user(&app, s.meta(c), list, Source::Manual)
        .await
        .unwrap();
    check("manual additions, aliases and a list").await;
    assert_eq!(s.store.db().seats(c).await.unwrap().used, 3);
    s.store
        .commit(stage_new_users(&s, c, "count.example", 2_500, None).await)
        .await
        .unwrap();
    check("a bulk append").await;
    let refused = stage_new_users(&s, c, "count.example", 10, Some((5, "ann@count.example"))).await;
    s.store.commit(refused).await.unwrap_err();
    check("a refused bulk append").await;
    users::user_command(&app, s.meta(c), &addr("cid@count.example"), || {
        UserCommand::Deactivate
    })
    .await
    .unwrap();
    check("a deactivation").await;
    users::user_command(&app, s.meta(c), &addr("cid@count.example"), || {
        UserCommand::Reactivate
    })
    .await
    .unwrap();
    check("a reactivation").await;
    let at = s.clock.now();
    users::user_command(&app, s.meta(c), &addr("cid@count.example"), || {
        UserCommand::Delete {
            reason: DeletionReason::Manual,
            at,
        }
    })
    .await
    .unwrap();
    check("a deletion").await;
    customers::remove_domain(&app, s.meta(c), Domain::parse("gone.example").unwrap())
        .await
        .unwrap();
    check("removing a domain").await;
    assert_eq!(s.store.db().seats(c).await.unwrap().used, 2_501);
    assert_eq!(s.store.db().seats(other).await.unwrap().used, 1);
}

/// One aggregate loads the same through the cqrs-es repositories
/// (postgres-es / sqlite-es) and through the bulk loader.
async fn aggregates_load_the_same_one_by_one_and_in_bulk(s: TestStore) {
    let c = s.customer(10, &["load.example"]).await;
    let app = s.app();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (id, _) = users::add_user(
            &app,
            s.meta(c),
            new_user(
                &format!("l{i}@load.example"),
                &[&format!("al{i}@load.example")],
            ),
            Source::Manual,
        )
        .await
        .unwrap();
        users::user_command(
            &app,
            s.meta(c),
            &addr(&format!("l{i}@load.example")),
            || UserCommand::Deactivate,
        )
        .await
        .unwrap();
        ids.push(id.to_string());
    }
    let bulk = s.store.load_many::<User>(&ids).await.unwrap();
    for id in &ids {
        let one: Loaded<User> = s.store.load(id).await.unwrap();
        let many = &bulk[id];
        assert_eq!(one.version, many.version);
        assert_eq!(one.state, many.state);
        assert_eq!(one.state.status, Status::Deactivated);
    }
    let customer: Loaded<Customer> = s.store.load(&c.to_string()).await.unwrap();
    assert_eq!(
        customer
            .state
            .domains
            .iter()
            .map(|d| d.to_string())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["load.example".to_string()])
    );
    assert!(matches!(s.store.load::<User>("not-a-user").await, Ok(l) if l.version == 0));
    let _ = StoreError::Conflict;
}

/// D7 (issue 10): a stored secret is released only for the connection
/// target it was entered for; a new secret entered for another target
/// replaces it and is bound to that one.
async fn d7_a_stored_secret_is_released_only_for_its_target(s: TestStore) {
    let db = s.store.db();
    let c = CustomerId::new();
    let now = s.clock.now();
    let secret = roster_store::Secret::new("canary-bound-to-a");
    db.put_secret(&s.key, c, "ldap", "target-a", &secret, now)
        .await
        .unwrap();
    assert_eq!(
        db.get_secret(&s.key, c, "ldap", "target-a").await.unwrap(),
        Some(secret.clone())
    );
    assert_eq!(
        db.get_secret(&s.key, c, "ldap", "target-b").await.unwrap(),
        None,
        "not released for another target"
    );
    assert_eq!(
        db.get_secret(&s.key, c, "entra", "target-a").await.unwrap(),
        None
    );
    let other = roster_store::Secret::new("canary-bound-to-b");
    db.put_secret(&s.key, c, "ldap", "target-b", &other, now)
        .await
        .unwrap();
    assert_eq!(
        db.get_secret(&s.key, c, "ldap", "target-a").await.unwrap(),
        None
    );
    assert_eq!(
        db.get_secret(&s.key, c, "ldap", "target-b").await.unwrap(),
        Some(other)
    );
}

/// T1: the token and the customer's partner that every customer-scoped
/// request needs come from one query (issue 17), and it answers exactly
/// what the two separate reads do.
async fn t1_a_token_and_a_customers_partner_are_read_in_one_query(s: TestStore) {
    use roster_store::auth::Scope;
    let db = s.store.db();
    let now = chrono::Utc::now();
    let partner = db.create_partner("MSP", now).await.unwrap();
    let other = db.create_partner("Other MSP", now).await.unwrap();
    let (mine, theirs) = (CustomerId::new(), CustomerId::new());
    for (c, p, d) in [
        (mine, partner, "mine.example"),
        (theirs, other, "theirs.example"),
    ] {
        customers::create_customer(
            &s.app(),
            s.meta(c),
            p,
            "Customer".into(),
            10,
            vec![Domain::parse(d).unwrap()],
        )
        .await
        .unwrap();
    }
    let issued = db
        .issue_token(Scope::Partner(partner), "msp", now)
        .await
        .unwrap();
    let alone = db.authenticate(&issued.secret).await.unwrap().unwrap();
    let (principal, owner) = db
        .authenticate_for(&issued.secret, mine)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(principal, alone);
    assert_eq!(principal.scope, Scope::Partner(partner));
    assert_eq!(owner, Some(partner));
    let (_, owner) = db
        .authenticate_for(&issued.secret, theirs)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        owner,
        Some(other),
        "another partner's customer names its own partner"
    );
    let (_, owner) = db
        .authenticate_for(&issued.secret, CustomerId::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner, None, "an unknown customer has no partner");
    let customer_admin = db
        .issue_token(Scope::Customer(theirs), "admin", now)
        .await
        .unwrap();
    let (principal, owner) = db
        .authenticate_for(&customer_admin.secret, theirs)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(principal.scope, Scope::Customer(theirs));
    assert_eq!(owner, Some(other));
    assert!(db
        .authenticate_for("rst_a-token-nobody-was-ever-given", mine)
        .await
        .unwrap()
        .is_none());
    assert!(db.revoke_token(issued.token_id, now).await.unwrap());
    assert!(db
        .authenticate_for(&issued.secret, mine)
        .await
        .unwrap()
        .is_none());
}

/// The method PostgreSQL compressed the value stored in `probe` with,
/// written by one of `db`'s sessions.
async fn compression_of_a_large_value(db: &roster_store::Db) -> String {
    let roster_store::Db::Pg(pool) = db else {
        panic!("a PostgreSQL store")
    };
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS probe (v TEXT NOT NULL)")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO probe VALUES (repeat('{\"objects\": [1, 2, 3]}', 50000))")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT pg_column_compression(v) FROM probe ORDER BY ctid DESC LIMIT 1")
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

/// The shared buffers a statement touched, from its `EXPLAIN (ANALYZE,
/// BUFFERS)` on a connection of its own.
async fn buffers_touched(pool: &sqlx::PgPool, sql: &str) -> i64 {
    let plan: serde_json::Value =
        sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"))
            .fetch_one(pool)
            .await
            .unwrap();
    let top = &plan[0]["Plan"];
    top["Shared Hit Blocks"].as_i64().unwrap() + top["Shared Read Blocks"].as_i64().unwrap()
}

/// E1, issue 17: beside an open bulk append, the log's head is the last
/// committed position, read from one row: `MAX(position)` walked the
/// append's uncommitted entries at the end of the position index, each
/// checked against the heap, at every read (the relay reads the head every
/// 200 ms). A read past the head returns nothing until the append commits,
/// then all of it; a rolled-back append leaves the head where it was; and
/// a writer of the log other than this process's appends (an older
/// replica, here plain SQL) moves the head too, and writes the row again
/// if it was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e1_the_head_beside_an_open_append_is_one_row() {
    let s = TestStore::new(roster_tests::Backend::Postgres).await;
    let roster_store::Db::Pg(pool) = s.store.db().clone() else {
        unreachable!("a PostgreSQL store")
    };
    let c = s.customer(10_000, &["bulk.example"]).await;
    let start = s.store.head_position().await.unwrap();
    let mut append = s.store.begin_streamed().await.unwrap();
    let mut batch = Batch::new();
    stage_bulk_users(&s, c, &mut batch).await;
    append.write(&mut batch).await.unwrap();
    assert_eq!(append.count(), 1_200);

    assert_eq!(s.store.head_position().await.unwrap(), start);
    assert!(s.store.read_from(start, 100).await.unwrap().is_empty());
    assert!(s
        .store
        .read_from_within(start, 100, 1 << 20)
        .await
        .unwrap()
        .is_empty());
    let head_reads = buffers_touched(&pool, roster_store::log::HEAD_SQL).await;
    assert!(head_reads <= 2, "the head is one row: {head_reads} buffers");
    // What the head cost before: every uncommitted entry checked, so a
    // pass over the heap pages of the append's 1,200 rows (about 100).
    let walked = buffers_touched(&pool, "SELECT MAX(position) FROM events").await;
    assert!(
        walked >= 50 && walked > 20 * head_reads,
        "MAX walks the open append: {walked} buffers against {head_reads}"
    );

    let a = append.commit(&s.store, &mut Batch::new()).await.unwrap();
    assert_eq!(s.store.head_position().await.unwrap(), a.last);
    assert_eq!(a.last, start + 1_200);
    let read = s.store.read_from(start, 5_000).await.unwrap();
    assert_eq!(read.len(), 1_200, "the whole append once it committed");

    // Rolled back: the head stays.
    let mut dropped = s.store.begin_streamed().await.unwrap();
    let mut batch = Batch::new();
    stage_bulk_users(&s, c, &mut batch).await;
    assert!(
        dropped.write(&mut batch).await.is_err(),
        "its addresses are taken"
    );
    drop(dropped);
    let head = s.store.head_position().await.unwrap();
    assert_eq!(head, a.last);

    // Another writer, with and without the row.
    let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                  event_version, payload, metadata, position, customer_id, recorded_at) \
                  VALUES ('Foreign', $1, 1, 'Written', '1.0', '{}', '{}', $2, $3, 0)";
    for (n, without_row) in [(1, false), (2, true)] {
        if without_row {
            sqlx::query("DELETE FROM log_head")
                .execute(&pool)
                .await
                .unwrap();
        }
        sqlx::query(insert)
            .bind(format!("foreign-{n}"))
            .bind(head + n)
            .bind(c.to_string())
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(s.store.head_position().await.unwrap(), head + n);
        let row: i64 = sqlx::query_scalar("SELECT position FROM log_head")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(row, head + n, "the writer's statement wrote the row");
        let last = s.store.read_from(head, 10).await.unwrap();
        assert_eq!(last.last().map(|e| e.position), Some(head + n));
    }
}

/// Issue 17: a run's large values (its directory objects, its report) are
/// compressed with LZ4 when the server offers it and its operator chose no
/// method; a method the operator set (here on the database) is kept.
#[tokio::test]
async fn i17_large_values_are_compressed_with_lz4_unless_the_operator_chose() {
    let pg = roster_testkit::PgDb::create().await.unwrap();
    let plain = pg.pool().await.unwrap();
    let (offers, source, server): (bool, String, String) = sqlx::query_as(
        "SELECT 'lz4' = ANY(enumvals), source, setting FROM pg_settings \
         WHERE name = 'default_toast_compression'",
    )
    .fetch_one(&plain)
    .await
    .unwrap();
    let expected = if offers && source == "default" {
        "lz4".to_string()
    } else {
        server
    };
    let db = roster_store::Db::connect_postgres(pg.url(), 2)
        .await
        .unwrap();
    assert_eq!(compression_of_a_large_value(&db).await, expected);
    drop(db);

    sqlx::query(&format!(
        "ALTER DATABASE \"{}\" SET default_toast_compression = 'pglz'",
        pg.name()
    ))
    .execute(&plain)
    .await
    .unwrap();
    let db = roster_store::Db::connect_postgres(pg.url(), 2)
        .await
        .unwrap();
    assert_eq!(
        compression_of_a_large_value(&db).await,
        "pglz",
        "the operator's choice is kept"
    );
    plain.close().await;
    pg.drop_now().await.unwrap();
}

both_backends!(
    t1_a_token_and_a_customers_partner_are_read_in_one_query,
    d7_a_stored_secret_is_released_only_for_its_target,
    e1_appends_are_read_back_in_global_order,
    e1_a_stale_version_is_a_conflict,
    e1_a_stale_version_in_a_bulk_append_is_a_conflict,
    e1_a_tailing_reader_never_skips_a_late_commit,
    u1_fifty_concurrent_claims_of_one_address_leave_one_owner,
    t2_fifty_concurrent_domain_claims_leave_one_customer,
    t3_concurrent_manual_additions_never_exceed_the_seat_limit,
    t3_the_seat_counter_equals_the_seats_claimed_after_every_change,
    u6_a_returning_user_keeps_its_identity,
    d3n_removing_a_domain_deletes_its_users_and_strips_its_aliases,
    m1_nothing_is_half_applied,
    u1_a_refused_claim_in_the_middle_of_a_bulk_append_refuses_it_whole,
    u1_an_address_taken_by_an_earlier_statement_of_the_run_refuses_the_append,
    aggregates_load_the_same_one_by_one_and_in_bulk,
    u1_the_primary_addresses_of_many_owners_are_found_in_bulk,
);
