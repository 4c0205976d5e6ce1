//! The OpenLDAP (inetOrgPerson) preset against a real private slapd (D5,
//! D3.d): users with their profile and aliases, groups with mail as lists
//! with resolved members, the custom filter, "Test connection".

mod common;

use common::*;
use roster_directory::{normalize_dn, ReaderOptions};
use roster_domain::snapshot::{DirectoryReader, ObjectKind};
use roster_events::LdapPreset;
use roster_testkit::{DirectoryData, Slapd, SlapdConfig, Style};

const DOMAIN: &str = "example.org";

fn data() -> DirectoryData {
    DirectoryData::new(Style::InetOrgPerson, "dc=example,dc=com", DOMAIN)
        .users(60)
        .groups(6, 5)
        .comma_every(10)
}

#[tokio::test]
async fn d5_openldap_inetorgperson_directory_is_read_whole() {
    let data = data();
    let slapd = Slapd::start(SlapdConfig::inet_org_person().data(data.clone()))
        .await
        .unwrap();
    // A small page size: several pages per search.
    let reader = reader_with(
        slapd_settings(&slapd, LdapPreset::Openldap),
        slapd.reader_password(),
        ReaderOptions {
            page_size: 7,
            ..ReaderOptions::default()
        },
    );
    let snap = reader.read().await.unwrap();

    let users = users(&snap);
    assert_eq!(users.len(), 60);
    for u in &users {
        assert!(is_uuid(u.id.as_str()), "entryUUID as id: {}", u.id);
        assert!(!u.disabled);
    }
    // User 9 has a comma in its cn (an escaped comma in its DN).
    let expected = data.user(9);
    let u9 = by_mail(&snap, expected.mail.as_deref().unwrap());
    assert_eq!(u9.kind, ObjectKind::User);
    // slapd returns the DN it was given as `cn=Smith\, Judy 9` spelled
    // `cn=Smith\2C Judy 9`, while group `member` values keep `\,`.
    let dn = u9.dn.as_deref().unwrap();
    assert!(expected.dn.contains(r"\,"), "{}", expected.dn);
    assert_ne!(dn, expected.dn);
    assert_eq!(normalize_dn(dn), normalize_dn(&expected.dn));
    assert_eq!(
        u9.profile.first_name.as_deref(),
        Some(expected.given_name.as_str())
    );
    assert_eq!(u9.profile.last_name.as_deref(), Some(expected.sn.as_str()));
    assert_eq!(u9.profile.company, expected.company, "o is the company");
    assert_eq!(
        u9.profile.department, expected.department,
        "ou is the department"
    );
    assert_eq!(u9.profile.notes, expected.info, "description is the notes");
    assert_eq!(u9.profile.mobile, expected.mobile);
    assert_eq!(u9.profile.home_phone, None, "odd users have no home phone");
    assert_eq!(
        by_mail(&snap, data.user(8).mail.as_deref().unwrap())
            .profile
            .home_phone,
        data.user(8).home_phone
    );
    assert_eq!(
        u9.display_name.as_deref(),
        Some(expected.display_name.as_str())
    );
    assert!(u9.proxy_addresses.is_empty());

    // Groups with mail are lists (j % 3 != 2), with their members' ids;
    // groups without mail are not in the snapshot.
    let lists = groups(&snap);
    assert_eq!(lists.len(), 4);
    for j in [0usize, 1, 3, 4] {
        let g = data.group(j);
        let list = by_mail(&snap, g.mail.as_deref().unwrap());
        let mut want: Vec<String> = data
            .member_indexes(j)
            .into_iter()
            .map(|i| {
                by_mail(&snap, data.user(i).mail.as_deref().unwrap())
                    .id
                    .to_string()
            })
            .collect();
        let mut got: Vec<String> = list.members.iter().map(|m| m.to_string()).collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "members of group {j}");
    }
    // Group 1's members are users 5..9, so user 9 (escaped comma) is one.
    assert!(by_mail(&snap, data.group(1).mail.as_deref().unwrap())
        .members
        .contains(&u9.id));
}

#[tokio::test]
async fn d3d_openldap_extra_mail_values_aliases_and_hex_escaped_members() {
    let slapd = Slapd::start(SlapdConfig::inet_org_person().data(data()))
        .await
        .unwrap();
    let people = "ou=People,dc=example,dc=com";
    slapd
        .apply_ldif(&format!(
            "dn: cn=Doe\\, John,{people}\nobjectClass: inetOrgPerson\ncn: Doe, John\nsn: Doe\n\
             givenName: John\nmail: john.doe@example.org\nmail: jd@example.org\n\
             departmentNumber: 42\nou: Ignored When departmentNumber Is Set\n\n\
             dn: cn=Nested,ou=Groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: Nested\n\
             member: cn=Doe\\2C John,{people}\n\n\
             dn: cn=Team,ou=Groups,dc=example,dc=com\nobjectClass: groupOfNames\n\
             objectClass: extensibleObject\ncn: Team\nmail: team@example.org\n\
             member: CN=Nested, OU=Groups,DC=EXAMPLE,DC=COM\n\
             member: cn=Nobody Here,{people}\n"
        ))
        .await
        .unwrap();
    let reader = reader(
        slapd_settings(&slapd, LdapPreset::Openldap),
        slapd.reader_password(),
    );
    let snap = reader.read().await.unwrap();
    let john = by_mail(&snap, "john.doe@example.org");
    assert_eq!(
        john.proxy_addresses,
        vec!["smtp:jd@example.org".to_string()]
    );
    assert_eq!(john.profile.department.as_deref(), Some("42"));
    // Team -> Nested (no mail: passes its members on) -> John, spelled with
    // \2C in Nested's member value; the dangling member is dropped.
    let team = by_mail(&snap, "team@example.org");
    assert_eq!(team.members, vec![john.id.clone()]);
    assert!(snap
        .objects
        .iter()
        .all(|o| o.display_name.as_deref() != Some("Nested")));
}

#[tokio::test]
async fn d5_openldap_custom_filter_and_test_connection() {
    let data = data();
    let slapd = Slapd::start(SlapdConfig::inet_org_person().data(data.clone()))
        .await
        .unwrap();
    let mut settings = slapd_settings(&slapd, LdapPreset::Openldap);
    settings.filter = Some("(|(ou=Sales)(cn=Nothing Matches This))".into());
    let reader = reader(settings, slapd.reader_password());
    let snap = reader.read().await.unwrap();
    let want = (0..60)
        .filter(|&i| data.user(i).department.as_deref() == Some("Sales"))
        .count();
    assert!(want > 0);
    assert_eq!(users(&snap).len(), want);
    assert!(users(&snap)
        .iter()
        .all(|u| u.profile.department.as_deref() == Some("Sales")));
    // The filter applies to groups too: no group has ou=Sales.
    assert_eq!(groups(&snap).len(), 0);

    let report = reader.test().await.unwrap();
    assert_eq!(report.users, want as u64);
    assert_eq!(report.groups, 0);
    let unfiltered = common::reader(
        slapd_settings(&slapd, LdapPreset::Openldap),
        slapd.reader_password(),
    );
    let report = unfiltered.test().await.unwrap();
    assert_eq!((report.users, report.groups), (60, 4));
    assert!(report.details.contains("no TLS"), "{}", report.details);
    assert!(report.details.contains("cn=reader"), "{}", report.details);
}
