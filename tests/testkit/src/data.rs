//! Directory entries, LDIF, and deterministic generators for users and
//! groups in the three directory styles the harness serves.
//!
//! A generated directory is a pure function of its parameters: user `i` is
//! always the same person, so a test can compute what it expects
//! ([`DirectoryData::user`], [`DirectoryData::group`]) instead of reading it
//! back, and a benchmark can write 100,000 users as LDIF in well under a
//! second.

use std::io::{self, Write};
use std::path::Path;

use base64::Engine as _;

/// `userAccountControl` bit ACCOUNTDISABLE.
pub const UAC_ACCOUNTDISABLE: u32 = 0x0002;
/// `userAccountControl` bit NORMAL_ACCOUNT.
pub const UAC_NORMAL_ACCOUNT: u32 = 0x0200;
/// `groupType` of a global security group (Active Directory's default).
pub const GROUP_TYPE_GLOBAL_SECURITY: i32 = -2147483646;

/// Which schema entries are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Style {
    /// Plain OpenLDAP: `inetOrgPerson` users (`uid`, `mail`, `o` for the
    /// company, `ou` for the department, `description` for info) and
    /// `groupOfNames` groups (with `extensibleObject` when they have mail).
    InetOrgPerson,
    /// slapd with the AD-like schema: `user` objects with sAMAccountName,
    /// userPrincipalName, proxyAddresses, userAccountControl, objectGUID,
    /// company, department, info; `group` objects with groupType.
    AdLike,
    /// A real Active Directory (Samba): as [`Style::AdLike`] without
    /// objectGUID (the server assigns it); passwords go to `unicodePwd`.
    Samba,
}

impl Style {
    fn is_ad(self) -> bool {
        matches!(self, Style::AdLike | Style::Samba)
    }
}

/// One directory entry: a DN and its attributes, in order, each with its
/// values as bytes (text is UTF-8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// The entry's DN.
    pub dn: String,
    /// Attribute names with their values.
    pub attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl Entry {
    /// An entry with no attributes yet.
    pub fn new(dn: impl Into<String>) -> Entry {
        Entry {
            dn: dn.into(),
            attrs: Vec::new(),
        }
    }

    /// Adds a value to `name` (appending to an attribute already there).
    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> Entry {
        self.push(name, value);
        self
    }

    /// Adds a value to `name` when there is one.
    pub fn with_opt<V: AsRef<[u8]>>(mut self, name: &str, value: Option<V>) -> Entry {
        if let Some(v) = value {
            self.push(name, v);
        }
        self
    }

    /// Adds a value to `name` (appending to an attribute already there).
    pub fn push(&mut self, name: &str, value: impl AsRef<[u8]>) {
        let value = value.as_ref().to_vec();
        match self
            .attrs
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, values)) => values.push(value),
            None => self.attrs.push((name.to_string(), vec![value])),
        }
    }

    /// The values of `name` (case-insensitive), empty when absent.
    pub fn values(&self, name: &str) -> &[Vec<u8>] {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    /// The first value of `name` as text.
    pub fn first(&self, name: &str) -> Option<String> {
        self.values(name)
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Writes the entry as an LDIF content record (with a blank line after
    /// it); values that are not safe as plain LDIF text are base64.
    pub fn write_ldif(&self, w: &mut impl Write) -> io::Result<()> {
        write_ldif_line(w, "dn", self.dn.as_bytes())?;
        for (name, values) in &self.attrs {
            for v in values {
                write_ldif_line(w, name, v)?;
            }
        }
        writeln!(w)
    }

    /// The entry as LDIF.
    pub fn to_ldif(&self) -> String {
        let mut out = Vec::new();
        self.write_ldif(&mut out).expect("writing to a Vec");
        String::from_utf8(out).expect("LDIF is ASCII")
    }
}

fn needs_base64(v: &[u8]) -> bool {
    matches!(v.first(), Some(b' ' | b':' | b'<'))
        || v.last() == Some(&b' ')
        || v.iter().any(|&b| !(0x20..=0x7e).contains(&b))
}

/// Writes `name: value` (or `name:: base64` when needed) as one LDIF line.
pub fn write_ldif_line(w: &mut impl Write, name: &str, value: &[u8]) -> io::Result<()> {
    if needs_base64(value) {
        writeln!(
            w,
            "{name}:: {}",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    } else {
        w.write_all(name.as_bytes())?;
        w.write_all(b": ")?;
        w.write_all(value)?;
        w.write_all(b"\n")
    }
}

/// Escapes a value for use in an RDN (RFC 4514): `Doe, John` becomes
/// `Doe\, John`.
pub fn escape_rdn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, '\\' | ',' | '+' | '"' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Byte index of the first comma not escaped by a backslash.
fn first_unescaped_comma(dn: &str) -> Option<usize> {
    let bytes = dn.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b',' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The first RDN of `dn` (`cn=Doe\, John` of `cn=Doe\, John,ou=People,...`).
pub fn first_rdn(dn: &str) -> &str {
    match first_unescaped_comma(dn) {
        Some(i) => &dn[..i],
        None => dn,
    }
}

/// The DN of the parent of `dn` (empty for a one-RDN DN).
pub fn parent_dn(dn: &str) -> &str {
    match first_unescaped_comma(dn) {
        Some(i) => dn[i + 1..].trim_start(),
        None => "",
    }
}

/// An organizational unit entry for `dn` (whose first RDN is `ou=...`).
pub fn organizational_unit(dn: &str) -> Entry {
    let rdn = first_rdn(dn);
    let value = rdn.split_once('=').map(|(_, v)| v).unwrap_or(rdn);
    Entry::new(dn)
        .with("objectClass", "top")
        .with("objectClass", "organizationalUnit")
        .with("ou", unescape_rdn_value(value))
}

fn unescape_rdn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `unicodePwd` value Active Directory expects: the password in double
/// quotes, UTF-16LE.
pub fn unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect()
}

/// A 16-byte GUID derived from `(seed, kind, index)`, shaped like a random
/// (version 4) UUID as Active Directory's objectGUIDs are.
pub fn deterministic_guid(seed: u64, kind: u64, index: u64) -> [u8; 16] {
    let mut state = seed ^ kind.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.rotate_left(17);
    let a = splitmix64(&mut state);
    let b = splitmix64(&mut state);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out[7] = (out[7] & 0x0f) | 0x40; // version 4 (AD stores this group little-endian)
    out[8] = (out[8] & 0x3f) | 0x80; // RFC 4122 variant
    out
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A user, as the generators make it or a test builds it. Fields not
/// supported by a [`Style`] are left out when it is written (the
/// InetOrgPerson style has no proxyAddresses, userAccountControl or
/// objectGUID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Full DN (RDN `cn`).
    pub dn: String,
    /// Common name (the RDN value, unescaped).
    pub cn: String,
    /// givenName.
    pub given_name: String,
    /// sn (surname; `person` requires it).
    pub sn: String,
    /// displayName.
    pub display_name: String,
    /// `uid` (InetOrgPerson) or `sAMAccountName` (AD styles; at most 20
    /// characters, unique in the domain).
    pub account_name: String,
    /// userPrincipalName (AD styles).
    pub user_principal_name: String,
    /// mail: the primary address.
    pub mail: Option<String>,
    /// proxyAddresses (AD styles): `SMTP:` primary, `smtp:` aliases, other
    /// types such as `X500:`.
    pub proxy_addresses: Vec<String>,
    /// Disabled: userAccountControl 0x2 (AD styles).
    pub disabled: bool,
    /// objectGUID (the AdLike style only; Samba assigns its own).
    pub object_guid: Option<[u8; 16]>,
    /// company (`o` in InetOrgPerson).
    pub company: Option<String>,
    /// department (`ou` in InetOrgPerson).
    pub department: Option<String>,
    /// info (`description` in InetOrgPerson).
    pub info: Option<String>,
    /// mobile.
    pub mobile: Option<String>,
    /// homePhone.
    pub home_phone: Option<String>,
    /// A password (userPassword on slapd, unicodePwd on Samba, which needs
    /// an encrypted connection or the offline loader).
    pub password: Option<String>,
}

impl User {
    /// A user `given sn` under `container_dn` with mail
    /// `given.sn@mail_domain` (lower case, ASCII), that address as the
    /// `SMTP:` proxy address, and `account_name@mail_domain` as UPN.
    pub fn new(
        container_dn: &str,
        account_name: &str,
        given: &str,
        sn: &str,
        mail_domain: &str,
    ) -> User {
        let cn = format!("{given} {sn}");
        let mail = format!("{}.{}@{mail_domain}", mail_local(given), mail_local(sn));
        User {
            dn: format!("cn={},{container_dn}", escape_rdn_value(&cn)),
            cn: cn.clone(),
            given_name: given.to_string(),
            sn: sn.to_string(),
            display_name: cn,
            account_name: account_name.to_string(),
            user_principal_name: format!("{account_name}@{mail_domain}"),
            proxy_addresses: vec![format!("SMTP:{mail}")],
            mail: Some(mail),
            disabled: false,
            object_guid: None,
            company: None,
            department: None,
            info: None,
            mobile: None,
            home_phone: None,
            password: None,
        }
    }

    /// userAccountControl as written: NORMAL_ACCOUNT, plus ACCOUNTDISABLE
    /// when disabled.
    pub fn user_account_control(&self) -> u32 {
        if self.disabled {
            UAC_NORMAL_ACCOUNT | UAC_ACCOUNTDISABLE
        } else {
            UAC_NORMAL_ACCOUNT
        }
    }

    /// The entry for `style`.
    pub fn entry(&self, style: Style) -> Entry {
        let mut e = Entry::new(&self.dn)
            .with("objectClass", "top")
            .with("objectClass", "person")
            .with("objectClass", "organizationalPerson");
        match style {
            Style::InetOrgPerson => {
                e = e
                    .with("objectClass", "inetOrgPerson")
                    .with("cn", &self.cn)
                    .with("sn", &self.sn)
                    .with("givenName", &self.given_name)
                    .with("displayName", &self.display_name)
                    .with("uid", &self.account_name)
                    .with_opt("mail", self.mail.as_ref())
                    .with_opt("o", self.company.as_ref())
                    .with_opt("ou", self.department.as_ref())
                    .with_opt("description", self.info.as_ref())
                    .with_opt("mobile", self.mobile.as_ref())
                    .with_opt("homePhone", self.home_phone.as_ref())
                    .with_opt("userPassword", self.password.as_ref());
            }
            Style::AdLike | Style::Samba => {
                e = e
                    .with("objectClass", "user")
                    .with("cn", &self.cn)
                    .with("sn", &self.sn)
                    .with("givenName", &self.given_name)
                    .with("displayName", &self.display_name)
                    .with("sAMAccountName", &self.account_name)
                    .with("userPrincipalName", &self.user_principal_name)
                    .with_opt("mail", self.mail.as_ref());
                for p in &self.proxy_addresses {
                    e.push("proxyAddresses", p);
                }
                e = e
                    .with(
                        "userAccountControl",
                        self.user_account_control().to_string(),
                    )
                    .with_opt("company", self.company.as_ref())
                    .with_opt("department", self.department.as_ref())
                    .with_opt("info", self.info.as_ref())
                    .with_opt("mobile", self.mobile.as_ref())
                    .with_opt("homePhone", self.home_phone.as_ref());
                if style == Style::AdLike {
                    e = e
                        .with_opt("objectGUID", self.object_guid.as_ref())
                        .with_opt("userPassword", self.password.as_ref());
                } else if let Some(pw) = &self.password {
                    e.push("unicodePwd", unicode_pwd(pw));
                }
            }
        }
        e
    }
}

/// A group, as the generators make it or a test builds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Full DN (RDN `cn`).
    pub dn: String,
    /// Common name.
    pub cn: String,
    /// sAMAccountName (AD styles).
    pub account_name: String,
    /// mail, for mail-enabled groups.
    pub mail: Option<String>,
    /// proxyAddresses (AD styles).
    pub proxy_addresses: Vec<String>,
    /// Member DNs.
    pub members: Vec<String>,
    /// objectGUID (the AdLike style only).
    pub object_guid: Option<[u8; 16]>,
    /// description.
    pub description: Option<String>,
}

impl Group {
    /// A group `cn` under `container_dn`, no mail and no members yet.
    pub fn new(container_dn: &str, account_name: &str, cn: &str) -> Group {
        Group {
            dn: format!("cn={},{container_dn}", escape_rdn_value(cn)),
            cn: cn.to_string(),
            account_name: account_name.to_string(),
            mail: None,
            proxy_addresses: Vec::new(),
            members: Vec::new(),
            object_guid: None,
            description: None,
        }
    }

    /// The entry for `style`. An InetOrgPerson group (`groupOfNames`, which
    /// requires a member) without members gets the empty DN as its one
    /// member, the usual placeholder.
    pub fn entry(&self, style: Style) -> Entry {
        let mut e = Entry::new(&self.dn).with("objectClass", "top");
        match style {
            Style::InetOrgPerson => {
                e = e.with("objectClass", "groupOfNames");
                if self.mail.is_some() {
                    e = e.with("objectClass", "extensibleObject");
                }
                e = e
                    .with("cn", &self.cn)
                    .with_opt("mail", self.mail.as_ref())
                    .with_opt("description", self.description.as_ref());
                if self.members.is_empty() {
                    e.push("member", "");
                }
            }
            Style::AdLike | Style::Samba => {
                e = e
                    .with("objectClass", "group")
                    .with("cn", &self.cn)
                    .with("sAMAccountName", &self.account_name)
                    .with("groupType", GROUP_TYPE_GLOBAL_SECURITY.to_string())
                    .with_opt("mail", self.mail.as_ref())
                    .with_opt("description", self.description.as_ref());
                for p in &self.proxy_addresses {
                    e.push("proxyAddresses", p);
                }
                if style == Style::AdLike {
                    e = e.with_opt("objectGUID", self.object_guid.as_ref());
                }
            }
        }
        for m in &self.members {
            e.push("member", m);
        }
        e
    }
}

const GIVEN_NAMES: [&str; 24] = [
    "Alice", "Bob", "Carol", "Dave", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Zoë", "Jürgen",
    "Chloé", "Øyvind", "Siobhan",
];
const SURNAMES: [&str; 25] = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood",
    "Jackson", "Clarke", "Müller", "O'Brien", "García", "Nowak", "Dubois",
];
const COMPANIES: [&str; 3] = ["ACME Corp", "Globex", "Initech"];
const DEPARTMENTS: [&str; 8] = [
    "Sales",
    "Engineering",
    "Finance",
    "Legal",
    "Marketing",
    "Support",
    "Operations",
    "Research & Development",
];

/// The lower-case ASCII letters and digits of `name` (accents folded), for
/// mail local parts.
fn mail_local(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            let folded = match c {
                'à'..='å' | 'À'..='Å' => 'a',
                'ç' | 'Ç' => 'c',
                'è'..='ë' | 'È'..='Ë' => 'e',
                'ì'..='ï' | 'Ì'..='Ï' => 'i',
                'ñ' | 'Ñ' => 'n',
                'ò'..='ö' | 'ø' | 'Ò'..='Ö' | 'Ø' => 'o',
                'ù'..='ü' | 'Ù'..='Ü' => 'u',
                other => other,
            };
            folded.to_lowercase()
        })
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// A deterministic directory: containers `ou=People` and `ou=Groups` under
/// a base DN, `n` users and `m` groups.
///
/// User `i` (from 0): given name and surname from fixed lists (some with
/// accents, one with an apostrophe), `cn` "`Given Sn i`" (every
/// [`comma_every`](Self::comma_every)-th one "`Sn, Given i`", so its DN holds an
/// escaped comma), account name `{prefix}u{i:06}`, mail
/// `given.sn.i@{mail_domain}`, proxyAddresses `SMTP:` mail,
/// `smtp:{account}@{mail_domain}`, `smtp:{given}{i}@{mail_domain}` and an
/// `X500:` address; company, department, info, mobile, and a home phone for
/// even `i`; disabled when `i % disabled_every == disabled_every - 1`.
///
/// Group `j`: `cn` "`{prefix}Group j`", account `{prefix}g{j:05}`, mail
/// `{prefix}group{j}@{mail_domain}` unless `j % 3 == 2` (a security group
/// without mail), members: users `(j * k + t) % n` for `t` in `0..k`.
#[derive(Clone, Debug)]
pub struct DirectoryData {
    style: Style,
    base_dn: String,
    mail_domain: String,
    users: usize,
    groups: usize,
    members_per_group: usize,
    disabled_every: usize,
    comma_every: usize,
    prefix: String,
    seed: u64,
    password: Option<String>,
    /// The customer shape (issue 17): aliases in this second managed
    /// domain on every 5th user, `X500:` on every 7th.
    alias_domain: Option<String>,
    /// Members of group 0 (a large distribution list), when set.
    large_list: Option<usize>,
}

impl DirectoryData {
    /// An empty directory of `style` under `base_dn` (which must exist
    /// already: the harness creates the slapd suffix and Samba test OUs).
    /// Defaults: no users, no groups, 10 members a group, every 10th user
    /// disabled (AD styles), every 50th `cn` with a comma, no prefix, seed
    /// 1, no passwords.
    pub fn new(style: Style, base_dn: &str, mail_domain: &str) -> DirectoryData {
        DirectoryData {
            style,
            base_dn: base_dn.to_string(),
            mail_domain: mail_domain.to_string(),
            users: 0,
            groups: 0,
            members_per_group: 10,
            disabled_every: 10,
            comma_every: 50,
            prefix: String::new(),
            seed: 1,
            password: None,
            alias_domain: None,
            large_list: None,
        }
    }

    /// The shape of a real customer's directory, as the benches of issue
    /// 17 use it: every user has a primary `SMTP:` address, every 5th an
    /// `smtp:` alias in `alias_domain` (a second managed domain), every 7th
    /// an `X500:` address (Exchange's legacy DN, which the reconciler
    /// ignores); phones, company, department and notes as always; names
    /// with accents and an apostrophe. Combine with
    /// [`large_list`](Self::large_list) for the distribution list.
    pub fn customer_shape(mut self, alias_domain: &str) -> Self {
        self.alias_domain = Some(alias_domain.to_string());
        self
    }

    /// Group 0 becomes a mail-enabled distribution list with `members`
    /// members (users `0, s, 2s, ...` spread over the directory).
    pub fn large_list(mut self, members: usize) -> Self {
        self.large_list = Some(members);
        self
    }

    /// Sets the number of users.
    pub fn users(mut self, n: usize) -> Self {
        self.users = n;
        self
    }

    /// Sets the number of groups and the members of each.
    pub fn groups(mut self, n: usize, members_each: usize) -> Self {
        self.groups = n;
        self.members_per_group = members_each;
        self
    }

    /// Every `n`-th user is disabled (0: none). AD styles only.
    pub fn disabled_every(mut self, n: usize) -> Self {
        self.disabled_every = n;
        self
    }

    /// Every `n`-th user's `cn` has a comma (0: none).
    pub fn comma_every(mut self, n: usize) -> Self {
        self.comma_every = n;
        self
    }

    /// A prefix for account names, group names and group mail, to keep
    /// several data sets apart in one domain (at most 13 characters, as
    /// sAMAccountName allows 20).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// Seed of the generated objectGUIDs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Gives every user this password.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// The style entries are written in.
    pub fn style(&self) -> Style {
        self.style
    }

    /// The base DN the containers are under.
    pub fn base_dn(&self) -> &str {
        &self.base_dn
    }

    /// The mail domain.
    pub fn mail_domain(&self) -> &str {
        &self.mail_domain
    }

    /// DN of the users' container.
    pub fn people_dn(&self) -> String {
        format!("{}=People,{}", self.ou_attr(), self.base_dn)
    }

    /// DN of the groups' container.
    pub fn groups_dn(&self) -> String {
        format!("{}=Groups,{}", self.ou_attr(), self.base_dn)
    }

    fn cn_attr(&self) -> &'static str {
        if self.style == Style::Samba {
            "CN"
        } else {
            "cn"
        }
    }

    fn ou_attr(&self) -> &'static str {
        if self.style == Style::Samba {
            "OU"
        } else {
            "ou"
        }
    }

    /// Number of users.
    pub fn user_count(&self) -> usize {
        self.users
    }

    /// Number of groups.
    pub fn group_count(&self) -> usize {
        self.groups
    }

    /// Whether user `i` is disabled.
    pub fn is_disabled(&self, i: usize) -> bool {
        self.style.is_ad()
            && self.disabled_every > 0
            && i % self.disabled_every == self.disabled_every - 1
    }

    /// User `i` (0-based).
    pub fn user(&self, i: usize) -> User {
        let given = GIVEN_NAMES[i % GIVEN_NAMES.len()];
        let sn = SURNAMES[(i / GIVEN_NAMES.len()) % SURNAMES.len()];
        let comma = self.comma_every > 0 && i % self.comma_every == self.comma_every - 1;
        let cn = if comma {
            format!("{sn}, {given} {i}")
        } else {
            format!("{given} {sn} {i}")
        };
        let account = format!("{}u{i:06}", self.prefix);
        let domain = &self.mail_domain;
        let mail = format!("{}.{}.{i}@{domain}", mail_local(given), mail_local(sn));
        let x500 = || {
            format!(
                "X500:/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn={account}"
            )
        };
        let proxy_addresses = if let Some(other) = &self.alias_domain {
            let mut p = vec![format!("SMTP:{mail}")];
            if i % 5 == 0 {
                p.push(format!(
                    "smtp:{}.{}{i}@{other}",
                    mail_local(given),
                    mail_local(sn)
                ));
            }
            if i % 7 == 0 {
                p.push(x500());
            }
            p
        } else {
            vec![
                format!("SMTP:{mail}"),
                format!("smtp:{account}@{domain}"),
                format!("smtp:{}{i}@{domain}", mail_local(given)),
                x500(),
            ]
        };
        User {
            dn: format!(
                "{}={},{}",
                self.cn_attr(),
                escape_rdn_value(&cn),
                self.people_dn()
            ),
            display_name: format!("{given} {sn}"),
            cn,
            given_name: given.to_string(),
            sn: sn.to_string(),
            user_principal_name: format!("{account}@{domain}"),
            account_name: account,
            mail: Some(mail),
            proxy_addresses,
            disabled: self.is_disabled(i),
            object_guid: (self.style == Style::AdLike)
                .then(|| deterministic_guid(self.seed, 1, i as u64)),
            company: Some(COMPANIES[i % COMPANIES.len()].to_string()),
            department: Some(DEPARTMENTS[(i / 3) % DEPARTMENTS.len()].to_string()),
            info: Some(format!("Generated user {i}")),
            mobile: Some(format!(
                "+1 555 {:03} {:04}",
                (i / 10_000) % 1000,
                i % 10_000
            )),
            home_phone: (i % 2 == 0)
                .then(|| format!("+1 556 {:03} {:04}", (i / 10_000) % 1000, i % 10_000)),
            password: self.password.clone(),
        }
    }

    /// The indexes of the members of group `j`.
    pub fn member_indexes(&self, j: usize) -> Vec<usize> {
        if self.users == 0 {
            return Vec::new();
        }
        if let (0, Some(m)) = (j, self.large_list) {
            let m = m.clamp(1, self.users);
            let step = self.users / m;
            return (0..m).map(|t| t * step).collect();
        }
        let k = self.members_per_group.min(self.users);
        let mut out: Vec<usize> = (0..k).map(|t| (j * k + t) % self.users).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Group `j` (0-based).
    pub fn group(&self, j: usize) -> Group {
        let p = &self.prefix;
        let mut g = Group::new(
            &self.groups_dn(),
            &format!("{p}g{j:05}"),
            &format!("{p}Group {j}"),
        );
        if self.style == Style::Samba {
            g.dn = format!("CN={}", &g.dn[3..]);
        }
        if j % 3 != 2 {
            let mail = format!("{}group{j}@{}", p.to_lowercase(), self.mail_domain);
            g.proxy_addresses = vec![format!("SMTP:{mail}")];
            g.mail = Some(mail);
        }
        g.description = Some(format!("Generated group {j}"));
        g.members = self
            .member_indexes(j)
            .into_iter()
            .map(|i| self.user(i).dn)
            .collect();
        if self.style == Style::AdLike {
            g.object_guid = Some(deterministic_guid(self.seed, 2, j as u64));
        }
        g
    }

    /// The two container entries.
    pub fn containers(&self) -> Vec<Entry> {
        vec![
            organizational_unit(&self.people_dn()),
            organizational_unit(&self.groups_dn()),
        ]
    }

    /// Every entry in load order: containers, users, groups.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.containers()
            .into_iter()
            .chain((0..self.users).map(|i| self.user(i).entry(self.style)))
            .chain((0..self.groups).map(|j| self.group(j).entry(self.style)))
    }

    /// Writes every entry as LDIF.
    pub fn write_ldif(&self, w: &mut impl Write) -> io::Result<()> {
        for e in self.entries() {
            e.write_ldif(w)?;
        }
        Ok(())
    }

    /// Every entry as LDIF text.
    pub fn to_ldif(&self) -> String {
        let mut out = Vec::new();
        self.write_ldif(&mut out).expect("writing to a Vec");
        String::from_utf8(out).expect("LDIF is ASCII")
    }

    /// Writes the LDIF to a file (buffered).
    pub fn write_ldif_file(&self, path: &Path) -> io::Result<()> {
        let mut w = io::BufWriter::new(std::fs::File::create(path)?);
        self.write_ldif(&mut w)?;
        w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdn_escaping_and_parents() {
        assert_eq!(escape_rdn_value("Doe, John"), r"Doe\, John");
        assert_eq!(escape_rdn_value(" #a=b "), r"\ #a\=b\ ");
        let dn = r"cn=Doe\, John,ou=People,dc=example,dc=com";
        assert_eq!(first_rdn(dn), r"cn=Doe\, John");
        assert_eq!(parent_dn(dn), "ou=People,dc=example,dc=com");
        assert_eq!(parent_dn("dc=com"), "");
    }

    #[test]
    fn ldif_base64_when_needed() {
        let e = Entry::new("cn=Zoë,dc=x")
            .with("cn", "Zoë")
            .with("sn", "plain")
            .with("description", " leading space");
        let l = e.to_ldif();
        assert!(l.starts_with("dn:: "), "{l}");
        assert!(l.contains("sn: plain\n"));
        assert!(l.contains("description:: "));
    }

    #[test]
    fn generated_users_are_deterministic_and_shaped() {
        let d = DirectoryData::new(Style::AdLike, "dc=example,dc=com", "example.org")
            .users(100)
            .groups(4, 5);
        assert_eq!(d.user(7), d.user(7));
        let u = d.user(49);
        assert!(
            u.dn.starts_with(r"cn=Taylor\, Bob 49,ou=People,"),
            "{}",
            u.dn
        );
        assert!(d.user(9).disabled && !d.user(8).disabled);
        assert_eq!(
            u.proxy_addresses[0],
            format!("SMTP:{}", u.mail.clone().unwrap())
        );
        assert!(u.proxy_addresses.iter().any(|p| p.starts_with("X500:")));
        assert_eq!(u.object_guid.unwrap().len(), 16);
        assert_ne!(d.user(1).object_guid, d.user(2).object_guid);
        assert_eq!(d.group(1).members.len(), 5);
        assert!(d.group(2).mail.is_none());
        assert_eq!(d.entries().count(), 2 + 100 + 4);
        let ldif = d.to_ldif();
        assert!(ldif.contains("userAccountControl: 514"));
        assert!(ldif.contains("objectGUID:: "));
    }

    #[test]
    fn unicode_pwd_is_quoted_utf16le() {
        assert_eq!(unicode_pwd("a"), vec![b'"', 0, b'a', 0, b'"', 0]);
    }
}
