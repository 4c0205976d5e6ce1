use roster_testkit::*;
use std::time::Instant;

#[tokio::test]
async fn scratch_empty_group_and_100k() {
    let mut g = Group::new("ou=Groups,dc=example,dc=com", "empty", "Empty");
    g.mail = Some("empty@example.org".into());
    let data =
        DirectoryData::new(Style::InetOrgPerson, "dc=example,dc=com", "example.org").users(3);
    let s = Slapd::start(
        SlapdConfig::inet_org_person()
            .data(data.clone())
            .ldif(g.entry(Style::InetOrgPerson).to_ldif()),
    )
    .await
    .unwrap();
    let admin = s.admin().await.unwrap();
    let mut g2 = Group::new("ou=Groups,dc=example,dc=com", "empty2", "Empty2");
    g2.members.clear();
    admin.add(&g2.entry(Style::InetOrgPerson)).await.unwrap();
    let r = admin
        .search(
            "ou=Groups,dc=example,dc=com",
            ldap3::Scope::OneLevel,
            "(objectClass=groupOfNames)",
            &["member"],
        )
        .await
        .unwrap();
    eprintln!("{r:?}");
    drop(s);

    let data = DirectoryData::new(Style::AdLike, "dc=example,dc=com", "example.org")
        .users(100_000)
        .groups(500, 100);
    let t = Instant::now();
    let ldif = data.to_ldif();
    eprintln!("ldif {} MB in {:?}", ldif.len() / 1_000_000, t.elapsed());
    let t = Instant::now();
    let s = Slapd::start(SlapdConfig::ad_like().page_cap(true).data(data))
        .await
        .unwrap();
    eprintln!("100k slapd ready in {:?}", t.elapsed());
    let t = Instant::now();
    let mut ldap = s
        .bind(Security::Plain, &s.root_dn(), s.root_password())
        .await
        .unwrap();
    let (e, _) = ldap
        .search(
            "dc=example,dc=com",
            ldap3::Scope::Subtree,
            "(objectClass=user)",
            vec!["mail", "proxyAddresses"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    eprintln!("{} users read in {:?}", e.len(), t.elapsed());
    let t = Instant::now();
    let n = NatsServer::start().await.unwrap();
    eprintln!("nats ready in {:?}", t.elapsed());
    let t = Instant::now();
    let s2 = Slapd::start(SlapdConfig::ad_like().tls(true))
        .await
        .unwrap();
    eprintln!("empty slapd+tls ready in {:?}", t.elapsed());
    let t = Instant::now();
    let db = PgDb::create().await.unwrap();
    eprintln!("pgdb in {:?}", t.elapsed());
    drop((n, s2, db));
}
