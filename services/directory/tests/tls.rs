//! Transport security (D5): LDAPS and StartTLS verified against the
//! harness CA, an untrusted CA and a host-name mismatch as TLS errors, no
//! verification only when explicitly off, plain LDAP only when chosen.

mod common;

use common::*;
use roster_domain::snapshot::{DirectoryReader, ReadError};
use roster_events::{LdapPreset, LdapSettings, TlsSettings};
use roster_testkit::{DirectoryData, Slapd, SlapdConfig, Style};

async fn tls_slapd() -> Slapd {
    let data = DirectoryData::new(Style::InetOrgPerson, "dc=example,dc=com", "example.org")
        .users(12)
        .groups(3, 4);
    Slapd::start(SlapdConfig::inet_org_person().tls(true).data(data))
        .await
        .unwrap()
}

fn ldaps(slapd: &Slapd, ca_pem: Option<&str>) -> LdapSettings {
    let mut s = slapd_settings(slapd, LdapPreset::Openldap);
    s.ssl = true;
    s.port = slapd.ldaps_port().unwrap();
    s.tls = TlsSettings {
        verify: true,
        ca_pem: ca_pem.map(String::from),
    };
    s
}

fn starttls(slapd: &Slapd, ca_pem: Option<&str>) -> LdapSettings {
    let mut s = ldaps(slapd, ca_pem);
    s.ssl = false;
    s.starttls = true;
    s.port = slapd.port();
    s
}

fn expect_tls(r: Result<impl std::fmt::Debug, ReadError>, contains: &str) -> String {
    match r {
        Err(ReadError::Tls(m)) => {
            assert!(m.contains(contains), "{m:?} should mention {contains:?}");
            m
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test]
async fn d5_ldaps_and_starttls_verified_against_the_harness_ca() {
    let slapd = tls_slapd().await;
    let ca = slapd.ca_pem();
    for settings in [ldaps(&slapd, ca), starttls(&slapd, ca)] {
        let r = reader(settings.clone(), slapd.reader_password());
        let report = r.test().await.unwrap();
        assert_eq!((report.users, report.groups), (12, 2));
        assert!(
            report.details.contains("certificate verified"),
            "{}",
            report.details
        );
        let snap = r.read().await.unwrap();
        assert_eq!(users(&snap).len(), 12);
    }
}

#[tokio::test]
async fn d5_untrusted_ca_is_a_tls_error() {
    let slapd = tls_slapd().await;
    let untrusted = slapd.untrusted_ca_pem();
    for settings in [
        ldaps(&slapd, untrusted),
        starttls(&slapd, untrusted),
        ldaps(&slapd, None),
    ] {
        let r = reader(settings, slapd.reader_password());
        expect_tls(
            r.test().await,
            "not issued by a trusted certificate authority",
        );
        expect_tls(r.read().await, "trusted certificate authority");
    }
}

/// Forwards 127.0.0.2:<port> to `target`: the server is reached under a
/// name (an IP) its certificate does not list.
async fn forward_from_127_0_0_2(target: u16) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn d5_host_name_mismatch_is_a_tls_error_unless_verification_is_off() {
    let slapd = tls_slapd().await;
    let ca = slapd.ca_pem();
    let mut s = ldaps(&slapd, ca);
    s.host = "127.0.0.2".into();
    s.port = forward_from_127_0_0_2(slapd.ldaps_port().unwrap()).await;
    let r = reader(s.clone(), slapd.reader_password());
    let m = expect_tls(r.test().await, "mismatch");
    assert!(m.contains("127.0.0.2"), "{m}");

    let mut st = starttls(&slapd, ca);
    st.host = "127.0.0.2".into();
    st.port = forward_from_127_0_0_2(slapd.port()).await;
    expect_tls(reader(st, slapd.reader_password()).read().await, "mismatch");

    // Only an explicit `verify: false` connects anyway (and warns).
    s.tls = TlsSettings {
        verify: false,
        ca_pem: None,
    };
    let report = reader(s, slapd.reader_password()).test().await.unwrap();
    assert!(
        report.details.contains("NOT verified"),
        "{}",
        report.details
    );
}

#[tokio::test]
async fn d5_plain_ldap_only_when_explicitly_chosen() {
    let slapd = tls_slapd().await;
    // ssl=false and starttls=false: plain.
    let plain = slapd_settings(&slapd, LdapPreset::Openldap);
    assert!(!plain.ssl && !plain.starttls);
    let report = reader(plain, slapd.reader_password()).test().await.unwrap();
    assert!(report.details.contains("no TLS"), "{}", report.details);
    // SSL on against the plain port is not silently downgraded.
    let mut wrong = ldaps(&slapd, slapd.ca_pem());
    wrong.port = slapd.port();
    expect_tls(
        reader(wrong, slapd.reader_password()).test().await,
        "handshake",
    );
}

#[tokio::test]
async fn d5_settings_default_to_ssl_636_with_verification() {
    // What an administrator's saved JSON without TLS details means.
    let s: LdapSettings = serde_json::from_value(serde_json::json!({
        "host": "dc.example.com", "port": 636, "ssl": true, "starttls": false,
        "bind_user": "reader@example.com", "base_dn": "dc=example,dc=com"
    }))
    .unwrap();
    assert!(s.tls.verify, "verification is on unless explicitly off");
}
