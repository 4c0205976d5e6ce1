//! The Active Directory preset against slapd with the AD-like schema and
//! Active Directory's 1000-entry cap (D5), and what a read does when the
//! directory cannot be read completely (D3.r).

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use roster_directory::{PageEvent, ReaderOptions, SearchKind};
use roster_domain::snapshot::{DirectoryReader, ReadError};
use roster_events::LdapPreset;
use roster_testkit::{DirectoryData, Slapd, SlapdConfig, Style};

const DOMAIN: &str = "example.org";

fn data(users: usize) -> DirectoryData {
    DirectoryData::new(Style::AdLike, "dc=example,dc=com", DOMAIN)
        .users(users)
        .groups(6, 30)
}

#[tokio::test]
async fn d5_ad_page_cap_paged_read_gets_all_2500_users() {
    let data = data(2500);
    let slapd = Slapd::start(SlapdConfig::ad_like().page_cap(true).data(data.clone()))
        .await
        .unwrap();
    let settings = slapd_settings(&slapd, LdapPreset::ActiveDirectory);

    let pages = Arc::new(Mutex::new(Vec::<PageEvent>::new()));
    let seen = pages.clone();
    let reader = reader_with(
        settings.clone(),
        slapd.reader_password(),
        ReaderOptions {
            on_page: Some(Arc::new(move |e: &PageEvent| {
                seen.lock().unwrap().push(e.clone())
            })),
            ..ReaderOptions::default()
        },
    );
    let snap = reader.read().await.unwrap();
    let users = users(&snap);
    assert_eq!(users.len(), 2500, "every user, past the 1000 cap");
    let user_pages: Vec<u64> = pages
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.search == SearchKind::Users)
        .map(|e| e.entries)
        .collect();
    assert_eq!(user_pages, vec![1000, 1000, 500]);

    // objectGUID (binary, little-endian) as the canonical UUID text.
    for i in [0usize, 1234, 2499] {
        let want = data.user(i);
        let u = by_mail(&snap, want.mail.as_deref().unwrap());
        let guid = uuid::Uuid::from_bytes_le(want.object_guid.unwrap()).to_string();
        assert_eq!(u.id.as_str(), guid);
        assert_eq!(u.proxy_addresses, want.proxy_addresses);
        assert_eq!(u.profile.company, want.company);
        assert_eq!(u.profile.department, want.department);
        assert_eq!(u.profile.notes, want.info);
        assert_eq!(u.disabled, want.disabled);
    }
    let disabled = users.iter().filter(|u| u.disabled).count();
    assert_eq!(disabled, 250, "disabled users are returned, flagged (D3.h)");

    let lists = groups(&snap);
    assert_eq!(lists.len(), 4);
    let g0 = by_mail(&snap, data.group(0).mail.as_deref().unwrap());
    assert_eq!(g0.members.len(), 30);
    assert_eq!(
        g0.id.as_str(),
        uuid::Uuid::from_bytes_le(data.group(0).object_guid.unwrap()).to_string()
    );

    // A page size over the cap is lowered to 1000 (slapd would refuse it
    // with result 11, AD would silently cap it).
    let big_pages = reader_with(
        settings.clone(),
        slapd.reader_password(),
        ReaderOptions {
            page_size: 5000,
            ..ReaderOptions::default()
        },
    );
    assert_eq!(users_len(&big_pages).await, 2500);

    let report = common::reader(settings, slapd.reader_password())
        .test()
        .await
        .unwrap();
    assert_eq!((report.users, report.groups), (2500, 4));
    assert!(
        report.details.contains("250 disabled"),
        "{}",
        report.details
    );
}

async fn users_len(r: &roster_directory::LdapReader) -> usize {
    users(&r.read().await.unwrap()).len()
}

#[tokio::test]
async fn d3r_size_limit_without_paging_is_incomplete() {
    let slapd = Slapd::start(SlapdConfig::ad_like().page_cap(true).data(data(1500)))
        .await
        .unwrap();
    let reader = reader_with(
        slapd_settings(&slapd, LdapPreset::ActiveDirectory),
        slapd.reader_password(),
        ReaderOptions {
            page_size: 0,
            ..ReaderOptions::default()
        },
    );
    match reader.read().await {
        Err(ReadError::Incomplete(m)) => assert!(m.contains("size limit"), "{m}"),
        other => panic!("expected Incomplete, got {other:?}"),
    }
}

#[tokio::test]
async fn d3r_server_killed_mid_paged_read_is_incomplete() {
    let slapd = Slapd::start(SlapdConfig::ad_like().page_cap(true).data(data(2500)))
        .await
        .unwrap();
    let settings = slapd_settings(&slapd, LdapPreset::ActiveDirectory);
    let password = slapd.reader_password();
    let slapd = Arc::new(Mutex::new(slapd));
    let killer = slapd.clone();
    let reader = reader_with(
        settings,
        password,
        ReaderOptions {
            page_size: 200,
            on_page: Some(Arc::new(move |e: &PageEvent| {
                if e.search == SearchKind::Users && e.page == 3 {
                    killer.lock().unwrap().kill();
                }
            })),
            ..ReaderOptions::default()
        },
    );
    match reader.read().await {
        Err(ReadError::Incomplete(m)) => {
            assert!(m.contains("page 4 of the user search"), "{m}");
            assert!(m.contains("600 entries"), "{m}");
        }
        other => panic!("expected Incomplete, got {other:?}"),
    }
    assert!(!slapd.lock().unwrap().is_running());
}

#[tokio::test]
async fn d3r_base_dn_typo() {
    let slapd = Slapd::start(SlapdConfig::ad_like().data(data(20)))
        .await
        .unwrap();
    slapd
        .apply_ldif("dn: ou=Empty,dc=example,dc=com\nobjectClass: organizationalUnit\nou: Empty\n")
        .await
        .unwrap();
    // A base DN that does not exist: the specific error, for read and test.
    let mut settings = slapd_settings(&slapd, LdapPreset::ActiveDirectory);
    settings.base_dn = "ou=Peeple,dc=example,dc=com".into();
    let r = reader(settings.clone(), slapd.reader_password());
    match r.read().await {
        Err(ReadError::BaseDnNotFound(m)) => {
            assert!(m.contains("ou=Peeple"), "{m}");
            assert!(
                m.contains("closest existing entry is dc=example,dc=com"),
                "{m}"
            );
        }
        other => panic!("expected BaseDnNotFound, got {other:?}"),
    }
    assert!(matches!(r.test().await, Err(ReadError::BaseDnNotFound(_))));
    // One that exists but holds nobody: a complete, empty snapshot (the
    // mass-deletion guard, D3.s, decides what that means).
    settings.base_dn = "ou=Empty,dc=example,dc=com".into();
    let snap = reader(settings, slapd.reader_password())
        .read()
        .await
        .unwrap();
    assert!(snap.objects.is_empty());
}
