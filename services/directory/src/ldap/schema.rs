//! Vendor presets (D3.d): which objects are users, groups and public
//! folders, and which attribute feeds each field, for Active Directory,
//! OpenLDAP (inetOrgPerson) and 389-DS / FreeIPA; and the administrator's
//! [`AttributeMap`] overriding them field by field.

use roster_domain::snapshot::ReadError;
use roster_events::{AttributeMap, LdapPreset, LdapSettings};

use super::filter::{and_all, check_filter};

/// How a user's "disabled" state is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisabledRule {
    /// Active Directory: bit 0x2 (ACCOUNTDISABLE) of `userAccountControl`.
    UserAccountControl,
    /// Disabled when the attribute has one of these values (compared
    /// case-insensitively), e.g. 389-DS / FreeIPA `nsAccountLock: TRUE`.
    AttributeIs {
        /// The attribute.
        attribute: String,
        /// The values that mean "disabled".
        values: Vec<String>,
    },
    /// Disabled when the attribute is present at all, e.g. OpenLDAP
    /// ppolicy's `pwdAccountLockedTime`.
    AttributePresent {
        /// The attribute.
        attribute: String,
    },
    /// Disabled when the attribute holds a day (days since 1970-01-01, 1 or
    /// more) that is today or earlier, e.g. `shadowExpire` (nis.schema):
    /// the account has expired.
    ExpiredOnDay {
        /// The attribute.
        attribute: String,
    },
}

impl DisabledRule {
    /// The attribute to read.
    pub fn attribute(&self) -> &str {
        match self {
            DisabledRule::UserAccountControl => "userAccountControl",
            DisabledRule::AttributeIs { attribute, .. }
            | DisabledRule::AttributePresent { attribute }
            | DisabledRule::ExpiredOnDay { attribute } => attribute,
        }
    }
}

/// The effective mapping of one [`LdapSettings`]: the preset with the
/// attribute map applied and the custom filter ANDed in. Each field lists
/// attributes in order of preference: the first with a value wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The preset it was built from.
    pub preset: LdapPreset,
    /// Selects users (preset or `attributes.user_filter`, ANDed with the
    /// custom filter).
    pub user_filter: String,
    /// Selects groups (preset or `attributes.group_filter`, ANDed with the
    /// custom filter). Groups without a mail address are read too (their
    /// members count for the lists that contain them) but are not lists.
    pub group_filter: String,
    /// Selects public folders (Active Directory with Exchange only; read
    /// only when `include_public_folders` is on). The custom filter is not
    /// applied: the vendor's custom filter applies to users and groups.
    pub public_folder_filter: Option<String>,
    /// The stable id attribute (objectGUID, entryUUID, nsUniqueId).
    pub id: String,
    /// The primary mail attribute.
    pub mail: String,
    /// Whether further values of the mail attribute are aliases (OpenLDAP,
    /// 389-DS: `mail` is multi-valued; AD's is single-valued).
    pub extra_mail_values_are_aliases: bool,
    /// `proxyAddresses`-style attribute (`SMTP:` primary, `smtp:` aliases);
    /// values without a `type:` prefix are taken as aliases.
    pub proxy_addresses: Option<String>,
    /// Display name.
    pub display_name: Vec<String>,
    /// givenName.
    pub first_name: Vec<String>,
    /// sn.
    pub last_name: Vec<String>,
    /// homePhone.
    pub home_phone: Vec<String>,
    /// mobile.
    pub mobile: Vec<String>,
    /// company.
    pub company: Vec<String>,
    /// department.
    pub department: Vec<String>,
    /// notes.
    pub notes: Vec<String>,
    /// Group membership attributes (DNs).
    pub member: Vec<String>,
    /// How the preset recognises disabled users: any rule that matches
    /// marks the user disabled. Empty when `disabled_filter` replaces them.
    pub disabled: Vec<DisabledRule>,
    /// `attributes.disabled_filter`: users it selects (within the user
    /// filter) are the disabled ones, instead of the preset's rules.
    pub disabled_filter: Option<String>,
}

fn v(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Active Directory users: `user` objects that are normal accounts
/// (`userAccountControl` bit 0x200, NORMAL_ACCOUNT, enabled or not).
/// Computers, domain controllers, trust and managed service accounts are
/// `user` objects too but not normal accounts; contacts are not `user`
/// objects. (`(!(objectClass=computer))` would say the same on AD, but on a
/// server whose schema lacks the class the whole NOT is undefined and
/// matches nothing.)
pub const AD_USER_FILTER: &str =
    "(&(objectClass=user)(userAccountControl:1.2.840.113556.1.4.803:=512))";
/// Active Directory groups.
pub const AD_GROUP_FILTER: &str = "(objectClass=group)";
/// Exchange public folders (mail-enabled public folder objects).
pub const AD_PUBLIC_FOLDER_FILTER: &str = "(objectClass=publicFolder)";
/// OpenLDAP and 389-DS / FreeIPA users.
pub const INET_ORG_PERSON_USER_FILTER: &str = "(objectClass=inetOrgPerson)";
/// OpenLDAP and 389-DS / FreeIPA groups.
pub const GROUP_OF_NAMES_FILTER: &str =
    "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))";

impl Mapping {
    /// The preset's mapping, before any override.
    pub fn preset(preset: LdapPreset) -> Mapping {
        match preset {
            LdapPreset::ActiveDirectory => Mapping {
                preset,
                user_filter: AD_USER_FILTER.into(),
                group_filter: AD_GROUP_FILTER.into(),
                public_folder_filter: Some(AD_PUBLIC_FOLDER_FILTER.into()),
                id: "objectGUID".into(),
                mail: "mail".into(),
                extra_mail_values_are_aliases: false,
                proxy_addresses: Some("proxyAddresses".into()),
                display_name: v(&["displayName", "cn"]),
                first_name: v(&["givenName"]),
                last_name: v(&["sn"]),
                home_phone: v(&["homePhone"]),
                mobile: v(&["mobile"]),
                company: v(&["company"]),
                department: v(&["department"]),
                notes: v(&["info"]),
                member: v(&["member"]),
                disabled: vec![DisabledRule::UserAccountControl],
                disabled_filter: None,
            },
            LdapPreset::Openldap | LdapPreset::Ds389 => Mapping {
                preset,
                user_filter: INET_ORG_PERSON_USER_FILTER.into(),
                group_filter: GROUP_OF_NAMES_FILTER.into(),
                public_folder_filter: None,
                id: if preset == LdapPreset::Openldap {
                    "entryUUID".into()
                } else {
                    "nsUniqueId".into()
                },
                mail: "mail".into(),
                extra_mail_values_are_aliases: true,
                proxy_addresses: None,
                display_name: v(&["displayName", "cn"]),
                first_name: v(&["givenName"]),
                last_name: v(&["sn"]),
                home_phone: v(&["homePhone"]),
                mobile: v(&["mobile"]),
                company: v(&["o"]),
                department: v(&["departmentNumber", "ou"]),
                notes: v(&["description"]),
                member: v(&["member", "uniqueMember"]),
                disabled: if preset == LdapPreset::Openldap {
                    // ppolicy's lockout, or a shadow account that expired.
                    vec![
                        DisabledRule::AttributePresent {
                            attribute: "pwdAccountLockedTime".into(),
                        },
                        DisabledRule::ExpiredOnDay {
                            attribute: "shadowExpire".into(),
                        },
                    ]
                } else {
                    // 389-DS and FreeIPA: `nsAccountLock: TRUE`.
                    vec![DisabledRule::AttributeIs {
                        attribute: "nsAccountLock".into(),
                        values: v(&["true"]),
                    }]
                },
                disabled_filter: None,
            },
        }
    }

    /// The mapping of `settings`: preset, attribute map overrides, custom
    /// filter ANDed into the user and group filters. Fails on an invalid
    /// filter or attribute name.
    pub fn of(settings: &LdapSettings) -> Result<Mapping, ReadError> {
        let mut m = Mapping::preset(settings.preset);
        let a: &AttributeMap = &settings.attributes;
        let one = |field: &str, name: &Option<String>| -> Result<Option<String>, ReadError> {
            match name.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(n) => {
                    check_attribute_name(n).map_err(|e| {
                        ReadError::Settings(format!("attribute for {field} ({n:?}): {e}"))
                    })?;
                    Ok(Some(n.to_string()))
                }
            }
        };
        if let Some(n) = one("id", &a.id)? {
            m.id = n;
        }
        if let Some(n) = one("mail", &a.mail)? {
            m.mail = n;
        }
        if let Some(n) = one("proxy addresses", &a.proxy_addresses)? {
            m.proxy_addresses = Some(n);
        }
        for ((field, name), target) in a.profile.fields().into_iter().zip(m.profile_mut()) {
            if let Some(n) = one(&field.replace('_', " "), name)? {
                *target = vec![n];
            }
        }
        if let Some(n) = one("member", &a.member)? {
            m.member = vec![n];
        }
        let filter = |what: &str, f: &str| -> Result<(), ReadError> {
            check_filter(f).map_err(|e| ReadError::InvalidFilter(format!("{what}: {e}")))
        };
        if let Some(f) = a.user_filter.as_deref().filter(|f| !f.trim().is_empty()) {
            filter("user filter", f)?;
            m.user_filter = f.trim().to_string();
        }
        if let Some(f) = a.group_filter.as_deref().filter(|f| !f.trim().is_empty()) {
            filter("group filter", f)?;
            m.group_filter = f.trim().to_string();
        }
        if let Some(f) = a
            .disabled_filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
        {
            filter("disabled filter", f)?;
            m.disabled_filter = Some(f.trim().to_string());
            m.disabled.clear();
        }
        if let Some(custom) = settings.filter.as_deref().filter(|f| !f.trim().is_empty()) {
            filter("custom filter", custom)?;
            m.user_filter = and_all(&[&m.user_filter, custom]);
            m.group_filter = and_all(&[&m.group_filter, custom]);
        }
        Ok(m)
    }

    /// The attributes of each profile field, in the order of
    /// [`Profile::fields`](roster_events::Profile::fields).
    fn profile_mut(&mut self) -> [&mut Vec<String>; 7] {
        [
            &mut self.first_name,
            &mut self.last_name,
            &mut self.home_phone,
            &mut self.mobile,
            &mut self.company,
            &mut self.department,
            &mut self.notes,
        ]
    }

    /// Attributes a user search requests.
    pub fn user_attributes(&self) -> Vec<String> {
        let mut out = Vec::new();
        push(&mut out, &self.id);
        push(&mut out, &self.mail);
        if let Some(p) = &self.proxy_addresses {
            push(&mut out, p);
        }
        for list in [
            &self.display_name,
            &self.first_name,
            &self.last_name,
            &self.home_phone,
            &self.mobile,
            &self.company,
            &self.department,
            &self.notes,
        ] {
            for a in list {
                push(&mut out, a);
            }
        }
        for rule in &self.disabled {
            push(&mut out, rule.attribute());
        }
        out
    }

    /// The filter that selects the disabled users when `disabled_filter`
    /// is set: the user filter ANDed with it.
    pub fn disabled_users_filter(&self) -> Option<String> {
        self.disabled_filter
            .as_deref()
            .map(|f| and_all(&[&self.user_filter, f]))
    }

    /// Attributes a group search requests.
    pub fn group_attributes(&self) -> Vec<String> {
        let mut out = self.mail_object_attributes();
        for a in &self.member {
            push(&mut out, a);
        }
        out
    }

    /// Attributes a public-folder search requests.
    pub fn mail_object_attributes(&self) -> Vec<String> {
        let mut out = Vec::new();
        push(&mut out, &self.id);
        push(&mut out, &self.mail);
        if let Some(p) = &self.proxy_addresses {
            push(&mut out, p);
        }
        for a in &self.display_name {
            push(&mut out, a);
        }
        out
    }
}

fn push(out: &mut Vec<String>, name: &str) {
    if !out.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        out.push(name.to_string());
    }
}

/// An attribute description (RFC 4512): a name (letter, then letters,
/// digits, hyphens) or a numeric OID, optionally with `;options`.
fn check_attribute_name(name: &str) -> Result<(), String> {
    let (ty, options) = match name.split_once(';') {
        Some((t, o)) => (t, Some(o)),
        None => (name, None),
    };
    let descr = ty.starts_with(|c: char| c.is_ascii_alphabetic())
        && ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let oid = !ty.is_empty()
        && ty
            .split('.')
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if !descr && !oid {
        return Err(
            "not an attribute name (a letter, then letters, digits or hyphens; or a numeric OID)"
                .into(),
        );
    }
    if let Some(o) = options {
        if o.split(';')
            .any(|o| o.is_empty() || !o.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err("an attribute option is empty or has characters other than letters, digits and hyphens".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_events::TlsSettings;

    fn settings(preset: LdapPreset) -> LdapSettings {
        LdapSettings {
            host: "dc.example.com".into(),
            port: 636,
            ssl: true,
            starttls: false,
            tls: TlsSettings::default(),
            bind_user: "reader@example.com".into(),
            base_dn: "dc=example,dc=com".into(),
            filter: None,
            include_disabled: false,
            include_public_folders: false,
            preset,
            attributes: AttributeMap::default(),
            timeout_secs: 30,
            full_sync_hours: None,
        }
    }

    #[test]
    fn d3d_presets() {
        let ad = Mapping::of(&settings(LdapPreset::ActiveDirectory)).unwrap();
        assert_eq!(ad.id, "objectGUID");
        assert_eq!(ad.notes, vec!["info"]);
        assert_eq!(ad.proxy_addresses.as_deref(), Some("proxyAddresses"));
        assert_eq!(ad.disabled, vec![DisabledRule::UserAccountControl]);
        let ol = Mapping::of(&settings(LdapPreset::Openldap)).unwrap();
        assert_eq!(ol.id, "entryUUID");
        assert_eq!(ol.company, vec!["o"]);
        assert!(ol.extra_mail_values_are_aliases);
        assert!(ol.public_folder_filter.is_none());
        let ds = Mapping::of(&settings(LdapPreset::Ds389)).unwrap();
        assert_eq!(ds.id, "nsUniqueId");
        assert_eq!(
            ds.disabled,
            vec![DisabledRule::AttributeIs {
                attribute: "nsAccountLock".into(),
                values: vec!["true".into()]
            }]
        );
    }

    #[test]
    fn d3h_each_preset_knows_how_its_directory_marks_disabled_accounts() {
        let ol = Mapping::of(&settings(LdapPreset::Openldap)).unwrap();
        assert_eq!(
            ol.disabled,
            vec![
                DisabledRule::AttributePresent {
                    attribute: "pwdAccountLockedTime".into()
                },
                DisabledRule::ExpiredOnDay {
                    attribute: "shadowExpire".into()
                },
            ]
        );
        let attrs = ol.user_attributes();
        for a in ["pwdAccountLockedTime", "shadowExpire"] {
            assert!(attrs.contains(&a.to_string()), "{a} is read");
        }
        assert_eq!(ol.disabled_users_filter(), None);
    }

    #[test]
    fn d3h_a_disabled_filter_replaces_the_presets_rules_and_is_checked() {
        let mut s = settings(LdapPreset::Openldap);
        s.filter = Some("(o=Acme)".into());
        s.attributes.disabled_filter = Some(" (employeeType=left) ".into());
        let m = Mapping::of(&s).unwrap();
        assert!(m.disabled.is_empty());
        assert!(!m.user_attributes().contains(&"shadowExpire".to_string()));
        assert_eq!(
            m.disabled_users_filter().as_deref(),
            Some("(&(&(objectClass=inetOrgPerson)(o=Acme))(employeeType=left))")
        );
        s.attributes.disabled_filter = Some("(employeeType=left".into());
        assert!(matches!(
            Mapping::of(&s),
            Err(ReadError::InvalidFilter(ref m)) if m.contains("disabled filter") && m.contains("position")
        ));
    }

    #[test]
    fn d3d_attribute_map_overrides_field_by_field() {
        let mut s = settings(LdapPreset::Openldap);
        s.attributes.profile.department = Some("ou".into());
        s.attributes.id = Some(" employeeNumber ".into());
        s.attributes.proxy_addresses = Some("mailAlternateAddress".into());
        let m = Mapping::of(&s).unwrap();
        assert_eq!(m.department, vec!["ou"]);
        assert_eq!(m.id, "employeeNumber");
        assert_eq!(m.proxy_addresses.as_deref(), Some("mailAlternateAddress"));
        assert_eq!(m.company, vec!["o"], "untouched fields keep the preset");
        s.attributes.profile.mobile = Some("mobile phone".into());
        let e = Mapping::of(&s).unwrap_err();
        assert!(
            matches!(e, ReadError::Settings(ref m) if m.contains("mobile")),
            "{e}"
        );
    }

    #[test]
    fn d5_custom_filter_is_anded_with_user_and_group_filters() {
        let mut s = settings(LdapPreset::ActiveDirectory);
        s.filter = Some(" (department=Sales) ".into());
        s.include_public_folders = true;
        let m = Mapping::of(&s).unwrap();
        assert_eq!(
            m.user_filter,
            format!("(&{AD_USER_FILTER}(department=Sales))")
        );
        assert_eq!(m.group_filter, "(&(objectClass=group)(department=Sales))");
        assert_eq!(
            m.public_folder_filter.as_deref(),
            Some(AD_PUBLIC_FOLDER_FILTER)
        );
        s.attributes.user_filter = Some("(objectClass=person)".into());
        let m = Mapping::of(&s).unwrap();
        assert_eq!(m.user_filter, "(&(objectClass=person)(department=Sales))");
        s.filter = Some("(department=Sales".into());
        assert!(matches!(
            Mapping::of(&s),
            Err(ReadError::InvalidFilter(ref m)) if m.contains("custom filter") && m.contains("position")
        ));
    }

    #[test]
    fn d3d_requested_attributes_have_no_duplicates() {
        let mut s = settings(LdapPreset::ActiveDirectory);
        s.attributes.profile.notes = Some("Department".into());
        let m = Mapping::of(&s).unwrap();
        let attrs = m.user_attributes();
        assert_eq!(
            attrs
                .iter()
                .filter(|a| a.eq_ignore_ascii_case("department"))
                .count(),
            1
        );
        assert!(m.group_attributes().contains(&"member".to_string()));
        assert!(!m.user_attributes().contains(&"member".to_string()));
    }
}
