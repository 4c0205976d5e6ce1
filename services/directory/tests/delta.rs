//! B1: delta reads of LDAP and Active Directory give the snapshot a full
//! read gives, after renames, moves between OUs, deletions, disable and
//! re-enable, and group membership changes; on OpenLDAP with syncprov (RFC
//! 4533, with and without a session log) and on Samba AD (`uSNChanged`).
//! The backstop: changed settings and `full_sync_hours: 0` read everything
//! (cookie, server and USN checks: the unit tests of `ldap::delta`). D3.r:
//! a delta read that fails midway is an error, and the state it started
//! from still gives a right delta afterwards.

mod common;

use common::*;
use roster_directory::{LdapReader, PageEvent, ReaderOptions, SearchKind};
use roster_domain::snapshot::{DirectoryReader, ReadError, ReadMode, Snapshot};
use roster_events::{LdapPreset, LdapSettings, TlsSettings};
use roster_testkit::{DirectoryData, SambaDc, Slapd, SlapdConfig, Style};

const DOMAIN: &str = "example.org";
const BASE: &str = "dc=example,dc=com";
const MOVED: &str = "ou=Moved,dc=example,dc=com";

/// Objects by id, members sorted: what a snapshot says, in one order.
fn sorted(mut s: Snapshot) -> Snapshot {
    for o in &mut s.objects {
        o.members.sort();
    }
    s.objects.sort_by(|a, b| a.id.cmp(&b.id));
    s
}

/// A read with `state`, which must be of `want` mode and give what a full
/// read gives; the state is replaced when the read returns one.
async fn step(reader: &LdapReader, state: &mut Option<Vec<u8>>, want: ReadMode, what: &str) {
    let r = reader.read_incremental(state.as_deref()).await.unwrap();
    assert_eq!(r.mode, want, "{what}");
    let full = reader.read().await.unwrap();
    assert_eq!(sorted(r.snapshot), sorted(full), "{what}: delta == full");
    if let Some(s) = r.state {
        *state = Some(s.into_bytes());
    }
}

fn openldap_data() -> DirectoryData {
    DirectoryData::new(Style::InetOrgPerson, BASE, DOMAIN)
        .users(30)
        .groups(6, 5)
        .comma_every(7)
}

async fn openldap(sessionlog: Option<u32>) -> Slapd {
    Slapd::start(
        SlapdConfig::inet_org_person()
            .ppolicy(true)
            .syncprov(sessionlog)
            .ldif(format!(
                "dn: {MOVED}\nobjectClass: organizationalUnit\nou: Moved\n"
            ))
            .data(openldap_data()),
    )
    .await
    .unwrap()
}

async fn openldap_delta_is_a_full_read(sessionlog: Option<u32>) {
    let data = openldap_data();
    let slapd = openldap(sessionlog).await;
    let admin = slapd.admin().await.unwrap();
    let reader = reader(
        slapd_settings(&slapd, LdapPreset::Openldap),
        slapd.reader_password(),
    );
    let mut state = None;
    step(&reader, &mut state, ReadMode::Full, "first read").await;
    assert!(state.is_some(), "the first read leaves a state");
    let quiet = reader.read_incremental(state.as_deref()).await.unwrap();
    assert_eq!(quiet.mode, ReadMode::Delta);
    assert!(quiet.state.is_none(), "nothing changed: the state stays");

    // Renames, a move between OUs, a deletion, a disabled account, group
    // membership (a plain group nested in a list), a new user.
    let dn = |i: usize| data.user(i).dn;
    let renamed = admin.rename(&dn(1), "cn=Renamed One", None).await.unwrap();
    let moved = admin.move_to(&dn(2), MOVED).await.unwrap();
    admin.delete(&dn(3)).await.unwrap();
    admin
        .add_values(&dn(4), "pwdAccountLockedTime", &["000001010000Z"])
        .await
        .unwrap();
    admin.add_member(&data.group(0).dn, &dn(20)).await.unwrap();
    admin.add_member(&data.group(0).dn, &moved).await.unwrap();
    admin
        .add_member(&data.group(1).dn, &data.group(2).dn)
        .await
        .unwrap();
    let first_of_4 = data.group(4).members[0].clone();
    admin
        .remove_member(&data.group(4).dn, &first_of_4)
        .await
        .unwrap();
    admin
        .add(&data.user(40).entry(Style::InetOrgPerson))
        .await
        .unwrap();
    admin
        .replace(&dn(6), "mail", &["six@example.org"])
        .await
        .unwrap();
    step(&reader, &mut state, ReadMode::Delta, "first changes").await;

    // Re-enabled, renamed back and moved back, a group renamed, a group
    // deleted, the new user's name changed.
    admin
        .delete_values(&dn(4), "pwdAccountLockedTime", &[] as &[&str])
        .await
        .unwrap();
    admin.move_to(&moved, &data.people_dn()).await.unwrap();
    admin
        .rename(&renamed, "cn=Renamed Again", None)
        .await
        .unwrap();
    admin
        .rename(&data.group(1).dn, "cn=Group One Renamed", None)
        .await
        .unwrap();
    admin.delete(&data.group(5).dn).await.unwrap();
    admin
        .replace(&data.user(40).dn, "displayName", &["Forty"])
        .await
        .unwrap();
    step(&reader, &mut state, ReadMode::Delta, "second changes").await;
    step(&reader, &mut state, ReadMode::Delta, "nothing more").await;

    // A user that leaves a custom filter leaves the snapshot, and comes
    // back.
    let mut filtered = slapd_settings(&slapd, LdapPreset::Openldap);
    filtered.filter = Some("(!(description=Left))".into());
    let f = reader_for(filtered, slapd.reader_password());
    let mut fstate = None;
    step(&f, &mut fstate, ReadMode::Full, "filtered first read").await;
    admin
        .replace(&dn(8), "description", &["Left"])
        .await
        .unwrap();
    step(&f, &mut fstate, ReadMode::Delta, "a user left the filter").await;
    admin
        .replace(&dn(8), "description", &["Back"])
        .await
        .unwrap();
    step(&f, &mut fstate, ReadMode::Delta, "and came back").await;
}

fn reader_for(settings: LdapSettings, password: &str) -> LdapReader {
    reader(settings, password)
}

#[tokio::test]
async fn b1_openldap_delta_read_with_the_present_phase_gives_the_snapshot_of_a_full_read() {
    openldap_delta_is_a_full_read(None).await;
}

#[tokio::test]
async fn b1_openldap_delta_read_with_the_delete_phase_gives_the_snapshot_of_a_full_read() {
    openldap_delta_is_a_full_read(Some(1000)).await;
}

#[tokio::test]
async fn b1_backstop_changed_settings_or_no_delta_hours_read_everything() {
    let slapd = openldap(None).await;
    let settings = slapd_settings(&slapd, LdapPreset::Openldap);
    let r = reader(settings.clone(), slapd.reader_password());
    let first = r.read_incremental(None).await.unwrap();
    assert_eq!(first.mode, ReadMode::Full);
    let state = first.state.unwrap().into_bytes();
    assert_eq!(
        r.read_incremental(Some(&state)).await.unwrap().mode,
        ReadMode::Delta
    );
    // Another filter: the state was read with other settings.
    let mut other = settings.clone();
    other.filter = Some("(mail=*)".into());
    let other = reader(other, slapd.reader_password());
    let r2 = other.read_incremental(Some(&state)).await.unwrap();
    assert_eq!(r2.mode, ReadMode::Full, "a changed filter reads everything");
    assert!(r2.state.is_some());
    // The timeout is not what is read: the state goes on.
    let mut slower = settings.clone();
    slower.timeout_secs += 5;
    let slower = reader(slower, slapd.reader_password());
    assert_eq!(
        slower.read_incremental(Some(&state)).await.unwrap().mode,
        ReadMode::Delta
    );
    // full_sync_hours 0: every read is a full one, and keeps no state.
    let mut always = settings.clone();
    always.full_sync_hours = Some(0);
    let always = reader(always, slapd.reader_password());
    let r3 = always.read_incremental(Some(&state)).await.unwrap();
    assert_eq!(r3.mode, ReadMode::Full);
    assert!(r3.state.is_none());
    // Garbage is no state.
    assert_eq!(
        r.read_incremental(Some(b"not a state")).await.unwrap().mode,
        ReadMode::Full
    );
}

#[tokio::test]
async fn b1_without_syncprov_every_read_is_a_full_one() {
    let slapd = Slapd::start(SlapdConfig::inet_org_person().data(openldap_data()))
        .await
        .unwrap();
    let r = reader(
        slapd_settings(&slapd, LdapPreset::Openldap),
        slapd.reader_password(),
    );
    let first = r.read_incremental(None).await.unwrap();
    assert_eq!(first.mode, ReadMode::Full);
    assert!(first.state.is_none(), "nothing to continue from");
    assert_eq!(
        sorted(first.snapshot),
        sorted(r.read().await.unwrap()),
        "the same read"
    );
}

#[tokio::test]
async fn d3_r_a_delta_read_that_fails_midway_is_an_error_and_its_state_still_serves() {
    let data = openldap_data();
    let mut slapd = openldap(None).await;
    let admin = slapd.admin().await.unwrap();
    let settings = slapd_settings(&slapd, LdapPreset::Openldap);
    let r = reader(settings.clone(), slapd.reader_password());
    let state = r
        .read_incremental(None)
        .await
        .unwrap()
        .state
        .unwrap()
        .into_bytes();
    admin.delete(&data.user(5).dn).await.unwrap();
    admin
        .add_member(&data.group(0).dn, &data.user(25).dn)
        .await
        .unwrap();
    drop(admin);

    // The server dies once the users are read, before the groups.
    let pid = slapd.pid().unwrap();
    let killing = reader_with(
        settings.clone(),
        slapd.reader_password(),
        ReaderOptions {
            on_page: Some(std::sync::Arc::new(move |e: &PageEvent| {
                if e.search == SearchKind::Users {
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                }
            })),
            ..ReaderOptions::default()
        },
    );
    let e = killing.read_incremental(Some(&state)).await.unwrap_err();
    assert!(
        matches!(e, ReadError::Incomplete(_) | ReadError::Refused(_)),
        "{e:?}"
    );
    for _ in 0..50 {
        if !slapd.is_running() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!slapd.is_running(), "slapd was killed during the read");

    // Back up: the same state gives the right delta.
    slapd.start_again().await.unwrap();
    let mut state = Some(state);
    step(&r, &mut state, ReadMode::Delta, "after the failed read").await;
}

/// LDAPS to the shared DC as Administrator, base DN the test's OU.
fn ad_settings(dc: &SambaDc, base_dn: &str) -> LdapSettings {
    LdapSettings {
        host: dc.host(),
        port: dc.ldaps_port(),
        ssl: true,
        starttls: false,
        tls: TlsSettings {
            verify: true,
            ca_pem: Some(dc.ca_pem().to_string()),
        },
        bind_user: dc.admin_upn(),
        base_dn: base_dn.to_string(),
        filter: None,
        include_disabled: true,
        include_public_folders: false,
        preset: LdapPreset::ActiveDirectory,
        attributes: Default::default(),
        timeout_secs: 20,
        full_sync_hours: None,
    }
}

#[tokio::test]
async fn b1_samba_delta_read_gives_the_snapshot_of_a_full_read() {
    let ou = SambaDc::shared().await.unwrap().new_ou().await.unwrap();
    let dc = ou.dc().clone();
    let data = ou.data(DOMAIN).users(20).groups(4, 5);
    ou.load(&data).await.unwrap();
    let other_ou = ou.create_child_ou("Elsewhere").await.unwrap();
    let admin = ou.admin();
    let r = reader(ad_settings(&dc, ou.dn()), dc.admin_password());
    let mut state = None;
    step(&r, &mut state, ReadMode::Full, "first read").await;

    let dn = |i: usize| data.user(i).dn;
    let renamed = admin.rename(&dn(1), "CN=Renamed One", None).await.unwrap();
    let moved = admin.move_to(&dn(2), &other_ou).await.unwrap();
    admin.delete(&dn(3)).await.unwrap();
    admin.set_disabled(&dn(4), true).await.unwrap();
    admin.add_member(&data.group(0).dn, &dn(15)).await.unwrap();
    admin
        .add_member(&data.group(1).dn, &data.group(2).dn)
        .await
        .unwrap();
    let first_of_3 = data.group(3).members[0].clone();
    admin
        .remove_member(&data.group(3).dn, &first_of_3)
        .await
        .unwrap();
    admin
        .replace(&dn(6), "mail", &["six@example.org"])
        .await
        .unwrap();
    step(&r, &mut state, ReadMode::Delta, "first changes").await;

    admin.set_disabled(&dn(4), false).await.unwrap();
    admin.move_to(&moved, &data.people_dn()).await.unwrap();
    admin
        .rename(&renamed, "CN=Renamed Again", None)
        .await
        .unwrap();
    admin
        .rename(&data.group(0).dn, "CN=Group Zero Renamed", None)
        .await
        .unwrap();
    step(&r, &mut state, ReadMode::Delta, "second changes").await;

    // A user that leaves the filter (a custom one) leaves the snapshot.
    let mut filtered = ad_settings(&dc, ou.dn());
    filtered.filter = Some("(!(department=Left))".into());
    let f = reader(filtered, dc.admin_password());
    let mut fstate = None;
    step(&f, &mut fstate, ReadMode::Full, "filtered first read").await;
    admin
        .replace(&dn(7), "department", &["Left"])
        .await
        .unwrap();
    step(&f, &mut fstate, ReadMode::Delta, "a user left the filter").await;
    admin
        .replace(&dn(7), "department", &["Back"])
        .await
        .unwrap();
    step(&f, &mut fstate, ReadMode::Delta, "and came back").await;

    // A renamed OU moves the objects below it: a full read.
    admin
        .rename(&other_ou, "OU=Renamed Elsewhere", None)
        .await
        .unwrap();
    step(&r, &mut state, ReadMode::Full, "an OU renamed").await;
    step(&r, &mut state, ReadMode::Delta, "then deltas again").await;
}

/// Issue 17, B1: a delta read tells, before it builds the snapshot, how
/// many objects differ from the previous read: none for a change to an
/// attribute the read does not map (the server's mark moved all the same),
/// one for a changed user, and a full read tells nothing. A run that would
/// reuse its previous plan starts loading its inputs on that word only.
#[tokio::test]
async fn b1_a_delta_read_tells_how_many_objects_differ_from_the_previous_read() {
    let data = openldap_data();
    let slapd = openldap(None).await;
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let r = reader_with(
        slapd_settings(&slapd, LdapPreset::Openldap),
        slapd.reader_password(),
        ReaderOptions {
            on_delta: Some({
                let told = told.clone();
                std::sync::Arc::new(move |n| told.lock().unwrap().push(n))
            }),
            ..ReaderOptions::default()
        },
    );
    let told = move || std::mem::take(&mut *told.lock().unwrap());
    let mut state = None;
    step(&r, &mut state, ReadMode::Full, "first read").await;
    assert_eq!(told(), Vec::<usize>::new(), "a full read tells nothing");

    let admin = slapd.admin().await.unwrap();
    for (user, attribute, value, differ, what) in [
        (
            3,
            "employeeNumber",
            "4711",
            0,
            "an unmapped attribute changes no object",
        ),
        (4, "mobile", "+41 44 555 01 01", 1, "one user changed"),
    ] {
        admin
            .replace(&data.user(user).dn, attribute, &[value])
            .await
            .unwrap();
        step(&r, &mut state, ReadMode::Delta, what).await;
        assert_eq!(told(), vec![differ], "{what}");
    }

    step(&r, &mut state, ReadMode::Delta, "nothing changed").await;
    assert_eq!(
        told(),
        Vec::<usize>::new(),
        "a mark that did not move: nothing to apply"
    );
}
