//! The Connect forms of the directory services page (D5, D6, D7): their
//! fields as typed, filled from the saved settings, and read back into
//! settings with a message saying what to fix. The password and the
//! client secret are write-only: a form never holds a stored one.

use roster_events::*;
use roster_store::Secret;
use roster_sync::SettingsChange;
use serde::Deserialize;

/// A choice of a select: its value, its label, whether it is chosen.
pub struct Opt {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

fn options(all: &[(&'static str, &'static str)], chosen: &str) -> Vec<Opt> {
    all.iter()
        .map(|(value, label)| Opt {
            value,
            label,
            selected: *value == chosen,
        })
        .collect()
}

pub const POLL: &[(&str, &str)] = &[
    ("6h", "6 hours"),
    ("12h", "12 hours"),
    ("24h", "24 hours"),
    ("3d", "3 days"),
    ("7d", "Weekly"),
];
pub const DELETE_AFTER: &[(&str, &str)] = &[
    ("7d", "7 days"),
    ("14d", "14 days"),
    ("30d", "30 days"),
    ("never", "Never"),
];
pub const PRESETS: &[(&str, &str)] = &[
    ("active_directory", "Active Directory"),
    ("openldap", "OpenLDAP (inetOrgPerson)"),
    ("389ds", "389 Directory Server / FreeIPA"),
];

pub fn poll_options(chosen: &str) -> Vec<Opt> {
    options(POLL, chosen)
}
pub fn delete_options(chosen: &str) -> Vec<Opt> {
    options(DELETE_AFTER, chosen)
}
pub fn preset_options(chosen: &str) -> Vec<Opt> {
    options(PRESETS, chosen)
}

/// The value a setting's enumeration is saved as (`"6h"`, `"never"`, ...).
fn value_of<T: serde::Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The enumeration a form's value names, or what to choose.
fn choice<T: serde::de::DeserializeOwned>(
    label: &str,
    value: &str,
    all: &[(&str, &str)],
) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(value.trim().to_string())).map_err(|_| {
        let labels: Vec<&str> = all.iter().map(|(_, l)| *l).collect();
        format!("{label}: choose one of {}.", labels.join(", "))
    })
}

/// A whole number, or the default when left empty.
fn number<T: std::str::FromStr + Copy + std::fmt::Display>(
    label: &str,
    value: &str,
    default: T,
    range: &str,
) -> Result<T, String> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(default);
    }
    v.parse()
        .map_err(|_| format!("{label}: “{v}” is not a whole number; enter {range}."))
}

fn opt(v: &str) -> Option<String> {
    let t = v.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn on(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| !v.is_empty())
}

fn check(b: bool) -> Option<String> {
    b.then(|| "on".to_string())
}

/// The mass-deletion guard's fields (D3.s), shared by both forms.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct GuardFields {
    pub guard_max_flags: String,
    pub guard_max_percent: String,
    pub guard_min_flags: String,
}

impl GuardFields {
    fn of(g: &GuardSettings) -> Self {
        GuardFields {
            guard_max_flags: g.max_flags.to_string(),
            guard_max_percent: g.max_percent.to_string(),
            guard_min_flags: g.min_flags_for_percent.to_string(),
        }
    }

    fn parse(&self) -> Result<GuardSettings, String> {
        let d = GuardSettings::default();
        let max_percent: u8 = number(
            "Hold a run that would flag more than this percentage",
            &self.guard_max_percent,
            d.max_percent,
            "a percentage from 0 to 100",
        )?;
        if max_percent > 100 {
            return Err(
                "Hold a run that would flag more than this percentage: enter 0 to 100.".into(),
            );
        }
        Ok(GuardSettings {
            max_flags: number(
                "Hold a run that would flag more than this many users",
                &self.guard_max_flags,
                d.max_flags,
                "a number of users",
            )?,
            max_percent,
            min_flags_for_percent: number(
                "and more than this many users",
                &self.guard_min_flags,
                d.min_flags_for_percent,
                "a number of users",
            )?,
        })
    }
}

/// The LDAP Connect form (D5), every field as typed.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct LdapForm {
    pub enabled: Option<String>,
    pub host: String,
    /// `ssl` (LDAPS, the default), `starttls` or `none`.
    pub security: String,
    pub bind_user: String,
    /// Write-only: never filled in from the saved settings.
    pub password: String,
    pub base_dn: String,
    pub poll_interval: String,
    pub delete_after: String,
    pub port: String,
    pub filter: String,
    pub preset: String,
    pub attr_id: String,
    pub attr_mail: String,
    pub attr_proxy_addresses: String,
    pub attr_first_name: String,
    pub attr_last_name: String,
    pub attr_home_phone: String,
    pub attr_mobile: String,
    pub attr_company: String,
    pub attr_department: String,
    pub attr_notes: String,
    pub attr_member: String,
    pub user_filter: String,
    pub group_filter: String,
    pub disabled_filter: String,
    pub skip_verify: Option<String>,
    pub ca_pem: String,
    pub timeout_secs: String,
    /// Hours between full reads (B1); empty: 24.
    pub full_sync_hours: String,
    pub include_disabled: Option<String>,
    pub include_public_folders: Option<String>,
    #[serde(flatten)]
    pub guard: GuardFields,
    pub confirm_switch: Option<String>,
    /// The button: `test` or `save`.
    #[serde(rename = "do")]
    pub action: String,
}

/// An attribute-mapping field as the template shows it.
pub struct AttrField {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
}

impl LdapForm {
    /// A new form: SSL on, every 6 hours, delete after 7 days (the guide's
    /// defaults).
    pub fn blank() -> Self {
        LdapForm {
            security: "ssl".into(),
            poll_interval: "6h".into(),
            delete_after: "7d".into(),
            preset: "active_directory".into(),
            timeout_secs: "30".into(),
            guard: GuardFields::of(&GuardSettings::default()),
            ..Default::default()
        }
    }

    pub fn of(config: &DirectoryConfig, enabled: bool) -> Self {
        let Connection::Ldap(s) = &config.connection else {
            return Self::blank();
        };
        let security = if s.ssl {
            "ssl"
        } else if s.starttls {
            "starttls"
        } else {
            "none"
        };
        let default_port = if s.ssl { 636 } else { 389 };
        let a = &s.attributes;
        let f = |v: &Option<String>| v.clone().unwrap_or_default();
        LdapForm {
            enabled: check(enabled),
            host: s.host.clone(),
            security: security.into(),
            bind_user: s.bind_user.clone(),
            password: String::new(),
            base_dn: s.base_dn.clone(),
            poll_interval: value_of(config.poll_interval),
            delete_after: value_of(config.delete_after),
            port: if s.port == default_port {
                String::new()
            } else {
                s.port.to_string()
            },
            filter: f(&s.filter),
            preset: value_of(s.preset),
            attr_id: f(&a.id),
            attr_mail: f(&a.mail),
            attr_proxy_addresses: f(&a.proxy_addresses),
            attr_first_name: f(&a.profile.first_name),
            attr_last_name: f(&a.profile.last_name),
            attr_home_phone: f(&a.profile.home_phone),
            attr_mobile: f(&a.profile.mobile),
            attr_company: f(&a.profile.company),
            attr_department: f(&a.profile.department),
            attr_notes: f(&a.profile.notes),
            attr_member: f(&a.member),
            user_filter: f(&a.user_filter),
            group_filter: f(&a.group_filter),
            disabled_filter: f(&a.disabled_filter),
            skip_verify: check(!s.tls.verify),
            ca_pem: f(&s.tls.ca_pem),
            timeout_secs: s.timeout_secs.to_string(),
            full_sync_hours: s.full_sync_hours.map(|h| h.to_string()).unwrap_or_default(),
            include_disabled: check(s.include_disabled),
            include_public_folders: check(s.include_public_folders),
            guard: GuardFields::of(&config.guard),
            confirm_switch: None,
            action: String::new(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        on(&self.enabled)
    }
    pub fn verify_off(&self) -> bool {
        on(&self.skip_verify)
    }
    pub fn disabled_on(&self) -> bool {
        on(&self.include_disabled)
    }
    pub fn folders_on(&self) -> bool {
        on(&self.include_public_folders)
    }
    pub fn confirmed(&self) -> bool {
        on(&self.confirm_switch)
    }

    /// The attribute mapping's fields (D3.d), in the template's order.
    pub fn attributes(&self) -> Vec<AttrField> {
        let field = |name, label, value: &String| AttrField {
            name,
            label,
            value: value.clone(),
        };
        vec![
            field("attr_id", "Unique id", &self.attr_id),
            field("attr_mail", "Email address", &self.attr_mail),
            field(
                "attr_proxy_addresses",
                "Aliases (proxy addresses)",
                &self.attr_proxy_addresses,
            ),
            field("attr_first_name", "First name", &self.attr_first_name),
            field("attr_last_name", "Last name", &self.attr_last_name),
            field("attr_home_phone", "Home phone", &self.attr_home_phone),
            field("attr_mobile", "Mobile", &self.attr_mobile),
            field("attr_company", "Company", &self.attr_company),
            field("attr_department", "Department", &self.attr_department),
            field("attr_notes", "Notes", &self.attr_notes),
            field("attr_member", "Group members", &self.attr_member),
        ]
    }

    /// The settings and what saving does, or what to fix.
    pub fn parse(&self) -> Result<(DirectoryConfig, SettingsChange), String> {
        let (ssl, starttls) = match self.security.trim() {
            "" | "ssl" => (true, false),
            "starttls" => (false, true),
            "none" => (false, false),
            _ => return Err("Security: choose SSL, StartTLS or none.".into()),
        };
        let port: u16 = number(
            "Port",
            &self.port,
            if ssl { 636 } else { 389 },
            "a port from 1 to 65535 (636 for SSL, 389 without)",
        )?;
        let timeout_secs: u32 = number("Timeout", &self.timeout_secs, 30, "seconds from 1 to 600")?;
        let full_sync_hours = match self.full_sync_hours.trim() {
            "" => None,
            h => Some(number("Hours between full reads", h, 24u32, "hours")?),
        };
        let attributes = AttributeMap {
            id: opt(&self.attr_id),
            mail: opt(&self.attr_mail),
            proxy_addresses: opt(&self.attr_proxy_addresses),
            profile: Profile {
                first_name: opt(&self.attr_first_name),
                last_name: opt(&self.attr_last_name),
                home_phone: opt(&self.attr_home_phone),
                mobile: opt(&self.attr_mobile),
                company: opt(&self.attr_company),
                department: opt(&self.attr_department),
                notes: opt(&self.attr_notes),
            },
            member: opt(&self.attr_member),
            user_filter: opt(&self.user_filter),
            group_filter: opt(&self.group_filter),
            disabled_filter: opt(&self.disabled_filter),
        };
        let connection = Connection::Ldap(LdapSettings {
            host: self.host.trim().to_string(),
            port,
            ssl,
            starttls,
            tls: TlsSettings {
                verify: !self.verify_off(),
                ca_pem: opt(&self.ca_pem),
            },
            bind_user: self.bind_user.trim().to_string(),
            base_dn: self.base_dn.trim().to_string(),
            filter: opt(&self.filter),
            include_disabled: self.disabled_on(),
            include_public_folders: self.folders_on(),
            preset: choice("Preset", &self.preset, PRESETS)?,
            attributes,
            timeout_secs,
            full_sync_hours,
        });
        let config = DirectoryConfig {
            connection,
            poll_interval: choice("Poll LDAP every", &self.poll_interval, POLL)?,
            delete_after: choice("Delete users after", &self.delete_after, DELETE_AFTER)?,
            guard: self.guard.parse()?,
        };
        let change = SettingsChange {
            secret: (!self.password.is_empty()).then(|| Secret::new(self.password.clone())),
            enable: Some(self.is_enabled()),
            confirm_switch: self.confirmed(),
        };
        Ok((config, change))
    }
}

/// The Entra ID Connect form (D6), every field as typed.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct EntraForm {
    pub enabled: Option<String>,
    pub tenant: String,
    pub client_id: String,
    /// Write-only: never filled in from the saved settings.
    pub client_secret: String,
    pub poll_interval: String,
    pub delete_after: String,
    pub include_disabled: Option<String>,
    pub filter: String,
    pub login_endpoint: String,
    pub graph_endpoint: String,
    pub full_sync_hours: String,
    #[serde(flatten)]
    pub guard: GuardFields,
    pub confirm_switch: Option<String>,
    #[serde(rename = "do")]
    pub action: String,
}

impl EntraForm {
    /// A new form: every 6 hours, delete after 7 days, disabled accounts
    /// left out (the guide's defaults).
    pub fn blank() -> Self {
        EntraForm {
            poll_interval: "6h".into(),
            delete_after: "7d".into(),
            guard: GuardFields::of(&GuardSettings::default()),
            ..Default::default()
        }
    }

    pub fn of(config: &DirectoryConfig, enabled: bool) -> Self {
        let Connection::Entra(s) = &config.connection else {
            return Self::blank();
        };
        EntraForm {
            enabled: check(enabled),
            tenant: s.tenant.clone(),
            client_id: s.client_id.clone(),
            client_secret: String::new(),
            poll_interval: value_of(config.poll_interval),
            delete_after: value_of(config.delete_after),
            include_disabled: check(s.include_disabled),
            filter: s.filter.clone().unwrap_or_default(),
            login_endpoint: s.login_endpoint.clone().unwrap_or_default(),
            graph_endpoint: s.graph_endpoint.clone().unwrap_or_default(),
            full_sync_hours: s.full_sync_hours.map(|h| h.to_string()).unwrap_or_default(),
            guard: GuardFields::of(&config.guard),
            confirm_switch: None,
            action: String::new(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        on(&self.enabled)
    }
    pub fn disabled_on(&self) -> bool {
        on(&self.include_disabled)
    }
    pub fn confirmed(&self) -> bool {
        on(&self.confirm_switch)
    }

    pub fn parse(&self) -> Result<(DirectoryConfig, SettingsChange), String> {
        let full_sync_hours = match self.full_sync_hours.trim() {
            "" => None,
            h => Some(number("Hours between full reads", h, 24u32, "hours")?),
        };
        let connection = Connection::Entra(EntraSettings {
            tenant: self.tenant.trim().to_string(),
            client_id: self.client_id.trim().to_string(),
            include_disabled: self.disabled_on(),
            filter: opt(&self.filter),
            login_endpoint: opt(&self.login_endpoint),
            graph_endpoint: opt(&self.graph_endpoint),
            full_sync_hours,
        });
        let config = DirectoryConfig {
            connection,
            poll_interval: choice("Sync frequency", &self.poll_interval, POLL)?,
            delete_after: choice("Delete users after", &self.delete_after, DELETE_AFTER)?,
            guard: self.guard.parse()?,
        };
        let change = SettingsChange {
            secret: (!self.client_secret.is_empty())
                .then(|| Secret::new(self.client_secret.clone())),
            enable: Some(self.is_enabled()),
            confirm_switch: self.confirmed(),
        };
        Ok((config, change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ldap(f: &LdapForm) -> LdapSettings {
        match f.parse().expect("parses").0.connection {
            Connection::Ldap(s) => s,
            other => panic!("{other:?}"),
        }
    }

    /// D5: the guide's defaults (SSL on, every 6 hours, delete after 7
    /// days), the default port of each security, and the secret only when
    /// typed (D7: an empty field keeps the stored one).
    #[test]
    fn d5_d7_ldap_form_defaults_ports_and_write_only_password() {
        let mut f = LdapForm::blank();
        f.host = " dc1.example.com ".into();
        f.base_dn = "dc=example,dc=com".into();
        let (config, change) = f.parse().unwrap();
        assert_eq!(config.poll_interval, PollInterval::Hours6);
        assert_eq!(config.delete_after, DeleteAfter::Days7);
        let s = ldap(&f);
        assert_eq!((s.ssl, s.starttls, s.port), (true, false, 636));
        assert_eq!(s.host, "dc1.example.com");
        assert!(s.tls.verify);
        assert!(
            change.secret.is_none(),
            "no password typed: keep the stored one"
        );
        assert_eq!(change.enable, Some(false));
        f.security = "starttls".into();
        let s = ldap(&f);
        assert_eq!((s.ssl, s.starttls, s.port), (false, true, 389));
        f.port = "10389".into();
        f.password = "pw".into();
        f.enabled = Some("on".into());
        assert_eq!(ldap(&f).port, 10389);
        let (_, change) = f.parse().unwrap();
        assert_eq!(change.secret.unwrap().expose(), "pw");
        assert_eq!(change.enable, Some(true));
    }

    /// Bad input says what to fix, by the field's label.
    #[test]
    fn d5_ldap_form_refuses_bad_numbers_and_choices_by_label() {
        let mut f = LdapForm::blank();
        f.port = "63x".into();
        assert!(f.parse().unwrap_err().starts_with("Port: “63x”"));
        let mut f = LdapForm::blank();
        f.poll_interval = "2h".into();
        let e = f.parse().unwrap_err();
        assert!(e.contains("Poll LDAP every") && e.contains("Weekly"), "{e}");
        let mut f = LdapForm::blank();
        f.guard.guard_max_percent = "150".into();
        assert!(f.parse().unwrap_err().contains("0 to 100"));
        let mut f = LdapForm::blank();
        f.security = "tls13".into();
        assert!(f.parse().unwrap_err().starts_with("Security"));
    }

    /// Every setting of the model survives the form: saved, shown, saved
    /// again unchanged (advanced options included).
    #[test]
    fn d5_d6_saved_settings_round_trip_through_the_forms() {
        let mut attributes = AttributeMap {
            mail: Some("userPrincipalName".into()),
            user_filter: Some("(objectClass=person)".into()),
            ..Default::default()
        };
        attributes.profile.department = Some("division".into());
        let config = DirectoryConfig {
            connection: Connection::Ldap(LdapSettings {
                host: "ldap.example.com".into(),
                port: 3269,
                ssl: true,
                starttls: false,
                tls: TlsSettings {
                    verify: false,
                    ca_pem: Some("-----BEGIN CERTIFICATE-----".into()),
                },
                bind_user: "sync@example.com".into(),
                base_dn: "ou=Staff,dc=example,dc=com".into(),
                filter: Some("(department=Sales)".into()),
                include_disabled: true,
                include_public_folders: true,
                preset: LdapPreset::Ds389,
                attributes,
                timeout_secs: 45,
                full_sync_hours: Some(6),
            }),
            poll_interval: PollInterval::Days3,
            delete_after: DeleteAfter::Never,
            guard: GuardSettings {
                max_flags: 20,
                max_percent: 5,
                min_flags_for_percent: 2,
            },
        };
        let f = LdapForm::of(&config, true);
        assert!(f.password.is_empty());
        assert_eq!(f.parse().unwrap().0, config);
        let entra = DirectoryConfig {
            connection: Connection::Entra(EntraSettings {
                tenant: "contoso.com".into(),
                client_id: "00000000-0000-0000-0000-000000000001".into(),
                include_disabled: true,
                filter: Some("startsWith(department,'Sales')".into()),
                login_endpoint: Some("https://login.microsoftonline.us".into()),
                graph_endpoint: Some("https://graph.microsoft.us/v1.0".into()),
                full_sync_hours: Some(12),
            }),
            poll_interval: PollInterval::Hours12,
            delete_after: DeleteAfter::Days30,
            guard: GuardSettings::default(),
        };
        let f = EntraForm::of(&entra, false);
        assert!(f.client_secret.is_empty());
        let (back, change) = f.parse().unwrap();
        assert_eq!(back, entra);
        assert_eq!(change.enable, Some(false));
    }
}
