//! From returned entries to snapshot objects: ids, addresses, profile
//! values, the disabled flag, and group members resolved to the ids of
//! objects in the same snapshot.

use std::collections::{HashMap, HashSet};

use roster_domain::snapshot::{DirectoryObject, ObjectId, ObjectKind};
use roster_events::Profile;

use super::dn::normalize_dn;
use super::schema::{DisabledRule, Mapping};
use super::search::{AttrSet, RawEntry};

/// Where each field's values are in a search's slots.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    id: usize,
    id_is_guid: bool,
    mail: Option<usize>,
    extra_mail_values_are_aliases: bool,
    proxy: Option<usize>,
    display: Vec<usize>,
    profile: [Vec<usize>; 7],
    pub(crate) member: Vec<usize>,
    disabled: Vec<(usize, DisabledRule)>,
    /// Slots more than one field reads: their values are copied, not moved.
    shared: Vec<bool>,
}

/// Attributes whose values are Active Directory GUIDs (16 bytes, the first
/// three fields little-endian).
fn is_guid_attribute(name: &str) -> bool {
    [
        "objectGUID",
        "msDS-ConsistencyGuid",
        "mS-DS-ConsistencyGuid",
    ]
    .iter()
    .any(|g| g.eq_ignore_ascii_case(name))
}

impl Slots {
    pub(crate) fn new(m: &Mapping, attrs: &AttrSet) -> Slots {
        let many = |names: &[String]| -> Vec<usize> {
            names.iter().filter_map(|n| attrs.slot_of(n)).collect()
        };
        let mut slots = Slots {
            id: attrs
                .slot_of(&m.id)
                .expect("every search asks for the id attribute"),
            id_is_guid: is_guid_attribute(&m.id),
            mail: attrs.slot_of(&m.mail),
            extra_mail_values_are_aliases: m.extra_mail_values_are_aliases,
            proxy: m.proxy_addresses.as_deref().and_then(|p| attrs.slot_of(p)),
            display: many(&m.display_name),
            profile: [
                many(&m.first_name),
                many(&m.last_name),
                many(&m.home_phone),
                many(&m.mobile),
                many(&m.company),
                many(&m.department),
                many(&m.notes),
            ],
            member: many(&m.member),
            disabled: m
                .disabled
                .iter()
                .filter_map(|r| attrs.slot_of(r.attribute()).map(|s| (s, r.clone())))
                .collect(),
            shared: Vec::new(),
        };
        let mut uses = vec![0u8; attrs.len()];
        let fields = [&slots.display, &slots.member]
            .into_iter()
            .chain(slots.profile.iter());
        for field in fields {
            for &s in field {
                uses[s] = uses[s].saturating_add(1);
            }
        }
        for s in [Some(slots.id), slots.mail, slots.proxy]
            .into_iter()
            .flatten()
        {
            uses[s] = uses[s].saturating_add(1);
        }
        slots.shared = uses.into_iter().map(|n| n > 1).collect();
        slots
    }

    pub(crate) fn id_slot(&self) -> usize {
        self.id
    }

    /// Gives each value of `slot` to `f`: moved out of the entry, or copied
    /// when another field reads the same attribute.
    fn each(&self, entry: &mut RawEntry, slot: usize, mut f: impl FnMut(Vec<u8>)) {
        if self.shared[slot] {
            entry.values(slot).for_each(|v| f(v.to_vec()));
        } else {
            entry.take(slot).for_each(f);
        }
    }

    /// The first non-blank value of the first of `slots` that has one, as
    /// [`text`] makes it.
    fn first_text(&self, entry: &mut RawEntry, slots: &[usize]) -> Option<String> {
        for &s in slots {
            if let Some(v) = entry.first_nonblank(s) {
                let bytes = if self.shared[s] {
                    v.clone()
                } else {
                    std::mem::take(v)
                };
                return text(bytes);
            }
        }
        None
    }

    /// The object of `entry`, or `None` when it has no id value.
    pub(crate) fn object(&self, entry: &mut RawEntry, kind: ObjectKind) -> Option<DirectoryObject> {
        let disabled = kind == ObjectKind::User && self.disabled(entry);
        let mut id_value = None;
        self.each(entry, self.id, |v| {
            if id_value.is_none() {
                id_value = Some(v);
            }
        });
        let id = object_id(id_value?, self.id_is_guid)?;
        let (mail, proxy_addresses) = self.addresses(entry);
        let profile = if kind == ObjectKind::User {
            let [first, last, home, mobile, company, department, notes] = &self.profile;
            Profile {
                first_name: self.first_text(entry, first),
                last_name: self.first_text(entry, last),
                home_phone: self.first_text(entry, home),
                mobile: self.first_text(entry, mobile),
                company: self.first_text(entry, company),
                department: self.first_text(entry, department),
                notes: self.first_text(entry, notes),
            }
        } else {
            Profile::default()
        };
        Some(DirectoryObject {
            id,
            kind,
            display_name: self.first_text(entry, &self.display),
            mail,
            proxy_addresses,
            profile,
            disabled,
            members: Vec::new(),
            member_addresses: Box::default(),
            dn: Some(std::mem::take(&mut entry.dn)),
        })
    }

    fn addresses(&self, entry: &mut RawEntry) -> (Option<String>, Vec<String>) {
        let mut mail = None;
        let mut proxies = Vec::new();
        if let Some(slot) = self.mail {
            self.each(entry, slot, |v| {
                let Some(v) = text(v) else { return };
                if mail.is_none() {
                    mail = Some(v);
                } else if self.extra_mail_values_are_aliases {
                    proxies.push(format!("smtp:{v}"));
                }
            });
        }
        if let Some(slot) = self.proxy {
            self.each(entry, slot, |v| {
                let Some(v) = text(v) else { return };
                proxies.push(if has_address_type(&v) {
                    v
                } else {
                    format!("smtp:{v}")
                });
            });
        }
        (mail, proxies)
    }

    fn disabled(&self, entry: &RawEntry) -> bool {
        self.disabled
            .iter()
            .any(|(slot, rule)| disabled_by(entry, *slot, rule))
    }

    /// B1: the disabled flag from every rule but a shadow expiry day, and
    /// that day (the earliest, from 1): a delta read keeps the day, not the
    /// flag, since the day passes without the entry changing.
    pub(crate) fn disabled_parts(&self, entry: &RawEntry) -> (bool, Option<i64>) {
        let mut other = false;
        let mut day: Option<i64> = None;
        for (slot, rule) in &self.disabled {
            match rule {
                DisabledRule::ExpiredOnDay { .. } => {
                    let d = entry.values(*slot).next().and_then(|v| {
                        std::str::from_utf8(v)
                            .ok()
                            .and_then(|v| v.trim().parse::<i64>().ok())
                    });
                    if let Some(d) = d.filter(|d| *d >= 1) {
                        day = Some(day.map_or(d, |x| x.min(d)));
                    }
                }
                r => other |= disabled_by(entry, *slot, r),
            }
        }
        (other, day)
    }

    /// The member DNs of a group entry (all member attributes), with the
    /// `#'0101'B` unique-identifier suffix of `uniqueMember` values removed.
    pub(crate) fn member_dns(&self, entry: &mut RawEntry) -> Vec<String> {
        let mut out = Vec::new();
        for &slot in &self.member {
            self.each(entry, slot, |v| {
                if let Some(dn) = text(v) {
                    out.push(strip_unique_id(dn));
                }
            });
        }
        out
    }
}

/// Whether `rule` marks the user of `entry` disabled (the rule's attribute
/// is at `slot`).
fn disabled_by(entry: &RawEntry, slot: usize, rule: &DisabledRule) -> bool {
    let mut values = entry.values(slot);
    let number = |v: &[u8]| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    match rule {
        DisabledRule::UserAccountControl => values
            .next()
            .and_then(number)
            .is_some_and(|uac| uac & 0x2 != 0),
        DisabledRule::AttributeIs { values: yes, .. } => values.any(|v| {
            std::str::from_utf8(v)
                .map(|v| yes.iter().any(|y| y.eq_ignore_ascii_case(v.trim())))
                .unwrap_or(false)
        }),
        DisabledRule::AttributePresent { .. } => entry.has(slot),
        // shadow(5): expired from that day on; 0 and -1 mean never.
        DisabledRule::ExpiredOnDay { .. } => {
            let today = chrono::Utc::now().timestamp().div_euclid(86_400);
            values
                .next()
                .and_then(number)
                .is_some_and(|day| day >= 1 && day <= today)
        }
    }
}

/// Whether a shadow expiry day (from [`Slots::disabled_parts`]) has come.
pub(crate) fn expired(day: Option<i64>) -> bool {
    let today = chrono::Utc::now().timestamp().div_euclid(86_400);
    day.is_some_and(|d| d >= 1 && d <= today)
}

/// `smtp:`, `SMTP:`, `X500:`, `SIP:`...: a type before the first `:`.
fn has_address_type(v: &str) -> bool {
    match v.split_once(':') {
        Some((ty, _)) => !ty.is_empty() && ty.chars().all(|c| c.is_ascii_alphanumeric()),
        None => false,
    }
}

fn strip_unique_id(dn: String) -> String {
    if dn.ends_with("'B") {
        if let Some(i) = dn.rfind("#'") {
            if i > 0 && !dn[..i].ends_with('\\') {
                return dn[..i].to_string();
            }
        }
    }
    dn
}

/// The stable id: an AD GUID as its canonical UUID text (the first three
/// fields are stored little-endian), any other value as trimmed text, or
/// hex when it is not text. Lower case.
pub(crate) fn object_id(value: Vec<u8>, guid: bool) -> Option<ObjectId> {
    if guid && value.len() == 16 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&value);
        return Some(ObjectId(uuid::Uuid::from_bytes_le(b).to_string()));
    }
    match String::from_utf8(value) {
        Ok(mut s) => {
            if s.trim().len() != s.len() {
                s = s.trim().to_string();
            }
            if s.is_empty() {
                return None;
            }
            // What ObjectId::new does, without a second allocation.
            s.make_ascii_lowercase();
            Some(ObjectId(s))
        }
        Err(e) => Some(ObjectId(
            e.as_bytes().iter().map(|b| format!("{b:02x}")).collect(),
        )),
    }
}

/// A value as text: trimmed, CR LF and lone CR as LF (AD's `info` holds
/// Windows line breaks); `None` when empty. The buffer is reused when
/// nothing changes.
pub(crate) fn text(v: Vec<u8>) -> Option<String> {
    let s = match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    let s = if s.contains('\r') {
        s.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        s
    };
    let trimmed = s.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == s.len() {
        Some(s)
    } else {
        Some(trimmed.to_string())
    }
}

/// A group as read, before its members are resolved.
pub(crate) struct ReadGroup {
    pub object: DirectoryObject,
    pub member_dns: Vec<String>,
    /// Has a mail address: a distribution list. Groups without one are read
    /// only for the members they pass on.
    pub mail_enabled: bool,
}

impl ReadGroup {
    pub(crate) fn new(object: DirectoryObject, member_dns: Vec<String>) -> ReadGroup {
        let mail_enabled = object.mail.is_some()
            || object
                .proxy_addresses
                .iter()
                .any(|p| p.starts_with("SMTP:"));
        ReadGroup {
            object,
            member_dns,
            mail_enabled,
        }
    }
}

/// What resolving members dropped, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MemberStats {
    pub resolved: usize,
    pub outside: usize,
}

/// Drops objects whose id was already seen (an object matched by two
/// searches); returns how many.
fn dedupe(objects: &mut Vec<DirectoryObject>, groups: &mut Vec<ReadGroup>) -> usize {
    let (drop_objects, drop_groups) = {
        let mut seen: HashSet<&str> = HashSet::with_capacity(objects.len() + groups.len());
        let o: Vec<bool> = objects
            .iter()
            .map(|o| !seen.insert(o.id.as_str()))
            .collect();
        let g: Vec<bool> = groups
            .iter()
            .map(|g| !seen.insert(g.object.id.as_str()))
            .collect();
        (o, g)
    };
    let n = drop_objects
        .iter()
        .chain(&drop_groups)
        .filter(|d| **d)
        .count();
    if n > 0 {
        let mut d = drop_objects.into_iter();
        objects.retain(|_| !d.next().unwrap_or(false));
        let mut d = drop_groups.into_iter();
        groups.retain(|_| !d.next().unwrap_or(false));
    }
    n
}

/// The snapshot's objects: users, public folders, then mail-enabled groups
/// (lists) with their members' ids. Objects whose id was already seen are
/// dropped (an object matched by two searches).
///
/// A list's members are the users, lists and public folders among its
/// `member` DNs; a member that is a group without mail passes on its own
/// members (recursively, cycles ignored), as a mail system expanding the
/// list would reach them. Members outside the snapshot (outside the base
/// DN, excluded by the filter, foreign security principals) are dropped.
pub(crate) fn assemble(
    users: Vec<DirectoryObject>,
    groups: Vec<ReadGroup>,
    public_folders: Vec<DirectoryObject>,
) -> (Vec<DirectoryObject>, MemberStats, usize) {
    let mut stats = MemberStats::default();
    let mut objects = users;
    objects.reserve(groups.len() + public_folders.len());
    objects.extend(public_folders);
    let mut groups = groups;
    let duplicates = dedupe(&mut objects, &mut groups);
    let (lists, plain_groups): (Vec<ReadGroup>, Vec<ReadGroup>) =
        groups.into_iter().partition(|g| g.mail_enabled);
    let mut lists = lists;
    if lists.iter().all(|g| g.member_dns.is_empty()) {
        objects.extend(lists.into_iter().map(|g| g.object));
        return (objects, stats, duplicates);
    }

    #[derive(Clone, Copy)]
    enum Target {
        Object(usize),
        List(usize),
        Plain(usize),
    }
    // Only DNs that some group names as a member are ever looked up: the
    // index holds those, not every object of the read (issue 17: a key
    // for each of 100,000 objects was about 10 MB at the read's end, for
    // the few thousand members the lists name).
    let named: HashSet<String> = lists
        .iter()
        .chain(&plain_groups)
        .flat_map(|g| &g.member_dns)
        .map(|d| normalize_dn(d))
        .collect();
    let mut index: HashMap<String, Target> = HashMap::with_capacity(named.len());
    let entries = (objects.iter().map(|o| &o.dn).enumerate())
        .map(|(i, dn)| (dn, Target::Object(i)))
        .chain((lists.iter().enumerate()).map(|(i, g)| (&g.object.dn, Target::List(i))))
        .chain((plain_groups.iter().enumerate()).map(|(i, g)| (&g.object.dn, Target::Plain(i))));
    for (dn, target) in entries {
        if let Some(dn) = dn {
            let key = normalize_dn(dn);
            if named.contains(&key) {
                index.insert(key, target);
            }
        }
    }
    let plain_members: Vec<Vec<Option<Target>>> = plain_groups
        .iter()
        .map(|g| {
            g.member_dns
                .iter()
                .map(|d| index.get(&normalize_dn(d)).copied())
                .collect()
        })
        .collect();

    let list_ids: Vec<ObjectId> = lists.iter().map(|g| g.object.id.clone()).collect();
    for (li, g) in lists.iter_mut().enumerate() {
        let mut members: Vec<ObjectId> = Vec::new();
        let mut seen_objects: HashSet<usize> = HashSet::new();
        let mut seen_lists: HashSet<usize> = HashSet::new();
        let mut visited_plain: HashSet<usize> = HashSet::new();
        let mut stack: Vec<Option<Target>> = g
            .member_dns
            .iter()
            .rev()
            .map(|d| index.get(&normalize_dn(d)).copied())
            .collect();
        while let Some(t) = stack.pop() {
            match t {
                None => stats.outside += 1,
                Some(Target::Object(i)) => {
                    if seen_objects.insert(i) {
                        members.push(objects[i].id.clone());
                    }
                }
                Some(Target::List(j)) => {
                    if j != li && seen_lists.insert(j) {
                        members.push(list_ids[j].clone());
                    }
                }
                Some(Target::Plain(p)) => {
                    if visited_plain.insert(p) {
                        stack.extend(plain_members[p].iter().rev().copied());
                    }
                }
            }
        }
        stats.resolved += members.len();
        g.object.members = members;
        g.member_dns = Vec::new();
    }
    objects.extend(lists.into_iter().map(|g| g.object));
    (objects, stats, duplicates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(id: &str, kind: ObjectKind, dn: &str, mail: Option<&str>) -> DirectoryObject {
        DirectoryObject {
            id: ObjectId::new(id),
            kind,
            dn: Some(dn.into()),
            display_name: None,
            mail: mail.map(String::from),
            proxy_addresses: vec![],
            profile: Profile::default(),
            disabled: false,
            members: vec![],
            member_addresses: Box::default(),
        }
    }

    fn group(id: &str, dn: &str, mail: Option<&str>, members: &[&str]) -> ReadGroup {
        ReadGroup::new(
            obj(id, ObjectKind::Group, dn, mail),
            members.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn ids(o: &DirectoryObject) -> Vec<&str> {
        o.members.iter().map(|m| m.as_str()).collect()
    }

    #[test]
    fn d3d_ad_guid_is_little_endian_uuid_text() {
        // Bytes as AD stores {01234567-89ab-cdef-0123-456789abcdef}.
        let b = [
            0x67, 0x45, 0x23, 0x01, 0xab, 0x89, 0xef, 0xcd, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        assert_eq!(
            object_id(b.to_vec(), true).unwrap().as_str(),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
        let g = roster_testkit::deterministic_guid(1, 1, 7);
        let id = object_id(g.to_vec(), true).unwrap();
        assert_eq!(
            uuid::Uuid::parse_str(id.as_str())
                .unwrap()
                .get_version_num(),
            4
        );
        assert_eq!(
            object_id(b"7F2A6C1E-0000-1000-8000-00AA00BBCCDD ".to_vec(), false)
                .unwrap()
                .as_str(),
            "7f2a6c1e-0000-1000-8000-00aa00bbccdd"
        );
        assert_eq!(object_id(vec![0xff, 0x01], false).unwrap().as_str(), "ff01");
        assert_eq!(object_id(b"  ".to_vec(), false), None);
    }

    #[test]
    fn d3d_values_trimmed_crlf_as_lf() {
        assert_eq!(text(b"  Sales \r\n".to_vec()).as_deref(), Some("Sales"));
        assert_eq!(
            text(b"line one\r\nline two\rthree".to_vec()).as_deref(),
            Some("line one\nline two\nthree")
        );
        assert_eq!(text(b" \t ".to_vec()), None);
    }

    #[test]
    fn d3c_proxy_values_without_a_type_are_aliases() {
        assert!(has_address_type("SMTP:a@b"));
        assert!(has_address_type("X500:/o=x/cn=y"));
        assert!(!has_address_type("a@b"));
        assert!(!has_address_type(":a@b"));
        assert_eq!(strip_unique_id("cn=a,dc=x#'0101'B".into()), "cn=a,dc=x");
        assert_eq!(strip_unique_id("cn=a,dc=x".into()), "cn=a,dc=x");
    }

    #[test]
    fn u4_members_resolve_through_normalised_dns_and_plain_groups() {
        let users = vec![
            obj(
                "u1",
                ObjectKind::User,
                r"cn=Doe\2C John,ou=People,dc=x",
                Some("j@x"),
            ),
            obj("u2", ObjectKind::User, "cn=Ann,ou=People,dc=x", Some("a@x")),
            obj("u3", ObjectKind::User, "cn=Bob,ou=People,dc=x", Some("b@x")),
        ];
        let groups = vec![
            group(
                "list",
                "cn=List,dc=x",
                Some("list@x"),
                &[
                    r"CN=Doe\, John,OU=People,DC=x",
                    "cn=Plain,dc=x",
                    "cn=Other List,dc=x",
                    "cn=Outside,dc=elsewhere",
                    "cn=ann,ou=people,dc=x",
                    "cn=List,dc=x",
                ],
            ),
            group(
                "plain",
                "cn=Plain,dc=x",
                None,
                &[
                    "cn=Ann,ou=People,dc=x",
                    "cn=Bob,ou=People,dc=x",
                    "cn=Loop,dc=x",
                ],
            ),
            group("loop", "cn=Loop,dc=x", None, &["cn=Plain,dc=x"]),
            group("other", "cn=Other List,dc=x", Some("other@x"), &[]),
        ];
        let (objects, stats, dups) = assemble(users, groups, vec![]);
        assert_eq!(dups, 0);
        let kinds: Vec<(&str, ObjectKind)> =
            objects.iter().map(|o| (o.id.as_str(), o.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                ("u1", ObjectKind::User),
                ("u2", ObjectKind::User),
                ("u3", ObjectKind::User),
                ("list", ObjectKind::Group),
                ("other", ObjectKind::Group),
            ],
            "groups without mail are not lists"
        );
        let list = objects.iter().find(|o| o.id.as_str() == "list").unwrap();
        assert_eq!(ids(list), vec!["u1", "u2", "u3", "other"]);
        assert_eq!(stats.outside, 1);
    }

    #[test]
    fn d3d_an_object_seen_twice_is_kept_once() {
        let users = vec![obj("u1", ObjectKind::User, "cn=a,dc=x", None)];
        let groups = vec![group("u1", "cn=a,dc=x", Some("a@x"), &[])];
        let (objects, _, dups) = assemble(users, groups, vec![]);
        assert_eq!(objects.len(), 1);
        assert_eq!(dups, 1);
    }
}
