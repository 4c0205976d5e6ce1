//! Directory sync against a real (AD-like) OpenLDAP, on PostgreSQL and on
//! SQLite: the rules of SPEC section 3 through the sync service.

use std::sync::Arc;

use roster_domain::snapshot::{DirectoryReader, ReadError};
use roster_events::*;
use roster_projections::directory::RunStatus;
use roster_projections::queries::{self, UserFilter};
use roster_projections::users::UserRow;
use roster_store::{Clock, Secret};
use roster_sync::{ConflictAction, ReaderFactory, RunOutcome, SettingsChange};
use roster_tests::backend::addr;
use roster_tests::sync::{config, scenario, settings_for, DOMAIN};
use roster_tests::{both_backends, TestStore};

fn by() -> Actor {
    Actor::System("test".into())
}

async fn run(s: &TestStore, c: CustomerId) -> RunOutcome {
    s.sync()
        .run_now(c, SyncTrigger::Manual, by())
        .await
        .expect("run")
}

fn counts(o: &RunOutcome) -> SyncCounts {
    match o {
        RunOutcome::Completed { counts, .. } => *counts,
        other => panic!("expected a completed run, got {other:?}"),
    }
}

async fn all(s: &TestStore, c: CustomerId, status: Option<Status>) -> Vec<UserRow> {
    let mut out = Vec::new();
    let mut page = None;
    loop {
        let p = queries::list_users(
            &s.store,
            c,
            &UserFilter {
                status,
                ..Default::default()
            },
            page.as_deref(),
            1000,
        )
        .await
        .unwrap();
        out.extend(p.items);
        page = p.next_page;
        if page.is_none() {
            return out;
        }
    }
}

async fn user(s: &TestStore, c: CustomerId, a: &str) -> UserRow {
    queries::user_by_address(&s.store, c, a)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{a} is not a live user"))
}

/// D3.a, D3.b, D3.c, D3.d, D3.e, U4; D3.f: a second run with no change appends no user event.
async fn d3e_d3f_a_first_sync_adds_the_directory_and_a_resync_changes_nothing(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 30, 3).await;
    let first = counts(&run(&s, sc.customer).await);
    // Every 10th generated user is disabled: 27 users and 2 mail-enabled groups are added.
    assert_eq!(first.added, 27 + 2, "{first:?}");
    let users = all(&s, sc.customer, None).await;
    assert_eq!(users.len(), 29);
    let u1 = sc.data.user(1);
    let row = user(&s, sc.customer, u1.mail.as_deref().unwrap()).await;
    assert_eq!(row.source, Source::Ldap);
    assert_eq!(
        row.profile.first_name.as_deref(),
        Some(u1.given_name.as_str())
    );
    assert_eq!(row.profile.company, u1.company);
    assert_eq!(row.profile.notes, u1.info, "AD info is the notes field");
    // D3.c: smtp: aliases mapped, the X500: entry ignored.
    assert_eq!(row.aliases.len(), 2, "{:?}", row.aliases);
    assert!(row.directory_id.is_some());
    let list = users
        .iter()
        .find(|u| u.kind == Kind::DistributionList)
        .expect("a list (U4)");
    assert!(!list.members.is_empty());
    // A second run: nothing changed, so no user event is appended.
    let head = s.store.head_position().await.unwrap();
    let second = counts(&run(&s, sc.customer).await);
    assert_eq!(
        second.added + second.updated + second.flagged,
        0,
        "{second:?}"
    );
    only_runs_bookkeeping_since(&s, head).await;
}

/// B4: only runs' own start, completion and report were appended since
/// `head`: no user event.
async fn only_runs_bookkeeping_since(s: &TestStore, head: i64) {
    let appended = s.store.read_from(head, 100).await.unwrap();
    assert!(
        appended
            .iter()
            .all(|e| e.aggregate_type == DIRECTORY_AGGREGATE
                || e.aggregate_type == SYNC_REPORT_AGGREGATE),
        "only the run's own start, completion and report (B4): {:?}",
        appended.iter().map(|e| &e.event_type).collect::<Vec<_>>()
    );
}

/// D3.h, D3.i, D3.j, D3.k, U5, U6.
async fn d3h_to_d3k_missing_and_disabled_users_are_flagged_deleted_after_the_delay_and_come_back(
    s: TestStore,
) {
    s.spawn_projector();
    let sc = scenario(&s, 12, 0).await;
    run(&s, sc.customer).await;
    let admin = sc.slapd.admin().await.unwrap();
    let gone = sc.data.user(1);
    let disabled = sc.data.user(2);
    let gone_addr = gone.mail.clone().unwrap();
    let gone_id = user(&s, sc.customer, &gone_addr).await.user_id;
    // A rule on the user that will go (U5).
    roster_app::users::user_command(&s.app(), s.meta(sc.customer), &addr(&gone_addr), || {
        roster_domain::UserCommand::AddRule {
            rule_id: RuleId::new(),
            kind: RuleKind::Allow,
            value: "partner.example".into(),
        }
    })
    .await
    .unwrap();
    admin.delete(&gone.dn).await.unwrap();
    admin.set_disabled(&disabled.dn, true).await.unwrap();
    let c = counts(&run(&s, sc.customer).await);
    assert_eq!(c.flagged, 2, "{c:?}");
    let flagged = all(&s, sc.customer, Some(Status::PendingDeletion)).await;
    let reasons: Vec<(&str, &str)> = flagged
        .iter()
        .map(|u| (u.address.as_str(), u.flag_reason.unwrap().as_str()))
        .collect();
    assert!(
        reasons.contains(&(gone_addr.as_str(), "missing")),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(disabled.mail.as_deref().unwrap(), "disabled")),
        "{reasons:?}"
    );
    let g = flagged.iter().find(|u| u.address == gone_addr).unwrap();
    assert_eq!(
        g.delete_at,
        Some(
            s.clock.now().timestamp_micros()
                + chrono::Duration::days(7).num_microseconds().unwrap()
        )
    );
    assert_eq!(g.rules.len(), 1, "U5: rules kept while flagged");
    // D3.j: enabled again before the delay: unflagged.
    admin.set_disabled(&disabled.dn, false).await.unwrap();
    let c = counts(&run(&s, sc.customer).await);
    assert_eq!(c.unflagged, 1);
    assert_eq!(
        user(&s, sc.customer, disabled.mail.as_deref().unwrap())
            .await
            .status,
        Status::Active
    );
    // D3.i: nothing is deleted before the delay; after it, the reaper deletes.
    s.clock.advance(chrono::Duration::days(6));
    assert_eq!(s.sync().reap().await.unwrap(), 0);
    s.clock.advance(chrono::Duration::days(2));
    assert_eq!(s.sync().reap().await.unwrap(), 1);
    let deleted = all(&s, sc.customer, Some(Status::Deleted)).await;
    assert_eq!(deleted.len(), 1);
    assert!(
        deleted[0].rules.is_empty(),
        "U5: rules removed with the user"
    );
    // D3.k: active in the directory again: added back as a return of the same user (U6).
    admin
        .add(&gone.entry(roster_testkit::Style::AdLike))
        .await
        .unwrap();
    let c = counts(&run(&s, sc.customer).await);
    assert_eq!(c.returned, 1, "{c:?}");
    let back = user(&s, sc.customer, &gone_addr).await;
    assert_eq!(back.user_id, gone_id);
    let history = queries::history(&s.store, sc.customer, &gone_addr)
        .await
        .unwrap();
    assert!(history.iter().any(|e| e.event_type == "UserReturned"));
}

/// The production LDAP reader for `connection` with `options` (the
/// test readers below differ in their hooks only).
fn ldap_reader(
    connection: &Connection,
    secret: Option<&Secret>,
    options: roster_directory::ReaderOptions,
) -> Result<Box<dyn DirectoryReader>, ReadError> {
    let Connection::Ldap(settings) = connection else {
        unreachable!()
    };
    Ok(Box::new(roster_directory::LdapReader::with_options(
        settings.clone(),
        secret.map(|s| s.expose().to_string()).unwrap_or_default(),
        options,
    )))
}

/// A reader whose server dies after its first page.
struct KillAfterFirstPage {
    pid: u32,
}

impl ReaderFactory for KillAfterFirstPage {
    fn reader(
        &self,
        connection: &Connection,
        secret: Option<&Secret>,
    ) -> Result<Box<dyn DirectoryReader>, ReadError> {
        let pid = self.pid;
        let hook: roster_directory::PageHook = Arc::new(move |e: &roster_directory::PageEvent| {
            if e.page == 1 {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        });
        ldap_reader(
            connection,
            secret,
            roster_directory::ReaderOptions {
                page_size: 5,
                member_range_step: None,
                on_page: Some(hook),
                ..Default::default()
            },
        )
    }
}

/// D3.r: a read that does not complete raises no flag and deletes nothing;
/// the run is recorded as failed with the reason.
async fn d3r_a_read_cut_off_mid_way_flags_nobody(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 20, 0).await;
    run(&s, sc.customer).await;
    let before = all(&s, sc.customer, None).await;
    let mut sync = s.sync();
    sync.readers = Arc::new(KillAfterFirstPage {
        pid: sc.slapd.pid().unwrap(),
    });
    let outcome = sync
        .run_now(sc.customer, SyncTrigger::Manual, by())
        .await
        .unwrap();
    let RunOutcome::Failed {
        code,
        reason,
        run_id,
    } = outcome
    else {
        panic!("expected a failed run, got {outcome:?}");
    };
    assert!(
        code == "incomplete" || code == "refused" || code == "timeout",
        "{code}: {reason}"
    );
    assert_eq!(
        all(&s, sc.customer, Some(Status::PendingDeletion))
            .await
            .len(),
        0
    );
    assert_eq!(all(&s, sc.customer, None).await, before);
    let r = roster_projections::directory::run(&s.store, sc.customer, &run_id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.reason.as_deref(), Some(reason.as_str()));
}

/// D3.s: a base DN typo that hides everyone is held, flags nobody, and waits
/// for confirm or discard.
async fn d3s_a_base_dn_typo_is_held_and_waits_for_confirm_or_discard(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 20, 0).await;
    run(&s, sc.customer).await;
    let admin = sc.slapd.admin().await.unwrap();
    admin
        .add(&roster_testkit::organizational_unit(
            "ou=Empty,dc=example,dc=com",
        ))
        .await
        .unwrap();
    let sync = s.sync();
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
    let held = sync
        .run_now(sc.customer, SyncTrigger::Manual, by())
        .await
        .unwrap();
    let RunOutcome::Held {
        run_id,
        would_flag,
        directory_users,
    } = held
    else {
        panic!("expected a held run, got {held:?}");
    };
    assert_eq!((would_flag, directory_users), (18, 18));
    assert!(
        all(&s, sc.customer, Some(Status::PendingDeletion))
            .await
            .is_empty(),
        "held: nobody flagged"
    );
    // Discard: nothing happens.
    sync.discard(&s.meta(sc.customer), run_id).await.unwrap();
    assert!(all(&s, sc.customer, Some(Status::PendingDeletion))
        .await
        .is_empty());
    assert!(
        sync.discard(&s.meta(sc.customer), run_id).await.is_err(),
        "decided once"
    );
    // Held again; an administrator confirms: the flags are raised.
    let RunOutcome::Held { run_id, .. } = sync
        .run_now(sc.customer, SyncTrigger::Manual, by())
        .await
        .unwrap()
    else {
        panic!("expected held");
    };
    sync.confirm(sc.customer, run_id, by()).await.unwrap();
    assert_eq!(
        all(&s, sc.customer, Some(Status::PendingDeletion))
            .await
            .len(),
        18
    );
    let r = roster_projections::directory::run(&s.store, sc.customer, &run_id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, RunStatus::Confirmed);
}

/// D3.t: a dry run returns the full plan and changes nothing.
async fn d3t_a_dry_run_changes_nothing(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 10, 1).await;
    let head = s.store.head_position().await.unwrap();
    let plan = s.sync().dry_run(sc.customer).await.unwrap().unwrap();
    assert_eq!(plan.counts.added, 9 + 1);
    assert!(plan.changes.iter().filter(|c| c.action == "add").count() == 10);
    assert_eq!(
        s.store.head_position().await.unwrap(),
        head,
        "nothing appended"
    );
    assert!(all(&s, sc.customer, None).await.is_empty());
}

/// D3.g: a manual user the directory also has is supplemented, keeps its
/// source and is never flagged.
async fn d3g_manual_users_are_supplemented_and_never_flagged(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 5, 0).await;
    let u = sc.data.user(1);
    let mail = u.mail.clone().unwrap();
    roster_app::users::add_user(
        &s.app(),
        s.meta(sc.customer),
        roster_app::users::NewUser {
            address: addr(&mail),
            kind: Kind::User,
            profile: Profile::default(),
            aliases: vec![],
        },
        Source::Manual,
    )
    .await
    .unwrap();
    run(&s, sc.customer).await;
    let row = user(&s, sc.customer, &mail).await;
    assert_eq!(row.source, Source::Manual);
    assert_eq!(
        row.profile.first_name.as_deref(),
        Some(u.given_name.as_str())
    );
    sc.slapd.admin().await.unwrap().delete(&u.dn).await.unwrap();
    let c = counts(&run(&s, sc.customer).await);
    assert_eq!(c.flagged, 0);
    assert_eq!(user(&s, sc.customer, &mail).await.status, Status::Active);
}

/// D3.m: Delete, Ignore (not flagged again until the directory returns the
/// user), Deactivate.
async fn d3m_conflict_actions(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 8, 0).await;
    run(&s, sc.customer).await;
    let admin = sc.slapd.admin().await.unwrap();
    let (a, b, c) = (sc.data.user(1), sc.data.user(2), sc.data.user(3));
    for u in [&a, &b, &c] {
        admin.delete(&u.dn).await.unwrap();
    }
    run(&s, sc.customer).await;
    let mail = |u: &roster_testkit::User| addr(u.mail.as_deref().unwrap());
    let sync = s.sync();
    let (r, _) = sync
        .conflict_action(&s.meta(sc.customer), ConflictAction::Delete, &[mail(&a)])
        .await
        .unwrap();
    assert!(r[0].1.is_ok());
    let (r, _) = sync
        .conflict_action(
            &s.meta(sc.customer),
            ConflictAction::Ignore,
            &[mail(&b), addr("nobody@example.org")],
        )
        .await
        .unwrap();
    assert!(r.iter().any(|(x, res)| x == &mail(&b) && res.is_ok()));
    assert!(r
        .iter()
        .any(|(x, res)| x.as_str() == "nobody@example.org" && res.is_err()));
    let (r, pos) = sync
        .conflict_action(
            &s.meta(sc.customer),
            ConflictAction::Deactivate,
            &[mail(&c)],
        )
        .await
        .unwrap();
    assert!(r[0].1.is_ok());
    s.app().settle(pos).await;
    let head_status = |x: &roster_testkit::User| {
        let x = x.mail.clone().unwrap();
        let s = &s;
        async move {
            queries::user_by_address(&s.store, sc.customer, &x)
                .await
                .unwrap()
                .map(|u| u.status)
        }
    };
    assert_eq!(head_status(&a).await, None, "deleted now");
    assert_eq!(head_status(&b).await, Some(Status::Active));
    assert_eq!(head_status(&c).await, Some(Status::Deactivated));
    // The ignored and the deactivated users are not flagged again for the same absence.
    assert_eq!(counts(&run(&s, sc.customer).await).flagged, 0);
    // The directory returns b, then loses it again: flagged again.
    admin
        .add(&b.entry(roster_testkit::Style::AdLike))
        .await
        .unwrap();
    run(&s, sc.customer).await;
    admin.delete(&b.dn).await.unwrap();
    assert_eq!(counts(&run(&s, sc.customer).await).flagged, 1);
    // Not a conflict: refused per address.
    let (r, _) = sync
        .conflict_action(&s.meta(sc.customer), ConflictAction::Ignore, &[mail(&c)])
        .await
        .unwrap();
    assert!(r[0].1.is_err());
}

/// D3.o exceptions and D3.p additions.
async fn d3o_d3p_exceptions_and_additions(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 6, 0).await;
    run(&s, sc.customer).await;
    let objects = roster_projections::directory::object_summaries(&s.store, sc.customer)
        .await
        .unwrap();
    assert_eq!(objects.len(), 6, "the directory as last read");
    let u1 = sc.data.user(1);
    let id = objects
        .values()
        .find(|o| o.mail.as_deref() == u1.mail.as_deref())
        .unwrap()
        .id
        .clone();
    let sync = s.sync();
    sync.add_exception(&s.meta(sc.customer), Exception::User { object_id: id })
        .await
        .unwrap();
    // Excluded: not flagged when it leaves, not updated.
    let admin = sc.slapd.admin().await.unwrap();
    admin.delete(&u1.dn).await.unwrap();
    assert_eq!(counts(&run(&s, sc.customer).await).flagged, 0);
    // Additions: created at once with the directory as source, never flagged while listed.
    let a = sync
        .add_addition(&s.meta(sc.customer), addr("newhire@example.org"))
        .await
        .unwrap();
    s.app().settle(a.last).await;
    let row = user(&s, sc.customer, "newhire@example.org").await;
    assert_eq!(row.source, Source::Ldap);
    assert_eq!(counts(&run(&s, sc.customer).await).flagged, 0);
    sync.remove_addition(&s.meta(sc.customer), addr("newhire@example.org"))
        .await
        .unwrap();
    assert_eq!(
        counts(&run(&s, sc.customer).await).flagged,
        1,
        "off the list and not in the directory"
    );
    assert!(sync
        .add_addition(&s.meta(sc.customer), addr("x@unmanaged.example"))
        .await
        .is_err());
}

/// D3.q: disabling sync keeps every user and raises no flags; existing
/// flags still expire.
async fn d3q_disabling_keeps_users_and_flags_still_expire(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 6, 0).await;
    run(&s, sc.customer).await;
    let admin = sc.slapd.admin().await.unwrap();
    admin.delete(&sc.data.user(1).dn).await.unwrap();
    run(&s, sc.customer).await;
    let sync = s.sync();
    sync.disable(&s.meta(sc.customer)).await.unwrap();
    admin.delete(&sc.data.user(2).dn).await.unwrap();
    assert!(
        sync.run_now(sc.customer, SyncTrigger::Manual, by())
            .await
            .is_err(),
        "no run while disabled"
    );
    assert!(
        sync.schedule(true).await.unwrap().is_empty(),
        "the scheduler skips it"
    );
    assert_eq!(
        all(&s, sc.customer, None).await.len(),
        6,
        "5 active, 1 flagged: every user kept"
    );
    s.clock.advance(chrono::Duration::days(8));
    assert_eq!(
        sync.reap().await.unwrap(),
        1,
        "the flag raised before disabling still expires"
    );
    assert_eq!(all(&s, sc.customer, None).await.len(), 5);
}

/// D4: one sync per customer at a time; the scheduler runs what is due.
async fn d4_one_sync_at_a_time_and_the_schedule(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 3, 0).await;
    let sync = s.sync();
    let first = sync
        .start(sc.customer, SyncTrigger::Manual, by())
        .await
        .unwrap();
    let second = sync.start(sc.customer, SyncTrigger::Manual, by()).await;
    assert!(
        matches!(second, Err(roster_sync::SyncError::Directory(roster_domain::DirectoryError::AlreadyRunning(r))) if r == first)
    );
    sync.execute(sc.customer, first, None).await.unwrap();
    // Due at once (never ran on schedule), then not for 6 hours.
    s.clock.advance(chrono::Duration::minutes(1));
    assert_eq!(
        sync.schedule(true).await.unwrap().len(),
        0,
        "the manual run just now counts"
    );
    s.clock.advance(chrono::Duration::hours(6));
    let due = roster_projections::directory::due(&s.store, s.clock.now())
        .await
        .unwrap();
    if due.is_empty() {
        type StateRow = (String, Option<String>, Option<String>, Option<i64>);
        let rows: Vec<StateRow> = roster_store::with_db!(s.store.db(), |p| {
            sqlx::query_as("SELECT customer_id, enabled_kind, ldap_interval, last_started_at FROM directory_state_v1").fetch_all(p).await.unwrap()
        });
        eprintln!("STATE {rows:?} now {}", s.clock.now().timestamp_micros());
    }
    assert_eq!(due.len(), 1, "due: {due:?}");
    assert_eq!(sync.schedule(true).await.unwrap().len(), 1);
    assert_eq!(sync.schedule(true).await.unwrap().len(), 0);
}

/// A renamed user (same object, new primary) keeps its identity, rules and history.
async fn d3_a_rename_keeps_the_user(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 4, 0).await;
    run(&s, sc.customer).await;
    let u = sc.data.user(1);
    let old = u.mail.clone().unwrap();
    let id = user(&s, sc.customer, &old).await.user_id;
    let admin = sc.slapd.admin().await.unwrap();
    let new = format!("renamed.{old}");
    admin.replace(&u.dn, "mail", &[new.as_str()]).await.unwrap();
    admin
        .replace(
            &u.dn,
            "proxyAddresses",
            &[format!("SMTP:{new}"), format!("smtp:{old}")],
        )
        .await
        .unwrap();
    let c = counts(&run(&s, sc.customer).await);
    assert_eq!((c.renamed, c.flagged, c.added), (1, 0, 0), "{c:?}");
    let row = user(&s, sc.customer, &new).await;
    assert_eq!(row.user_id, id);
    assert_eq!(
        row.aliases,
        vec![old.clone()],
        "the old primary stays on as an alias"
    );
    let history = queries::history(&s.store, sc.customer, &new).await.unwrap();
    assert_eq!(
        history.first().map(|e| e.event_type.as_str()),
        Some("UserAdded"),
        "history spans the rename"
    );
}

/// D5: settings that cannot work are refused when saved, with what to fix.
async fn d5_invalid_settings_are_refused_precisely(s: TestStore) {
    let sc = scenario(&s, 1, 0).await;
    let sync = s.sync();
    let mut bad = settings_for(&sc.slapd, "dc=example,dc=com");
    bad.filter = Some("(&(department=Sales)".into());
    let err = sync
        .save_settings(
            &s.meta(sc.customer),
            config(bad, DeleteAfter::Days7),
            SettingsChange::default(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("RFC 4515"), "{err}");
    let mut bad = settings_for(&sc.slapd, "not a dn");
    bad.ssl = true;
    bad.starttls = true;
    let err = sync
        .save_settings(
            &s.meta(sc.customer),
            config(bad, DeleteAfter::Days7),
            SettingsChange::default(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not both"), "{err}");
    let fresh = s.customer(10, &["fresh.example"]).await;
    let err = sync
        .save_settings(
            &s.meta(fresh),
            config(
                settings_for(&sc.slapd, "dc=example,dc=com"),
                DeleteAfter::Days7,
            ),
            SettingsChange::default(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("password is required"), "{err}");
    // Test connection reports the specific failure.
    let mut wrong = settings_for(&sc.slapd, "dc=example,dc=com");
    wrong.port = roster_tests::process::free_port();
    // D7: another port without the password is refused, and connects nowhere.
    let err = sync
        .test(
            &s.meta(sc.customer),
            Some((config(wrong.clone(), DeleteAfter::Days7), None)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, roster_sync::SyncError::SecretRequired(m) if m.starts_with("port")),
        "{err}"
    );
    let t = sync
        .test(
            &s.meta(sc.customer),
            Some((
                config(wrong, DeleteAfter::Days7),
                Some(Secret::new(sc.slapd.root_password())),
            )),
        )
        .await
        .unwrap();
    assert_eq!((t.ok, t.code.as_deref()), (false, Some("refused")), "{t:?}");
    let t = sync
        .test(
            &s.meta(sc.customer),
            Some((
                config(
                    settings_for(&sc.slapd, "dc=example,dc=com"),
                    DeleteAfter::Days7,
                ),
                Some(Secret::new("wrong")),
            )),
        )
        .await
        .unwrap();
    assert_eq!(
        (t.ok, t.code.as_deref()),
        (false, Some("bind_rejected")),
        "{t:?}"
    );
    let t = sync.test(&s.meta(sc.customer), None).await.unwrap();
    assert!(t.ok, "{t:?}");
    assert_eq!(t.users, Some(1));
}

/// D7: the bind password is nowhere in the database in plaintext: not in the
/// log, not in a view, not in the secrets table.
async fn d7_the_bind_password_is_never_stored_in_plaintext(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 3, 0).await;
    run(&s, sc.customer).await;
    let password = sc.slapd.root_password();
    let dump = roster_tests::backend::dump_everything(&s).await;
    assert!(dump.len() > 1000, "the dump holds the data");
    assert!(dump.contains("example.org"), "the dump holds the users");
    assert!(
        !dump.contains(password),
        "the plaintext password is stored somewhere"
    );
    let secret = s.sync().directory(sc.customer).await.unwrap();
    assert!(secret.secret_set.contains(&DirectoryKind::Ldap));
    let _ = DOMAIN;
}

/// Waits until the customer has no run going and returns its runs' statuses
/// by id.
async fn settled_runs(s: &TestStore, c: CustomerId) -> std::collections::BTreeMap<String, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let dir = s.sync().directory(c).await.unwrap();
        if dir.running.is_none() {
            s.project().await;
            let sql = format!(
                "SELECT run_id, status FROM {} WHERE customer_id = $1",
                roster_projections::directory::RUNS
            );
            let rows: Vec<(String, String)> = roster_store::with_db!(s.store.db(), |p| {
                sqlx::query_as(&sql)
                    .bind(c.to_string())
                    .fetch_all(p)
                    .await
                    .unwrap()
            });
            return rows.into_iter().collect();
        }
        assert!(std::time::Instant::now() < deadline, "a run is still going");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A replica that stops holding `run`: SIGTERM with no grace, so the run is
/// handed back (its lease expires now).
async fn stop_replica(replica: &roster_sync::SyncService) {
    replica.drain().await;
}

fn replica(s: &TestStore) -> roster_sync::SyncService {
    let mut sync = s.sync();
    sync.queue = Arc::new(roster_sync::RunQueue::new(roster_sync::RunConfig {
        shutdown_grace: std::time::Duration::ZERO,
        ..Default::default()
    }));
    sync
}

/// Issue 18: a run whose replica stopped is marked `interrupted` by another
/// replica, which starts the customer's run again at once and completes it.
async fn d4_a_stopped_replicas_run_is_interrupted_and_run_again_by_another(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 5, 0).await;
    let dead = replica(&s);
    let run = dead
        .start(sc.customer, SyncTrigger::Scheduled, by())
        .await
        .unwrap();
    stop_replica(&dead).await;
    let other = replica(&s);
    assert_eq!(other.sweep_leases().await.unwrap(), 1);
    assert_eq!(other.sweep_leases().await.unwrap(), 0, "taken over once");
    let runs = settled_runs(&s, sc.customer).await;
    assert_eq!(
        runs.get(&run.to_string()).map(String::as_str),
        Some("interrupted"),
        "{runs:?}"
    );
    let completed: Vec<_> = runs.iter().filter(|(_, st)| *st == "completed").collect();
    assert_eq!(completed.len(), 1, "run again and completed: {runs:?}");
    let row = roster_projections::directory::run(&s.store, sc.customer, &run.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.code.as_deref(), Some("interrupted"));
    assert!(row
        .reason
        .unwrap_or_default()
        .contains("stopped renewing its lease"));
    assert_eq!(all(&s, sc.customer, None).await.len(), 5);
}

/// Issue 18: after a crash, Sync Now works as soon as the crashed run's
/// lease expired (not after the 30-minute run limit): the old run is
/// interrupted and the new one starts.
async fn d4_sync_now_after_a_crash_takes_the_expired_run_over(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 3, 0).await;
    let dead = replica(&s);
    let run = dead
        .start(sc.customer, SyncTrigger::Manual, by())
        .await
        .unwrap();
    let alive = replica(&s);
    assert!(
        matches!(alive.start(sc.customer, SyncTrigger::Manual, by()).await,
            Err(roster_sync::SyncError::Directory(roster_domain::DirectoryError::AlreadyRunning(r))) if r == run),
        "a live run's lease is respected"
    );
    stop_replica(&dead).await;
    let now = alive
        .start(sc.customer, SyncTrigger::Manual, by())
        .await
        .expect("Sync Now once the lease expired");
    alive.execute(sc.customer, now, None).await.unwrap();
    let runs = settled_runs(&s, sc.customer).await;
    assert_eq!(
        runs.get(&run.to_string()).map(String::as_str),
        Some("interrupted")
    );
    assert_eq!(
        runs.get(&now.to_string()).map(String::as_str),
        Some("completed")
    );
}

/// Issue 18: of replicas scheduling at the same moment from the same view,
/// one starts the due run (its start is claimed in the log).
async fn d4_a_due_run_is_started_once_across_replicas(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 3, 0).await;
    let (a, b, c) = (replica(&s), replica(&s), replica(&s));
    // The same view for all three: sync enabled, never run, so due.
    s.project().await;
    let (x, y, z) = tokio::join!(a.schedule(true), b.schedule(true), c.schedule(true));
    let started = x.unwrap().len() + y.unwrap().len() + z.unwrap().len();
    assert_eq!(started, 1);
    let runs = settled_runs(&s, sc.customer).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(a.schedule(true).await.unwrap().len(), 0, "not due again");
}

/// Issue 18, D3.i: replicas reaping at the same moment delete each user
/// whose delay passed once (each deletion is decided by the user aggregate
/// and appended only if nothing came first).
async fn d3i_replicas_reaping_at_once_delete_each_user_once(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 12, 0).await;
    run(&s, sc.customer).await;
    let admin = sc.slapd.admin().await.unwrap();
    for i in [1, 3, 5] {
        admin.delete(&sc.data.user(i).dn).await.unwrap();
    }
    let c = counts(&run(&s, sc.customer).await);
    assert_eq!(c.flagged, 3, "{c:?}");
    s.clock.advance(chrono::Duration::days(8));
    s.project().await;
    let (a, b, c) = (replica(&s), replica(&s), replica(&s));
    let (x, y, z) = tokio::join!(a.reap(), b.reap(), c.reap());
    // A replica whose append lost the race deletes nothing this pass; the
    // next pass finds what is left.
    let deleted = x.unwrap() + y.unwrap() + z.unwrap() + a.reap().await.unwrap();
    assert_eq!(deleted, 3);
    let (events, users): (i64, i64) = roster_store::with_db!(s.store.db(), |p| {
        sqlx::query_as(
            "SELECT count(*), count(DISTINCT aggregate_id) FROM events
             WHERE aggregate_type = $1 AND event_type = 'UserDeleted'",
        )
        .bind(roster_events::USER_AGGREGATE)
        .fetch_one(p)
        .await
        .unwrap()
    });
    assert_eq!((events, users), (3, 3));
}

/// A reader that, at its first page, reads the run's recorded progress
/// while the read is still going (issue 15).
struct WatchProgress {
    store: roster_store::Store,
    customer: CustomerId,
    handle: tokio::runtime::Handle,
    seen: Arc<std::sync::Mutex<Vec<Option<roster_projections::directory::RunProgress>>>>,
}

impl ReaderFactory for WatchProgress {
    fn reader(
        &self,
        connection: &Connection,
        secret: Option<&Secret>,
    ) -> Result<Box<dyn DirectoryReader>, ReadError> {
        let (store, customer, handle, seen) = (
            self.store.clone(),
            self.customer,
            self.handle.clone(),
            self.seen.clone(),
        );
        let hook: roster_directory::PageHook = Arc::new(move |e: &roster_directory::PageEvent| {
            if e.page != 1 {
                return;
            }
            // The reader's thread drives a runtime of its own: the read
            // model is asked from a plain thread on the test's runtime.
            let (store, handle) = (store.clone(), handle.clone());
            let p = std::thread::spawn(move || {
                handle.block_on(async {
                    let runs = roster_projections::directory::runs(&store, customer, None, 1)
                        .await
                        .unwrap();
                    let run = runs[0].run_id.to_string();
                    roster_projections::directory::run_progress(&store, customer, &run)
                        .await
                        .unwrap()
                })
            })
            .join()
            .unwrap();
            seen.lock().unwrap().push(p);
        });
        ldap_reader(
            connection,
            secret,
            roster_directory::ReaderOptions {
                page_size: 5,
                member_range_step: None,
                on_page: Some(hook),
                ..Default::default()
            },
        )
    }
}

/// Issue 15 (D4's Sync Now, seen live): a run records its phase and counts
/// as it goes: `read` while the directory is being read (seen from inside
/// the read), then what it read, planned and applied; any replica reads it
/// within the customer only (T1).
async fn d4_a_run_records_its_progress_phase_by_phase(s: TestStore) {
    use roster_projections::directory::{run_progress, RunPhase};
    s.spawn_projector();
    let sc = scenario(&s, 12, 2).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut sync = s.sync();
    sync.readers = Arc::new(WatchProgress {
        store: s.store.clone(),
        customer: sc.customer,
        handle: tokio::runtime::Handle::current(),
        seen: seen.clone(),
    });
    let outcome = sync
        .run_now(sc.customer, SyncTrigger::Manual, by())
        .await
        .unwrap();
    let c = counts(&outcome);
    let mid = seen.lock().unwrap().clone();
    assert!(!mid.is_empty(), "the reader saw no page");
    let during = mid[0].clone().expect("progress recorded while reading");
    assert_eq!(during.phase, RunPhase::Read, "{during:?}");
    assert_eq!(during.read, None, "{during:?}");
    let run = outcome.run_id().to_string();
    let after = run_progress(&s.store, sc.customer, &run)
        .await
        .unwrap()
        .expect("progress after the run");
    assert_eq!(after.phase, RunPhase::Apply, "{after:?}");
    assert_eq!(after.read, Some(c.read), "{after:?} {c:?}");
    let planned = after.planned.expect("the plan's counts");
    assert_eq!(planned.added, c.added, "{planned:?} {c:?}");
    assert!(after.steps >= c.added, "{after:?}");
    assert_eq!(after.applied, after.steps, "{after:?}");
    assert!(after.updated_at > 0);
    // T1: another customer does not see it.
    let other = s.customer(10, &["other.example"]).await;
    assert_eq!(run_progress(&s.store, other, &run).await.unwrap(), None);
    // The reaper forgets progress older than 30 days, and only that.
    let old = uuid::Uuid::now_v7();
    s.store
        .db()
        .put_run_progress(
            sc.customer,
            old,
            r#"{"phase":"read"}"#,
            s.clock.now() - chrono::Duration::days(31),
        )
        .await
        .unwrap();
    let old = old.to_string();
    assert!(run_progress(&s.store, sc.customer, &old)
        .await
        .unwrap()
        .is_some());
    s.sync().reap().await.unwrap();
    assert_eq!(
        run_progress(&s.store, sc.customer, &old).await.unwrap(),
        None
    );
    assert!(run_progress(&s.store, sc.customer, &run)
        .await
        .unwrap()
        .is_some());

    // While reading, the production LDAP reader reports the entries it
    // receives, page by page (what the read phase shows so far).
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let hook: roster_sync::readers::EntriesHook = {
        let received = received.clone();
        Arc::new(move |news| {
            if let roster_sync::readers::ReadNews::Entries(n) = news {
                received.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let connection = Connection::Ldap(settings_for(&sc.slapd, "dc=example,dc=com"));
    let secret = Secret::new(sc.slapd.root_password());
    let reader = s
        .sync()
        .readers
        .reader_watched(&connection, Some(&secret), hook)
        .unwrap();
    let read = reader.read_incremental(None).await.unwrap();
    let n = received.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        n >= read.snapshot.objects.len() as u64 && n >= 14,
        "{n} entries reported for {} objects",
        read.snapshot.objects.len()
    );
}

/// D3.f, B1, issue 17: a run whose read and customer are as the previous
/// run left them reuses its plan (which changed nothing) and gives the
/// same counts; any change to the directory, the users or the settings
/// plans afresh and is applied as a full plan applies it.
async fn d3f_b1_a_run_reuses_the_previous_plan_only_while_nothing_changed(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 10, 1).await;
    let c = sc.customer;
    // One service for every run, as in the server.
    let sync = s.sync();
    let go = || async {
        counts(
            &sync
                .run_now(c, SyncTrigger::Manual, by())
                .await
                .expect("run"),
        )
    };
    let first = go().await;
    assert_eq!(first.added, 9 + 1, "every 10th user is disabled: {first:?}");
    let second = go().await;
    assert_eq!(sync.plans_reused(), 0, "the first run changed users");
    let head = s.store.head_position().await.unwrap();
    let third = go().await;
    assert_eq!(
        sync.plans_reused(),
        1,
        "nothing changed: the second run's plan"
    );
    assert_eq!(third, second);
    only_runs_bookkeeping_since(&s, head).await;

    // A user edited by hand (D3.a: the directory is the truth).
    let u1 = sc.data.user(1);
    let mail = u1.mail.clone().unwrap();
    let pos = roster_app::users::edit_user(
        &s.app(),
        s.meta(c),
        addr(&mail),
        roster_app::users::Edit {
            profile: roster_csv::patch::ProfilePatch {
                first_name: Some(Some("Edited".into())),
                ..Default::default()
            },
            aliases: None,
            status: None,
        },
    )
    .await
    .unwrap();
    s.app().settle(pos).await;
    let after_edit = go().await;
    assert_eq!(sync.plans_reused(), 1, "a user changed: planned afresh");
    assert_eq!(after_edit.updated, 1, "{after_edit:?}");
    assert_eq!(
        user(&s, c, &mail).await.profile.first_name.as_deref(),
        Some(u1.given_name.as_str())
    );
    go().await; // plans afresh (the previous run changed a user) and keeps it

    // The directory changed: the read's fingerprint differs.
    let admin = sc.slapd.admin().await.unwrap();
    admin
        .replace(&u1.dn, "department", &["Moved"])
        .await
        .unwrap();
    let moved = go().await;
    assert_eq!(moved.updated, 1, "{moved:?}");
    assert_eq!(
        user(&s, c, &mail).await.profile.department.as_deref(),
        Some("Moved")
    );
    let reused = sync.plans_reused();
    go().await;
    assert_eq!(go().await, go().await);
    assert_eq!(sync.plans_reused(), reused + 2, "unchanged again: reused");

    // The settings changed (include disabled users): the disabled user is added.
    let mut settings = settings_for(&sc.slapd, "dc=example,dc=com");
    settings.include_disabled = true;
    sync.save_settings(
        &s.meta(c),
        config(settings, DeleteAfter::Days7),
        SettingsChange::default(),
    )
    .await
    .unwrap();
    let reused = sync.plans_reused();
    let included = go().await;
    assert_eq!(sync.plans_reused(), reused, "the settings changed");
    assert_eq!(included.added, 1, "{included:?}");

    // The managed domains changed (D3.n): the domain leaves with its users,
    // the runs after it skip the directory's objects; once the domain is
    // managed again (an event of the customer alone) they come back.
    let removal =
        roster_app::customers::remove_domain(&s.app(), s.meta(c), Domain::parse(DOMAIN).unwrap())
            .await
            .unwrap();
    assert_eq!(
        removal.users_deleted.len(),
        11,
        "{:?}",
        removal.users_deleted
    );
    s.app().settle(removal.position).await;
    let skipped = go().await;
    assert_eq!(skipped.added + skipped.updated + skipped.flagged, 0);
    let reused = sync.plans_reused();
    assert_eq!(go().await, skipped);
    assert_eq!(sync.plans_reused(), reused + 1, "unchanged: reused");
    let pos = roster_app::customers::customer_command(
        &s.app(),
        s.meta(c),
        roster_domain::CustomerCommand::AddDomain {
            domain: Domain::parse(DOMAIN).unwrap(),
        },
    )
    .await
    .unwrap();
    s.app().settle(pos).await;
    let back = go().await;
    assert_eq!(sync.plans_reused(), reused + 1, "the customer changed");
    assert_eq!(back.added + back.returned, 11, "{back:?}");
    assert_eq!(all(&s, c, None).await.len(), 11);
}

/// The events of run `run` of the report aggregate: how its report was
/// recorded (B4, issue 17).
async fn report_events(s: &TestStore, run: uuid::Uuid) -> Vec<SyncReportEvent> {
    let id = run.to_string();
    roster_store::history::<roster_domain::SyncReport>(&s.store, &id)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

/// A run's report as the API and the console read it (B4).
async fn report_of(
    s: &TestStore,
    c: CustomerId,
    run: uuid::Uuid,
) -> (
    roster_projections::reports::ReportCounts,
    Vec<SkippedObject>,
) {
    let run = run.to_string();
    let counts = roster_projections::reports::counts(&s.store, c, &run)
        .await
        .unwrap();
    let (skipped, _) = roster_projections::reports::skipped(&s.store, c, &run, None, 1_000)
        .await
        .unwrap();
    (counts, skipped)
}

/// B4, issue 17: a run whose report equals the customer's last report
/// recorded in full records one `SyncReportRepeated` naming that run
/// (never another repeat), and reads exactly as that report; a changed
/// report is recorded in full again. Another customer cannot read a
/// report through a run id of its own.
async fn b4_a_run_whose_report_is_unchanged_refers_to_the_report_recorded_in_full(s: TestStore) {
    s.spawn_projector();
    let sc = scenario(&s, 10, 1).await;
    let c = sc.customer;
    let sync = s.sync();
    let go = || async {
        let o = sync
            .run_now(c, SyncTrigger::Manual, by())
            .await
            .expect("run");
        assert!(matches!(o, RunOutcome::Completed { .. }), "{o:?}");
        o.run_id()
    };
    // Every 10th user is disabled: one object skipped in every report.
    let first = go().await;
    let full = report_events(&s, first).await;
    assert!(
        matches!(full.as_slice(), [SyncReportEvent::SyncReported(r)] if r.skipped.len() == 1),
        "{full:?}"
    );
    let want = report_of(&s, c, first).await;
    assert_eq!(want.1.len(), 1, "{want:?}");
    for _ in 0..2 {
        // The second run plans afresh, the third reuses its plan: both
        // refer to the first run's report.
        let run = go().await;
        let events = report_events(&s, run).await;
        assert!(
            matches!(events.as_slice(), [SyncReportEvent::SyncReportRepeated(r)]
                if r.run_id == run && r.of_run == first),
            "{events:?}"
        );
        assert_eq!(report_of(&s, c, run).await, want);
    }
    assert!(sync.plans_reused() >= 1);

    // The report changes (the disabled user's address): recorded in full.
    let admin = sc.slapd.admin().await.unwrap();
    let disabled = sc.data.user(9);
    assert!(sc.data.is_disabled(9));
    let renamed = format!("renamed9@{DOMAIN}");
    admin
        .replace(&disabled.dn, "mail", &[&renamed])
        .await
        .unwrap();
    admin
        .replace(&disabled.dn, "proxyAddresses", &[format!("SMTP:{renamed}")])
        .await
        .unwrap();
    let changed = go().await;
    let events = report_events(&s, changed).await;
    assert!(
        matches!(events.as_slice(), [SyncReportEvent::SyncReported(r)]
            if r.skipped.len() == 1 && r.skipped[0].address.as_deref() == Some(renamed.as_str())),
        "{events:?}"
    );
    let two = report_of(&s, c, changed).await;
    assert_ne!(two, want, "{two:?}");
    let again = go().await;
    assert!(matches!(report_events(&s, again).await.as_slice(),
        [SyncReportEvent::SyncReportRepeated(r)] if r.of_run == changed));
    assert_eq!(report_of(&s, c, again).await, two);
    assert_eq!(
        report_of(&s, c, first).await,
        want,
        "an earlier run keeps its own report"
    );

    // Tenant scope: another customer's reading of the run's id finds nothing.
    let other = s.customer(10, &["other.example"]).await;
    let (counts, skipped) = report_of(&s, other, again).await;
    assert!(skipped.is_empty() && counts.skipped_by_reason.is_empty());
}

/// The production LDAP reader, whose delta reads hold on for a second
/// after saying how many objects changed: the run's answer to that word
/// happens while the read still goes on, whatever the machine's speed.
struct SlowAfterDelta;

impl ReaderFactory for SlowAfterDelta {
    fn reader(
        &self,
        connection: &Connection,
        secret: Option<&Secret>,
    ) -> Result<Box<dyn DirectoryReader>, ReadError> {
        self.reader_watched(connection, secret, Arc::new(|_| {}))
    }

    fn reader_watched(
        &self,
        connection: &Connection,
        secret: Option<&Secret>,
        on_entries: roster_sync::readers::EntriesHook,
    ) -> Result<Box<dyn DirectoryReader>, ReadError> {
        use roster_sync::readers::ReadNews;
        let entries = on_entries.clone();
        ldap_reader(
            connection,
            secret,
            roster_directory::ReaderOptions {
                on_page: Some(Arc::new(move |e: &roster_directory::PageEvent| {
                    entries(ReadNews::Entries(e.entries))
                })),
                // The reader's own thread: the run's task goes on meanwhile.
                on_delta: Some(Arc::new(move |n| {
                    on_entries(ReadNews::DeltaApplied(n));
                    std::thread::sleep(std::time::Duration::from_secs(1));
                })),
                ..Default::default()
            },
        )
    }
}

/// Issue 17, B1, D3.f: a run that holds the previous run's plan loads the
/// plan's inputs beside the rest of its delta read once the read says
/// objects changed, and applies the change as any run does; a change the
/// read does not map changes no object, and the plan is reused.
async fn d3f_b1_a_kept_plans_run_loads_its_inputs_when_the_delta_read_says_objects_changed(
    s: TestStore,
) {
    s.spawn_projector();
    let base = "dc=example,dc=com";
    let data =
        roster_testkit::DirectoryData::new(roster_testkit::Style::InetOrgPerson, base, DOMAIN)
            .users(12)
            .groups(2, 3);
    let slapd = roster_testkit::Slapd::start(
        roster_testkit::SlapdConfig::inet_org_person()
            .syncprov(None)
            .data(data.clone()),
    )
    .await
    .expect("slapd");
    let c = s.customer(100_000, &[DOMAIN]).await;
    roster_tests::sync::enable(&s, c, &slapd, base).await;
    let mut sync = s.sync();
    sync.readers = Arc::new(SlowAfterDelta);
    let go = || async {
        counts(
            &sync
                .run_now(c, SyncTrigger::Manual, by())
                .await
                .expect("run"),
        )
    };
    assert!(go().await.added > 0);
    go().await; // plans afresh (the first run added users) and keeps it
    go().await;
    assert_eq!(
        sync.plans_reused(),
        1,
        "nothing changed: the plan is reused"
    );
    assert_eq!(sync.inputs_loaded_early(), 0);

    // (user, attribute, value, runs that reused the plan, runs that
    // loaded early, users updated): an unmapped attribute keeps the read
    // alone and the plan reused; a changed user loads the inputs on the
    // delta's word and is planned afresh.
    let admin = slapd.admin().await.unwrap();
    for (i, attribute, value, reused, early, updated) in [
        (3, "employeeNumber", "4711", 2, 0, 0),
        (4, "mobile", "+41 44 555 01 04", 2, 1, 1),
    ] {
        let u = data.user(i);
        admin.replace(&u.dn, attribute, &[value]).await.unwrap();
        let got = go().await;
        let what = format!("{attribute} of user {i}: {got:?}");
        assert_eq!(
            (sync.plans_reused(), sync.inputs_loaded_early(), got.updated),
            (reused, early, updated),
            "{what}"
        );
    }
    let mail = data.user(4).mail.unwrap();
    assert_eq!(
        user(&s, c, &mail).await.profile.mobile.as_deref(),
        Some("+41 44 555 01 04")
    );
}

both_backends!(
    b4_a_run_whose_report_is_unchanged_refers_to_the_report_recorded_in_full,
    d3f_b1_a_run_reuses_the_previous_plan_only_while_nothing_changed,
    d3f_b1_a_kept_plans_run_loads_its_inputs_when_the_delta_read_says_objects_changed,
    d3e_d3f_a_first_sync_adds_the_directory_and_a_resync_changes_nothing,
    d3h_to_d3k_missing_and_disabled_users_are_flagged_deleted_after_the_delay_and_come_back,
    d3r_a_read_cut_off_mid_way_flags_nobody,
    d3s_a_base_dn_typo_is_held_and_waits_for_confirm_or_discard,
    d3t_a_dry_run_changes_nothing,
    d3g_manual_users_are_supplemented_and_never_flagged,
    d3m_conflict_actions,
    d3o_d3p_exceptions_and_additions,
    d3q_disabling_keeps_users_and_flags_still_expire,
    d4_one_sync_at_a_time_and_the_schedule,
    d3_a_rename_keeps_the_user,
    d5_invalid_settings_are_refused_precisely,
    d7_the_bind_password_is_never_stored_in_plaintext,
    d4_a_stopped_replicas_run_is_interrupted_and_run_again_by_another,
    d4_sync_now_after_a_crash_takes_the_expired_run_over,
    d4_a_due_run_is_started_once_across_replicas,
    d3i_replicas_reaping_at_once_delete_each_user_once,
    d4_a_run_records_its_progress_phase_by_phase,
);

/// Issue 17 (E3, D3.r): a run of more than one piece (3,000 users) is
/// projected beside its append and committed after it; the user list, the
/// audit trail and the directory objects then equal, row for row, the log
/// projected afresh, and a resync that changes nothing finds nothing. The
/// run's objects are staged among its users, not after them, so that the
/// directory objects' lane works beside the user list's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i17_a_run_projected_beside_its_append_equals_the_log_projected_afresh() {
    let s = TestStore::new(roster_tests::Backend::Postgres).await;
    s.spawn_projector();
    let sc = scenario(&s, 3_000, 4).await;
    let first = counts(&run(&s, sc.customer).await);
    assert!(first.added >= 2_700, "{first:?}");
    assert!(
        s.projector.projected_beside() > 2_500,
        "projected beside the append: {}",
        s.projector.projected_beside()
    );
    assert_eq!(all(&s, sc.customer, None).await.len() as u64, first.added);
    let log = s.store.read_from(0, i64::MAX).await.unwrap();
    let users: Vec<i64> = log
        .iter()
        .filter(|e| e.aggregate_type == roster_events::USER_AGGREGATE)
        .map(|e| e.position)
        .collect();
    let objects: Vec<i64> = log
        .iter()
        .filter(|e| e.aggregate_type == roster_events::DIRECTORY_OBJECTS_AGGREGATE)
        .map(|e| e.position)
        .collect();
    assert!(
        !objects.is_empty()
            && objects
                .iter()
                .all(|p| users.first() < Some(p) && Some(p) < users.last()),
        "the objects' events {objects:?} among the users' ({:?} to {:?})",
        users.first(),
        users.last()
    );
    let head = s.store.head_position().await.unwrap();
    let fresh = roster_projections::Projector::new(s.store.clone(), "fresh_");
    fresh.ensure_tables().await.unwrap();
    assert_eq!(fresh.catch_up().await.unwrap(), head);
    assert!(
        s.projector
            .wait_for(head, std::time::Duration::from_secs(30))
            .await
    );
    assert_eq!(
        roster_tests::backend::projected_rows(&s, "").await,
        roster_tests::backend::projected_rows(&s, "fresh_").await
    );
    let again = counts(&run(&s, sc.customer).await);
    assert_eq!(
        (again.added, again.updated, again.flagged),
        (0, 0, 0),
        "{again:?}"
    );
}
