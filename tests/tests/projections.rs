//! The projection suite, on PostgreSQL and on SQLite: the user list, licence,
//! audit, history and time travel, rebuild equality (E3), failure records.

use roster_app::customers;
use roster_app::users::{self, Edit, NewUser};
use roster_domain::UserCommand;
use roster_events::*;
use roster_projections::queries::{self, AuditFilter, UserFilter};
use roster_projections::rebuild;
use roster_store::Clock;
use roster_tests::backend::addr;
use roster_tests::{both_backends, Backend, TestStore};

fn user(address: &str, first: &str, last: &str, aliases: &[&str]) -> NewUser {
    NewUser {
        address: addr(address),
        kind: Kind::User,
        profile: Profile {
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            ..Profile::default()
        },
        aliases: aliases.iter().map(|a| addr(a)).collect(),
    }
}

/// A little of everything, so that every projection has work.
async fn workload(s: &TestStore) -> CustomerId {
    let c = s.customer(50, &["live.example", "gone.example"]).await;
    let app = s.app();
    for i in 0..12 {
        users::add_user(
            &app,
            s.meta(c),
            user(
                &format!("user{i:02}@live.example"),
                &format!("First{i}"),
                "Common",
                &[&format!("alias{i:02}@live.example")],
            ),
            Source::Manual,
        )
        .await
        .unwrap();
        s.clock.advance(chrono::Duration::seconds(1));
    }
    let list = NewUser {
        kind: Kind::DistributionList,
        ..user("team@live.example", "Team", "List", &[])
    };
    users::add_user(&app, s.meta(c), list, Source::Manual)
        .await
        .unwrap();
    let mut edit = Edit {
        aliases: Some(vec![addr("renamed@live.example")]),
        ..Default::default()
    };
    edit.profile.department = Some(Some("Sales".into()));
    users::edit_user(&app, s.meta(c), addr("user01@live.example"), edit)
        .await
        .unwrap();
    users::edit_user(
        &app,
        s.meta(c),
        addr("user02@live.example"),
        Edit {
            status: Some(Status::Deactivated),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    users::user_command(&app, s.meta(c), &addr("user03@live.example"), || {
        UserCommand::AddRule {
            rule_id: RuleId(uuid::Uuid::from_u128(3)),
            kind: RuleKind::Allow,
            value: "partner.example".into(),
        }
    })
    .await
    .unwrap();
    let at = s.clock.now();
    users::user_command(&app, s.meta(c), &addr("user04@live.example"), || {
        UserCommand::Delete {
            reason: DeletionReason::Manual,
            at,
        }
    })
    .await
    .unwrap();
    users::add_user(
        &app,
        s.meta(c),
        user("x@gone.example", "X", "Gone", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    customers::remove_domain(&app, s.meta(c), Domain::parse("gone.example").unwrap())
        .await
        .unwrap();
    c
}

async fn e3_rebuilt_projections_equal_the_live_ones(s: TestStore) {
    s.spawn_projector();
    workload(&s).await;
    s.project().await;
    let live = rebuild::dump(&s.store, "").await.unwrap();
    assert!(
        live.values().map(|rows| rows.len()).sum::<usize>() > 20,
        "the workload filled the tables"
    );
    let report = rebuild::rebuild(&s.store, false).await.unwrap();
    assert_eq!(report.events, s.store.head_position().await.unwrap());
    let fresh = rebuild::dump(&s.store, rebuild::REBUILD_PREFIX)
        .await
        .unwrap();
    assert_eq!(
        fresh, live,
        "a replay of the log gives the same read models"
    );
    // Swapping them in keeps the same content, and the live projector goes on from there.
    rebuild::rebuild(&s.store, true).await.unwrap();
    assert_eq!(rebuild::dump(&s.store, "").await.unwrap(), live);
    let c = s.customer(5, &["after.example"]).await;
    let (_, pos) = users::add_user(
        &s.app(),
        s.meta(c),
        user("later@after.example", "Later", "User", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    s.app().settle(pos).await;
    assert!(queries::user_by_address(&s.store, c, "later@after.example")
        .await
        .unwrap()
        .is_some());
}

async fn u3_the_user_list_groups_searches_filters_and_pages_stably(s: TestStore) {
    let c = workload(&s).await;
    s.project().await;
    let all = queries::list_users(&s.store, c, &UserFilter::default(), None, 1000)
        .await
        .unwrap()
        .items;
    // 12 users + the list - the deleted one.
    assert_eq!(all.len(), 12);
    let u0 = all
        .iter()
        .find(|u| u.address == "user00@live.example")
        .unwrap();
    assert_eq!(
        u0.aliases,
        vec!["alias00@live.example"],
        "U3: aliases grouped under their primary"
    );
    let u1 = all
        .iter()
        .find(|u| u.address == "user01@live.example")
        .unwrap();
    assert_eq!(u1.aliases, vec!["renamed@live.example"]);
    assert_eq!(u1.profile.department.as_deref(), Some("Sales"));
    // Search by alias, by name, any case.
    let by_alias = queries::list_users(
        &s.store,
        c,
        &UserFilter {
            q: Some("ALIAS05".into()),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap()
    .items;
    assert_eq!(
        by_alias
            .iter()
            .map(|u| u.address.as_str())
            .collect::<Vec<_>>(),
        vec!["user05@live.example"]
    );
    let by_name = queries::list_users(
        &s.store,
        c,
        &UserFilter {
            q: Some("first1".into()),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap()
    .items;
    assert_eq!(by_name.len(), 3, "First1, First10, First11");
    let like_chars = queries::list_users(
        &s.store,
        c,
        &UserFilter {
            q: Some("%".into()),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap()
    .items;
    assert!(like_chars.is_empty(), "LIKE wildcards in q are literal");
    // Filters.
    let deactivated = queries::list_users(
        &s.store,
        c,
        &UserFilter {
            status: Some(Status::Deactivated),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap()
    .items;
    assert_eq!(
        deactivated
            .iter()
            .map(|u| u.address.as_str())
            .collect::<Vec<_>>(),
        vec!["user02@live.example"]
    );
    let deleted = queries::list_users(
        &s.store,
        c,
        &UserFilter {
            status: Some(Status::Deleted),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap()
    .items;
    assert_eq!(deleted.len(), 2, "user04 and x@gone.example");
    let csv = queries::list_users(
        &s.store,
        c,
        &UserFilter {
            source: Some(Source::Csv),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap()
    .items;
    assert!(csv.is_empty());
    // Stable paging: a user added between pages neither repeats nor hides another.
    let p1 = queries::list_users(&s.store, c, &UserFilter::default(), None, 5)
        .await
        .unwrap();
    users::add_user(
        &s.app(),
        s.meta(c),
        user("aaa@live.example", "A", "A", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    s.project().await;
    let mut seen: Vec<String> = p1.items.iter().map(|u| u.address.clone()).collect();
    let mut page = p1.next_page;
    while let Some(token) = page {
        let p = queries::list_users(&s.store, c, &UserFilter::default(), Some(&token), 5)
            .await
            .unwrap();
        seen.extend(p.items.iter().map(|u| u.address.clone()));
        page = p.next_page;
    }
    let expected: Vec<String> = all.iter().map(|u| u.address.clone()).collect();
    assert_eq!(
        seen, expected,
        "every user of the first listing once, in order"
    );
    assert!(
        queries::list_users(&s.store, c, &UserFilter::default(), Some("garbage"), 5)
            .await
            .is_err()
    );
}

async fn t3_licence_counts_users_only(s: TestStore) {
    let c = workload(&s).await;
    s.project().await;
    let l = queries::licence(&s.store, c).await.unwrap();
    assert_eq!(l.seat_limit, 50);
    assert_eq!(l.users_active, 10);
    assert_eq!(l.users_deactivated, 1);
    assert_eq!(l.distribution_lists, 1);
    assert_eq!(
        l.seats_used, 10,
        "lists, aliases and deactivated users take no seat"
    );
    assert_eq!(l.aliases, 11, "one per user, less the deleted user's");
    assert!(!l.over_limit);
    assert_eq!(
        s.store.db().seats(c).await.unwrap().used,
        10,
        "claims and projection agree"
    );
}

async fn e4_audit_filters_and_history_spans_deletion_and_return(s: TestStore) {
    let c = workload(&s).await;
    let app = s.app();
    let t_before_return = s.clock.now();
    s.clock.advance(chrono::Duration::seconds(10));
    users::add_user(
        &app,
        s.meta(c),
        user("user04@live.example", "Back", "Again", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    s.project().await;
    let all = queries::audit(&s.store, c, &AuditFilter::default(), None, 1000)
        .await
        .unwrap()
        .items;
    assert_eq!(
        all.len() as i64,
        s.store
            .read_customer(c, 0, None, 10_000)
            .await
            .unwrap()
            .len() as i64
    );
    assert!(
        all.windows(2).all(|w| w[0].position > w[1].position),
        "newest first"
    );
    let by_type = queries::audit(
        &s.store,
        c,
        &AuditFilter {
            event_type: Some("UserDeleted".into()),
            ..Default::default()
        },
        None,
        100,
    )
    .await
    .unwrap()
    .items;
    assert_eq!(by_type.len(), 2);
    let by_addr = queries::audit(
        &s.store,
        c,
        &AuditFilter {
            address: Some("renamed@live.example".into()),
            ..Default::default()
        },
        None,
        100,
    )
    .await
    .unwrap()
    .items;
    assert_eq!(
        by_addr
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        vec!["AliasMapped"]
    );
    let by_actor = queries::audit(
        &s.store,
        c,
        &AuditFilter {
            actor: Some("system:test".parse().unwrap()),
            ..Default::default()
        },
        None,
        1000,
    )
    .await
    .unwrap()
    .items;
    assert_eq!(by_actor.len(), all.len());
    let nobody = queries::audit(
        &s.store,
        c,
        &AuditFilter {
            actor: Some(
                "token:00000000-0000-0000-0000-000000000000"
                    .parse()
                    .unwrap(),
            ),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap()
    .items;
    assert!(nobody.is_empty());
    let late = queries::audit(
        &s.store,
        c,
        &AuditFilter {
            from: Some(t_before_return.timestamp_micros() + 1),
            ..Default::default()
        },
        None,
        100,
    )
    .await
    .unwrap()
    .items;
    assert_eq!(
        late.iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        vec!["UserReturned"]
    );
    // Paging through the audit trail gives every entry once.
    let mut n = 0;
    let mut page = None;
    loop {
        let p = queries::audit(&s.store, c, &AuditFilter::default(), page.as_deref(), 7)
            .await
            .unwrap();
        n += p.items.len();
        page = p.next_page;
        if page.is_none() {
            break;
        }
    }
    assert_eq!(n, all.len());
    let history = queries::history(&s.store, c, "user04@live.example")
        .await
        .unwrap();
    let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, vec!["UserAdded", "UserDeleted", "UserReturned"]);
    assert!(history[2].payload["UserReturned"]["earlier"]["deleted_at"].is_string());
}

/// The log's events of these users, oldest first: what a history must be.
async fn logged(s: &TestStore, ids: &[UserId]) -> Vec<(i64, String, String, serde_json::Value)> {
    let ids: Vec<String> = ids.iter().map(UserId::to_string).collect();
    let mut events: Vec<_> = s
        .store
        .read_aggregates(USER_AGGREGATE, &ids)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.position,
                e.event_type,
                e.aggregate_id,
                e.payload.value().unwrap(),
            )
        })
        .collect();
    events.sort_by_key(|e| e.0);
    events
}

/// E4, U6 (session 26's tester question): a user's history, now found
/// through the log's key rather than an index of the audit trail, is every
/// event of the aggregates that held the primary address, as the log has
/// them:
/// across a rename (the old and the new address give the same events), a
/// deletion and a return, and with the old address taken by another user
/// since (its history then holds both users, in order of position).
async fn e4_u6_history_across_a_rename_and_a_return_is_the_logs_events(s: TestStore) {
    let c = s.customer(50, &["hist.example"]).await;
    let other = s.customer(50, &["elsewhere.example"]).await;
    let app = s.app();
    let add = |address: &'static str, aliases: &'static [&'static str]| {
        let app = app.clone();
        let meta = s.meta(c);
        async move {
            users::add_user(
                &app,
                meta,
                user(address, "Ann", "Lee", aliases),
                Source::Manual,
            )
            .await
            .unwrap()
        }
    };
    add("ann@hist.example", &["a1@hist.example"]).await;
    let ann = users::user_id_of(&s.store, c, &addr("ann@hist.example"))
        .await
        .unwrap();
    users::user_command(&app, s.meta(c), &addr("ann@hist.example"), || {
        UserCommand::AddRule {
            rule_id: RuleId(uuid::Uuid::from_u128(41)),
            kind: RuleKind::Deny,
            value: "spam.example".into(),
        }
    })
    .await
    .unwrap();
    // The rename a directory sync makes when a user's mail changes.
    users::user_command(&app, s.meta(c), &addr("ann@hist.example"), || {
        UserCommand::ChangeAddress {
            address: addr("anna@hist.example"),
            taken_from: None,
            released_to: None,
        }
    })
    .await
    .unwrap();
    let mut edit = Edit::default();
    edit.profile.department = Some(Some("Sales".into()));
    users::edit_user(&app, s.meta(c), addr("anna@hist.example"), edit)
        .await
        .unwrap();
    let at = s.clock.now();
    users::user_command(&app, s.meta(c), &addr("anna@hist.example"), || {
        UserCommand::Delete {
            reason: DeletionReason::Manual,
            at,
        }
    })
    .await
    .unwrap();
    // The old address goes to someone else; the renamed user comes back.
    add("ann@hist.example", &[]).await;
    let newcomer = users::user_id_of(&s.store, c, &addr("ann@hist.example"))
        .await
        .unwrap();
    assert_ne!(newcomer, ann);
    add("anna@hist.example", &[]).await;
    assert_eq!(
        users::user_id_of(&s.store, c, &addr("anna@hist.example"))
            .await
            .unwrap(),
        ann,
        "U6: the renamed user returns under the same id"
    );
    // A user of another customer with the same local part is not mixed in.
    users::add_user(
        &app,
        s.meta(other),
        user("ann@elsewhere.example", "Ann", "Other", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    s.project().await;

    let shown = |h: Vec<queries::AuditEntry>| {
        h.into_iter()
            .map(|e| {
                (
                    e.position,
                    e.event_type,
                    e.aggregate_id.to_string(),
                    e.payload,
                )
            })
            .collect::<Vec<_>>()
    };
    let anns = logged(&s, &[ann]).await;
    assert_eq!(
        anns.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        [
            "UserAdded",
            "RuleAdded",
            "AddressChanged",
            "ProfileUpdated",
            "UserDeleted",
            "UserReturned"
        ],
        "the scenario wrote what it meant to"
    );
    let h = queries::history(&s.store, c, "anna@hist.example")
        .await
        .unwrap();
    assert_eq!(shown(h), anns, "the new address: the whole history");
    assert!(
        queries::history(&s.store, c, "a1@hist.example")
            .await
            .unwrap()
            .is_empty(),
        "a history is found by a primary address, not an alias"
    );
    let both = logged(&s, &[ann, newcomer]).await;
    assert_eq!(both.len(), anns.len() + 1);
    let h = queries::history(&s.store, c, "ann@hist.example")
        .await
        .unwrap();
    assert_eq!(shown(h), both, "the old address: both of its holders");
    assert!(queries::history(&s.store, other, "ann@hist.example")
        .await
        .unwrap()
        .is_empty());
    assert!(queries::history(&s.store, c, "ann@elsewhere.example")
        .await
        .unwrap()
        .is_empty());
}

async fn b7_the_user_list_as_of_a_past_instant_is_what_it_was(s: TestStore) {
    let c = s.customer(50, &["past.example"]).await;
    let app = s.app();
    for i in 0..5 {
        users::add_user(
            &app,
            s.meta(c),
            user(&format!("p{i}@past.example"), "P", "Ast", &[]),
            Source::Manual,
        )
        .await
        .unwrap();
    }
    s.clock.advance(chrono::Duration::minutes(1));
    s.project().await;
    let then = s.clock.now();
    let list_then = queries::list_users(&s.store, c, &UserFilter::default(), None, 100)
        .await
        .unwrap()
        .items;
    s.clock.advance(chrono::Duration::minutes(1));
    let at = s.clock.now();
    users::user_command(&app, s.meta(c), &addr("p1@past.example"), || {
        UserCommand::Delete {
            reason: DeletionReason::Manual,
            at,
        }
    })
    .await
    .unwrap();
    users::edit_user(
        &app,
        s.meta(c),
        addr("p2@past.example"),
        Edit {
            aliases: Some(vec![addr("p2b@past.example")]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    users::add_user(
        &app,
        s.meta(c),
        user("p9@past.example", "P", "Nine", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    s.project().await;
    let as_of = roster_projections::timetravel::users_as_of(
        &s.store,
        c,
        then,
        &UserFilter::default(),
        None,
        100,
    )
    .await
    .unwrap()
    .items;
    assert_eq!(as_of, list_then);
    let now = roster_projections::timetravel::users_as_of(
        &s.store,
        c,
        s.clock.now(),
        &UserFilter::default(),
        None,
        100,
    )
    .await
    .unwrap()
    .items;
    let live = queries::list_users(&s.store, c, &UserFilter::default(), None, 100)
        .await
        .unwrap()
        .items;
    assert_eq!(now, live);
}

async fn e3_the_projector_records_an_event_it_cannot_read_and_goes_on(s: TestStore) {
    let c = s.customer(10, &["bad.example"]).await;
    s.project().await;
    // A row written by something other than Roster, that no upcaster can read.
    let head = s.store.head_position().await.unwrap();
    let sql = match s.backend {
        roster_tests::Backend::Postgres => "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, position, customer_id, recorded_at) VALUES ('User', 'broken', 1, 'UserAdded', '1.0', '{\"UserAdded\": {\"nonsense\": true}}'::json, $1::json, $2, $3, 0)",
        roster_tests::Backend::Sqlite => "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, position, customer_id, recorded_at) VALUES ('User', 'broken', 1, 'UserAdded', '1.0', '{\"UserAdded\": {\"nonsense\": true}}', $1, $2, $3, 0)",
    };
    let meta = serde_json::to_string(&s.meta(c).to_map()).unwrap();
    roster_store::with_db!(s.store.db(), |p| sqlx_query(
        sql,
        &meta,
        head + 1,
        &c.to_string(),
        p
    )
    .await);
    users::add_user(
        &s.app(),
        s.meta(c),
        user("good@bad.example", "Good", "User", &[]),
        Source::Manual,
    )
    .await
    .unwrap();
    s.project().await;
    assert!(queries::user_by_address(&s.store, c, "good@bad.example")
        .await
        .unwrap()
        .is_some());
    let failures: i64 = roster_store::with_db!(s.store.db(), |p| count_failures(head + 1, p).await);
    assert_eq!(
        failures,
        roster_projections::all_projections().len() as i64,
        "recorded once per projection"
    );
    assert_eq!(
        s.projector.checkpoint().await.unwrap(),
        s.store.head_position().await.unwrap()
    );
}

async fn sqlx_query<'a, DB, E>(sql: &'a str, meta: &'a str, pos: i64, c: &'a str, e: E)
where
    DB: sqlx_shim::Database,
    E: sqlx_shim::Executor<'a, Database = DB>,
    for<'q> <DB as sqlx_shim::Database>::Arguments<'q>: sqlx_shim::IntoArguments<'q, DB>,
    &'a str: sqlx_shim::Encode<'a, DB> + sqlx_shim::Type<DB>,
    i64: sqlx_shim::Encode<'a, DB> + sqlx_shim::Type<DB>,
{
    sqlx_shim::query(sql)
        .bind(meta)
        .bind(pos)
        .bind(c)
        .execute(e)
        .await
        .unwrap();
}

async fn count_failures<'a, DB, E>(pos: i64, e: E) -> i64
where
    DB: sqlx_shim::Database,
    E: sqlx_shim::Executor<'a, Database = DB>,
    for<'q> <DB as sqlx_shim::Database>::Arguments<'q>: sqlx_shim::IntoArguments<'q, DB>,
    i64: sqlx_shim::Encode<'a, DB> + sqlx_shim::Type<DB> + for<'r> sqlx_shim::Decode<'r, DB>,
    (i64,): for<'r> sqlx_shim::FromRow<'r, DB::Row>,
{
    let (n,): (i64,) =
        sqlx_shim::query_as("SELECT COUNT(*) FROM projection_failures WHERE position = $1")
            .bind(pos)
            .fetch_one(e)
            .await
            .unwrap();
    n
}

use sqlx as sqlx_shim;

/// Issue 14 (users: "search ... that stays fast at 100,000 users"), issue
/// 17 (no trigram index to write per user): `q` is answered through the
/// list-order index that holds the filtered columns and the searched text
/// (on PostgreSQL its first 400 characters, an index-only scan), and finds
/// exactly the users whose addresses, aliases or names contain it, in any
/// case, LIKE wildcards taken as text, also where the text is longer than
/// the index holds (a match beyond it, or across its end).
async fn i14_user_search_goes_through_the_search_index(s: TestStore) {
    let c = s.customer(500, &["idx.example", "bücher.example"]).await;
    let app = s.app();
    let names = ["Ann", "Bernd", "Chloé", "Dara"];
    for i in 0..40 {
        let domain = if i % 10 == 0 {
            "bücher.example"
        } else {
            "idx.example"
        };
        let aliases = [format!("alt{i}_x@{domain}")];
        let aliases: Vec<&str> = if i % 3 == 0 {
            vec![aliases[0].as_str()]
        } else {
            vec![]
        };
        users::add_user(
            &app,
            s.meta(c),
            user(
                &format!("u{i:03}@{domain}"),
                names[i % 4],
                &format!("Grüber{i}"),
                &aliases,
            ),
            Source::Manual,
        )
        .await
        .unwrap();
    }
    // Two users whose text is longer than PostgreSQL's index holds: 60
    // aliases each (about 1,700 characters, more than a B-tree entry may
    // hold whole).
    for (i, tail) in [(0, "zq"), (1, "yq")].iter() {
        let aliases: Vec<String> = (0..60)
            .map(|k| format!("long{i}_{k:02}_{tail}@idx.example"))
            .collect();
        let aliases: Vec<&str> = aliases.iter().map(String::as_str).collect();
        users::add_user(
            &app,
            s.meta(c),
            user(&format!("many{i}@idx.example"), "Mara", "Lang", &aliases),
            Source::Manual,
        )
        .await
        .unwrap();
    }
    s.project().await;
    let all = queries::list_users(&s.store, c, &UserFilter::default(), None, 1000)
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 42);
    let long = all
        .iter()
        .map(|u| u.search_text())
        .filter(|t| t.chars().count() > roster_projections::users::SEARCH_KEY_CHARS)
        .count();
    assert_eq!(long, 2, "two texts longer than the index holds");
    for q in [
        "long0_59_zq",
        "long1_00_yq",
        "_59_",
        "_zq@",
        "lang",
        "U01",
        "017@",
        "alt9_",
        "ALT1",
        "chloé",
        "GRÜBER3",
        "xn--bcher",
        "idx.ex",
        "%",
        "_x@",
        "nobody",
        "an",
    ] {
        let found = search(&s.store, c, q, None, 1000).await.items;
        let found: Vec<&str> = found.iter().map(|u| u.address.as_str()).collect();
        let needle = q.to_lowercase();
        let expected: Vec<&str> = all
            .iter()
            .filter(|u| u.search_text().contains(&needle))
            .map(|u| u.address.as_str())
            .collect();
        assert_eq!(found, expected, "q={q:?}");
        if ["long0_59_zq", "long1_00_yq", "_59_", "_zq@", "lang"].contains(&q) {
            assert!(!expected.is_empty(), "q={q:?} finds the long users");
        }
        // Paged by two, the same users in the same order.
        let mut paged: Vec<String> = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let p = search(&s.store, c, q, page.as_deref(), 2).await;
            paged.extend(p.items.into_iter().map(|u| u.address));
            match p.next_page {
                Some(n) => page = Some(n.to_string()),
                None => break,
            }
        }
        assert_eq!(paged, expected, "q={q:?}, paged");
    }
    // A match across the end of the indexed text: the characters at
    // positions 395-405 of the first long user's text.
    let text = all
        .iter()
        .find(|u| u.address == "many0@idx.example")
        .unwrap()
        .search_text();
    let chars: Vec<char> = text.chars().collect();
    let across: String = chars[395..405].iter().collect();
    let found = search(&s.store, c, &across, None, 1000).await.items;
    assert!(
        found.iter().any(|u| u.address == "many0@idx.example"),
        "q={across:?} across the indexed text's end"
    );
    let plan = search_plan(&s).await;
    let index = match s.backend {
        Backend::Postgres => "Index Only Scan using users_v2_customer_address_search",
        Backend::Sqlite => "users_v2_customer_address_search",
    };
    assert!(plan.contains(index), "{plan}");
}

/// A page of the user list searched for `q`.
async fn search(
    store: &roster_store::Store,
    c: CustomerId,
    q: &str,
    page: Option<&str>,
    limit: i64,
) -> queries::Page<roster_projections::users::UserRow> {
    queries::list_users(
        store,
        c,
        &UserFilter {
            q: Some(q.into()),
            ..Default::default()
        },
        page,
        limit,
    )
    .await
    .unwrap()
}

/// The plan of a search: on PostgreSQL the list's first half (the ids
/// from the index) with sequential scans off (the test's table is small
/// enough for the planner to prefer one), on SQLite the list's own query.
async fn search_plan(s: &TestStore) -> String {
    match s.store.db() {
        roster_store::Db::Pg(p) => {
            let mut tx = p.begin().await.unwrap();
            sqlx_shim::query("SET LOCAL enable_seqscan = off")
                .execute(&mut *tx)
                .await
                .unwrap();
            let rows: Vec<(String,)> = sqlx_shim::query_as(
                "EXPLAIN SELECT user_id FROM users_v2 WHERE customer_id = $1 \
                 AND status <> 'deleted' AND search_key LIKE $2 ESCAPE '\\' \
                 ORDER BY address, user_id LIMIT 51",
            )
            .bind("c")
            .bind("%017@%")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
            rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
        }
        roster_store::Db::Sqlite(p) => {
            let rows: Vec<(i64, i64, i64, String)> = sqlx_shim::query_as(
                "EXPLAIN QUERY PLAN SELECT * FROM users_v2 WHERE customer_id = $1 \
                 AND status <> 'deleted' AND search LIKE $2 ESCAPE '\\' \
                 ORDER BY address, user_id LIMIT 51",
            )
            .bind("c")
            .bind("%017@%")
            .fetch_all(p)
            .await
            .unwrap();
            rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
        }
    }
}

/// Issue 14: a PostgreSQL role that may not create extensions (no CREATE
/// privilege on the database) gets its tables, and search answers: user
/// search needs no extension (issue 17 replaced the pg_trgm index; an
/// extension an older version created is left alone, and its index
/// dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i14_a_role_that_may_not_create_extensions_gets_tables_and_search() {
    use sqlx_shim::postgres::{PgConnectOptions, PgPoolOptions};
    use std::str::FromStr;
    let pg = roster_testkit::PgDb::create().await.unwrap();
    let role = format!(
        "roster_nopriv_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(pg.url())
        .await
        .unwrap();
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT USAGE, CREATE ON SCHEMA public TO {role}"),
    ] {
        sqlx_shim::query(&sql).execute(&admin).await.unwrap();
    }
    let options = PgConnectOptions::from_str(pg.url())
        .unwrap()
        .username(&role);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    let store = roster_store::Store::open(roster_store::Db::Pg(pool.clone()))
        .await
        .unwrap();
    let projector = std::sync::Arc::new(roster_projections::Projector::new(store.clone(), ""));
    projector.ensure_tables().await.unwrap();
    let indexes: Vec<(String,)> =
        sqlx_shim::query_as("SELECT indexname::text FROM pg_indexes WHERE tablename = 'users_v2'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        indexes.iter().all(|(i,)| !i.contains("trgm"))
            && indexes
                .iter()
                .any(|(i,)| i == "users_v2_customer_address_search"),
        "{indexes:?}"
    );
    let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(roster_store::SystemClock);
    let app = roster_app::App::new(store.clone(), projector.clone(), clock);
    let c = CustomerId::new();
    let meta = |c| EventMeta {
        customer_id: c,
        actor: Actor::System("test".into()),
        correlation_id: CorrelationId::new(),
        time: chrono::Utc::now(),
    };
    customers::create_customer(
        &app,
        meta(c),
        PartnerId::new(),
        "No trigram".into(),
        10,
        vec![Domain::parse("scan.example").unwrap()],
    )
    .await
    .unwrap();
    for a in ["ann@scan.example", "bob@scan.example"] {
        users::add_user(&app, meta(c), user(a, "Ann", "Scan", &[]), Source::Manual)
            .await
            .unwrap();
    }
    projector.catch_up().await.unwrap();
    let found = queries::list_users(
        &store,
        c,
        &UserFilter {
            q: Some("BOB@".into()),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap()
    .items;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].address, "bob@scan.example");
    pool.close().await;
    drop(store);
    drop(app);
    admin.close().await;
    let server = PgConnectOptions::from_str(pg.url())
        .unwrap()
        .database("postgres");
    pg.drop_now().await.unwrap();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(server)
        .await
        .unwrap();
    sqlx_shim::query(&format!("DROP ROLE {role}"))
        .execute(&admin)
        .await
        .unwrap();
}

/// U3, M1: one user read by its address (in one query since issue 17: the
/// answer of every manual edit) is the row the list shows, aliases in
/// address order and rules in creation order, on both back-ends; a user
/// without aliases or rules reads with empty lists, a deleted one not at
/// all.
async fn u3_one_user_reads_as_the_list_shows_it(s: TestStore) {
    let c = s.customer(100, &["one.example"]).await;
    let app = s.app();
    let aliases = ["zed@one.example", "amy@one.example", "mid@one.example"];
    let mut full = user("full@one.example", "Full", "One", &aliases);
    full.profile.notes = Some("two\nlines".into());
    users::add_user(&app, s.meta(c), full, Source::Manual)
        .await
        .unwrap();
    for value in ["b.example", "a.example", "c.example"] {
        users::user_command(&app, s.meta(c), &addr("full@one.example"), || {
            UserCommand::AddRule {
                rule_id: RuleId::new(),
                kind: RuleKind::Deny,
                value: value.into(),
            }
        })
        .await
        .unwrap();
    }
    for address in ["bare@one.example", "gone@one.example"] {
        users::add_user(
            &app,
            s.meta(c),
            user(address, "Bare", "One", &[]),
            Source::Manual,
        )
        .await
        .unwrap();
    }
    let at = s.clock.now();
    users::user_command(&app, s.meta(c), &addr("gone@one.example"), || {
        UserCommand::Delete {
            reason: DeletionReason::Manual,
            at,
        }
    })
    .await
    .unwrap();
    s.project().await;
    let list = queries::list_users(&s.store, c, &UserFilter::default(), None, 100)
        .await
        .unwrap()
        .items;
    for address in ["full@one.example", "bare@one.example"] {
        let one = queries::user_by_address(&s.store, c, address)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{address} reads"));
        let listed = list.iter().find(|u| u.address == address).unwrap();
        assert_eq!(&one, listed, "{address}");
    }
    let full = queries::user_by_address(&s.store, c, "full@one.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        full.aliases,
        vec!["amy@one.example", "mid@one.example", "zed@one.example"]
    );
    let order: Vec<(i64, String)> = full
        .rules
        .iter()
        .map(|r| (r.created_at, r.rule_id.to_string()))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        (order.len(), &order),
        (3, &sorted),
        "rules in creation order"
    );
    assert!(queries::user_by_address(&s.store, c, "gone@one.example")
        .await
        .unwrap()
        .is_none());
    let other = s.customer(100, &["two.example"]).await;
    assert!(
        queries::user_by_address(&s.store, other, "full@one.example")
            .await
            .unwrap()
            .is_none(),
        "T1: another customer does not read it"
    );
}

/// Issue 17 (D3, U3): the reconciler's input (`current_users`, read by
/// position on PostgreSQL and as one JSON value on SQLite) is every live
/// user exactly as the
/// user list shows it, whatever its text holds; a customer without users
/// or directory objects reads as empty, not as an error.
async fn d3_the_plans_input_reads_every_live_user_as_the_list_shows_it(s: TestStore) {
    let c = workload(&s).await;
    let app = s.app();
    let mut odd = user(
        "odd@live.example",
        "Zoë \"Q\" 🚀",
        "O'Brien\\back",
        &["b@live.example", "a@live.example"],
    );
    odd.profile.notes = Some("tab\there\nnext line </script>".into());
    odd.profile.mobile = Some("+44 20 7946 0000".into());
    users::add_user(&app, s.meta(c), odd, Source::Manual)
        .await
        .unwrap();
    s.project().await;
    let mut read = queries::current_users(&s.store, c).await.unwrap();
    let mut listed = queries::list_users(&s.store, c, &UserFilter::default(), None, 1_000)
        .await
        .unwrap()
        .items;
    assert!(listed.len() >= 12, "the workload's users are listed");
    for u in &mut listed {
        u.rules.clear(); // the plan does not read rules
    }
    read.sort_by(|a, b| a.address.cmp(&b.address));
    listed.sort_by(|a, b| a.address.cmp(&b.address));
    assert_eq!(read, listed);
    let odd = read
        .iter()
        .find(|u| u.address == "odd@live.example")
        .unwrap();
    assert_eq!(odd.profile.first_name.as_deref(), Some("Zoë \"Q\" 🚀"));
    assert_eq!(odd.aliases, vec!["a@live.example", "b@live.example"]);
    let empty = s.customer(10, &["empty.example"]).await;
    assert!(queries::current_users(&s.store, empty)
        .await
        .unwrap()
        .is_empty());
    assert!(
        roster_projections::directory::object_summaries(&s.store, empty)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Issue 17 (E4): the page of a run's changes (`GET .../directory/syncs/{run}`:
/// its user events, newest first) is one walk of the audit trail's run
/// index, also while the run's own bulk is being projected and the table
/// has no statistics yet (the page is polled then), and for a run without
/// user changes: no intersection of indexes, no sort of the whole run, no
/// backward walk of the whole trail. Checked on 20,000 audit rows of one run
/// and a few of others, never analysed, with the plan of the exact query
/// `queries::audit` builds for that filter (with its values, as it is run).
async fn e4_a_runs_changes_are_one_walk_of_its_index(s: TestStore) {
    let c = s.customer(10, &["plan.example"]).await;
    s.project().await;
    let (run, quiet) = (CorrelationId::new(), CorrelationId::new());
    let (c, run, quiet) = (c.to_string(), run.to_string(), quiet.to_string());
    let agg = UserId::new().to_string();
    let fill = |n: i64, corr: &str, kind: &str| {
        format!(
            "INSERT INTO audit_v2 (position, customer_id, recorded_at, event_type, aggregate_type, \
             aggregate_id, address, subject, actor, correlation_id) \
             SELECT 1000000 + g + {n}, '{c}', g, 'UserAdded', '{kind}', '{agg}', 'a@plan.example', \
             NULL, 'system:bench', '{corr}' FROM {series}",
            series = match s.backend {
                Backend::Postgres => format!("generate_series(1, {n}) AS t(g)"),
                Backend::Sqlite => format!(
                    "(WITH RECURSIVE t(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM t WHERE g < {n}) SELECT g FROM t)"
                ),
            }
        )
    };
    let sql = "SELECT position, recorded_at, event_type, aggregate_type, aggregate_id, address, subject, actor, correlation_id \
               FROM audit_v2 WHERE customer_id = '{c}' AND correlation_id = '{r}' AND aggregate_type = 'User' \
               ORDER BY position DESC LIMIT 101";
    let explain = |r: &str| {
        let q = sql.replace("{c}", &c).replace("{r}", r);
        match s.backend {
            Backend::Postgres => format!("EXPLAIN {q}"),
            Backend::Sqlite => format!("EXPLAIN QUERY PLAN {q}"),
        }
    };
    // The rows, then the plan of each run's page; a plan's text is the
    // column `$col` of EXPLAIN's rows.
    macro_rules! plans {
        ($pool:expr, $row:ty, $col:tt) => {{
            for (n, corr, kind) in [(3, &quiet, "Directory"), (20_000, &run, "User")] {
                sqlx_shim::query(&fill(n, corr, kind))
                    .execute($pool)
                    .await
                    .unwrap();
            }
            let mut plans = vec![];
            for r in [&run, &quiet] {
                let rows: Vec<$row> = sqlx_shim::query_as(&explain(r))
                    .fetch_all($pool)
                    .await
                    .unwrap();
                let lines: Vec<String> = rows.into_iter().map(|r| r.$col).collect();
                plans.push(lines.join("\n"));
            }
            plans
        }};
    }
    let plans = match s.store.db() {
        roster_store::Db::Pg(p) => plans!(p, (String,), 0),
        roster_store::Db::Sqlite(p) => plans!(p, (i64, i64, i64, String), 3),
    };
    for plan in plans {
        assert!(plan.contains("audit_v2_run_changes"), "{plan}");
        for other in [
            "BitmapAnd",
            "Sort",
            "TEMP B-TREE",
            "audit_v2_pkey",
            "Seq Scan",
        ] {
            assert!(!plan.contains(other), "{other} in {plan}");
        }
    }
    // And the page is the run's newest user events (the rows have no
    // events in the log behind them: their payloads are null).
    let page = queries::audit(
        &s.store,
        CustomerId::parse(&c).unwrap(),
        &AuditFilter {
            correlation_id: Some(CorrelationId::parse(&run).unwrap()),
            aggregate_type: Some(USER_AGGREGATE.to_string()),
            ..AuditFilter::default()
        },
        None,
        2,
    )
    .await
    .unwrap();
    let positions: Vec<i64> = page.items.iter().map(|e| e.position).collect();
    assert_eq!(positions, vec![1_040_000, 1_039_999]);
    assert!(page.next_page.is_some());
}

both_backends!(
    e4_a_runs_changes_are_one_walk_of_its_index,
    u3_one_user_reads_as_the_list_shows_it,
    e3_rebuilt_projections_equal_the_live_ones,
    u3_the_user_list_groups_searches_filters_and_pages_stably,
    t3_licence_counts_users_only,
    e4_audit_filters_and_history_spans_deletion_and_return,
    e4_u6_history_across_a_rename_and_a_return_is_the_logs_events,
    b7_the_user_list_as_of_a_past_instant_is_what_it_was,
    e3_the_projector_records_an_event_it_cannot_read_and_goes_on,
    i14_user_search_goes_through_the_search_index,
    d3_the_plans_input_reads_every_live_user_as_the_list_shows_it,
);

/// Issue 17 (U3): a user list written by an earlier version (the pg_trgm
/// index, the narrow list index, no `search_key`) is brought to the
/// current indexes when the projector starts: the searched text of the
/// rows already there is derived (a generated column), the old indexes
/// are dropped, and search finds the earlier users, long texts included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn u3_an_earlier_user_list_gains_its_search_index_on_start() {
    let s = TestStore::new(Backend::Postgres).await;
    let c = s.customer(100, &["up.example"]).await;
    let app = s.app();
    let many: Vec<String> = (0..40)
        .map(|k| format!("old_alias_{k:02}@up.example"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    for (a, aliases) in [("ada@up.example", vec![]), ("bo@up.example", many.clone())] {
        users::add_user(
            &app,
            s.meta(c),
            user(a, "Old", "Row", &aliases),
            Source::Manual,
        )
        .await
        .unwrap();
    }
    s.project().await;
    let roster_store::Db::Pg(pool) = s.store.db() else {
        unreachable!()
    };
    // The schema of the earlier version.
    for sql in [
        "ALTER TABLE users_v2 DROP COLUMN search_key, DROP COLUMN search_more",
        "CREATE INDEX users_v2_customer_address ON users_v2 (customer_id, address, user_id)",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE INDEX users_v2_search_trgm ON users_v2 USING gin (search gin_trgm_ops)",
    ] {
        sqlx_shim::query(sql).execute(pool).await.unwrap();
    }
    s.projector.ensure_tables().await.unwrap();
    let mut indexes: Vec<String> = sqlx_shim::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'users_v2' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    indexes.sort();
    assert_eq!(
        indexes,
        [
            "users_v2_customer_address_search",
            "users_v2_customer_kind_status",
            "users_v2_customer_status",
            "users_v2_due_pending",
            "users_v2_pkey",
            "users_v2_search_more",
        ]
    );
    for (q, expected) in [
        ("ada@", vec!["ada@up.example"]),
        ("old_alias_39", vec!["bo@up.example"]),
        ("row", vec!["ada@up.example", "bo@up.example"]),
    ] {
        let found: Vec<String> = search(&s.store, c, q, None, 10)
            .await
            .items
            .into_iter()
            .map(|u| u.address)
            .collect();
        assert_eq!(found, expected, "q={q:?}");
    }
}

/// Issue 17 (E3): a batch ends at the event that brings its payloads'
/// text to the projector's byte budget, however few events that is (a
/// run's directory objects are events of megabytes). A batch so cut is
/// taken as a full one: the projector goes on to the next at once, and
/// the tables are those of batches cut by their number of events.
async fn e3_batches_cut_by_their_payload_size_project_as_whole_ones(s: TestStore) {
    s.spawn_projector();
    workload(&s).await;
    let head = s.project().await;
    let small = roster_projections::Projector::new(s.store.clone(), "bytes_")
        .with_batch_size(1_000)
        .with_batch_bytes(1);
    small.ensure_tables().await.unwrap();
    let mut batches = 0;
    loop {
        let n = small.step().await.unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(n, 1, "a one-byte budget holds one event a batch");
        batches += 1;
    }
    assert_eq!(batches, head, "every event of the log, one batch each");
    assert_eq!(small.checkpoint().await.unwrap(), head);
    let cut = rebuild::dump(&s.store, "bytes_").await.unwrap();
    assert!(
        cut.values().map(|rows| rows.len()).sum::<usize>() > 20,
        "the workload filled the tables"
    );
    assert_eq!(cut, rebuild::dump(&s.store, "").await.unwrap());
}

both_backends!(e3_batches_cut_by_their_payload_size_project_as_whole_ones);

/// Issue 17 (E3): on PostgreSQL a bulk batch is applied in parallel lanes,
/// each with its own transaction, checkpoints and locks. Two projectors
/// catching up on the same tables at once, both in lanes, apply every
/// event exactly once: nothing is recorded as failed (an event applied
/// twice breaks a key) and their tables equal those of one projector
/// applying every batch in one transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e3_two_projectors_in_parallel_lanes_apply_every_event_once() {
    let s = TestStore::new(Backend::Postgres).await;
    s.spawn_projector();
    workload(&s).await;
    let head = s.project().await;
    let lanes = || {
        roster_projections::Projector::new(s.store.clone(), "lanes_")
            .with_batch_size(4)
            .with_parallel_lanes(3, 1)
    };
    let (a, b) = (lanes(), lanes());
    a.ensure_tables().await.unwrap();
    let (ra, rb) = tokio::join!(a.catch_up(), b.catch_up());
    assert_eq!((ra.unwrap(), rb.unwrap()), (head, head));
    let one = roster_projections::Projector::new(s.store.clone(), "one_")
        .with_batch_size(4)
        .with_parallel_lanes(1, 1);
    one.ensure_tables().await.unwrap();
    assert_eq!(one.catch_up().await.unwrap(), head);
    let in_lanes = rebuild::dump(&s.store, "lanes_").await.unwrap();
    assert!(
        in_lanes.values().map(|rows| rows.len()).sum::<usize>() > 20,
        "the workload filled the tables"
    );
    assert_eq!(in_lanes, rebuild::dump(&s.store, "one_").await.unwrap());
    assert_eq!(in_lanes, rebuild::dump(&s.store, "").await.unwrap());
    let failures: i64 = roster_store::with_db!(s.store.db(), |p| sqlx::query_scalar(
        "SELECT COUNT(*) FROM projection_failures"
    )
    .fetch_one(p)
    .await
    .unwrap());
    assert_eq!(failures, 0, "no event was applied twice");
}
