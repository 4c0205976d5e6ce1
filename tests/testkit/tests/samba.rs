//! A real Samba AD DC in a network namespace: LDAPS with a verified
//! certificate, per-test OUs, users, groups and changes.

use std::time::Instant;

use roster_testkit::ldap3::{Scope, SearchEntry};
use roster_testkit::{SambaDc, Security};

async fn search(
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
async fn ldaps_and_starttls_verify_the_dc_certificate() {
    let t = Instant::now();
    let dc = SambaDc::shared().await.unwrap();
    eprintln!("shared DC ready after {:?} at {}", t.elapsed(), dc.ip());
    assert!(dc.ip().is_private());

    for security in [Security::Ldaps, Security::StartTls, Security::Plain] {
        let mut ldap = dc
            .bind(security, &dc.admin_dn(), dc.admin_password())
            .await
            .unwrap_or_else(|e| panic!("{security:?}: {e}"));
        let root = search(
            &mut ldap,
            dc.base_dn(),
            "(objectClass=domain)",
            &["objectGUID"],
        )
        .await;
        assert_eq!(root.len(), 1, "{security:?}");
    }
    // The UPN works as a bind name too.
    dc.bind(Security::Ldaps, &dc.admin_upn(), dc.admin_password())
        .await
        .unwrap();

    for (security, port) in [(Security::Ldaps, 636), (Security::StartTls, 389)] {
        let err = roster_testkit::ldap_bind(
            &dc.host(),
            port,
            security,
            Some(dc.untrusted_ca_pem()),
            &dc.admin_dn(),
            dc.admin_password(),
        )
        .await
        .expect_err("an untrusted CA must fail");
        assert!(
            format!("{err:?}").contains("UnknownIssuer"),
            "{security:?}: {err:?}"
        );
    }

    // AD's own error text for a bad password.
    let err = dc
        .bind(Security::Ldaps, &dc.admin_dn(), "wrong")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("52e"), "{err}");
}

#[tokio::test]
async fn per_test_ous_with_users_groups_and_changes() {
    let dc = SambaDc::shared().await.unwrap();
    let ou = dc.new_ou().await.unwrap();
    let other = dc.new_ou().await.unwrap();
    assert_ne!(ou.dn(), other.dn());

    let mut ada = ou.new_user("Ada", "Lovelace", "example.org");
    ada.proxy_addresses = vec![
        "SMTP:ada.lovelace@example.org".into(),
        "smtp:ada@example.org".into(),
        "X500:/o=Org/cn=ada".into(),
    ];
    ada.company = Some("Analytical Engines".into());
    ada.department = Some("Research".into());
    ada.info = Some("first programmer".into());
    ada.mobile = Some("+44 1".into());
    ada.home_phone = Some("+44 2".into());
    ada.password = Some("Ada-Passw0rd!".into());
    ou.create_user(&ada).await.unwrap();
    let mut bob = ou.new_user("Bob", "Disabled", "example.org");
    bob.disabled = true;
    ou.create_user(&bob).await.unwrap();
    let mut group = ou.new_group("Mail Group");
    group.mail = Some("mailgroup@example.org".into());
    group.members = vec![ada.dn.clone(), bob.dn.clone()];
    ou.create_group(&group).await.unwrap();

    // A user with a password can bind.
    dc.bind(Security::Ldaps, &ada.dn, "Ada-Passw0rd!")
        .await
        .unwrap();

    let mut ldap = dc
        .bind(Security::Ldaps, &dc.admin_dn(), dc.admin_password())
        .await
        .unwrap();
    let users = search(
        &mut ldap,
        ou.dn(),
        "(&(objectCategory=person)(objectClass=user))",
        &[
            "proxyAddresses",
            "objectGUID",
            "memberOf",
            "uSNChanged",
            "company",
            "userAccountControl",
        ],
    )
    .await;
    assert_eq!(users.len(), 2);
    let a = users.iter().find(|u| u.dn == ada.dn).expect("ada");
    assert_eq!(a.bin_attrs["objectGUID"][0].len(), 16);
    assert_eq!(a.attrs["proxyAddresses"].len(), 3);
    assert_eq!(a.attrs["memberOf"], vec![group.dn.clone()]);
    assert_eq!(a.attrs["company"], vec!["Analytical Engines".to_string()]);
    let disabled = search(
        &mut ldap,
        ou.dn(),
        "(userAccountControl:1.2.840.113556.1.4.803:=2)",
        &["1.1"],
    )
    .await;
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].dn, bob.dn);
    assert!(
        search(&mut ldap, other.dn(), "(objectClass=user)", &["1.1"])
            .await
            .is_empty(),
        "OUs are isolated"
    );

    // Rename, move, disable, delete.
    let admin = ou.admin();
    let moved_to = ou.create_child_ou("Moved").await.unwrap();
    let renamed = admin.rename(&ada.dn, "CN=Ada King", None).await.unwrap();
    let moved = admin.move_to(&renamed, &moved_to).await.unwrap();
    admin.set_disabled(&moved, true).await.unwrap();
    let found = search(
        &mut ldap,
        &moved,
        "(objectClass=user)",
        &["userAccountControl", "memberOf"],
    )
    .await;
    assert_eq!(
        found[0].attrs["userAccountControl"],
        vec!["514".to_string()]
    );
    assert_eq!(
        found[0].attrs["memberOf"],
        vec![group.dn.clone()],
        "membership follows the move"
    );
    admin.remove_member(&group.dn, &moved).await.unwrap();
    admin.delete(&moved).await.unwrap();
    let left = search(&mut ldap, ou.dn(), "(objectClass=user)", &["1.1"]).await;
    assert_eq!(left.len(), 1);
}

#[tokio::test]
async fn generated_data_online_and_offline() {
    let dc = SambaDc::shared().await.unwrap();
    let ou = dc.new_ou().await.unwrap();
    let online = ou.data("online.example.org").users(30).groups(3, 5);
    let t = Instant::now();
    ou.load(&online).await.unwrap();
    eprintln!("30 users + 3 groups over LDAP: {:?}", t.elapsed());

    let ou2 = dc.new_ou().await.unwrap();
    let offline = ou2.data("offline.example.org").users(500).groups(5, 50);
    let t = Instant::now();
    ou2.load_offline(&offline).await.unwrap();
    eprintln!("500 users + 5 groups with ldbadd: {:?}", t.elapsed());

    let mut ldap = dc
        .bind(Security::Ldaps, &dc.admin_dn(), dc.admin_password())
        .await
        .unwrap();
    for (ou, data) in [(&ou, &online), (&ou2, &offline)] {
        let users = search(
            &mut ldap,
            ou.dn(),
            "(&(objectCategory=person)(objectClass=user))",
            &["mail"],
        )
        .await;
        assert_eq!(users.len(), data.user_count());
        let disabled = search(
            &mut ldap,
            ou.dn(),
            "(userAccountControl:1.2.840.113556.1.4.803:=2)",
            &["1.1"],
        )
        .await;
        assert_eq!(disabled.len(), data.user_count() / 10);
        let u = data.user(7);
        let found = search(
            &mut ldap,
            ou.dn(),
            &format!("(sAMAccountName={})", u.account_name),
            &["mail", "proxyAddresses"],
        )
        .await;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].attrs["mail"], vec![u.mail.clone().unwrap()]);
        let g = data.group(1);
        let found = search(&mut ldap, &g.dn, "(objectClass=group)", &["member"]).await;
        assert_eq!(found[0].attrs["member"].len(), g.members.len());
    }
}

#[tokio::test]
async fn a_private_dc_can_be_killed_and_started_again() {
    // (Two DCs in one process are covered by samba_template.rs.)
    let dc = SambaDc::start().await.unwrap();
    let ou = dc.new_ou().await.unwrap();
    let user = ou.new_user("Kim", "Crash", "example.org");
    ou.create_user(&user).await.unwrap();

    dc.kill();
    assert!(!dc.is_running());
    assert!(dc
        .bind(Security::Plain, &dc.admin_dn(), dc.admin_password())
        .await
        .is_err());
    dc.start_again().await.unwrap();
    let mut ldap = dc
        .bind(Security::Ldaps, &dc.admin_dn(), dc.admin_password())
        .await
        .unwrap();
    assert_eq!(
        search(&mut ldap, &user.dn, "(objectClass=user)", &["1.1"])
            .await
            .len(),
        1
    );

    let (netns, dir) = (dc.netns().to_string(), dc.dir().to_path_buf());
    drop(ou);
    drop(dc);
    assert!(!std::path::Path::new("/run/netns").join(&netns).exists());
    assert!(!dir.exists());
}
