//! "Test connection" reports the specific failure (D5): name resolution,
//! refused, timeout, TLS (see tls.rs), bind rejected, base DN not found,
//! an invalid filter; and never shows the password (D7).

mod common;

use std::time::{Duration, Instant};

use common::*;
use roster_domain::snapshot::{DirectoryReader, ReadError};
use roster_events::LdapPreset;
use roster_testkit::{Slapd, SlapdConfig};

async fn slapd() -> Slapd {
    Slapd::start(SlapdConfig::inet_org_person()).await.unwrap()
}

#[tokio::test]
async fn d5_test_unresolvable_host_is_name_resolution() {
    let slapd = slapd().await;
    let mut s = slapd_settings(&slapd, LdapPreset::Openldap);
    s.host = "no-such-host.invalid".into();
    match reader(s, "pw").test().await {
        Err(ReadError::NameResolution(m)) => assert!(m.contains("no-such-host.invalid"), "{m}"),
        other => panic!("expected NameResolution, got {other:?}"),
    }
}

#[tokio::test]
async fn d5_test_closed_port_is_refused() {
    let slapd = slapd().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut s = slapd_settings(&slapd, LdapPreset::Openldap);
    s.port = port;
    match reader(s, "pw").test().await {
        Err(ReadError::Refused(m)) => assert!(m.contains(&port.to_string()), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn d5_test_silent_server_is_timeout() {
    let slapd = slapd().await;
    // Accepted by the kernel's backlog, never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut s = slapd_settings(&slapd, LdapPreset::Openldap);
    s.port = silent.local_addr().unwrap().port();
    s.timeout_secs = 1;
    for ssl in [false, true] {
        s.ssl = ssl;
        let started = Instant::now();
        match reader(s.clone(), "pw").test().await {
            Err(ReadError::Timeout(m)) => assert!(m.contains("1s"), "{m}"),
            other => panic!("expected Timeout (ssl {ssl}), got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    drop(silent);
}

#[tokio::test]
async fn d5_test_wrong_password_is_bind_rejected_without_the_password() {
    let slapd = slapd().await;
    let s = slapd_settings(&slapd, LdapPreset::Openldap);
    let secret = "Wr0ng-Passw0rd-Never-Shown";
    let r = reader(s.clone(), secret);
    match r.test().await {
        Err(e @ ReadError::BindRejected(_)) => {
            let text = format!("{e} {e:?}");
            assert!(text.contains("cn=reader"), "{text}");
            assert!(!text.contains(secret), "the password leaked: {text}");
        }
        other => panic!("expected BindRejected, got {other:?}"),
    }
    assert!(
        !format!("{r:?}").contains(secret),
        "Debug shows no password"
    );
    // An empty password would be an anonymous bind: refused.
    match reader(s, "").test().await {
        Err(ReadError::BindRejected(m)) => assert!(m.contains("anonymous"), "{m}"),
        other => panic!("expected BindRejected, got {other:?}"),
    }
}

#[tokio::test]
async fn d5_test_missing_base_dn_is_base_dn_not_found() {
    let slapd = slapd().await;
    let mut s = slapd_settings(&slapd, LdapPreset::Openldap);
    s.base_dn = "ou=Staff,dc=example,dc=com".into();
    assert!(matches!(
        reader(s.clone(), slapd.reader_password()).test().await,
        Err(ReadError::BaseDnNotFound(_))
    ));
    s.base_dn = "dc=other,dc=org".into();
    assert!(matches!(
        reader(s, slapd.reader_password()).test().await,
        Err(ReadError::BaseDnNotFound(_))
    ));
}

#[tokio::test]
async fn d5_invalid_custom_filter_is_refused_before_connecting() {
    let slapd = slapd().await;
    let mut s = slapd_settings(&slapd, LdapPreset::Openldap);
    s.filter = Some("(&(department=Sales)(title=Boss)".into());
    s.host = "no-such-host.invalid".into();
    match reader(s, "pw").read().await {
        Err(ReadError::InvalidFilter(m)) => assert!(m.contains("position 33"), "{m}"),
        other => panic!("expected InvalidFilter, got {other:?}"),
    }
    assert_eq!(
        roster_directory::validate_filter("(&(department=Sales)(title=Boss)"),
        Err("at position 33: missing ')' to close the '(' at position 1".to_string())
    );
}
