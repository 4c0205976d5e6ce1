//! The Active Directory preset against a real Active Directory (Samba AD
//! DC): users with mail and proxyAddresses (D3.b, D3.c), disabled accounts
//! (D3.h), profile attributes (D3.d), mail-enabled groups and their members
//! (U4), objectGUID ids that survive a rename, ranged `member` retrieval
//! (D5), AD's bind errors, referrals at the domain root, public folders.
//!
//! One DC per test process ([`SambaDc::shared`]), one OU per test.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use roster_directory::{PageEvent, ReaderOptions, SearchKind};
use roster_domain::snapshot::{DirectoryReader, ObjectKind, ReadError};
use roster_events::{LdapPreset, LdapSettings, TlsSettings};
use roster_testkit::ldap3::controls::RawControl;
use roster_testkit::ldap3::{Scope, SearchEntry};
use roster_testkit::{escape_rdn_value, SambaDc, SambaOu};

const DOMAIN: &str = "example.org";

/// LDAPS to the DC, bound as Administrator by UPN, base DN the test's OU.
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
        include_disabled: false,
        include_public_folders: false,
        preset: LdapPreset::ActiveDirectory,
        attributes: Default::default(),
        timeout_secs: 20,
        full_sync_hours: None,
    }
}

async fn ou() -> SambaOu {
    SambaDc::shared().await.unwrap().new_ou().await.unwrap()
}

/// The GUID the DC itself prints for `dn`, from the extended-DN control
/// (`<GUID=...>;<SID=...>;CN=...`, flag 1: the dashed string form).
async fn guid_by_extended_dn(ou: &SambaOu, dn: &str) -> String {
    let mut ldap = ou.admin().ldap();
    let control = RawControl {
        ctype: "1.2.840.113556.1.4.529".into(),
        crit: false,
        val: Some(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
    };
    let (entries, _) = ldap
        .with_controls(control)
        .search(dn, Scope::Base, "(objectClass=*)", vec!["1.1"])
        .await
        .and_then(|r| r.success())
        .unwrap();
    let extended = SearchEntry::construct(entries.into_iter().next().unwrap()).dn;
    let start = extended.find("<GUID=").unwrap() + 6;
    let end = start + extended[start..].find('>').unwrap();
    extended[start..end].to_ascii_lowercase()
}

#[tokio::test]
async fn d3b_samba_users_mail_proxy_addresses_disabled_and_profile() {
    let ou = ou().await;
    let dc = ou.dc().clone();
    let mut ada = ou.new_user("Ada", "Lovelace", DOMAIN);
    ada.proxy_addresses = vec![
        "SMTP:ada.lovelace@example.org".into(),
        "smtp:ada@example.org".into(),
        "smtp:countess@example.org".into(),
        "X500:/o=ExchangeLabs/ou=Exchange Administrative Group/cn=Recipients/cn=ada".into(),
    ];
    ada.company = Some("Analytical Engines Ltd".into());
    ada.department = Some(" Research ".into());
    ada.info = Some("First line\r\nSecond line".into());
    ada.mobile = Some("+44 20 7946 0000".into());
    ada.home_phone = Some("+44 20 7946 0001".into());
    ou.create_user(&ada).await.unwrap();
    let mut bob = ou.new_user("Bob", "Gone", DOMAIN);
    bob.disabled = true;
    ou.create_user(&bob).await.unwrap();
    let mut nomail = ou.new_user("No", "Mail", DOMAIN);
    nomail.mail = None;
    nomail.proxy_addresses.clear();
    ou.create_user(&nomail).await.unwrap();

    let snap = reader(ad_settings(&dc, ou.dn()), dc.admin_password())
        .read()
        .await
        .unwrap();
    assert_eq!(users(&snap).len(), 3, "{snap:#?}");
    let a = by_mail(&snap, "ada.lovelace@example.org");
    assert!(is_uuid(a.id.as_str()), "{}", a.id);
    let mut proxies = a.proxy_addresses.clone();
    proxies.sort();
    let mut want = ada.proxy_addresses.clone();
    want.sort();
    assert_eq!(proxies, want, "SMTP:, smtp: and X500: kept as stored");
    assert_eq!(a.profile.first_name.as_deref(), Some("Ada"));
    assert_eq!(a.profile.last_name.as_deref(), Some("Lovelace"));
    assert_eq!(a.profile.company.as_deref(), Some("Analytical Engines Ltd"));
    assert_eq!(a.profile.department.as_deref(), Some("Research"), "trimmed");
    assert_eq!(
        a.profile.notes.as_deref(),
        Some("First line\nSecond line"),
        "info, CRLF as LF"
    );
    assert_eq!(a.profile.mobile.as_deref(), Some("+44 20 7946 0000"));
    assert_eq!(a.profile.home_phone.as_deref(), Some("+44 20 7946 0001"));
    assert!(!a.disabled);
    let b = by_mail(&snap, "bob.gone@example.org");
    assert!(
        b.disabled,
        "userAccountControl 0x2, returned flagged, not filtered out"
    );
    let n = users(&snap)
        .into_iter()
        .find(|u| u.mail.is_none())
        .expect("a user without mail is still read");
    assert!(n.proxy_addresses.is_empty());

    let report = reader(ad_settings(&dc, ou.dn()), dc.admin_password())
        .test()
        .await
        .unwrap();
    assert_eq!((report.users, report.groups), (3, 0));
    assert!(report.details.contains("1 disabled"), "{}", report.details);
}

#[tokio::test]
async fn u4_samba_group_with_mail_lists_its_members() {
    let ou = ou().await;
    let dc = ou.dc().clone();
    let mut doe = ou.new_user("John", "Doe", DOMAIN);
    doe.cn = "Doe, John".into();
    doe.dn = format!("CN={},{}", escape_rdn_value("Doe, John"), ou.dn());
    ou.create_user(&doe).await.unwrap();
    let ann = ou.new_user("Ann", "Other", DOMAIN);
    ou.create_user(&ann).await.unwrap();
    let cy = ou.new_user("Cy", "Nested", DOMAIN);
    ou.create_user(&cy).await.unwrap();

    let mut inner = ou.new_group("Inner Security Group");
    inner.members = vec![cy.dn.clone()];
    ou.create_group(&inner).await.unwrap();
    let mut sales = ou.new_group("Sales, EMEA");
    sales.mail = Some("sales-emea@example.org".into());
    sales.proxy_addresses = vec![
        "SMTP:sales-emea@example.org".into(),
        "smtp:sales@example.org".into(),
    ];
    sales.members = vec![
        doe.dn.clone(),
        ann.dn.clone(),
        inner.dn.clone(),
        // Outside the base DN: dropped.
        dc.admin_dn(),
    ];
    ou.create_group(&sales).await.unwrap();

    let snap = reader(ad_settings(&dc, ou.dn()), dc.admin_password())
        .read()
        .await
        .unwrap();
    let lists = groups(&snap);
    assert_eq!(lists.len(), 1, "the group without mail is not a list");
    let list = lists[0];
    assert_eq!(list.mail.as_deref(), Some("sales-emea@example.org"));
    assert!(list
        .proxy_addresses
        .contains(&"smtp:sales@example.org".to_string()));
    let id = |mail: &str| by_mail(&snap, mail).id.clone();
    let mut got = list.members.clone();
    got.sort();
    let mut want = vec![
        id("john.doe@example.org"),
        id("ann.other@example.org"),
        id("cy.nested@example.org"),
    ];
    want.sort();
    assert_eq!(got, want, "direct members, and the nested group's members");
    assert_eq!(
        by_mail(&snap, "john.doe@example.org")
            .dn
            .as_deref()
            .map(|d| d.contains("Doe")),
        Some(true)
    );
}

#[tokio::test]
async fn d5_samba_object_guid_is_canonical_and_stable_across_rename() {
    let ou = ou().await;
    let dc = ou.dc().clone();
    let user = ou.new_user("Grace", "Hopper", DOMAIN);
    ou.create_user(&user).await.unwrap();
    let r = reader(ad_settings(&dc, ou.dn()), dc.admin_password());
    let before = r.read().await.unwrap();
    let id = by_mail(&before, "grace.hopper@example.org").id.clone();
    // The DC's own text form of the GUID (little-endian fields decoded).
    assert_eq!(id.as_str(), guid_by_extended_dn(&ou, &user.dn).await);

    let child = ou.create_child_ou("Moved").await.unwrap();
    let new_dn = ou
        .admin()
        .rename(&user.dn, "CN=Grace Brewster Hopper", Some(&child))
        .await
        .unwrap();
    ou.admin()
        .replace(&new_dn, "mail", &["grace@example.org"])
        .await
        .unwrap();
    let after = r.read().await.unwrap();
    let moved = by_mail(&after, "grace@example.org");
    assert_eq!(
        moved.id, id,
        "same objectGUID after rename, move and new mail"
    );
    assert!(moved
        .dn
        .as_deref()
        .unwrap()
        .starts_with("CN=Grace Brewster Hopper,OU=Moved"));
}

#[tokio::test]
async fn d5_samba_ranged_member_retrieval() {
    let ou = ou().await;
    let dc = ou.dc().clone();
    let mut big = ou.new_group("Big List");
    big.mail = Some("big@example.org".into());
    for i in 0..11 {
        let u = ou.new_user("Member", &format!("N{i:02}"), DOMAIN);
        ou.create_user(&u).await.unwrap();
        big.members.push(u.dn.clone());
    }
    ou.create_group(&big).await.unwrap();

    let events = Arc::new(Mutex::new(Vec::<PageEvent>::new()));
    let seen = events.clone();
    let r = reader_with(
        ad_settings(&dc, ou.dn()),
        dc.admin_password(),
        ReaderOptions {
            // Ask as AD would answer a large group: 3 values at a time.
            member_range_step: Some(3),
            on_page: Some(Arc::new(move |e: &PageEvent| {
                seen.lock().unwrap().push(e.clone())
            })),
            ..ReaderOptions::default()
        },
    );
    let snap = r.read().await.unwrap();
    let list = by_mail(&snap, "big@example.org");
    assert_eq!(list.kind, ObjectKind::Group);
    assert_eq!(list.members.len(), 11);
    let ranges: Vec<u64> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.search == SearchKind::MemberRanges)
        .map(|e| e.entries)
        .collect();
    // 0-2 came with the group; then 3-5, 6-8, 9-* (2 values, the end).
    assert_eq!(ranges, vec![3, 3, 2], "the range loop ran to the * marker");
}

#[tokio::test]
async fn d5_samba_bind_errors_and_binding_by_upn_or_dn() {
    let ou = ou().await;
    let dc = ou.dc().clone();
    let settings = ad_settings(&dc, ou.dn());
    let secret = "Not-The-Admin-Password-1";
    match reader(settings.clone(), secret).test().await {
        Err(ReadError::BindRejected(m)) => {
            assert!(m.contains("52e"), "AD's data code explained: {m}");
            assert!(!m.contains(secret));
        }
        other => panic!("expected BindRejected, got {other:?}"),
    }
    let mut by_dn = settings.clone();
    by_dn.bind_user = dc.admin_dn();
    by_dn.ssl = false;
    by_dn.starttls = true;
    by_dn.port = dc.port();
    let report = reader(by_dn, dc.admin_password()).test().await.unwrap();
    assert!(
        report.details.contains("StartTLS, certificate verified"),
        "{}",
        report.details
    );

    let mut anonymous = settings;
    anonymous.bind_user = String::new();
    match reader(anonymous, "").test().await {
        Err(ReadError::Permission(m)) => assert!(m.contains("authenticated bind"), "{m}"),
        other => panic!("expected Permission, got {other:?}"),
    }
}

#[tokio::test]
async fn d5_samba_domain_root_with_referrals_and_paging() {
    let ou = ou().await;
    let dc = ou.dc().clone();
    let data = ou.data(DOMAIN).users(25).groups(2, 5);
    ou.load(&data).await.unwrap();
    // From the domain root AD also returns search references (to the
    // configuration partition and the like): they are skipped. The custom
    // filter keeps the built-in accounts and other tests' users out.
    let mut settings = ad_settings(&dc, dc.base_dn());
    settings.filter = Some(format!("(sAMAccountName={}*)", ou.tag()));
    let r = reader_with(
        settings,
        dc.admin_password(),
        ReaderOptions {
            page_size: 10,
            ..ReaderOptions::default()
        },
    );
    let snap = r.read().await.unwrap();
    assert_eq!(users(&snap).len(), 25);
    assert_eq!(groups(&snap).len(), 2);
    let disabled = users(&snap).iter().filter(|u| u.disabled).count();
    assert_eq!(disabled, (0..25).filter(|&i| data.is_disabled(i)).count());
}

/// Active Directory has the publicFolder class only with Exchange's schema:
/// a private DC (schema updates allowed) gets a class of that name.
async fn dc_with_public_folder_class() -> SambaDc {
    let dc = SambaDc::start().await.unwrap();
    let conf = std::fs::read_to_string(dc.smb_conf()).unwrap();
    std::fs::write(
        dc.smb_conf(),
        conf.replacen(
            "[global]\n",
            "[global]\n\tdsdb:schema update allowed = true\n",
            1,
        ),
    )
    .unwrap();
    dc.start_again().await.unwrap();
    let schema = format!("CN=Schema,CN=Configuration,{}", dc.base_dn());
    let class = format!("CN=Roster-Test-Public-Folder,{schema}");
    let admin = dc.admin().await.unwrap();
    admin
        .add(
            &roster_testkit::Entry::new(&class)
                .with("objectClass", "top")
                .with("objectClass", "classSchema")
                .with("cn", "Roster-Test-Public-Folder")
                .with("lDAPDisplayName", "publicFolder")
                .with("governsID", "1.3.6.1.4.1.7165.4.255.901")
                .with("subClassOf", "top")
                .with("objectClassCategory", "1")
                .with("rDNAttID", "cn")
                .with("mayContain", "mail")
                .with("mayContain", "proxyAddresses")
                .with("mayContain", "displayName")
                .with("possSuperiors", "organizationalUnit")
                .with("possSuperiors", "container")
                .with("defaultObjectCategory", &class)
                .with("adminDisplayName", "Roster-Test-Public-Folder"),
        )
        .await
        .unwrap();
    admin
        .modify(
            "",
            vec![roster_testkit::ldap3::Mod::Add(
                b"schemaUpdateNow".to_vec(),
                [b"1".to_vec()].into_iter().collect(),
            )],
        )
        .await
        .unwrap();
    dc
}

#[tokio::test]
async fn d5_samba_public_folders_only_when_enabled() {
    let dc = dc_with_public_folder_class().await;
    let ou = dc.new_ou().await.unwrap();
    let user = ou.new_user("Pat", "Folder", DOMAIN);
    ou.create_user(&user).await.unwrap();
    ou.admin()
        .add(
            &roster_testkit::Entry::new(format!("CN=Sales Folder,{}", ou.dn()))
                .with("objectClass", "publicFolder")
                .with("cn", "Sales Folder")
                .with("displayName", "Sales Folder")
                .with("mail", "sales-folder@example.org")
                .with("proxyAddresses", "SMTP:sales-folder@example.org"),
        )
        .await
        .unwrap();
    let mut settings = ad_settings(&dc, ou.dn());
    let without = reader(settings.clone(), dc.admin_password())
        .read()
        .await
        .unwrap();
    assert!(without
        .objects
        .iter()
        .all(|o| o.kind != ObjectKind::PublicFolder));
    assert_eq!(without.objects.len(), 1);

    settings.include_public_folders = true;
    let with = reader(settings, dc.admin_password()).read().await.unwrap();
    let pf = by_mail(&with, "sales-folder@example.org");
    assert_eq!(pf.kind, ObjectKind::PublicFolder);
    assert!(is_uuid(pf.id.as_str()));
    assert_eq!(
        pf.proxy_addresses,
        vec!["SMTP:sales-folder@example.org".to_string()]
    );
    assert_eq!(pf.display_name.as_deref(), Some("Sales Folder"));
    assert_eq!(with.objects.len(), 2);
}
