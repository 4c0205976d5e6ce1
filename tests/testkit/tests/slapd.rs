//! Private OpenLDAP servers: flavours, bulk loads, the AD page cap, TLS,
//! online changes and lifecycle.

use std::time::Instant;

use roster_testkit::ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use roster_testkit::ldap3::{Scope, SearchEntry};
use roster_testkit::{DirectoryData, Security, Slapd, SlapdConfig, Style};

async fn search_all(
    ldap: &mut roster_testkit::ldap3::Ldap,
    base: &str,
    filter: &str,
    attrs: &[&str],
) -> Vec<SearchEntry> {
    let (entries, _) = ldap
        .search(base, Scope::Subtree, filter, attrs.to_vec())
        .await
        .unwrap()
        .success()
        .unwrap();
    entries.into_iter().map(SearchEntry::construct).collect()
}

#[tokio::test]
async fn inet_org_person_directory_with_generated_data() {
    let data = DirectoryData::new(Style::InetOrgPerson, "dc=example,dc=com", "example.org")
        .users(300)
        .groups(5, 10);
    let slapd = Slapd::start(SlapdConfig::inet_org_person().data(data.clone()))
        .await
        .unwrap();
    assert!(slapd.url().starts_with("ldap://127.0.0.1:"));
    assert_eq!(slapd.ldaps_port(), None);

    let mut ldap = slapd
        .bind(Security::Plain, &slapd.reader_dn(), slapd.reader_password())
        .await
        .unwrap();
    let users = search_all(
        &mut ldap,
        "ou=People,dc=example,dc=com",
        "(objectClass=inetOrgPerson)",
        &["mail", "entryUUID", "uid"],
    )
    .await;
    assert_eq!(users.len(), 300);
    assert!(
        users.iter().all(|u| u.attrs.contains_key("entryUUID")),
        "slapd gives every entry an entryUUID"
    );

    // User 49 has a comma in its cn; its DN is escaped and findable.
    let expected = data.user(49);
    let found = search_all(&mut ldap, &expected.dn, "(objectClass=*)", &["mail", "cn"]).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].attrs["mail"], vec![expected.mail.clone().unwrap()]);
    assert_eq!(found[0].attrs["cn"], vec![expected.cn.clone()]);

    let groups = search_all(
        &mut ldap,
        "ou=Groups,dc=example,dc=com",
        "(objectClass=groupOfNames)",
        &["member", "mail"],
    )
    .await;
    assert_eq!(groups.len(), 5);
    let g0 = groups.iter().find(|g| g.dn == data.group(0).dn).unwrap();
    assert_eq!(g0.attrs["member"].len(), 10);
    assert_eq!(g0.attrs["mail"], vec![data.group(0).mail.unwrap()]);

    // Bad password: a bind error, not a connection.
    assert!(slapd
        .bind(Security::Plain, &slapd.reader_dn(), "wrong")
        .await
        .is_err());
}

#[tokio::test]
async fn ad_like_schema_holds_ad_attributes() {
    let data = DirectoryData::new(Style::AdLike, "dc=example,dc=com", "corp.example.net")
        .users(20)
        .groups(2, 5);
    let slapd = Slapd::start(SlapdConfig::ad_like().data(data.clone()))
        .await
        .unwrap();
    let mut ldap = slapd
        .bind(Security::Plain, &slapd.reader_dn(), slapd.reader_password())
        .await
        .unwrap();
    let u = data.user(9);
    let found = search_all(
        &mut ldap,
        "dc=example,dc=com",
        &format!("(sAMAccountName={})", u.account_name),
        &[
            "proxyAddresses",
            "userAccountControl",
            "objectGUID",
            "company",
            "department",
            "userPrincipalName",
            "info",
        ],
    )
    .await;
    assert_eq!(found.len(), 1);
    let e = &found[0];
    assert_eq!(e.dn, u.dn);
    assert_eq!(
        e.attrs["userAccountControl"],
        vec!["514".to_string()],
        "user 9 is disabled"
    );
    let mut proxies = e.attrs["proxyAddresses"].clone();
    proxies.sort();
    let mut want = u.proxy_addresses.clone();
    want.sort();
    assert_eq!(proxies, want);
    assert_eq!(
        e.bin_attrs["objectGUID"],
        vec![u.object_guid.unwrap().to_vec()]
    );
    assert_eq!(e.attrs["company"], vec![u.company.clone().unwrap()]);

    // Disabled users with AD's matching-rule filter (slapd knows the rule).
    let disabled = search_all(
        &mut ldap,
        "dc=example,dc=com",
        "(&(objectClass=user)(userAccountControl:1.2.840.113556.1.4.803:=2))",
        &["1.1"],
    )
    .await;
    assert_eq!(disabled.len(), 2, "users 9 and 19");

    let groups = search_all(
        &mut ldap,
        "dc=example,dc=com",
        "(objectClass=group)",
        &["member", "groupType"],
    )
    .await;
    assert_eq!(groups.len(), 2);

    // Online changes go through the memberof overlay.
    let admin = slapd.admin().await.unwrap();
    let mut g = roster_testkit::Group::new(&data.groups_dn(), "online", "Online Group");
    g.members = vec![data.user(0).dn, data.user(1).dn];
    g.mail = Some("online@corp.example.net".into());
    admin.add(&g.entry(Style::AdLike)).await.unwrap();
    let u0 = search_all(
        &mut ldap,
        &data.user(0).dn,
        "(objectClass=*)",
        &["memberOf"],
    )
    .await;
    assert_eq!(u0[0].attrs["memberOf"], vec![g.dn.clone()]);

    // Rename, move, modify, delete.
    let moved = admin
        .rename(&data.user(2).dn, "cn=Renamed Person", None)
        .await
        .unwrap();
    assert!(moved.starts_with("cn=Renamed Person,ou=People,"));
    admin.set_disabled(&moved, true).await.unwrap();
    let e = search_all(
        &mut ldap,
        &moved,
        "(objectClass=*)",
        &["userAccountControl"],
    )
    .await;
    assert_eq!(e[0].attrs["userAccountControl"], vec!["514".to_string()]);
    let moved2 = admin.move_to(&moved, "dc=example,dc=com").await.unwrap();
    assert_eq!(moved2, "cn=Renamed Person,dc=example,dc=com");
    admin.delete(&moved2).await.unwrap();
    assert!(search_all(
        &mut ldap,
        "dc=example,dc=com",
        "(cn=Renamed Person)",
        &["1.1"]
    )
    .await
    .is_empty());

    // LDIF change records through ldapmodify.
    slapd
        .apply_ldif(&format!(
            "dn: {}\nchangetype: modify\nreplace: department\ndepartment: Changed\n-\n",
            data.user(3).dn
        ))
        .await
        .unwrap();
    let e = search_all(
        &mut ldap,
        &data.user(3).dn,
        "(objectClass=*)",
        &["department"],
    )
    .await;
    assert_eq!(e[0].attrs["department"], vec!["Changed".to_string()]);
}

#[tokio::test]
async fn ad_page_cap_stops_unpaged_searches_at_1000_for_ordinary_users() {
    let data = DirectoryData::new(Style::AdLike, "dc=example,dc=com", "example.org").users(1500);
    let slapd = Slapd::start(SlapdConfig::ad_like().page_cap(true).data(data))
        .await
        .unwrap();
    let mut reader = slapd
        .bind(Security::Plain, &slapd.reader_dn(), slapd.reader_password())
        .await
        .unwrap();
    let res = reader
        .search(
            "dc=example,dc=com",
            Scope::Subtree,
            "(objectClass=user)",
            vec!["1.1"],
        )
        .await
        .unwrap();
    assert_eq!(res.1.rc, 4, "sizeLimitExceeded");
    assert_eq!(res.0.len(), 1000);

    // Paged, 1000 a page: everything.
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(1000)),
    ];
    let mut stream = reader
        .streaming_search_with(
            adapters,
            "dc=example,dc=com",
            Scope::Subtree,
            "(objectClass=user)",
            vec!["1.1"],
        )
        .await
        .unwrap();
    let mut n = 0;
    while stream.next().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(stream.finish().await.rc, 0);
    assert_eq!(n, 1500);

    // A page over the cap is refused (adminLimitExceeded).
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(1001)),
    ];
    let mut stream = reader
        .streaming_search_with(
            adapters,
            "dc=example,dc=com",
            Scope::Subtree,
            "(objectClass=user)",
            vec!["1.1"],
        )
        .await
        .unwrap();
    while let Ok(Some(_)) = stream.next().await {}
    assert_eq!(stream.finish().await.rc, 11);

    // The rootdn is not limited.
    let mut root = slapd
        .bind(Security::Plain, &slapd.root_dn(), slapd.root_password())
        .await
        .unwrap();
    let all = search_all(
        &mut root,
        "dc=example,dc=com",
        "(objectClass=user)",
        &["1.1"],
    )
    .await;
    assert_eq!(all.len(), 1500);
}

#[tokio::test]
async fn tls_ldaps_and_starttls_verify_with_the_generated_ca_only() {
    let slapd = Slapd::start(SlapdConfig::inet_org_person().tls(true))
        .await
        .unwrap();
    assert!(slapd.ldaps_url().unwrap().starts_with("ldaps://127.0.0.1:"));
    let ca = slapd.ca_pem().unwrap();
    let untrusted = slapd.untrusted_ca_pem().unwrap();
    assert_ne!(ca, untrusted);

    for security in [Security::Ldaps, Security::StartTls] {
        let mut ldap = slapd
            .bind(security, &slapd.reader_dn(), slapd.reader_password())
            .await
            .unwrap_or_else(|e| panic!("{security:?}: {e}"));
        let base = search_all(
            &mut ldap,
            "dc=example,dc=com",
            "(objectClass=dcObject)",
            &["dc"],
        )
        .await;
        assert_eq!(base.len(), 1);
    }
    // The certificate names 127.0.0.1 and localhost.
    roster_testkit::ldap_bind(
        "localhost",
        slapd.ldaps_port().unwrap(),
        Security::Ldaps,
        Some(ca),
        &slapd.reader_dn(),
        slapd.reader_password(),
    )
    .await
    .unwrap();

    for (security, port) in [
        (Security::Ldaps, slapd.ldaps_port().unwrap()),
        (Security::StartTls, slapd.port()),
    ] {
        let err = roster_testkit::ldap_bind(
            "127.0.0.1",
            port,
            security,
            Some(untrusted),
            &slapd.reader_dn(),
            slapd.reader_password(),
        )
        .await
        .expect_err("an untrusted CA must fail");
        let text = format!("{err:?}");
        assert!(
            text.contains("UnknownIssuer") || text.contains("certificate"),
            "{security:?}: {text}"
        );
    }
}

#[tokio::test]
async fn kill_stop_and_start_again_keep_port_and_data() {
    let data =
        DirectoryData::new(Style::InetOrgPerson, "dc=example,dc=com", "example.org").users(10);
    let mut slapd = Slapd::start(SlapdConfig::inet_org_person().data(data.clone()))
        .await
        .unwrap();
    let port = slapd.port();
    // Online load below a new OU.
    let admin = slapd.admin().await.unwrap();
    admin
        .add(&roster_testkit::organizational_unit(
            "ou=More,dc=example,dc=com",
        ))
        .await
        .unwrap();
    let more = DirectoryData::new(
        Style::InetOrgPerson,
        "ou=More,dc=example,dc=com",
        "example.org",
    )
    .users(5)
    .prefix("more");
    assert_eq!(slapd.load(&more).await.unwrap(), 2 + 5);

    // A search in flight when the server dies fails instead of hanging.
    let mut ldap = slapd
        .bind(Security::Plain, &slapd.root_dn(), slapd.root_password())
        .await
        .unwrap();
    slapd.kill();
    assert!(!slapd.is_running());
    assert!(ldap
        .search(
            "dc=example,dc=com",
            Scope::Subtree,
            "(objectClass=*)",
            vec!["1.1"]
        )
        .await
        .is_err());

    slapd.start_again().await.unwrap();
    assert_eq!(slapd.port(), port);
    let mut ldap = slapd
        .bind(Security::Plain, &slapd.root_dn(), slapd.root_password())
        .await
        .unwrap();
    let users = search_all(
        &mut ldap,
        "dc=example,dc=com",
        "(objectClass=inetOrgPerson)",
        &["1.1"],
    )
    .await;
    assert_eq!(users.len(), 15);

    // Offline bulk load while stopped.
    slapd.stop().await;
    let extra =
        roster_testkit::User::new(&data.people_dn(), "late", "Late", "Comer", "example.org");
    slapd
        .slapadd(&extra.entry(Style::InetOrgPerson).to_ldif())
        .await
        .unwrap();
    slapd.start_again().await.unwrap();
    let mut ldap = slapd
        .bind(Security::Plain, &slapd.root_dn(), slapd.root_password())
        .await
        .unwrap();
    let users = search_all(
        &mut ldap,
        "dc=example,dc=com",
        "(objectClass=inetOrgPerson)",
        &["1.1"],
    )
    .await;
    assert_eq!(users.len(), 16);

    let dir = slapd.dir().to_path_buf();
    drop(slapd);
    assert!(!dir.exists());
}

#[tokio::test]
async fn twenty_thousand_users_bulk_load_quickly() {
    let data = DirectoryData::new(Style::AdLike, "dc=example,dc=com", "example.org")
        .users(20_000)
        .groups(100, 200);
    let t = Instant::now();
    let slapd = Slapd::start(SlapdConfig::ad_like().data(data))
        .await
        .unwrap();
    let took = t.elapsed();
    eprintln!("20,000 users + 100 groups: slapd ready in {took:?}");
    let mut ldap = slapd
        .bind(Security::Plain, &slapd.root_dn(), slapd.root_password())
        .await
        .unwrap();
    let users = search_all(
        &mut ldap,
        "dc=example,dc=com",
        "(objectClass=user)",
        &["1.1"],
    )
    .await;
    assert_eq!(users.len(), 20_000);
}
