//! The read side of the admin console's pages (issue 14), on PostgreSQL and
//! on SQLite: the users list's kind filter, the partner's customer list,
//! the dashboard, and the consequences of a domain removal shown before it
//! is confirmed (D3.n).

use roster_app::customers;
use roster_app::users::{self, NewUser};
use roster_events::*;
use roster_projections::console;
use roster_projections::queries::{self, UserFilter};
use roster_sync::{RunOutcome, SettingsChange};
use roster_tests::backend::addr;
use roster_tests::sync::{config, scenario, settings_for};
use roster_tests::{both_backends, TestStore};

fn new(address: &str, kind: Kind, aliases: &[&str]) -> NewUser {
    NewUser {
        address: addr(address),
        kind,
        profile: Profile {
            first_name: Some("Ann".into()),
            last_name: Some("Lee".into()),
            ..Profile::default()
        },
        aliases: aliases.iter().map(|a| addr(a)).collect(),
    }
}

async fn add(s: &TestStore, c: CustomerId, user: NewUser) {
    users::add_user(&s.app(), s.meta(c), user, Source::Manual)
        .await
        .expect("add");
}

async fn customer_of(s: &TestStore, partner: PartnerId, name: &str, domain: &str) -> CustomerId {
    let id = CustomerId::new();
    customers::create_customer(
        &s.app(),
        s.meta(id),
        partner,
        name.into(),
        3,
        vec![Domain::parse(domain).unwrap()],
    )
    .await
    .expect("create customer");
    id
}

/// U3, U4: the list tells users, distribution lists and public folders
/// apart (a filter per kind), aliases grouped under their primary.
async fn i14_users_list_filters_by_kind_with_aliases_grouped(s: TestStore) {
    let c = s.customer(10, &["kind.example"]).await;
    add(
        &s,
        c,
        new("ann@kind.example", Kind::User, &["a.lee@kind.example"]),
    )
    .await;
    add(&s, c, new("team@kind.example", Kind::DistributionList, &[])).await;
    add(&s, c, new("shared@kind.example", Kind::PublicFolder, &[])).await;
    s.project().await;
    let of = |kind| UserFilter {
        kind: Some(kind),
        ..Default::default()
    };
    let addresses = |p: queries::Page<roster_projections::users::UserRow>| {
        p.items.into_iter().map(|r| r.address).collect::<Vec<_>>()
    };
    let users = queries::list_users(&s.store, c, &of(Kind::User), None, 50)
        .await
        .unwrap();
    assert_eq!(users.items[0].aliases, vec!["a.lee@kind.example"]);
    assert_eq!(addresses(users), vec!["ann@kind.example"]);
    let lists = queries::list_users(&s.store, c, &of(Kind::DistributionList), None, 50)
        .await
        .unwrap();
    assert_eq!(addresses(lists), vec!["team@kind.example"]);
    let folders = queries::list_users(&s.store, c, &of(Kind::PublicFolder), None, 50)
        .await
        .unwrap();
    assert_eq!(addresses(folders), vec!["shared@kind.example"]);
    // An alias is never a row of its own.
    let all = queries::list_users(&s.store, c, &UserFilter::default(), None, 50)
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3);
}

/// T3 on the customer list: seats used are primary addresses of users
/// (active or flagged), never aliases, lists, public folders or
/// deactivated users; search by name, case-insensitive; scoped to the
/// partner (T1).
async fn t3_customer_list_counts_seats_of_users_only_and_searches(s: TestStore) {
    let partner = PartnerId::new();
    let alpha = customer_of(&s, partner, "Alpha Dental", "alpha.example").await;
    let beta = customer_of(&s, partner, "Beta Law", "beta.example").await;
    let other = customer_of(&s, PartnerId::new(), "Alpha Other", "other.example").await;
    add(
        &s,
        alpha,
        new("a@alpha.example", Kind::User, &["b@alpha.example"]),
    )
    .await;
    add(&s, alpha, new("c@alpha.example", Kind::User, &[])).await;
    add(
        &s,
        alpha,
        new("list@alpha.example", Kind::DistributionList, &[]),
    )
    .await;
    add(&s, alpha, new("pf@alpha.example", Kind::PublicFolder, &[])).await;
    add(&s, alpha, new("gone@alpha.example", Kind::User, &[])).await;
    users::edit_user(
        &s.app(),
        s.meta(alpha),
        addr("gone@alpha.example"),
        users::Edit {
            status: Some(Status::Deactivated),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    add(&s, other, new("x@other.example", Kind::User, &[])).await;
    s.project().await;

    let list = console::customer_summaries(&s.store, partner, None)
        .await
        .unwrap();
    let names: Vec<_> = list.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["Alpha Dental", "Beta Law"],
        "by name, own partner only"
    );
    assert_eq!(list[0].customer_id, alpha);
    assert_eq!((list[0].seats_used, list[0].seat_limit), (2, 3));
    assert!(!list[0].over_limit());
    assert_eq!(list[1].customer_id, beta);
    assert_eq!(list[1].seats_used, 0);
    assert_eq!(list[1].directory, None);
    assert_eq!(list[1].last_run_status, None);

    let found = console::customer_summaries(&s.store, partner, Some("  beta "))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name, "Beta Law");
    // LIKE wildcards in the search are text, not patterns.
    let none = console::customer_summaries(&s.store, partner, Some("%"))
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// D3.n: the consequences shown before the removal are confirmed are
/// exactly what the removal then does, and showing them changes nothing.
async fn d3n_domain_removal_preview_names_what_the_removal_does(s: TestStore) {
    let c = s.customer(10, &["stay.example", "gone.example"]).await;
    add(
        &s,
        c,
        new("u1@gone.example", Kind::User, &["x1@gone.example"]),
    )
    .await;
    add(&s, c, new("u2@gone.example", Kind::User, &[])).await;
    add(
        &s,
        c,
        new(
            "keep@stay.example",
            Kind::User,
            &["keep@gone.example", "k2@stay.example"],
        ),
    )
    .await;
    s.project().await;
    let app = s.app();
    let gone = Domain::parse("gone.example").unwrap();
    let preview = customers::removal_preview(&app, c, &gone).await.unwrap();
    assert_eq!(
        preview.users_deleted,
        vec![addr("u1@gone.example"), addr("u2@gone.example")]
    );
    assert_eq!(preview.aliases_removed, vec![addr("keep@gone.example")]);
    s.project().await;
    let live = queries::list_users(&s.store, c, &UserFilter::default(), None, 50)
        .await
        .unwrap();
    assert_eq!(live.items.len(), 3, "a preview changes nothing");

    let removal = customers::remove_domain(&app, s.meta(c), gone)
        .await
        .unwrap();
    assert_eq!(removal.users_deleted, preview.users_deleted);
    assert_eq!(removal.aliases_removed, preview.aliases_removed);
    // Another customer's domain: nothing to show (T1).
    let other = s.customer(10, &["elsewhere.example"]).await;
    add(&s, other, new("o@elsewhere.example", Kind::User, &[])).await;
    let elsewhere = Domain::parse("elsewhere.example").unwrap();
    let foreign = customers::removal_preview(&app, c, &elsewhere)
        .await
        .unwrap();
    assert!(foreign.users_deleted.is_empty() && foreign.aliases_removed.is_empty());
}

/// The dashboard: licence usage (T3), the enabled source with its last and
/// next run (D4), a run held by the mass-deletion guard (D3.s), conflicts
/// that need attention (D3.m) and the recent activity.
async fn i14_dashboard_shows_licence_directory_held_runs_and_conflicts(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 20, 0).await;
    s.project().await;
    let fresh = console::dashboard(&s.store, sc.customer, 10).await.unwrap();
    assert_eq!(
        fresh.directory.enabled,
        Some(roster_events::DirectoryKind::Ldap)
    );
    assert!(fresh.directory.last_run.is_none() && fresh.directory.next_run_at.is_none());
    let sync = s.sync();
    let by = Actor::System("test".into());
    let first = sync
        .run_now(sc.customer, SyncTrigger::Manual, by.clone())
        .await
        .unwrap();
    assert!(matches!(first, RunOutcome::Completed { .. }), "{first:?}");
    let admin = sc.slapd.admin().await.unwrap();
    admin
        .add(&roster_testkit::organizational_unit(
            "ou=Empty,dc=example,dc=com",
        ))
        .await
        .unwrap();
    sync.save_settings(
        &s.meta(sc.customer),
        config(
            settings_for(&sc.slapd, "ou=Empty,dc=example,dc=com"),
            DeleteAfter::Days7,
        ),
        SettingsChange::default(),
    )
    .await
    .unwrap();
    s.clock.advance(chrono::Duration::minutes(5));
    let RunOutcome::Held {
        run_id, would_flag, ..
    } = sync
        .run_now(sc.customer, SyncTrigger::Manual, by.clone())
        .await
        .unwrap()
    else {
        panic!("expected a held run");
    };
    s.project().await;
    let d = console::dashboard(&s.store, sc.customer, 10).await.unwrap();
    let directory_users = d.licence.users_active;
    assert!(directory_users >= 18, "{:?}", d.licence);
    assert_eq!(d.licence.seats_used, directory_users);
    assert_eq!(d.held_runs.len(), 1);
    assert_eq!(d.held_runs[0].run_id.to_string(), run_id.to_string());
    let last = d.directory.last_run.clone().expect("last run");
    assert_eq!(last.run_id.to_string(), run_id.to_string());
    assert_eq!(last.status, roster_projections::directory::RunStatus::Held);
    let interval = d.directory.interval.clone().expect("interval");
    let every: PollInterval = serde_json::from_value(serde_json::Value::String(interval)).unwrap();
    assert_eq!(
        d.directory.next_run_at,
        Some(last.started_at + every.duration().num_microseconds().unwrap())
    );
    assert_eq!(d.conflicts, 0, "held: nobody flagged");
    assert!(!d.recent.is_empty() && d.recent.len() <= 10);
    assert!(d.recent.windows(2).all(|w| w[0].position > w[1].position));

    sync.confirm(sc.customer, run_id, by).await.unwrap();
    s.project().await;
    let d = console::dashboard(&s.store, sc.customer, 10).await.unwrap();
    assert!(d.held_runs.is_empty());
    assert_eq!(d.conflicts, would_flag as i64, "the held flags raised");
    assert_eq!(
        d.licence.seats_used, directory_users,
        "flagged users keep a seat"
    );
}

/// E2: a user's history links the changes an import made to the import's
/// page: of the correlation ids of the user's events, the import's is
/// found (before, the console looked for Import events in the audit trail,
/// which never holds them, and linked none); a request's is not, nor is
/// another customer's import.
async fn e2_history_finds_the_import_that_changed_a_user(s: TestStore) {
    use roster_app::imports::{self, ImportSettings, InputKind, ReviewInput};
    let c = s.customer(10, &["imp.example"]).await;
    let other = s.customer(10, &["other-imp.example"]).await;
    add(&s, c, new("ann@imp.example", Kind::User, &[])).await;
    let by = Actor::System("test".into());
    let mut ids = Vec::new();
    for (customer, csv) in [
        (c, "email,department\r\nann@imp.example,Sales\r\n"),
        (other, "email\r\nbob@other-imp.example\r\n"),
    ] {
        let id = imports::review(
            &s.app(),
            &by,
            customer,
            ReviewInput {
                bytes: csv.as_bytes().to_vec().into(),
                kind: InputKind::Body,
                file_name: None,
                options: roster_csv::ImportOptions::default(),
            },
            &ImportSettings::default(),
        )
        .await
        .expect("review");
        imports::commit(&s.app(), &by, customer, id, &ImportSettings::default())
            .await
            .expect("commit");
        ids.push(id);
    }
    s.project().await;
    let history = queries::history(&s.store, c, "ann@imp.example")
        .await
        .unwrap();
    let mut correlations: Vec<CorrelationId> = history.iter().map(|e| e.correlation_id).collect();
    assert!(correlations.contains(&ids[0].into()), "{history:?}");
    correlations.push(ids[1].into());
    let found = console::imports_among(&s.store, c, &correlations)
        .await
        .unwrap();
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        vec![CorrelationId::from(ids[0])]
    );
}

both_backends!(
    i14_users_list_filters_by_kind_with_aliases_grouped,
    t3_customer_list_counts_seats_of_users_only_and_searches,
    d3n_domain_removal_preview_names_what_the_removal_does,
    i14_dashboard_shows_licence_directory_held_runs_and_conflicts,
    e2_history_finds_the_import_that_changed_a_user,
);
