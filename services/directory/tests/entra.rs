//! The Entra ID reader against the Graph emulator (D6, B1, D3.r): the real
//! client code over HTTP.

use std::time::Duration;

use roster_directory::{EntraOptions, EntraReader};
use roster_domain::snapshot::{DirectoryReader, ObjectKind, ReadError, ReadMode, ReadState};
use roster_events::EntraSettings;
use roster_graph_emulator::{
    Fault, GenerateUsers, GraphEmulator, Group, Permission, TenantFixture, User,
};

fn settings(emu: &GraphEmulator, fx: &TenantFixture) -> EntraSettings {
    EntraSettings {
        tenant: fx.tenant_id.clone(),
        client_id: fx.client_id.clone(),
        include_disabled: false,
        filter: None,
        login_endpoint: Some(emu.login_base()),
        graph_endpoint: Some(emu.graph_base()),
        full_sync_hours: None,
    }
}

fn fast() -> EntraOptions {
    EntraOptions {
        backoff: Duration::from_millis(50),
        ..EntraOptions::default()
    }
}

fn reader(emu: &GraphEmulator, fx: &TenantFixture) -> EntraReader {
    EntraReader::with_options(settings(emu, fx), fx.client_secret.clone(), fast())
}

#[tokio::test]
async fn d6_full_read_maps_users_groups_and_members_with_paging() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("fullread");
    let ids = fx.tenant.generate_users(GenerateUsers::new(25, &fx.domain));
    let mut ann = User::new(&format!("ann@{}", fx.domain)).named("Ann", "Lee");
    ann.proxy_addresses
        .push(format!("smtp:a.lee@{}", fx.domain));
    ann.proxy_addresses.push("X500:/o=x".into());
    ann.mobile_phone = Some("+1 555 0100".into());
    ann.business_phones = vec!["+1 555 0101".into()];
    ann.company_name = Some("Contoso".into());
    ann.department = Some("Sales".into());
    let ann = fx.tenant.add_user(ann);
    let list = fx.tenant.add_group(Group::distribution(
        "Sales",
        &format!("sales@{}", fx.domain),
    ));
    fx.tenant.add_group(Group::security("No mail"));
    fx.tenant.set_group_members(&list, &[&ann, &ids[0]]);

    let r = EntraReader::with_options(
        settings(&emu, &fx),
        fx.client_secret.clone(),
        EntraOptions {
            page_size: 7,
            ..fast()
        },
    );
    let snap = r.read().await.unwrap();
    let users: Vec<_> = snap
        .objects
        .iter()
        .filter(|o| o.kind == ObjectKind::User)
        .collect();
    assert_eq!(users.len(), 26);
    let a = users.iter().find(|o| o.id.as_str() == ann).unwrap();
    assert_eq!(a.profile.first_name.as_deref(), Some("Ann"));
    assert_eq!(a.profile.mobile.as_deref(), Some("+1 555 0100"));
    assert_eq!(a.profile.home_phone.as_deref(), Some("+1 555 0101"));
    assert_eq!(a.profile.company.as_deref(), Some("Contoso"));
    assert!(a
        .proxy_addresses
        .iter()
        .any(|p| p.starts_with("smtp:a.lee@")));
    let groups: Vec<_> = snap
        .objects
        .iter()
        .filter(|o| o.kind == ObjectKind::Group)
        .collect();
    assert_eq!(groups.len(), 1, "only mail-enabled groups");
    assert_eq!(groups[0].members.len(), 2);

    // $select of exactly the mapped properties, paging by nextLink.
    let reqs = emu.graph_requests();
    let first = reqs.iter().find(|q| q.path.ends_with("/users")).unwrap();
    assert!(first.param("$select").unwrap().contains("proxyAddresses"));
    assert!(reqs.iter().filter(|q| q.path.ends_with("/users")).count() >= 4);
}

#[tokio::test]
async fn d6_token_is_cached_across_reads() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("tokencache");
    fx.tenant.generate_users(GenerateUsers::new(3, &fx.domain));
    reader(&emu, &fx).read().await.unwrap();
    reader(&emu, &fx).read().await.unwrap();
    assert_eq!(emu.tokens_issued(), 1);
}

#[tokio::test]
async fn d6_advanced_filter_sends_consistency_level_and_count() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("advanced");
    fx.tenant.generate_users(GenerateUsers::new(12, &fx.domain));
    let mut s = settings(&emu, &fx);
    s.filter = Some(format!("endsWith(mail,'@{}')", fx.domain));
    let r = EntraReader::with_options(s, fx.client_secret.clone(), fast());
    let snap = r.read().await.unwrap();
    assert_eq!(snap.objects.len(), 12);
    let q = emu
        .graph_requests()
        .into_iter()
        .find(|q| q.path.ends_with("/users"))
        .unwrap();
    assert_eq!(q.consistency_level.as_deref(), Some("eventual"));
    assert_eq!(q.param("$count"), Some("true"));
}

#[tokio::test]
async fn d6_throttling_is_retried_after_retry_after() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("throttle");
    fx.tenant.generate_users(GenerateUsers::new(30, &fx.domain));
    emu.inject(Fault::throttle(1).on_path("/users").after(1).times(2));
    emu.inject(
        Fault::unavailable_without_retry_after()
            .on_path_prefix("/groups")
            .times(1),
    );
    let r = EntraReader::with_options(
        settings(&emu, &fx),
        fx.client_secret.clone(),
        EntraOptions {
            page_size: 10,
            ..fast()
        },
    );
    let snap = r.read().await.unwrap();
    assert_eq!(snap.objects.len(), 30);
}

#[tokio::test]
async fn d3r_throttling_beyond_the_retries_fails_the_read() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("giveup");
    fx.tenant.generate_users(GenerateUsers::new(30, &fx.domain));
    emu.inject(Fault::throttle(0).on_path("/users").after(1).times(50));
    let r = EntraReader::with_options(
        settings(&emu, &fx),
        fx.client_secret.clone(),
        EntraOptions {
            page_size: 10,
            max_retries: 2,
            ..fast()
        },
    );
    assert!(matches!(r.read().await, Err(ReadError::Throttled(_))));
}

#[tokio::test]
async fn d3r_a_dropped_page_fails_the_read() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("dropped");
    fx.tenant.generate_users(GenerateUsers::new(30, &fx.domain));
    emu.inject(Fault::drop_connection().on_path("/users").after(1));
    let r = EntraReader::with_options(
        settings(&emu, &fx),
        fx.client_secret.clone(),
        EntraOptions {
            page_size: 10,
            ..fast()
        },
    );
    match r.read().await {
        Err(ReadError::Incomplete(_)) => {}
        other => panic!("expected incomplete, got {other:?}"),
    }
}

#[tokio::test]
async fn d6_test_reports_the_specific_failure() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("failures");
    fx.tenant.generate_users(GenerateUsers::new(4, &fx.domain));
    let ok = reader(&emu, &fx).test().await.unwrap();
    assert_eq!(ok.users, 4);

    let mut s = settings(&emu, &fx);
    s.tenant = "nowhere.onmicrosoft.com".into();
    let e = EntraReader::with_options(s, fx.client_secret.clone(), fast())
        .test()
        .await
        .unwrap_err();
    assert_eq!(e.code(), "tenant_not_found", "{e}");

    let mut s = settings(&emu, &fx);
    s.client_id = "00001111-aaaa-2222-bbbb-3333cccc4444".into();
    let e = EntraReader::with_options(s, fx.client_secret.clone(), fast())
        .test()
        .await
        .unwrap_err();
    assert_eq!(e.code(), "client_id_not_found", "{e}");

    let e = EntraReader::with_options(settings(&emu, &fx), "wrong".into(), fast())
        .test()
        .await
        .unwrap_err();
    assert_eq!(e.code(), "secret_rejected", "{e}");
    assert!(
        !e.to_string().contains("wrong"),
        "the secret is never quoted: {e}"
    );

    let expired = fx.app.add_secret("soon-gone", Duration::from_secs(60));
    fx.app.expire_secret(expired);
    let e = EntraReader::with_options(settings(&emu, &fx), "soon-gone".into(), fast())
        .test()
        .await
        .unwrap_err();
    assert_eq!(e.code(), "secret_expired", "{e}");

    let other = fx.tenant.register_app("no permission");
    other.add_secret("s3cret", Duration::from_secs(3600));
    let mut s = settings(&emu, &fx);
    s.client_id = other.client_id().to_string();
    let e = EntraReader::with_options(s, "s3cret".into(), fast())
        .test()
        .await
        .unwrap_err();
    assert_eq!(e.code(), "permission", "{e}");
    assert!(e.to_string().contains("User.Read.All"), "{e}");
    other.grant(Permission::UserReadAll);
}

#[tokio::test]
async fn b1_delta_round_applies_changes_and_removals_to_the_last_read() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("delta");
    let ids = fx.tenant.generate_users(GenerateUsers::new(20, &fx.domain));
    let list = fx
        .tenant
        .add_group(Group::distribution("All", &format!("all@{}", fx.domain)));
    fx.tenant.set_group_members(&list, &[&ids[0], &ids[1]]);
    let r = reader(&emu, &fx);
    let first = r.read_incremental(None).await.unwrap();
    assert_eq!(first.mode, ReadMode::Full);
    assert_eq!(first.snapshot.objects.len(), 21);

    fx.tenant
        .update_user(&ids[2], |u| u.department = Some("Legal".into()));
    fx.tenant.set_account_enabled(&ids[3], false);
    fx.tenant.delete_user(&ids[4]);
    fx.tenant.delete_user_permanently(&ids[5]);
    let new = fx.tenant.add_user(User::new(&format!("new@{}", fx.domain)));
    fx.tenant.add_group_member(&list, &new);
    fx.tenant.remove_group_member(&list, &ids[0]);
    let late = fx
        .tenant
        .add_group(Group::distribution("Late", &format!("late@{}", fx.domain)));
    fx.tenant.set_group_members(&late, &[&ids[6]]);
    emu.clear_requests();

    let second = r
        .read_incremental(first.state.as_ref().map(ReadState::bytes))
        .await
        .unwrap();
    assert_eq!(second.mode, ReadMode::Delta);
    let reqs = emu.graph_requests();
    assert!(
        reqs.iter().all(|q| !q.path.ends_with("/users")),
        "no full user list in a delta round"
    );
    let objs = &second.snapshot.objects;
    let find = |id: &str| objs.iter().find(|o| o.id.as_str() == id);
    assert_eq!(
        objs.iter().filter(|o| o.kind == ObjectKind::User).count(),
        19
    );
    assert_eq!(
        find(&ids[2]).unwrap().profile.department.as_deref(),
        Some("Legal")
    );
    assert!(find(&ids[3]).unwrap().disabled);
    assert!(find(&ids[4]).is_none() && find(&ids[5]).is_none());
    assert!(find(&new).is_some());
    let mut m: Vec<String> = find(&list)
        .unwrap()
        .members
        .iter()
        .map(|x| x.0.clone())
        .collect();
    m.sort();
    let mut want = vec![ids[1].clone(), new.clone()];
    want.sort();
    assert_eq!(m, want);
    assert_eq!(find(&late).unwrap().members.len(), 1);

    // Identical to a full read of the same directory.
    let mut full = reader(&emu, &fx).read().await.unwrap().objects;
    let mut got = objs.clone();
    full.sort_by(|a, b| a.id.cmp(&b.id));
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, full);

    // An expired delta link: a full read, not an error.
    fx.tenant.expire_delta_tokens();
    let third = r
        .read_incremental(second.state.as_ref().map(ReadState::bytes))
        .await
        .unwrap();
    assert_eq!(third.mode, ReadMode::Full);
    assert_eq!(third.snapshot.objects.len(), objs.len());

    // A round without changes keeps the stored state (state: None), whose
    // link still gives every later change.
    let quiet = r
        .read_incremental(third.state.as_ref().map(ReadState::bytes))
        .await
        .unwrap();
    assert_eq!((quiet.mode, quiet.state.is_none()), (ReadMode::Delta, true));
    assert_eq!(quiet.snapshot.objects.len(), objs.len());
    fx.tenant
        .update_user(&ids[7], |u| u.surname = Some("Later".into()));
    let later = r
        .read_incremental(third.state.as_ref().map(ReadState::bytes))
        .await
        .unwrap();
    assert_eq!(later.mode, ReadMode::Delta);
    let u7 = later
        .snapshot
        .objects
        .iter()
        .find(|o| o.id.as_str() == ids[7])
        .unwrap();
    assert_eq!(u7.profile.last_name.as_deref(), Some("Later"));
}

#[tokio::test]
async fn b1_delta_with_a_custom_filter_keeps_the_filtered_scope() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("scoped");
    let mut ids = Vec::new();
    for (i, dept) in ["Sales", "Sales", "Sales", "Legal", "Legal"]
        .iter()
        .enumerate()
    {
        let mut u = User::new(&format!("u{i}@{}", fx.domain));
        u.department = Some(dept.to_string());
        ids.push(fx.tenant.add_user(u));
    }
    let mut s = settings(&emu, &fx);
    s.filter = Some("department eq 'Sales'".into());
    let r = EntraReader::with_options(s.clone(), fx.client_secret.clone(), fast());
    let first = r.read_incremental(None).await.unwrap();
    assert_eq!(
        (first.mode, first.snapshot.objects.len()),
        (ReadMode::Full, 3)
    );

    // One leaves the scope, one enters it, one is deleted, one changes.
    fx.tenant
        .update_user(&ids[0], |u| u.department = Some("Legal".into()));
    fx.tenant
        .update_user(&ids[3], |u| u.department = Some("Sales".into()));
    fx.tenant.delete_user(&ids[1]);
    fx.tenant
        .update_user(&ids[2], |u| u.surname = Some("Changed".into()));
    let second = r
        .read_incremental(first.state.as_ref().map(ReadState::bytes))
        .await
        .unwrap();
    assert_eq!(second.mode, ReadMode::Delta);
    let mut got = second.snapshot.objects.clone();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    let mut full = EntraReader::with_options(s, fx.client_secret.clone(), fast())
        .read()
        .await
        .unwrap()
        .objects;
    full.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, full, "the same as a full read with the filter");
    let have: Vec<&str> = got.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(have.len(), 2);
    assert!(have.contains(&ids[2].as_str()) && have.contains(&ids[3].as_str()));

    // A quiet round changes nothing and keeps the stored state.
    let quiet = r
        .read_incremental(second.state.as_ref().map(ReadState::bytes))
        .await
        .unwrap();
    assert_eq!((quiet.mode, quiet.state.is_none()), (ReadMode::Delta, true));
    assert_eq!(quiet.snapshot.objects.len(), 2);
}
