//! Settings and helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::Once;

use roster_directory::{LdapReader, ReaderOptions};
use roster_domain::snapshot::{DirectoryObject, ObjectKind, Snapshot};
use roster_events::{AttributeMap, LdapPreset, LdapSettings, TlsSettings};
use roster_testkit::Slapd;

/// Logs to the test output (`RUST_LOG=roster_directory=debug`).
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "roster_directory=info".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// Plain LDAP settings (explicitly no TLS) for a private slapd, bound as its
/// ordinary reader account (subject to the page cap when it is on).
pub fn slapd_settings(slapd: &Slapd, preset: LdapPreset) -> LdapSettings {
    LdapSettings {
        host: slapd.host().to_string(),
        port: slapd.port(),
        ssl: false,
        starttls: false,
        tls: TlsSettings {
            verify: true,
            ca_pem: None,
        },
        bind_user: slapd.reader_dn(),
        base_dn: slapd.base_dn().to_string(),
        filter: None,
        include_disabled: false,
        include_public_folders: false,
        preset,
        attributes: AttributeMap::default(),
        timeout_secs: 10,
        full_sync_hours: None,
    }
}

pub fn reader(settings: LdapSettings, password: &str) -> LdapReader {
    init_tracing();
    LdapReader::new(settings, password.to_string())
}

pub fn reader_with(settings: LdapSettings, password: &str, options: ReaderOptions) -> LdapReader {
    init_tracing();
    LdapReader::with_options(settings, password.to_string(), options)
}

pub fn users(s: &Snapshot) -> Vec<&DirectoryObject> {
    s.objects
        .iter()
        .filter(|o| o.kind == ObjectKind::User)
        .collect()
}

pub fn groups(s: &Snapshot) -> Vec<&DirectoryObject> {
    s.objects
        .iter()
        .filter(|o| o.kind == ObjectKind::Group)
        .collect()
}

pub fn by_mail<'a>(s: &'a Snapshot, mail: &str) -> &'a DirectoryObject {
    s.objects
        .iter()
        .find(|o| {
            o.mail
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(mail))
        })
        .unwrap_or_else(|| panic!("no object with mail {mail}"))
}

pub fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s == s.to_ascii_lowercase()
}
