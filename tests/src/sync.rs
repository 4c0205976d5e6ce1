//! Support for directory-sync tests: a customer configured against a real
//! slapd from the testkit.

use roster_events::*;
use roster_store::Secret;
use roster_sync::SettingsChange;
use roster_testkit::{DirectoryData, Flavour, Slapd, SlapdConfig};

use crate::TestStore;

pub const DOMAIN: &str = "example.org";

/// LDAP settings that read `slapd` as its root account over plain LDAP.
pub fn settings_for(slapd: &Slapd, base_dn: &str) -> LdapSettings {
    LdapSettings {
        host: slapd.host().to_string(),
        port: slapd.port(),
        ssl: false,
        starttls: false,
        tls: TlsSettings {
            verify: true,
            ca_pem: None,
        },
        bind_user: slapd.root_dn(),
        base_dn: base_dn.to_string(),
        filter: None,
        include_disabled: false,
        include_public_folders: false,
        preset: match slapd.flavour() {
            Flavour::AdLike => LdapPreset::ActiveDirectory,
            _ => LdapPreset::Openldap,
        },
        attributes: AttributeMap::default(),
        timeout_secs: 10,
        full_sync_hours: None,
    }
}

pub fn config(settings: LdapSettings, delete_after: DeleteAfter) -> DirectoryConfig {
    DirectoryConfig {
        connection: Connection::Ldap(settings),
        poll_interval: PollInterval::Hours6,
        delete_after,
        guard: GuardSettings::default(),
    }
}

/// A customer managing [`DOMAIN`], and an AD-like slapd with `data`'s users
/// and groups, configured and enabled.
pub struct Scenario {
    pub slapd: Slapd,
    pub data: DirectoryData,
    pub customer: CustomerId,
}

/// Saves `slapd`'s settings for `customer` (base DN `base`, deletion after
/// 7 days) with its root password, and enables the sync.
pub async fn enable(s: &TestStore, customer: CustomerId, slapd: &Slapd, base: &str) {
    s.sync()
        .save_settings(
            &s.meta(customer),
            config(settings_for(slapd, base), DeleteAfter::Days7),
            SettingsChange {
                secret: Some(Secret::new(slapd.root_password())),
                enable: Some(true),
                confirm_switch: false,
            },
        )
        .await
        .expect("save settings");
}

pub async fn scenario(s: &TestStore, users: usize, groups: usize) -> Scenario {
    let base = "dc=example,dc=com";
    let data = DirectoryData::new(roster_testkit::Style::AdLike, base, DOMAIN)
        .users(users)
        .groups(groups, 5);
    let slapd = Slapd::start(SlapdConfig::ad_like().data(data.clone()))
        .await
        .expect("slapd");
    let customer = s.customer(100_000, &[DOMAIN]).await;
    enable(s, customer, &slapd, base).await;
    Scenario {
        slapd,
        data,
        customer,
    }
}
