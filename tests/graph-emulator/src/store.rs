//! A tenant's directory: users and groups in id order, with the change
//! bookkeeping that delta queries need.
//!
//! Every mutation takes the next value of a per-tenant sequence number.
//! Each object remembers the sequence at which it was created, at which each
//! of its properties last changed, and, once deleted, at which it was
//! removed (deleted objects stay as tombstones so that a later delta round
//! can report them with `@removed`). Group memberships keep the same
//! bookkeeping per member. A delta token is then simply "the sequence
//! number at the end of the previous round".

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Entity, Group, RemovedReason, User};

/// One stored object.
#[derive(Debug, Clone)]
pub(crate) struct Rec<T> {
    pub obj: T,
    pub created_seq: u64,
    /// Sequence of the last change of each property, indexed like
    /// `T::props()`; empty while no property changed since creation
    /// (saves an allocation per object in 100k-object tenants).
    prop_seq: Vec<u64>,
    pub removed: Option<(u64, RemovedReason)>,
}

impl<T: Entity> Rec<T> {
    fn new(obj: T, seq: u64) -> Self {
        Rec {
            obj,
            created_seq: seq,
            prop_seq: Vec::new(),
            removed: None,
        }
    }

    /// Sequence at which property `i` last changed.
    pub fn prop_seq(&self, i: usize) -> u64 {
        self.prop_seq.get(i).copied().unwrap_or(self.created_seq)
    }

    fn touch(&mut self, i: usize, seq: u64) {
        if self.prop_seq.is_empty() {
            self.prop_seq = vec![self.created_seq; T::props().len()];
        }
        self.prop_seq[i] = seq;
    }

    pub fn live(&self) -> bool {
        self.removed.is_none()
    }
}

/// Type of a group member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberKind {
    User,
    Group,
}

impl MemberKind {
    pub fn odata_type(self) -> &'static str {
        match self {
            MemberKind::User => "#microsoft.graph.user",
            MemberKind::Group => "#microsoft.graph.group",
        }
    }
}

/// A group's membership with change bookkeeping.
#[derive(Debug, Clone, Default)]
pub(crate) struct Members {
    /// Current members: id → (kind, sequence at which it was added).
    pub current: BTreeMap<String, (MemberKind, u64)>,
    /// Former members: id → (kind, sequence at which it was removed).
    pub former: BTreeMap<String, (MemberKind, u64)>,
    /// Sequence of the last membership change.
    pub seq: u64,
}

/// Error of a data-API call (programming error in a test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError(pub String);

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataError {}

/// Options of [`crate::Tenant::generate_users`].
#[derive(Debug, Clone)]
pub struct GenerateUsers {
    /// How many users to create.
    pub count: usize,
    /// Domain of `userPrincipalName`, `mail` and the primary proxy address.
    pub domain: String,
    /// When set, every user also gets an `smtp:` alias in this domain.
    pub alias_domain: Option<String>,
    /// When set, every n-th user (1-based) is disabled.
    pub disabled_every: Option<usize>,
    /// First index used in names and addresses (`user{index:06}@domain`).
    pub first_index: usize,
}

impl GenerateUsers {
    /// `count` enabled users in `domain`, starting at index 1.
    pub fn new(count: usize, domain: &str) -> Self {
        GenerateUsers {
            count,
            domain: domain.to_string(),
            alias_domain: None,
            disabled_every: None,
            first_index: 1,
        }
    }
}

const GIVEN: [&str; 16] = [
    "Ava", "Ben", "Chloe", "Daniel", "Emma", "Felix", "Grace", "Hugo", "Isla", "Jonas", "Kira",
    "Liam", "Mia", "Noah", "Olivia", "Paul",
];
const SURNAMES: [&str; 16] = [
    "Adams", "Baker", "Clark", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen",
    "Kowalski", "Larsen", "Martin", "Nguyen", "Olsen", "Petrov",
];
const DEPARTMENTS: [&str; 6] = [
    "Sales",
    "Engineering",
    "Finance",
    "Legal",
    "Support",
    "Marketing",
];

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic version-4-shaped GUID from a seed and a counter.
pub(crate) fn guid(seed: u64, n: u64) -> String {
    let hi = splitmix(seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let lo = splitmix(hi ^ n);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Everything stored for one tenant.
#[derive(Debug)]
pub(crate) struct Directory {
    pub seq: u64,
    pub users: BTreeMap<String, Rec<User>>,
    pub groups: BTreeMap<String, Rec<Group>>,
    pub members: BTreeMap<String, Members>,
    live_users: usize,
    live_groups: usize,
    id_seed: u64,
    id_counter: u64,
}

impl Directory {
    pub fn new(id_seed: u64) -> Self {
        Directory {
            seq: 0,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            members: BTreeMap::new(),
            live_users: 0,
            live_groups: 0,
            id_seed,
            id_counter: 0,
        }
    }

    pub fn live_users(&self) -> usize {
        self.live_users
    }

    pub fn live_groups(&self) -> usize {
        self.live_groups
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn next_id(&mut self) -> String {
        loop {
            self.id_counter += 1;
            let id = guid(self.id_seed, self.id_counter);
            if !self.users.contains_key(&id) && !self.groups.contains_key(&id) {
                return id;
            }
        }
    }

    fn check_new_id(&self, id: &str) -> Result<(), DataError> {
        let taken_user = self.users.get(id).is_some_and(|r| r.live());
        let taken_group = self.groups.get(id).is_some_and(|r| r.live());
        if taken_user || taken_group {
            return Err(DataError(format!("object id '{id}' is already in use")));
        }
        Ok(())
    }

    pub fn add_user(&mut self, mut u: User, now: &str) -> Result<String, DataError> {
        if u.id.is_empty() {
            u.id = self.next_id();
        }
        self.check_new_id(&u.id)?;
        if u.created_date_time.is_none() {
            u.created_date_time = Some(now.to_string());
        }
        let seq = self.next_seq();
        let id = u.id.clone();
        self.users.insert(id.clone(), Rec::new(u, seq));
        self.live_users += 1;
        Ok(id)
    }

    pub fn add_group(&mut self, mut g: Group, now: &str) -> Result<String, DataError> {
        if g.id.is_empty() {
            g.id = self.next_id();
        }
        self.check_new_id(&g.id)?;
        if g.created_date_time.is_none() {
            g.created_date_time = Some(now.to_string());
        }
        let seq = self.next_seq();
        let id = g.id.clone();
        self.groups.insert(id.clone(), Rec::new(g, seq));
        self.members.insert(id.clone(), Members::default());
        self.live_groups += 1;
        Ok(id)
    }

    fn update<T: Entity + Clone>(
        map: &mut BTreeMap<String, Rec<T>>,
        seq: &mut u64,
        id: &str,
        f: impl FnOnce(&mut T),
    ) -> Result<bool, DataError> {
        let rec = map
            .get_mut(id)
            .filter(|r| r.live())
            .ok_or_else(|| DataError(format!("no live object with id '{id}'")))?;
        let mut next = rec.obj.clone();
        f(&mut next);
        let changed: Vec<usize> = T::props()
            .iter()
            .enumerate()
            .filter(|(_, d)| d.tracked && d.name != "id" && (d.get)(&rec.obj) != (d.get)(&next))
            .map(|(i, _)| i)
            .collect();
        if rec.obj.id() != next.id() {
            return Err(DataError("the id of an object cannot change".into()));
        }
        if changed.is_empty() {
            return Ok(false);
        }
        *seq += 1;
        for i in changed {
            rec.touch(i, *seq);
        }
        rec.obj = next;
        Ok(true)
    }

    pub fn update_user(&mut self, id: &str, f: impl FnOnce(&mut User)) -> Result<bool, DataError> {
        Self::update(&mut self.users, &mut self.seq, id, f)
    }

    pub fn update_group(
        &mut self,
        id: &str,
        f: impl FnOnce(&mut Group),
    ) -> Result<bool, DataError> {
        Self::update(&mut self.groups, &mut self.seq, id, f)
    }

    /// Removes `member` from every group it belongs to (a deleted object
    /// loses its memberships).
    fn drop_memberships(&mut self, member: &str, seq: u64) {
        for m in self.members.values_mut() {
            if let Some((kind, _)) = m.current.remove(member) {
                m.former.insert(member.to_string(), (kind, seq));
                m.seq = seq;
            }
        }
    }

    pub fn delete_user(&mut self, id: &str, reason: RemovedReason) -> Result<(), DataError> {
        let seq = self.seq + 1;
        let rec = self
            .users
            .get_mut(id)
            .ok_or_else(|| DataError(format!("no user with id '{id}'")))?;
        match rec.removed {
            Some((_, RemovedReason::Deleted)) => {
                return Err(DataError(format!(
                    "user '{id}' is already permanently deleted"
                )))
            }
            Some((_, RemovedReason::Changed)) if reason == RemovedReason::Changed => {
                return Err(DataError(format!("user '{id}' is already deleted")))
            }
            Some(_) => {}
            None => self.live_users -= 1,
        }
        rec.removed = Some((seq, reason));
        self.seq = seq;
        self.drop_memberships(id, seq);
        Ok(())
    }

    pub fn restore_user(&mut self, id: &str) -> Result<(), DataError> {
        let seq = self.seq + 1;
        let rec = self
            .users
            .get_mut(id)
            .ok_or_else(|| DataError(format!("no user with id '{id}'")))?;
        match rec.removed {
            Some((_, RemovedReason::Changed)) => {}
            _ => return Err(DataError(format!("user '{id}' is not in deleted items"))),
        }
        rec.removed = None;
        // A restored object is reported in full by the next delta round.
        rec.created_seq = seq;
        rec.prop_seq = Vec::new();
        self.seq = seq;
        self.live_users += 1;
        Ok(())
    }

    pub fn delete_group(&mut self, id: &str, reason: RemovedReason) -> Result<(), DataError> {
        let seq = self.seq + 1;
        let rec = self
            .groups
            .get_mut(id)
            .ok_or_else(|| DataError(format!("no group with id '{id}'")))?;
        match rec.removed {
            Some((_, RemovedReason::Deleted)) => {
                return Err(DataError(format!(
                    "group '{id}' is already permanently deleted"
                )))
            }
            Some((_, RemovedReason::Changed)) if reason == RemovedReason::Changed => {
                return Err(DataError(format!("group '{id}' is already deleted")))
            }
            Some(_) => {}
            None => self.live_groups -= 1,
        }
        rec.removed = Some((seq, reason));
        self.seq = seq;
        self.drop_memberships(id, seq);
        Ok(())
    }

    fn member_kind(&self, id: &str) -> Option<MemberKind> {
        if self.users.get(id).is_some_and(|r| r.live()) {
            Some(MemberKind::User)
        } else if self.groups.get(id).is_some_and(|r| r.live()) {
            Some(MemberKind::Group)
        } else {
            None
        }
    }

    fn live_group_members(&mut self, group: &str) -> Result<&mut Members, DataError> {
        if !self.groups.get(group).is_some_and(|r| r.live()) {
            return Err(DataError(format!("no live group with id '{group}'")));
        }
        Ok(self.members.entry(group.to_string()).or_default())
    }

    pub fn set_members(&mut self, group: &str, ids: &[String]) -> Result<(), DataError> {
        let mut kinds = Vec::with_capacity(ids.len());
        for id in ids {
            let kind = self
                .member_kind(id)
                .ok_or_else(|| DataError(format!("no live user or group with id '{id}'")))?;
            if id == group {
                return Err(DataError("a group cannot be a member of itself".into()));
            }
            kinds.push((id.clone(), kind));
        }
        let seq = self.seq + 1;
        let wanted: BTreeSet<&String> = ids.iter().collect();
        let m = self.live_group_members(group)?;
        let mut changed = false;
        let gone: Vec<String> = m
            .current
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        for id in gone {
            if let Some((kind, _)) = m.current.remove(&id) {
                m.former.insert(id, (kind, seq));
                changed = true;
            }
        }
        for (id, kind) in kinds {
            if !m.current.contains_key(&id) {
                m.former.remove(&id);
                m.current.insert(id, (kind, seq));
                changed = true;
            }
        }
        if changed {
            m.seq = seq;
            self.seq = seq;
        }
        Ok(())
    }

    pub fn add_member(&mut self, group: &str, member: &str) -> Result<(), DataError> {
        let kind = self
            .member_kind(member)
            .ok_or_else(|| DataError(format!("no live user or group with id '{member}'")))?;
        if group == member {
            return Err(DataError("a group cannot be a member of itself".into()));
        }
        let seq = self.seq + 1;
        let m = self.live_group_members(group)?;
        if m.current.contains_key(member) {
            return Ok(());
        }
        m.former.remove(member);
        m.current.insert(member.to_string(), (kind, seq));
        m.seq = seq;
        self.seq = seq;
        Ok(())
    }

    pub fn remove_member(&mut self, group: &str, member: &str) -> Result<(), DataError> {
        let seq = self.seq + 1;
        let m = self.live_group_members(group)?;
        match m.current.remove(member) {
            Some((kind, _)) => {
                m.former.insert(member.to_string(), (kind, seq));
                m.seq = seq;
                self.seq = seq;
                Ok(())
            }
            None => Err(DataError(format!(
                "'{member}' is not a member of group '{group}'"
            ))),
        }
    }

    /// Bulk-creates users deterministically (same options, same tenant seed:
    /// same ids and values). Objects are built first, sorted by id and
    /// bulk-loaded, which keeps 100,000 users well under a second.
    pub fn generate_users(&mut self, spec: &GenerateUsers, now: &str) -> Vec<String> {
        let seq = self.next_seq();
        let mut batch: Vec<(String, Rec<User>)> = Vec::with_capacity(spec.count);
        let mut ids = Vec::with_capacity(spec.count);
        for k in 0..spec.count {
            let i = spec.first_index + k;
            let given = GIVEN[i % GIVEN.len()];
            let surname = SURNAMES[(i / GIVEN.len()) % SURNAMES.len()];
            let local = format!("user{i:06}");
            let upn = format!("{local}@{}", spec.domain);
            let mut proxies = Vec::with_capacity(2);
            proxies.push(format!("SMTP:{upn}"));
            if let Some(alias) = &spec.alias_domain {
                proxies.push(format!(
                    "smtp:{}.{}{i}@{alias}",
                    given.to_ascii_lowercase(),
                    surname.to_ascii_lowercase()
                ));
            }
            self.id_counter += 1;
            let id = guid(self.id_seed, self.id_counter);
            let user = User {
                id: id.clone(),
                account_enabled: spec
                    .disabled_every
                    .is_none_or(|n| n == 0 || (k + 1) % n != 0),
                business_phones: vec![format!("+1 425 555 {:04}", i % 10_000)],
                city: None,
                company_name: Some("Contoso Ltd".into()),
                country: None,
                created_date_time: Some(now.to_string()),
                department: Some(DEPARTMENTS[i % DEPARTMENTS.len()].to_string()),
                display_name: Some(format!("{given} {surname} {i}")),
                employee_id: Some(format!("E{i:07}")),
                given_name: Some(given.to_string()),
                job_title: None,
                mail: Some(upn.clone()),
                mail_nickname: Some(local),
                mobile_phone: Some(format!("+1 206 555 {:04}", (i * 7) % 10_000)),
                office_location: None,
                on_premises_sync_enabled: None,
                other_mails: Vec::new(),
                preferred_language: None,
                proxy_addresses: proxies,
                surname: Some(surname.to_string()),
                user_principal_name: upn,
                user_type: Some("Member".into()),
            };
            ids.push(id.clone());
            batch.push((id, Rec::new(user, seq)));
        }
        batch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Deterministic GUIDs practically never collide; stay correct if
        // one does (with a batch sibling or an existing object).
        let mut collided = Vec::new();
        batch.dedup_by(|a, b| {
            let dup = a.0 == b.0;
            if dup {
                collided.push(std::mem::replace(&mut a.1, Rec::new(User::default(), 0)));
            }
            dup
        });
        if self.users.is_empty() && self.groups.is_empty() {
            self.users = batch.into_iter().collect();
        } else {
            for (id, rec) in batch {
                if self.users.contains_key(&id) || self.groups.contains_key(&id) {
                    collided.push(rec);
                } else {
                    self.users.insert(id, rec);
                }
            }
        }
        for mut rec in collided {
            let old = rec.obj.id.clone();
            let id = self.next_id();
            rec.obj.id = id.clone();
            if let Some(slot) = ids.iter_mut().find(|x| **x == old) {
                *slot = id.clone();
            }
            self.users.insert(id, rec);
        }
        self.live_users += spec.count;
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_deterministic_and_well_formed() {
        let a = guid(7, 1);
        assert_eq!(a, guid(7, 1));
        assert_ne!(a, guid(7, 2));
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 4);
    }

    #[test]
    fn updates_track_changed_properties_only() {
        let mut d = Directory::new(1);
        let id = d.add_user(User::new("a@x.com"), "t").unwrap();
        let n = User::props().len();
        let before: Vec<u64> = (0..n).map(|i| d.users[&id].prop_seq(i)).collect();
        assert!(d
            .update_user(&id, |u| u.department = Some("Sales".into()))
            .unwrap());
        assert!(!d
            .update_user(&id, |u| u.department = Some("Sales".into()))
            .unwrap());
        let after: Vec<u64> = (0..n).map(|i| d.users[&id].prop_seq(i)).collect();
        let changed: Vec<_> = User::props()
            .iter()
            .enumerate()
            .filter(|(i, _)| before[*i] != after[*i])
            .map(|(_, p)| p.name)
            .collect();
        assert_eq!(changed, vec!["department"]);
    }

    #[test]
    fn deleting_a_user_drops_its_memberships() {
        let mut d = Directory::new(1);
        let u = d.add_user(User::new("a@x.com"), "t").unwrap();
        let g = d
            .add_group(Group::distribution("G", "g@x.com"), "t")
            .unwrap();
        d.set_members(&g, std::slice::from_ref(&u)).unwrap();
        d.delete_user(&u, RemovedReason::Changed).unwrap();
        assert!(d.members[&g].current.is_empty());
        assert!(d.members[&g].former.contains_key(&u));
        assert_eq!(d.live_users(), 0);
        d.restore_user(&u).unwrap();
        assert_eq!(d.live_users(), 1);
    }

    #[test]
    fn generation_is_deterministic() {
        let mut a = Directory::new(3);
        let mut b = Directory::new(3);
        let spec = GenerateUsers {
            disabled_every: Some(10),
            ..GenerateUsers::new(100, "contoso.com")
        };
        let ia = a.generate_users(&spec, "t");
        let ib = b.generate_users(&spec, "t");
        assert_eq!(ia, ib);
        assert_eq!(a.users[&ia[0]].obj, b.users[&ib[0]].obj);
        assert_eq!(
            a.users.values().filter(|r| !r.obj.account_enabled).count(),
            10
        );
    }

    #[test]
    fn generation_into_a_populated_directory() {
        let mut d = Directory::new(5);
        let first = d.add_user(User::new("a@x.com"), "t").unwrap();
        let ids = d.generate_users(&GenerateUsers::new(50, "x.com"), "t");
        assert_eq!(d.live_users(), 51);
        assert!(ids.iter().all(|id| d.users.contains_key(id)));
        assert!(d.users.contains_key(&first));
        let more = d.generate_users(
            &GenerateUsers {
                first_index: 51,
                ..GenerateUsers::new(10, "x.com")
            },
            "t",
        );
        assert_eq!(d.live_users(), 61);
        assert!(more.iter().all(|id| !ids.contains(id)));
    }
}
