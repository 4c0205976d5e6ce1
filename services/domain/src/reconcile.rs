//! The reconciler (D3): a pure function from a complete directory snapshot,
//! the customer's current users, the settings, exceptions, additions and
//! the time, to the commands that bring the user list in step. No IO; every
//! rule of SPEC.md section 3 is a unit test below, named after it.
//!
//! It works in passes over the whole read (issue 12):
//!
//! 1. [`classify`]: what each object is (excluded, without a usable or
//!    managed address, disabled, or synced) and which addresses it claims.
//! 2. [`match_users`]: which current user each object is (by stable id,
//!    else by primary address), and so the role of every user.
//! 3. [`Ownership::decide`]: who owns every claimed or held address after
//!    the run, for the whole read at once. An address claimed by one object
//!    goes to that object's user; one claimed by several follows D3.u (the
//!    user who owns it and whose object still claims it keeps it, else
//!    nobody gets it); a user's primary address leaves it only by a rename
//!    that succeeds, which is a greatest fixed point, so swaps and rotations
//!    all succeed together.
//! 4. [`Builder`]: the commands of each user, new user and flag.
//! 5. [`order_steps`]: every release before the take that needs it: alias
//!    releases, then renames along their chains (a cycle starts with an
//!    `AddressReleased` of one of its users), then the other changes, then
//!    alias takes, then new users. Every prefix of the resulting log owns
//!    each address at most once (U1); the append's claims check it again.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use roster_events::*;
use serde::{Deserialize, Serialize};

use crate::snapshot::{DirectoryObject, ObjectId, ObjectKind, Snapshot};
use crate::user::{AddUser, UserCommand};

/// The reconciler's hash maps: keyed by addresses and object ids from the
/// customer's own directory, hashed with foldhash (seeded per map, so not
/// predictable from outside) instead of SipHash, which was a tenth of the
/// plan of a 100,000-user resync (issue 17).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A user of the customer as it is now (not deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    pub id: UserId,
    pub address: Address,
    pub aliases: BTreeSet<Address>,
    pub kind: Kind,
    pub source: Source,
    pub status: Status,
    pub profile: Profile,
    pub directory_id: Option<ObjectId>,
    pub flag: Option<FlagReason>,
    pub ignored: Option<FlagReason>,
    pub members: Vec<Address>,
}

/// What the reconciler needs besides the snapshot and the users.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    pub kind: DirectoryKind,
    pub customer_id: CustomerId,
    pub include_disabled: bool,
    pub delete_after: DeleteAfter,
    pub managed: &'a BTreeSet<Domain>,
    pub exceptions: &'a BTreeSet<Exception>,
    pub additions: &'a BTreeSet<Address>,
    pub now: DateTime<Utc>,
    /// Whether the plan lists its changes ([`Plan::changes`]): what a dry
    /// run shows (D3.t). A run applies the steps and never reads the list,
    /// which at an initial sync is a line of four strings per added user
    /// (issue 17: memory at the plan's peak).
    pub list_changes: bool,
}

/// Which user a step is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Existing(UserId),
    /// A user to add; the executor gives it an id (a deleted user's, if the
    /// address comes back, U6).
    New,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub target: Target,
    pub command: UserCommand,
}

/// A user the plan adds (D3.e), named by its object's place in the read:
/// the profile and the object's id are taken from the read when the step
/// is staged ([`Addition::into_step`]), not copied into the plan (issue 17:
/// an initial sync's 90,000 copied profiles were a sixth of its peak).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addition {
    /// The object's index in the [`Snapshot`] the plan was made from.
    pub object: usize,
    pub address: Address,
    pub kind: Kind,
    pub aliases: Vec<Address>,
    /// For distribution lists, the members (U4).
    pub members: Vec<Address>,
}

impl Addition {
    /// The step that adds this user, with its object's profile (normalised)
    /// and id from `snapshot`, which must be the read the plan was made
    /// from.
    pub fn into_step(self, snapshot: &Snapshot, customer_id: CustomerId, source: Source) -> Step {
        let o = &snapshot.objects[self.object];
        Step {
            target: Target::New,
            command: UserCommand::Add(AddUser {
                user_id: UserId(uuid::Uuid::nil()),
                customer_id,
                address: self.address,
                kind: self.kind,
                source,
                profile: o.profile.clone().normalised(),
                aliases: self.aliases,
                directory_id: Some(o.id.clone()),
                members: self.members,
            }),
        }
    }
}

/// A plan's steps and additions as one sequence of steps, in the order a
/// run applies them: the steps, then each addition built from `snapshot`
/// (the read the plan was made from) only when it is reached.
pub fn staged_steps(
    steps: Vec<Step>,
    additions: Vec<Addition>,
    snapshot: &Snapshot,
    customer_id: CustomerId,
    source: Source,
) -> impl Iterator<Item = Step> + '_ {
    steps.into_iter().chain(
        additions
            .into_iter()
            .map(move |a| a.into_step(snapshot, customer_id, source)),
    )
}

/// One line of the per-user report of a run (B4) or of a dry run (D3.t).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanChange {
    pub address: String,
    /// add, update, rename, map_alias, unmap_alias, flag, unflag, link,
    /// members, end_ignore, skip.
    pub action: String,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// For a move between users: the user the address comes from (its
    /// primary address after the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// For a move between users: the user the address goes to (its
    /// primary address after the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// What a run did not sync, kept with the run (issue 11).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Sorted by object id, then address.
    pub skipped: Vec<SkippedObject>,
    /// Sorted by address.
    pub contested: Vec<ContestedAddress>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps for current users, in the order they apply.
    pub steps: Vec<Step>,
    /// The users to add, applied after every step (they take addresses the
    /// steps release), in the order of their objects' ids.
    pub additions: Vec<Addition>,
    pub changes: Vec<PlanChange>,
    pub counts: SyncCounts,
    /// Users (not lists or public folders) the plan flags: the guard's
    /// number (D3.s).
    pub flags: u64,
    /// Directory-sourced users (not lists or public folders) the customer
    /// has now: the guard's base.
    pub directory_users: u64,
    pub report: Report,
}

/// Computes the plan. Pure: same inputs, same plan, whatever the order of
/// the snapshot's objects or of the users (but for where each addition's
/// object is in the read, [`Addition::object`]: the steps staged from it
/// are the same).
pub fn reconcile(snapshot: &Snapshot, users: &[CurrentUser], settings: &Settings) -> Plan {
    // The objects in the order of their ids, and where each is in the read
    // (an addition names its object by that place).
    let mut order: Vec<usize> = (0..snapshot.objects.len()).collect();
    order.sort_by(|&a, &b| snapshot.objects[a].id.cmp(&snapshot.objects[b].id));
    let sorted_objects: Vec<&DirectoryObject> =
        order.iter().map(|&i| &snapshot.objects[i]).collect();
    let mut sorted_users: Vec<&CurrentUser> = users.iter().collect();
    sorted_users.sort_by(|a, b| (&a.address, a.id).cmp(&(&b.address, b.id)));
    let objs = classify(&sorted_objects, settings);
    let matching = match_users(&objs, &sorted_users, settings);
    let own = Ownership::decide(&objs, &sorted_users, &matching, settings);
    let mut b = Builder::new(&objs, &order, &sorted_users, &matching, &own, settings);
    b.plan.counts.read = objs.len() as u64;
    b.plan.directory_users = sorted_users
        .iter()
        .filter(|u| u.source.is_directory() && u.kind.counts_against_licence())
        .count() as u64;
    b.report_objects();
    b.report_contested();
    for ui in 0..sorted_users.len() {
        b.user_steps(ui);
    }
    let added =
        |(oi, o): &(usize, &Obj)| o.state == State::Synced && matching.user_of[*oi].is_none();
    // At most one step each: an initial sync's additions are sized once,
    // not doubled past the directory's size (issue 17).
    b.plan
        .additions
        .reserve_exact(objs.iter().enumerate().filter(added).count());
    for (oi, _) in objs.iter().enumerate().filter(added) {
        b.add_step(oi);
    }
    b.finish()
}

// ---------------------------------------------------------------------------
// Pass 1: what each object is, and what it claims.

/// What an object is, for this run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// An administrator excluded it (D3.o).
    Excluded,
    NoAddress,
    /// The mail address cannot be read as an address.
    Invalid(String),
    /// The primary address is in a domain the customer does not manage.
    Unmanaged,
    /// Disabled and "include disabled users" is off.
    Disabled,
    /// Synced: it claims its primary address and aliases.
    Synced,
}

struct Obj<'a> {
    o: &'a DirectoryObject,
    state: State,
    /// The primary address, when it is one (managed or not).
    primary: Option<Address>,
    /// Synced objects only: managed aliases, not excluded, not the
    /// primary, sorted, each once.
    aliases: Vec<Address>,
    /// Aliases in domains the customer does not manage (reported only).
    unmanaged_aliases: Vec<Address>,
}

impl Obj<'_> {
    fn id(&self) -> String {
        self.o.id.to_string()
    }
    fn claims(&self) -> impl Iterator<Item = (&Address, ClaimKind)> {
        let synced = self.state == State::Synced;
        self.primary
            .iter()
            .filter(move |_| synced)
            .map(|p| (p, ClaimKind::Primary))
            .chain(self.aliases.iter().map(|a| (a, ClaimKind::Alias)))
    }
    fn claims_address(&self, a: &Address) -> bool {
        self.claims().any(|(c, _)| c == a)
    }
}

/// D3.b / D3.c: the primary address (the `SMTP:` entry of proxyAddresses
/// when present, on LDAP; else `mail`) and the raw aliases (`smtp:` entries).
fn addresses_of(
    o: &DirectoryObject,
    kind: DirectoryKind,
) -> Result<(Address, Vec<String>), Option<String>> {
    let smtp_primary = o
        .proxy_addresses
        .iter()
        .find_map(|p| p.strip_prefix("SMTP:"))
        .filter(|_| kind == DirectoryKind::Ldap);
    let raw = match (smtp_primary, &o.mail) {
        (Some(p), _) => p.to_string(),
        (None, Some(m)) if !m.trim().is_empty() => m.clone(),
        _ => return Err(None),
    };
    let primary = Address::parse(&raw).map_err(|e| Some(format!("{raw}: {e}")))?;
    let aliases = o
        .proxy_addresses
        .iter()
        .filter_map(|p| {
            let (prefix, rest) = p.split_once(':')?;
            // `smtp:` is an alias; `SMTP:` the primary; X500:, SIP:, ... are ignored (D3.c).
            (prefix.eq_ignore_ascii_case("smtp") && prefix != "SMTP").then(|| rest.to_string())
        })
        .collect();
    Ok((primary, aliases))
}

fn excluded_ids(settings: &Settings) -> BTreeSet<String> {
    settings
        .exceptions
        .iter()
        .filter_map(|e| match e {
            Exception::User { object_id } | Exception::Group { object_id } => {
                Some(object_id.trim().to_ascii_lowercase())
            }
            Exception::Alias { .. } => None,
        })
        .collect()
}

fn classify<'a>(objects: &[&'a DirectoryObject], settings: &Settings) -> Vec<Obj<'a>> {
    let excluded = excluded_ids(settings);
    let managed = |a: &Address| settings.managed.contains(&a.domain());
    objects
        .iter()
        .map(|o| {
            let mut obj = Obj {
                o,
                state: State::Synced,
                primary: None,
                aliases: vec![],
                unmanaged_aliases: vec![],
            };
            let parsed = addresses_of(o, settings.kind);
            if let Ok((p, _)) = &parsed {
                obj.primary = Some(p.clone());
            }
            obj.state = match &parsed {
                _ if excluded.contains(o.id.as_str()) => State::Excluded,
                Err(None) => State::NoAddress,
                Err(Some(why)) => State::Invalid(why.clone()),
                Ok((p, _)) if !managed(p) => State::Unmanaged,
                Ok(_) if o.disabled && !settings.include_disabled => State::Disabled,
                Ok(_) => State::Synced,
            };
            if let (State::Synced, Ok((primary, raw))) = (&obj.state, &parsed) {
                for a in raw.iter().filter_map(|a| Address::parse(a).ok()) {
                    if &a == primary {
                        continue;
                    }
                    if !managed(&a) {
                        obj.unmanaged_aliases.push(a);
                    } else if !settings
                        .exceptions
                        .contains(&Exception::Alias { address: a.clone() })
                    {
                        obj.aliases.push(a);
                    }
                }
                obj.aliases.sort();
                obj.aliases.dedup();
                obj.unmanaged_aliases.sort();
                obj.unmanaged_aliases.dedup();
            }
            obj
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Pass 2: which user each object is, and what each user is in this run.

/// What a current user is in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A directory user whose object is synced: the directory is its truth.
    Active,
    /// A manual, CSV or SMTP user whose address a synced object has (D3.g):
    /// it gains profile and aliases, never loses anything.
    Supplemental,
    /// Kept exactly as it is: excluded (D3.o), on the additions list
    /// (D3.p), an unreadable address, several objects with its address, or
    /// a user the directory does not manage.
    Frozen,
    /// Disabled in the directory (D3.h): flagged, otherwise kept.
    Disabled,
    /// A directory user whose object is gone (`Missing`), or returned
    /// without a managed address (`UnmanagedDomain`, `NoAddress`): flagged;
    /// keeps its primary address until it is deleted; an alias moves only to
    /// an object that alone claims it.
    Leaving(FlagReason),
}

struct Matching {
    /// Per object: the user it is.
    user_of: Vec<Option<usize>>,
    /// Per user: the object that is it.
    obj_of: Vec<Option<usize>>,
    role: Vec<Role>,
}

fn match_users(objs: &[Obj], users: &[&CurrentUser], settings: &Settings) -> Matching {
    let mut user_of: Vec<Option<usize>> = vec![None; objs.len()];
    let mut obj_of: Vec<Option<usize>> = vec![None; users.len()];
    let by_id: Map<&ObjectId, usize> = users
        .iter()
        .enumerate()
        .filter_map(|(i, u)| u.directory_id.as_ref().map(|d| (d, i)))
        .collect();
    for (oi, obj) in objs.iter().enumerate() {
        if let Some(&ui) = by_id.get(&obj.o.id) {
            user_of[oi] = Some(ui);
            obj_of[ui] = Some(oi);
        }
    }
    // By primary address: users no object claims by id, objects that are
    // no user by id, and only when exactly one such object has the address
    // (a recreated object, an addition, a manual user to supplement).
    let mut candidates: Map<&Address, Vec<usize>> = Map::default();
    for (oi, obj) in objs.iter().enumerate() {
        let usable = matches!(obj.state, State::Synced | State::Disabled | State::Excluded);
        if let (true, None, Some(p)) = (usable, user_of[oi], &obj.primary) {
            candidates.entry(p).or_default().push(oi);
        }
    }
    let mut ambiguous = vec![false; users.len()];
    for (ui, u) in users.iter().enumerate() {
        if obj_of[ui].is_some() {
            continue;
        }
        match candidates.get(&u.address).map(Vec::as_slice) {
            Some([oi]) => {
                user_of[*oi] = Some(ui);
                obj_of[ui] = Some(*oi);
            }
            Some([_, _, ..]) => ambiguous[ui] = true,
            _ => {}
        }
    }
    let excluded = excluded_ids(settings);
    let role = users
        .iter()
        .enumerate()
        .map(|(ui, u)| {
            let directory = u.source.is_directory();
            match obj_of[ui].map(|oi| &objs[oi].state) {
                Some(State::Synced) if directory => Role::Active,
                Some(State::Synced) => Role::Supplemental,
                Some(State::Disabled) if directory => Role::Disabled,
                Some(State::Unmanaged) if directory => Role::Leaving(FlagReason::UnmanagedDomain),
                Some(State::NoAddress) if directory => Role::Leaving(FlagReason::NoAddress),
                Some(_) => Role::Frozen,
                None if !directory || ambiguous[ui] => Role::Frozen,
                None if settings.additions.contains(&u.address) => Role::Frozen,
                None if u
                    .directory_id
                    .as_ref()
                    .is_some_and(|d| excluded.contains(d.as_str())) =>
                {
                    Role::Frozen
                }
                None => Role::Leaving(FlagReason::Missing),
            }
        })
        .collect();
    Matching {
        user_of,
        obj_of,
        role,
    }
}

// ---------------------------------------------------------------------------
// Pass 3: who owns each address after the run.

/// What the current holder of an address does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Its own object claims it: it keeps it, whoever else claims it (D3.u).
    Claims,
    /// Keeps it (a primary whose user is not renamed, a frozen user's...).
    Keeps,
    /// Lets it go (D3.f: its object no longer lists it).
    Releases,
    /// Lets it go only if it is renamed (its primary address).
    IfRenamed(usize),
    /// Lets it go only to an object that alone claims it (a leaving user's alias).
    ToSoleClaimant,
}

/// Who owns an address after the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    User(usize),
    /// The new user of a synced object that is no user yet.
    New(usize),
    Nobody,
}

/// The objects that claim one address, with how: one for nearly every
/// address, so that one is held in place rather than in a vector of its
/// own (issue 17: a 64-byte allocation for each of 120,000 addresses).
#[derive(Debug)]
enum Claimants {
    One([(usize, ClaimKind); 1]),
    Many(Vec<(usize, ClaimKind)>),
}

impl Claimants {
    fn push(&mut self, claim: (usize, ClaimKind)) {
        match self {
            Claimants::One([first]) => *self = Claimants::Many(vec![*first, claim]),
            Claimants::Many(v) => v.push(claim),
        }
    }

    fn as_slice(&self) -> &[(usize, ClaimKind)] {
        match self {
            Claimants::One(one) => one,
            Claimants::Many(v) => v,
        }
    }
}

/// Keyed by the objects' and users' own addresses, not copies (issue 17).
struct Ownership<'a> {
    /// Claims of synced objects, per address: (object, how), by object id.
    claims: Map<&'a Address, Claimants>,
    /// Current holders: address -> user.
    holder: Map<&'a Address, usize>,
    /// Per user: the new primary address it is renamed to, if the rename is
    /// possible (solved as a greatest fixed point: swaps and rotations
    /// succeed together).
    renamed: Vec<Option<Address>>,
    /// Per address claimed or held: its owner after the run.
    owner: Map<&'a Address, Owner>,
    /// Aliases an administrator excluded (D3.o): not mapped, and a user
    /// that has one keeps it.
    excluded_aliases: BTreeSet<Address>,
}

impl<'a> Ownership<'a> {
    fn decide(
        objs: &'a [Obj<'a>],
        users: &[&'a CurrentUser],
        m: &Matching,
        s: &Settings,
    ) -> Ownership<'a> {
        // Sized for every claim: a directory with aliases has more claimed
        // addresses than objects, and the map is not grown past them.
        let count = objs.iter().map(|o| o.claims().count()).sum();
        let mut claims: Map<&'a Address, Claimants> =
            Map::with_capacity_and_hasher(count, Default::default());
        for (oi, obj) in objs.iter().enumerate() {
            for (a, how) in obj.claims() {
                match claims.entry(a) {
                    std::collections::hash_map::Entry::Occupied(mut e) => {
                        e.get_mut().push((oi, how))
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(Claimants::One([(oi, how)]));
                    }
                }
            }
        }
        let mut holder = Map::with_capacity_and_hasher(users.len() * 2, Default::default());
        for (ui, u) in users.iter().enumerate() {
            holder.insert(&u.address, ui);
            for a in &u.aliases {
                holder.insert(a, ui);
            }
        }
        let mut own = Ownership {
            claims,
            holder,
            renamed: vec![None; users.len()],
            owner: Map::default(),
            excluded_aliases: s
                .exceptions
                .iter()
                .filter_map(|e| match e {
                    Exception::Alias { address } => Some(address.clone()),
                    _ => None,
                })
                .collect(),
        };
        // Every rename starts possible; one whose new address does not come
        // to it is withdrawn, which can withdraw the renames waiting for it.
        let candidates: Vec<(usize, Address)> = (0..users.len())
            .filter(|&ui| m.role[ui] == Role::Active)
            .filter_map(|ui| {
                let p = objs[m.obj_of[ui]?].primary.clone()?;
                (p != users[ui].address).then_some((ui, p))
            })
            .collect();
        for (ui, p) in &candidates {
            own.renamed[*ui] = Some(p.clone());
        }
        loop {
            let mut changed = false;
            for (ui, p) in &candidates {
                if own.renamed[*ui].is_some() && own.winner(p, objs, users, m) != m.obj_of[*ui] {
                    own.renamed[*ui] = None;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut owner =
            Map::with_capacity_and_hasher(own.claims.len() + own.holder.len(), Default::default());
        for &a in own.claims.keys().chain(own.holder.keys()) {
            // One lookup per address (issue 17: every address of every run).
            if let std::collections::hash_map::Entry::Vacant(v) = owner.entry(a) {
                v.insert(own.final_owner(a, objs, users, m));
            }
        }
        own.owner = owner;
        own
    }

    fn hold(
        &self,
        a: &Address,
        ui: usize,
        objs: &[Obj],
        users: &[&CurrentUser],
        m: &Matching,
    ) -> Hold {
        let own_claim = m.obj_of[ui].is_some_and(|oi| objs[oi].claims_address(a));
        match m.role[ui] {
            Role::Active | Role::Supplemental if own_claim => Hold::Claims,
            Role::Active if *a == users[ui].address => Hold::IfRenamed(ui),
            Role::Active if self.excluded_aliases.contains(a) => Hold::Keeps,
            Role::Active => Hold::Releases,
            Role::Leaving(_) if *a != users[ui].address => Hold::ToSoleClaimant,
            _ => Hold::Keeps,
        }
    }

    fn sole_claimant(&self, a: &Address) -> Option<usize> {
        match self.claims.get(a).map(Claimants::as_slice) {
            Some([(oi, _)]) => Some(*oi),
            _ => None,
        }
    }

    /// Whether object `oi` ends the run as a user (existing, or added
    /// because its primary address comes to it), for a claim of `a`.
    fn ends_as_user(
        &self,
        oi: usize,
        a: &Address,
        objs: &[Obj],
        users: &[&CurrentUser],
        m: &Matching,
    ) -> bool {
        if m.user_of[oi].is_some() || objs[oi].primary.as_ref() == Some(a) {
            return true;
        }
        let p = objs[oi]
            .primary
            .as_ref()
            .expect("synced objects have a primary");
        self.winner(p, objs, users, m) == Some(oi)
    }

    /// The claimant object whose user gets `a`, if one does.
    fn winner(
        &self,
        a: &Address,
        objs: &[Obj],
        users: &[&CurrentUser],
        m: &Matching,
    ) -> Option<usize> {
        let sole = self.sole_claimant(a);
        let to_sole = || sole.filter(|&oi| self.ends_as_user(oi, a, objs, users, m));
        match self.holder.get(a) {
            None => to_sole(),
            Some(&h) => match self.hold(a, h, objs, users, m) {
                Hold::Claims => m.obj_of[h],
                Hold::Keeps => None,
                Hold::IfRenamed(h) if self.renamed[h].is_none() => None,
                Hold::Releases | Hold::IfRenamed(_) | Hold::ToSoleClaimant => to_sole(),
            },
        }
    }

    fn final_owner(
        &self,
        a: &Address,
        objs: &[Obj],
        users: &[&CurrentUser],
        m: &Matching,
    ) -> Owner {
        if let Some(oi) = self.winner(a, objs, users, m) {
            return match m.user_of[oi] {
                Some(ui) => Owner::User(ui),
                None => Owner::New(oi),
            };
        }
        let Some(&h) = self.holder.get(a) else {
            return Owner::Nobody;
        };
        match self.hold(a, h, objs, users, m) {
            Hold::Releases => Owner::Nobody,
            Hold::IfRenamed(h) if self.renamed[h].is_some() => Owner::Nobody,
            _ => Owner::User(h),
        }
    }

    fn owner(&self, a: &Address) -> Owner {
        self.owner.get(a).copied().unwrap_or(Owner::Nobody)
    }
}

// ---------------------------------------------------------------------------
// Pass 4: the commands.

/// A rename, ordered by [`order_steps`].
struct Rename {
    ui: usize,
    to: Address,
    taken_from: Option<Address>,
    released_to: Option<Address>,
}

/// Adds a line to the plan's list of changes, built only when the plan
/// lists them ([`Settings::list_changes`]).
macro_rules! note {
    ($b:expr, $change:expr) => {
        if $b.s.list_changes {
            let change = $change;
            $b.plan.changes.push(change);
        }
    };
}

struct Builder<'a> {
    objs: &'a [Obj<'a>],
    /// Each of `objs`' index in the snapshot.
    order: &'a [usize],
    users: &'a [&'a CurrentUser],
    m: &'a Matching,
    own: &'a Ownership<'a>,
    s: &'a Settings<'a>,
    plan: Plan,
    /// Aliases given up (first).
    releases: Vec<Step>,
    renames: Vec<Rename>,
    /// Flags, links, profiles, members (addresses unchanged).
    updates: Vec<Step>,
    /// Aliases taken (after every release).
    takes: Vec<Step>,
}

fn change(address: &Address, action: &str, detail: &str, object: Option<&ObjectId>) -> PlanChange {
    PlanChange {
        address: address.to_string(),
        action: action.into(),
        detail: detail.into(),
        object_id: object.map(|o| o.to_string()),
        from: None,
        to: None,
    }
}

fn kind_name(k: ObjectKind) -> String {
    k.as_str().to_string()
}

impl<'a> Builder<'a> {
    fn new(
        objs: &'a [Obj<'a>],
        order: &'a [usize],
        users: &'a [&'a CurrentUser],
        m: &'a Matching,
        own: &'a Ownership<'a>,
        s: &'a Settings<'a>,
    ) -> Self {
        Builder {
            objs,
            order,
            users,
            m,
            own,
            s,
            plan: Plan::default(),
            releases: vec![],
            renames: vec![],
            updates: vec![],
            takes: vec![],
        }
    }

    /// The primary address an owner has after the run.
    fn primary_after(&self, owner: Owner) -> Option<Address> {
        match owner {
            Owner::User(ui) => Some(
                self.own.renamed[ui]
                    .clone()
                    .unwrap_or_else(|| self.users[ui].address.clone()),
            ),
            Owner::New(oi) => self.objs[oi].primary.clone(),
            Owner::Nobody => None,
        }
    }

    /// The other user `a` comes from, by its primary after the run.
    fn taken_from(&self, a: &Address, receiver: Option<usize>) -> Option<Address> {
        let h = *self.own.holder.get(a)?;
        (Some(h) != receiver)
            .then(|| self.primary_after(Owner::User(h)))
            .flatten()
    }

    /// The other user `a` goes to, by its primary after the run.
    fn released_to(&self, a: &Address, giver: usize) -> Option<Address> {
        match self.own.owner(a) {
            Owner::User(ui) if ui == giver => None,
            o => self.primary_after(o),
        }
    }

    fn step(&mut self, ui: usize, command: UserCommand) -> Step {
        Step {
            target: Target::Existing(self.users[ui].id),
            command,
        }
    }

    fn object_id(&self, ui: usize) -> Option<&'a ObjectId> {
        self.m.obj_of[ui].map(|oi| &self.objs[oi].o.id)
    }

    fn user_steps(&mut self, ui: usize) {
        let u = self.users[ui];
        match self.m.role[ui] {
            Role::Active | Role::Supplemental => self.synced_user_steps(ui),
            Role::Disabled => {
                // D3.h: flagged; returned but disabled stays flagged (D3.j).
                if u.flag.is_none() && u.ignored != Some(FlagReason::Disabled) {
                    self.flag(ui, FlagReason::Disabled);
                } else {
                    self.plan.counts.unchanged += 1;
                }
            }
            Role::Leaving(reason) => {
                if u.flag.is_none() && u.ignored != Some(reason) {
                    self.flag(ui, reason);
                }
                self.release_aliases(ui);
            }
            Role::Frozen => {
                let disabled =
                    self.m.obj_of[ui].is_some_and(|oi| self.objs[oi].state == State::Disabled);
                if disabled {
                    self.plan.counts.unchanged += 1; // D3.g: never flagged for the directory
                }
            }
        }
    }

    /// A user whose object is synced: D3.f, D3.g, D3.j, renames, aliases.
    fn synced_user_steps(&mut self, ui: usize) {
        let u = self.users[ui];
        let oi = self.m.obj_of[ui].expect("synced users have an object");
        let o = self.objs[oi].o;
        let active = self.m.role[ui] == Role::Active;
        let mut changed = false;
        if active && u.flag.is_some() {
            // D3.j: a flagged user the directory returns, enabled, is unflagged.
            let s = self.step(
                ui,
                UserCommand::CancelDeletion {
                    reason: CancelReason::ReturnedByDirectory,
                },
            );
            self.updates.push(s);
            self.plan.counts.unflagged += 1;
            note!(
                self,
                change(
                    &u.address,
                    "unflag",
                    "returned by the directory",
                    Some(&o.id),
                )
            );
            changed = true;
        }
        if active && u.ignored.is_some() {
            let s = self.step(ui, UserCommand::EndAbsence);
            self.updates.push(s);
            note!(
                self,
                change(
                    &u.address,
                    "end_ignore",
                    "returned by the directory; an ignored absence no longer applies",
                    Some(&o.id),
                )
            );
            changed = true;
        }
        let address = self
            .primary_after(Owner::User(ui))
            .expect("a user has a primary");
        if let Some(to) = self.own.renamed[ui].clone() {
            let taken_from = self.taken_from(&to, Some(ui));
            let released_to = self.released_to(&u.address, ui);
            self.plan.counts.renamed += 1;
            note!(
                self,
                PlanChange {
                    from: taken_from.as_ref().map(|a| a.to_string()),
                    to: released_to.as_ref().map(|a| a.to_string()),
                    ..change(
                        &to,
                        "rename",
                        &format!("renamed from {}", u.address),
                        Some(&o.id),
                    )
                }
            );
            self.renames.push(Rename {
                ui,
                to,
                taken_from,
                released_to,
            });
            changed = true;
        }
        if active && (u.source != self.s.kind.source() || u.directory_id.as_ref() != Some(&o.id)) {
            // D2 / recreated objects: the user now belongs to this directory object.
            let s = self.step(
                ui,
                UserCommand::LinkDirectory {
                    source: self.s.kind.source(),
                    directory_id: o.id.clone(),
                },
            );
            self.updates.push(s);
            note!(self, {
                let detail = format!(
                    "now managed by the {} directory object",
                    self.s.kind.as_str()
                );
                change(&address, "link", &detail, Some(&o.id))
            });
            changed = true;
        }
        changed |= self.profile_and_members(ui, oi, &address);
        if active {
            changed |= self.release_aliases(ui);
        }
        changed |= self.take_aliases(ui, oi, &address);
        if changed {
            self.plan.counts.updated += 1;
        } else {
            self.plan.counts.unchanged += 1;
        }
    }

    /// D3.f / D3.g: metadata from the directory; lists' members (U4).
    fn profile_and_members(&mut self, ui: usize, oi: usize, address: &Address) -> bool {
        let u = self.users[ui];
        let o = self.objs[oi].o;
        let mut changed = false;
        let fields = changed_fields(&u.profile, &o.profile);
        if !fields.is_empty() {
            let profile = o.profile.clone().normalised();
            let s = self.step(ui, UserCommand::UpdateProfile { profile });
            self.updates.push(s);
            note!(
                self,
                change(address, "update", &fields.join(", "), Some(&o.id))
            );
            changed = true;
        }
        if u.kind == Kind::DistributionList && o.kind == ObjectKind::Group {
            let members = members_of(o, self.objs, self.s);
            if members != u.members {
                let s = self.step(ui, UserCommand::SetMembers { members });
                self.updates.push(s);
                note!(
                    self,
                    change(address, "members", "list members changed", Some(&o.id))
                );
                changed = true;
            }
        }
        changed
    }

    /// Aliases the user holds and does not keep: unmapped (D3.f), or moved
    /// to the user that takes them.
    fn release_aliases(&mut self, ui: usize) -> bool {
        let u = self.users[ui];
        let mut changed = false;
        for a in &u.aliases {
            if self.own.owner(a) == Owner::User(ui) || self.own.renamed[ui].as_ref() == Some(a) {
                continue; // kept, or becomes the primary (the rename unmaps it)
            }
            let to = self.released_to(a, ui);
            let command = match &to {
                Some(t) => UserCommand::ReleaseAlias {
                    alias: a.clone(),
                    released_to: t.clone(),
                },
                None => UserCommand::UnmapAlias {
                    alias: a.clone(),
                    reason: UnmapReason::Directory,
                },
            };
            let s = self.step(ui, command);
            self.releases.push(s);
            self.plan.counts.aliases_unmapped += 1;
            note!(self, {
                let detail = match &to {
                    Some(t) => format!("{a} moves to {t}"),
                    None => a.to_string(),
                };
                PlanChange {
                    to: to.map(|t| t.to_string()),
                    ..change(&u.address, "unmap_alias", &detail, self.object_id(ui))
                }
            });
            changed = true;
        }
        changed
    }

    /// Aliases the user's object claims and gets.
    fn take_aliases(&mut self, ui: usize, oi: usize, address: &Address) -> bool {
        let u = self.users[ui];
        let mut changed = false;
        for a in &self.objs[oi].aliases {
            if self.own.owner(a) != Owner::User(ui) || u.aliases.contains(a) || a == address {
                continue;
            }
            let from = self.taken_from(a, Some(ui));
            let command = match &from {
                Some(f) => UserCommand::TakeAlias {
                    alias: a.clone(),
                    taken_from: f.clone(),
                },
                None => UserCommand::MapAlias { alias: a.clone() },
            };
            let s = self.step(ui, command);
            self.takes.push(s);
            self.plan.counts.aliases_mapped += 1;
            note!(self, {
                let detail = match &from {
                    Some(f) => format!("{a} moves from {f}"),
                    None => a.to_string(),
                };
                PlanChange {
                    from: from.map(|f| f.to_string()),
                    ..change(address, "map_alias", &detail, Some(&self.objs[oi].o.id))
                }
            });
            changed = true;
        }
        changed
    }

    /// D3.e (and D3.k / D3.l: a deleted address comes back as a return).
    fn add_step(&mut self, oi: usize) {
        let obj = &self.objs[oi];
        let o = obj.o;
        let primary = obj.primary.clone().expect("synced objects have a primary");
        if self.own.owner(&primary) != Owner::New(oi) {
            return; // reported by report_objects
        }
        let aliases: Vec<Address> = obj
            .aliases
            .iter()
            .filter(|a| self.own.owner(a) == Owner::New(oi))
            .cloned()
            .collect();
        // Addresses taken from other users are only listed: the steps
        // that release them come before the additions.
        let taken = aliases.iter().chain(std::iter::once(&primary));
        for a in taken.filter(|_| self.s.list_changes) {
            if let Some(from) = self.taken_from(a, None) {
                note!(
                    self,
                    PlanChange {
                        from: Some(from.to_string()),
                        ..change(
                            &primary,
                            "map_alias",
                            &format!("{a} moves from {from}"),
                            Some(&o.id),
                        )
                    }
                );
            }
        }
        let kind = match o.kind {
            ObjectKind::User => Kind::User,
            ObjectKind::Group => Kind::DistributionList,
            ObjectKind::PublicFolder => Kind::PublicFolder,
        };
        let members = match kind {
            Kind::DistributionList => members_of(o, self.objs, self.s),
            _ => vec![],
        };
        self.plan.counts.added += 1;
        // Aliases created inside UserAdded are mapped aliases too (issue 11).
        self.plan.counts.aliases_mapped += aliases.len() as u64;
        note!(self, change(&primary, "add", kind.as_str(), Some(&o.id)));
        self.plan.additions.push(Addition {
            object: self.order[oi],
            address: primary,
            kind,
            aliases,
            members,
        });
    }

    fn flag(&mut self, ui: usize, reason: FlagReason) {
        let u = self.users[ui];
        let delete_at = self.s.delete_after.duration().map(|d| self.s.now + d);
        let s = self.step(
            ui,
            UserCommand::FlagForDeletion {
                reason,
                at: self.s.now,
                delete_at,
            },
        );
        self.updates.push(s);
        // The guard counts users, not lists or public folders (D3.s, issue 11).
        if u.kind.counts_against_licence() {
            self.plan.flags += 1;
        }
        self.plan.counts.flagged += 1;
        note!(self, {
            let detail = match delete_at {
                Some(t) => format!("{}; deleted after {}", reason.as_str(), t.to_rfc3339()),
                None => format!("{}; never deleted automatically", reason.as_str()),
            };
            change(&u.address, "flag", &detail, u.directory_id.as_ref())
        });
    }

    fn finish(mut self) -> Plan {
        let renames = std::mem::take(&mut self.renames);
        let ordered = order_renames(renames, self.users);
        // In order: releases, renames, updates, takes (the additions come
        // after them all). One of them alone is the steps as it is; several
        // are gathered into one allocation, not copied once per doubling
        // (issue 17).
        let mut parts = [
            std::mem::take(&mut self.releases),
            ordered,
            std::mem::take(&mut self.updates),
            std::mem::take(&mut self.takes),
        ];
        let steps = if parts.iter().filter(|p| !p.is_empty()).count() <= 1 {
            parts
                .into_iter()
                .find(|p| !p.is_empty())
                .unwrap_or_default()
        } else {
            let mut steps = Vec::with_capacity(parts.iter().map(Vec::len).sum());
            for part in &mut parts {
                steps.append(part);
            }
            steps
        };
        self.plan.steps = steps;
        self.plan
    }
}

/// The fields whose values differ once both sides are normalised as
/// [`Profile::normalised`] does (trimmed, blank as none), without copying
/// either profile: this runs for every user of every resync (issue 17).
fn changed_fields(old: &Profile, new: &Profile) -> Vec<String> {
    fn value(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|t| !t.is_empty())
    }
    old.fields()
        .iter()
        .zip(new.fields().iter())
        // Equal as stored is equal once normalised, and cheaper to see than
        // two trims (the common case: an unchanged user).
        .filter(|((_, a), (_, b))| a != b && value(a) != value(b))
        .map(|((name, _), _)| name.to_string())
        .collect()
}

/// U4: a list's members are the primary addresses (in managed domains) of
/// its member objects, and of the members the read did not return as
/// objects (outside a user filter: membership is the group's, D6).
///
/// `objs` are in the order of their ids ([`reconcile`] sorts them), so a
/// member is found by binary search: a map of every object built for each
/// list cost O(objects) per list (issue 17: seconds for a directory with
/// many lists).
fn members_of(o: &DirectoryObject, objs: &[Obj], s: &Settings) -> Vec<Address> {
    debug_assert!(objs.windows(2).all(|w| w[0].o.id <= w[1].o.id));
    let mut out: Vec<Address> = o
        .members
        .iter()
        .filter_map(|m| {
            objs.binary_search_by(|x| x.o.id.cmp(m))
                .ok()
                .map(|i| &objs[i])
        })
        .filter(|x| matches!(x.state, State::Synced | State::Disabled))
        .filter_map(|x| x.primary.clone())
        .chain(
            o.member_addresses
                .iter()
                .filter_map(|a| Address::parse(a).ok())
                .filter(|a| s.managed.contains(&a.domain())),
        )
        .collect();
    out.sort();
    out.dedup();
    out
}

// ---------------------------------------------------------------------------
// Pass 5: the order of the renames.

/// Renames so that each takes its new address after its holder gave it up:
/// along a chain, the end first; in a cycle (a swap, a rotation), one user
/// releases its address first (`ReleaseAddress`), the others follow, and it
/// completes last. Which user opens a cycle: the one with the smallest
/// address (the walk goes in address order), so the log is the same on
/// every server.
fn order_renames(renames: Vec<Rename>, users: &[&CurrentUser]) -> Vec<Step> {
    let renaming_primary: Map<&Address, usize> = renames
        .iter()
        .enumerate()
        .map(|(i, r)| (&users[r.ui].address, i))
        .collect();
    // The rename (index) that must give up this rename's new address first.
    let dep: Vec<Option<usize>> = renames
        .iter()
        .enumerate()
        .map(|(i, r)| renaming_primary.get(&r.to).copied().filter(|&d| d != i))
        .collect();
    let mut done = vec![false; renames.len()];
    let mut visiting = vec![false; renames.len()];
    let mut released = vec![false; renames.len()];
    let mut out = Vec::new();
    let mut start: Vec<usize> = (0..renames.len()).collect();
    start.sort_by(|&a, &b| {
        users[renames[a].ui]
            .address
            .cmp(&users[renames[b].ui].address)
    });
    for i in start {
        let mut path = vec![i];
        // An explicit walk along the chain (no recursion on long chains).
        while let Some(&cur) = path.last() {
            if done[cur] {
                path.pop();
                continue;
            }
            visiting[cur] = true;
            match dep[cur] {
                Some(d) if !done[d] && !visiting[d] => {
                    path.push(d);
                    continue;
                }
                Some(d) if visiting[d] && !released[d] && !done[d] => {
                    // A cycle: `d` gives up its address first.
                    let r = &renames[d];
                    released[d] = true;
                    out.push(Step {
                        target: Target::Existing(users[r.ui].id),
                        command: UserCommand::ReleaseAddress {
                            next: r.to.clone(),
                            released_to: r.released_to.clone(),
                        },
                    });
                }
                _ => {}
            }
            let r = &renames[cur];
            out.push(Step {
                target: Target::Existing(users[r.ui].id),
                command: UserCommand::ChangeAddress {
                    address: r.to.clone(),
                    taken_from: r.taken_from.clone(),
                    released_to: r.released_to.clone(),
                },
            });
            done[cur] = true;
            visiting[cur] = false;
            path.pop();
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The run's report (issue 11): what was not synced, and why.

impl Builder<'_> {
    fn skip(
        &mut self,
        oi: usize,
        address: Option<&Address>,
        scope: SkipScope,
        reason: SkipReason,
        detail: String,
    ) {
        let o = self.objs[oi].o;
        let raw = address.map(|a| a.to_string()).or_else(|| o.mail.clone());
        if scope == SkipScope::Object {
            self.plan.counts.skipped += 1;
        }
        note!(self, {
            let subject = match (scope, &self.objs[oi].primary) {
                (SkipScope::Object, _) | (_, None) => raw.clone().unwrap_or_default(),
                (_, Some(p)) => {
                    let user = self.m.user_of[oi].map(|ui| self.users[ui].address.clone());
                    user.unwrap_or_else(|| p.clone()).to_string()
                }
            };
            PlanChange {
                address: subject,
                action: "skip".into(),
                detail: detail.clone(),
                object_id: Some(o.id.to_string()),
                from: None,
                to: None,
            }
        });
        self.plan.report.skipped.push(SkippedObject {
            object_id: o.id.clone(),
            kind: kind_name(o.kind),
            dn: o.dn.clone(),
            address: raw,
            scope,
            reason,
            detail,
        });
    }

    /// Objects not synced, and addresses of synced objects that did not
    /// come to them.
    fn report_objects(&mut self) {
        for oi in 0..self.objs.len() {
            let obj = &self.objs[oi];
            let matched = self.m.user_of[oi].is_some();
            match &obj.state {
                State::Excluded => self.skip(
                    oi,
                    None,
                    SkipScope::Object,
                    SkipReason::Excluded,
                    "excluded by an exception".into(),
                ),
                State::NoAddress
                    if obj.o.kind == ObjectKind::User || obj.o.mail.is_some() || matched =>
                {
                    self.skip(
                        oi,
                        None,
                        SkipScope::Object,
                        SkipReason::NoAddress,
                        "not synced: it has no mail address".into(),
                    )
                }
                State::NoAddress => {}
                State::Invalid(why) => {
                    let why = why.clone();
                    self.skip(
                        oi,
                        None,
                        SkipScope::Object,
                        SkipReason::InvalidAddress,
                        format!("not synced: {why}"),
                    )
                }
                State::Unmanaged => {
                    let p = obj.primary.clone().expect("parsed");
                    let detail = format!("{} is not a managed domain of this customer", p.domain());
                    self.skip(
                        oi,
                        Some(&p),
                        SkipScope::Object,
                        SkipReason::UnmanagedDomain,
                        detail,
                    )
                }
                State::Disabled if !matched => {
                    let p = obj.primary.clone();
                    self.skip(
                        oi,
                        p.as_ref(),
                        SkipScope::Object,
                        SkipReason::Disabled,
                        "disabled in the directory".into(),
                    )
                }
                State::Disabled => {}
                State::Synced => self.report_claims(oi),
            }
        }
    }

    fn report_claims(&mut self, oi: usize) {
        let obj = &self.objs[oi];
        let user = self.m.user_of[oi];
        let mine = |o: Owner| match user {
            Some(ui) => o == Owner::User(ui),
            None => o == Owner::New(oi),
        };
        let primary = obj.primary.clone().expect("synced objects have a primary");
        if user.is_none() && !mine(self.own.owner(&primary)) {
            let (reason, detail) = self.why_not(&primary);
            self.skip(oi, Some(&primary), SkipScope::Object, reason, detail);
            return;
        }
        let claims: Vec<(Address, ClaimKind)> = obj.claims().map(|(a, k)| (a.clone(), k)).collect();
        for (a, how) in claims {
            if mine(self.own.owner(&a)) {
                continue;
            }
            let keeps_current = user.is_some_and(|ui| self.users[ui].address == a);
            if keeps_current {
                continue;
            }
            let (reason, detail) = self.why_not(&a);
            let (scope, detail) = match how {
                ClaimKind::Primary => (SkipScope::Rename, format!("not renamed to {a}: {detail}")),
                ClaimKind::Alias => (SkipScope::Alias, format!("alias {a} not mapped: {detail}")),
            };
            self.skip(oi, Some(&a), scope, reason, detail);
        }
        for a in obj.unmanaged_aliases.iter() {
            note!(self, {
                let p = user.map_or(&primary, |ui| &self.users[ui].address);
                let detail = format!("alias {a} is not in a managed domain");
                change(p, "skip", &detail, Some(&obj.o.id))
            });
        }
    }

    /// Why a claimed address does not come to its claimant.
    fn why_not(&self, a: &Address) -> (SkipReason, String) {
        let claimants = self
            .own
            .claims
            .get(a)
            .map(Claimants::as_slice)
            .unwrap_or_default();
        if claimants.len() > 1 {
            let names: Vec<String> = claimants
                .iter()
                .map(|(oi, _)| self.objs[*oi].id())
                .collect();
            let outcome = match self.own.owner(a) {
                Owner::Nobody => {
                    "nobody gets it until an administrator excludes all claimants but one (D3.u)"
                        .to_string()
                }
                o => format!(
                    "{} keeps it (D3.u)",
                    self.primary_after(o)
                        .map(|p| p.to_string())
                        .unwrap_or_default()
                ),
            };
            let detail = format!(
                "{a} is claimed by {} directory objects ({}); {outcome}",
                names.len(),
                names.join(", ")
            );
            return (SkipReason::Contested, detail);
        }
        let Some(&h) = self.own.holder.get(a) else {
            return (SkipReason::AddressInUse, format!("{a} is not free"));
        };
        let u = self.users[h];
        let why = match self.m.role[h] {
            Role::Leaving(r) => format!(
                "a user flagged for deletion ({}) keeps it until it is deleted",
                r.as_str()
            ),
            Role::Disabled => "a user disabled in the directory keeps it".into(),
            Role::Active => "its user keeps it while its own new address is not free".into(),
            Role::Supplemental | Role::Frozen if !u.source.is_directory() => {
                format!("a {} user keeps it", u.source.as_str())
            }
            _ => "a user that is kept as it is (excluded, on the additions list, or with an unreadable address) keeps it".into(),
        };
        (
            SkipReason::AddressInUse,
            format!("{a} belongs to {}: {why}", u.address),
        )
    }

    /// D3.u: every address several objects claim, with all its claimants.
    fn report_contested(&mut self) {
        let mut contested: Vec<_> = (self.own.claims.iter())
            .filter_map(|(a, c)| match c {
                Claimants::Many(claimants) => Some((a, claimants)),
                Claimants::One(_) => None,
            })
            .collect();
        contested.sort_unstable_by(|x, y| x.0.cmp(y.0));
        for (a, claimants) in contested {
            let kept_by = match self.own.owner(a) {
                Owner::User(ui) => self.m.obj_of[ui]
                    .filter(|oi| claimants.iter().any(|(c, _)| c == oi))
                    .map(|oi| self.objs[oi].id()),
                Owner::New(oi) => Some(self.objs[oi].id()),
                Owner::Nobody => None,
            };
            self.plan.report.contested.push(ContestedAddress {
                address: (*a).clone(),
                claimants: claimants
                    .iter()
                    .map(|(oi, how)| {
                        let o = self.objs[*oi].o;
                        Claimant {
                            object_id: o.id.clone(),
                            kind: kind_name(o.kind),
                            dn: o.dn.clone(),
                            primary: self.objs[*oi].primary.clone().expect("synced"),
                            claim: *how,
                        }
                    })
                    .collect(),
                kept_by,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::World;
    use chrono::TimeZone;

    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
    }
    fn obj(id: &str, mail: &str) -> DirectoryObject {
        DirectoryObject {
            id: ObjectId::new(id),
            kind: ObjectKind::User,
            dn: Some(format!("cn={id},ou=people,dc=example,dc=com")),
            display_name: None,
            mail: Some(mail.into()),
            proxy_addresses: vec![],
            profile: Profile {
                first_name: Some(format!("F-{id}")),
                ..Profile::default()
            },
            disabled: false,
            members: vec![],
            member_addresses: Box::default(),
        }
    }
    fn user(n: u128, address: &str, source: Source, dir: Option<&str>) -> CurrentUser {
        CurrentUser {
            id: UserId(uuid::Uuid::from_u128(n)),
            address: a(address),
            aliases: BTreeSet::new(),
            kind: Kind::User,
            source,
            status: Status::Active,
            profile: Profile {
                first_name: dir.map(|d| format!("F-{d}")),
                ..Profile::default()
            },
            directory_id: dir.map(ObjectId::new),
            flag: None,
            ignored: None,
            members: vec![],
        }
    }
    struct Env {
        managed: BTreeSet<Domain>,
        exceptions: BTreeSet<Exception>,
        additions: BTreeSet<Address>,
        include_disabled: bool,
        delete_after: DeleteAfter,
        kind: DirectoryKind,
    }
    impl Env {
        fn new() -> Self {
            Env {
                managed: ["example.com", "example.org"]
                    .iter()
                    .map(|d| Domain::parse(d).unwrap())
                    .collect(),
                exceptions: BTreeSet::new(),
                additions: BTreeSet::new(),
                include_disabled: false,
                delete_after: DeleteAfter::Days7,
                kind: DirectoryKind::Ldap,
            }
        }
        fn run(&self, objects: Vec<DirectoryObject>, users: &[CurrentUser]) -> Plan {
            let settings = Settings {
                kind: self.kind,
                customer_id: CustomerId(uuid::Uuid::from_u128(99)),
                include_disabled: self.include_disabled,
                delete_after: self.delete_after,
                managed: &self.managed,
                exceptions: &self.exceptions,
                additions: &self.additions,
                now: now(),
                list_changes: true,
            };
            let snapshot = Snapshot { objects };
            let plan = reconcile(&snapshot, users, &settings);
            // A run's plan (no list of changes) is the dry run's plan but
            // for the list: every test here checks it (issue 17).
            let unlisted = Settings {
                list_changes: false,
                ..settings
            };
            let run = reconcile(&snapshot, users, &unlisted);
            assert!(run.changes.is_empty());
            assert_eq!(
                run,
                Plan {
                    changes: vec![],
                    ..plan.clone()
                }
            );
            // The tests read the additions as the steps a run stages.
            let mut plan = plan;
            let (steps, additions) = (
                std::mem::take(&mut plan.steps),
                std::mem::take(&mut plan.additions),
            );
            let (customer, source) = (settings.customer_id, settings.kind.source());
            plan.steps = staged_steps(steps, additions, &snapshot, customer, source).collect();
            plan
        }
    }
    fn commands(plan: &Plan) -> Vec<&UserCommand> {
        plan.steps.iter().map(|s| &s.command).collect()
    }
    fn adds(plan: &Plan) -> Vec<&AddUser> {
        plan.steps
            .iter()
            .filter_map(|s| match &s.command {
                UserCommand::Add(x) => Some(x),
                _ => None,
            })
            .collect()
    }
    fn flags(plan: &Plan) -> Vec<(UserId, FlagReason, Option<DateTime<Utc>>)> {
        plan.steps
            .iter()
            .filter_map(|s| match (&s.target, &s.command) {
                (
                    Target::Existing(id),
                    UserCommand::FlagForDeletion {
                        reason, delete_at, ..
                    },
                ) => Some((*id, *reason, *delete_at)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn d3a_d3e_new_directory_objects_are_added_with_the_directory_as_source() {
        let plan = Env::new().run(vec![obj("1", "Ann@Example.com")], &[]);
        let added = adds(&plan);
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].address, a("ann@example.com"));
        assert_eq!(added[0].source, Source::Ldap);
        assert_eq!(
            added[0].directory_id.as_ref().map(ObjectId::as_str),
            Some("1")
        );
        assert_eq!(plan.counts.added, 1);
        assert!(matches!(plan.steps[0].target, Target::New));
    }

    #[test]
    fn d3e_an_addition_names_its_own_object_in_the_read_whatever_the_order() {
        // The plan's additions name their object by its place in the read,
        // which is not the order of ids the plan works in (issue 17).
        let mut objects: Vec<DirectoryObject> = (1..=5)
            .rev()
            .map(|n| {
                let mut o = obj(&format!("{n}"), &format!("u{n}@example.com"));
                o.profile.department = Some(format!("  D{n} "));
                o
            })
            .collect();
        objects.insert(2, obj("0", "other@elsewhere.net"));
        let snapshot = Snapshot {
            objects: objects.clone(),
        };
        let env = Env::new();
        let settings = Settings {
            kind: env.kind,
            customer_id: CustomerId(uuid::Uuid::from_u128(99)),
            include_disabled: false,
            delete_after: env.delete_after,
            managed: &env.managed,
            exceptions: &env.exceptions,
            additions: &env.additions,
            now: now(),
            list_changes: false,
        };
        let plan = reconcile(&snapshot, &[], &settings);
        assert!(plan.steps.is_empty());
        let named: Vec<(usize, String)> = plan
            .additions
            .iter()
            .map(|x| (x.object, x.address.to_string()))
            .collect();
        assert_eq!(
            named,
            [(5, "u1"), (4, "u2"), (3, "u3"), (1, "u4"), (0, "u5")]
                .map(|(i, u)| (i, format!("{u}@example.com")))
        );
        // Staged, each takes its object's id and normalised profile.
        for step in staged_steps(
            vec![],
            plan.additions,
            &snapshot,
            settings.customer_id,
            Source::Ldap,
        ) {
            let UserCommand::Add(add) = step.command else {
                panic!("an addition stages as an addition");
            };
            let n = add.address.local_part().trim_start_matches('u').to_string();
            assert_eq!(add.directory_id, Some(ObjectId::new(&n)));
            assert_eq!(add.profile.first_name, Some(format!("F-{n}")));
            assert_eq!(add.profile.department, Some(format!("D{n}")));
            assert_eq!(add.customer_id, settings.customer_id);
            assert_eq!(step.target, Target::New);
        }
        // The test environment's plans read the same.
        let expanded = env.run(objects, &[]);
        assert_eq!(adds(&expanded).len(), 5);
    }

    #[test]
    fn d3b_the_primary_is_the_smtp_entry_of_proxy_addresses_when_present() {
        let mut o = obj("1", "legacy@example.com");
        o.proxy_addresses = vec![
            "smtp:legacy@example.com".into(),
            "SMTP:ann@example.com".into(),
        ];
        let plan = Env::new().run(vec![o], &[]);
        assert_eq!(adds(&plan)[0].address, a("ann@example.com"));
        assert_eq!(adds(&plan)[0].aliases, vec![a("legacy@example.com")]);
    }

    #[test]
    fn d3b_entra_takes_mail_as_the_primary() {
        let mut env = Env::new();
        env.kind = DirectoryKind::Entra;
        let mut o = obj("1", "ann@example.com");
        o.proxy_addresses = vec![
            "SMTP:other@example.com".into(),
            "smtp:alias@example.com".into(),
        ];
        let plan = env.run(vec![o], &[]);
        assert_eq!(adds(&plan)[0].address, a("ann@example.com"));
        assert_eq!(adds(&plan)[0].source, Source::Entra);
        assert_eq!(adds(&plan)[0].aliases, vec![a("alias@example.com")]);
    }

    #[test]
    fn d3b_objects_in_unmanaged_domains_are_skipped_and_reported() {
        let plan = Env::new().run(
            vec![obj("1", "ann@elsewhere.net"), obj("2", "no address")],
            &[],
        );
        assert!(adds(&plan).is_empty());
        assert_eq!(plan.counts.skipped, 2);
        let skips: Vec<&str> = plan
            .changes
            .iter()
            .filter(|c| c.action == "skip")
            .map(|c| c.detail.as_str())
            .collect();
        assert!(
            skips
                .iter()
                .any(|d| d.contains("elsewhere.net is not a managed domain")),
            "{skips:?}"
        );
        assert!(
            skips
                .iter()
                .any(|d| d.contains("not a valid email address")),
            "{skips:?}"
        );
    }

    #[test]
    fn d3c_only_smtp_aliases_in_managed_domains_are_mapped() {
        let mut o = obj("1", "ann@example.com");
        o.proxy_addresses = vec![
            "SMTP:ann@example.com".into(),
            "smtp:a@example.org".into(),
            "smtp:a@unmanaged.net".into(),
            "X500:/o=Org/ou=Exchange/cn=Recipients/cn=ann".into(),
            "SIP:ann@example.com".into(),
        ];
        let plan = Env::new().run(vec![o], &[]);
        assert_eq!(adds(&plan)[0].aliases, vec![a("a@example.org")]);
        assert!(plan.changes.iter().any(|c| c
            .detail
            .contains("a@unmanaged.net is not in a managed domain")));
    }

    #[test]
    fn d3c_d3u_an_alias_of_another_user_or_claimed_by_several_objects_is_not_mapped() {
        let mut o1 = obj("1", "ann@example.com");
        o1.proxy_addresses = vec![
            "smtp:shared@example.com".into(),
            "smtp:bob@example.com".into(),
        ];
        let mut o2 = obj("2", "carl@example.com");
        o2.proxy_addresses = vec!["smtp:shared@example.com".into()];
        let o3 = obj("3", "bob@example.com");
        let manual = CurrentUser {
            aliases: [a("taken@example.com")].into(),
            ..user(1, "dan@example.com", Source::Manual, None)
        };
        let mut o4 = obj("4", "eve@example.com");
        o4.proxy_addresses = vec!["smtp:taken@example.com".into()];
        let plan = Env::new().run(vec![o1, o2, o3, o4], &[manual]);
        let by: HashMap<String, Vec<Address>> = adds(&plan)
            .iter()
            .map(|x| (x.address.to_string(), x.aliases.clone()))
            .collect();
        assert!(
            by["ann@example.com"].is_empty() && by["carl@example.com"].is_empty(),
            "an alias two new objects claim goes to neither (D3.u): {by:?}"
        );
        assert!(
            !by.contains_key("bob@example.com"),
            "bob's primary is also ann's alias: contested, nobody gets it"
        );
        assert!(
            by["eve@example.com"].is_empty(),
            "a manual user's alias is not taken"
        );
        let contested: Vec<&str> = plan
            .report
            .contested
            .iter()
            .map(|c| c.address.as_str())
            .collect();
        assert_eq!(contested, vec!["bob@example.com", "shared@example.com"]);
        assert!(plan.report.contested.iter().all(|c| c.kept_by.is_none()));
        let eve = plan
            .report
            .skipped
            .iter()
            .find(|s| s.object_id.as_str() == "4")
            .unwrap();
        assert_eq!(
            (eve.scope, eve.reason),
            (SkipScope::Alias, SkipReason::AddressInUse)
        );
        assert!(eve.detail.contains("dan@example.com"), "{}", eve.detail);
    }

    #[test]
    fn d3d_synced_attributes_become_the_profile() {
        let mut o = obj("1", "ann@example.com");
        o.profile = Profile {
            first_name: Some(" Ann ".into()),
            last_name: Some("Lee".into()),
            home_phone: Some("+1 555".into()),
            mobile: Some("+1 556".into()),
            company: Some("Acme".into()),
            department: Some("Sales".into()),
            notes: Some("line\nline".into()),
        };
        let plan = Env::new().run(vec![o], &[]);
        let p = &adds(&plan)[0].profile;
        assert_eq!(p.first_name.as_deref(), Some("Ann"));
        assert_eq!(p.notes.as_deref(), Some("line\nline"));
        assert_eq!(p.company.as_deref(), Some("Acme"));
    }

    #[test]
    fn d3f_changed_metadata_is_updated_and_an_unchanged_user_gives_no_step() {
        let u = user(1, "ann@example.com", Source::Ldap, Some("1"));
        let plan = Env::new().run(vec![obj("1", "ann@example.com")], std::slice::from_ref(&u));
        assert!(plan.steps.is_empty(), "{:?}", plan.steps);
        assert_eq!(plan.counts.unchanged, 1);
        let mut o = obj("1", "ann@example.com");
        o.profile.department = Some("Sales".into());
        let plan = Env::new().run(vec![o], &[u]);
        assert!(matches!(
            commands(&plan)[..],
            [UserCommand::UpdateProfile { .. }]
        ));
        assert_eq!(plan.counts.updated, 1);
        assert!(plan
            .changes
            .iter()
            .any(|c| c.action == "update" && c.detail == "department"));
    }

    #[test]
    fn d3f_the_directory_is_the_truth_for_its_users_aliases() {
        let u = CurrentUser {
            aliases: [a("old@example.com")].into(),
            ..user(1, "ann@example.com", Source::Ldap, Some("1"))
        };
        let mut o = obj("1", "ann@example.com");
        o.proxy_addresses = vec!["smtp:new@example.com".into()];
        let plan = Env::new().run(vec![o], &[u]);
        assert_eq!(
            commands(&plan),
            vec![
                &UserCommand::UnmapAlias {
                    alias: a("old@example.com"),
                    reason: UnmapReason::Directory
                },
                &UserCommand::MapAlias {
                    alias: a("new@example.com")
                },
            ],
            "unmaps come before maps"
        );
    }

    #[test]
    fn d3_a_changed_primary_of_the_same_object_is_a_rename() {
        let u = user(1, "ann@example.com", Source::Ldap, Some("1"));
        let mut o = obj("1", "ann.lee@example.com");
        o.proxy_addresses = vec![
            "SMTP:ann.lee@example.com".into(),
            "smtp:ann@example.com".into(),
        ];
        let plan = Env::new().run(vec![o], &[u]);
        assert_eq!(
            commands(&plan),
            vec![
                &UserCommand::ChangeAddress {
                    address: a("ann.lee@example.com"),
                    taken_from: None,
                    released_to: None,
                },
                &UserCommand::MapAlias {
                    alias: a("ann@example.com")
                },
            ],
            "renamed, and the old primary stays on as an alias"
        );
        assert_eq!(plan.counts.renamed, 1);
        assert_eq!(plan.flags, 0);
        assert!(adds(&plan).is_empty());
    }

    #[test]
    fn d3g_manual_and_csv_users_are_supplemented_never_flagged() {
        let manual = user(1, "ann@example.com", Source::Manual, None);
        let csv = user(2, "bob@example.com", Source::Csv, None);
        let smtp = user(3, "carl@example.com", Source::Smtp, None);
        let mut o = obj("1", "ann@example.com");
        o.profile.department = Some("Sales".into());
        o.proxy_addresses = vec!["smtp:a@example.com".into()];
        let plan = Env::new().run(vec![o], &[manual, csv, smtp]);
        assert_eq!(
            commands(&plan),
            vec![
                &UserCommand::UpdateProfile {
                    profile: Profile {
                        first_name: Some("F-1".into()),
                        department: Some("Sales".into()),
                        ..Profile::default()
                    }
                },
                &UserCommand::MapAlias { alias: a("a@example.com") },
            ],
            "profile and aliases from the directory; source kept, no link, bob and carl are not flagged"
        );
        let mut disabled = obj("1", "ann@example.com");
        disabled.disabled = true;
        let plan = Env::new().run(
            vec![disabled],
            &[user(1, "ann@example.com", Source::Manual, None)],
        );
        assert!(
            flags(&plan).is_empty(),
            "disabled in the directory is not recognised for manual users"
        );
    }

    #[test]
    fn d3h_a_directory_user_the_directory_no_longer_returns_is_flagged_missing() {
        let gone = user(1, "gone@example.com", Source::Ldap, Some("1"));
        let stays = user(2, "stays@example.com", Source::Ldap, Some("2"));
        let plan = Env::new().run(vec![obj("2", "stays@example.com")], &[gone, stays]);
        assert_eq!(
            flags(&plan),
            vec![(
                UserId(uuid::Uuid::from_u128(1)),
                FlagReason::Missing,
                Some(now() + chrono::Duration::days(7))
            )]
        );
        assert_eq!(plan.flags, 1);
    }

    #[test]
    fn d3h_a_user_disabled_in_the_directory_is_flagged_disabled_unless_included() {
        let u = user(1, "ann@example.com", Source::Ldap, Some("1"));
        let mut o = obj("1", "ann@example.com");
        o.disabled = true;
        let plan = Env::new().run(vec![o.clone()], std::slice::from_ref(&u));
        assert_eq!(flags(&plan)[0].1, FlagReason::Disabled);
        let new_disabled = Env::new().run(vec![o.clone()], &[]);
        assert!(
            adds(&new_disabled).is_empty(),
            "disabled objects are not added"
        );
        let mut env = Env::new();
        env.include_disabled = true;
        let plan = env.run(vec![o], &[u]);
        assert!(flags(&plan).is_empty());
    }

    #[test]
    fn d3i_delete_after_sets_when_the_flag_deletes_and_never_sets_none() {
        let gone = user(1, "gone@example.com", Source::Ldap, Some("1"));
        for (after, days) in [
            (DeleteAfter::Days14, Some(14)),
            (DeleteAfter::Days30, Some(30)),
            (DeleteAfter::Never, None),
        ] {
            let mut env = Env::new();
            env.delete_after = after;
            let plan = env.run(vec![], std::slice::from_ref(&gone));
            assert_eq!(
                flags(&plan)[0].2,
                days.map(|d| now() + chrono::Duration::days(d))
            );
        }
    }

    #[test]
    fn d3j_a_flagged_user_returned_enabled_is_unflagged() {
        let u = CurrentUser {
            flag: Some(FlagReason::Missing),
            status: Status::PendingDeletion,
            ..user(1, "ann@example.com", Source::Ldap, Some("1"))
        };
        let plan = Env::new().run(vec![obj("1", "ann@example.com")], std::slice::from_ref(&u));
        assert_eq!(
            commands(&plan),
            vec![&UserCommand::CancelDeletion {
                reason: CancelReason::ReturnedByDirectory
            }]
        );
        assert_eq!(plan.counts.unflagged, 1);
        let mut disabled = obj("1", "ann@example.com");
        disabled.disabled = true;
        let plan = Env::new().run(vec![disabled], &[u]);
        assert!(
            plan.steps.is_empty(),
            "returned but disabled: stays flagged"
        );
    }

    #[test]
    fn d3h_an_already_flagged_user_is_not_flagged_again() {
        let u = CurrentUser {
            flag: Some(FlagReason::Missing),
            status: Status::PendingDeletion,
            ..user(1, "ann@example.com", Source::Ldap, Some("1"))
        };
        let plan = Env::new().run(vec![], &[u]);
        assert!(plan.steps.is_empty());
        assert_eq!(plan.flags, 0);
    }

    #[test]
    fn d3k_d3l_an_address_that_comes_back_is_added_again() {
        // Deleted users are not current users: the directory's object is
        // planned as an addition, which the executor turns into a return (U6).
        let plan = Env::new().run(vec![obj("1", "back@example.com")], &[]);
        assert_eq!(adds(&plan).len(), 1);
    }

    #[test]
    fn d3m_an_ignored_absence_is_not_flagged_again_until_the_directory_returns_the_user() {
        let ignored = CurrentUser {
            ignored: Some(FlagReason::Missing),
            ..user(1, "ann@example.com", Source::Ldap, Some("1"))
        };
        let plan = Env::new().run(vec![], std::slice::from_ref(&ignored));
        assert!(plan.steps.is_empty());
        let plan = Env::new().run(vec![obj("1", "ann@example.com")], &[ignored]);
        assert_eq!(commands(&plan), vec![&UserCommand::EndAbsence]);
    }

    #[test]
    fn d3o_excluded_objects_are_not_added_updated_or_flagged_and_excluded_aliases_not_mapped() {
        let mut env = Env::new();
        env.exceptions.insert(Exception::User {
            object_id: "1".into(),
        });
        env.exceptions.insert(Exception::Alias {
            address: a("secret@example.com"),
        });
        let existing = user(1, "ann@example.com", Source::Ldap, Some("1"));
        let mut changed = obj("1", "ann@example.com");
        changed.profile.department = Some("Changed".into());
        let mut o2 = obj("2", "bob@example.com");
        o2.proxy_addresses = vec![
            "smtp:secret@example.com".into(),
            "smtp:b@example.com".into(),
        ];
        let plan = env.run(vec![changed, o2], &[existing]);
        assert_eq!(adds(&plan).len(), 1);
        assert_eq!(adds(&plan)[0].aliases, vec![a("b@example.com")]);
        assert!(flags(&plan).is_empty());
        assert!(!commands(&plan)
            .iter()
            .any(|c| matches!(c, UserCommand::UpdateProfile { .. })));
        // An excluded object that is gone from the directory is not flagged either.
        let plan = env.run(
            vec![],
            &[user(1, "ann@example.com", Source::Ldap, Some("1"))],
        );
        assert!(flags(&plan).is_empty());
    }

    #[test]
    fn d3p_addresses_on_the_additions_list_are_not_flagged() {
        let mut env = Env::new();
        env.additions.insert(a("new@example.com"));
        let added = user(1, "new@example.com", Source::Ldap, None);
        let plan = env.run(vec![], std::slice::from_ref(&added));
        assert!(flags(&plan).is_empty());
        // Once the directory has it, it is linked to its object.
        let plan = env.run(vec![obj("9", "new@example.com")], &[added]);
        assert_eq!(
            commands(&plan),
            vec![
                &UserCommand::LinkDirectory {
                    source: Source::Ldap,
                    directory_id: ObjectId::new("9")
                },
                &UserCommand::UpdateProfile {
                    profile: Profile {
                        first_name: Some("F-9".into()),
                        ..Profile::default()
                    }
                },
            ]
        );
    }

    #[test]
    fn d2_after_a_switch_users_of_the_old_source_are_flagged_unless_the_new_one_returns_them() {
        let mut env = Env::new();
        env.kind = DirectoryKind::Entra;
        let kept = user(1, "ann@example.com", Source::Ldap, Some("guid-1"));
        let dropped = user(2, "bob@example.com", Source::Ldap, Some("guid-2"));
        let plan = env.run(vec![obj("entra-1", "ann@example.com")], &[kept, dropped]);
        assert_eq!(
            flags(&plan),
            vec![(
                UserId(uuid::Uuid::from_u128(2)),
                FlagReason::Missing,
                Some(now() + chrono::Duration::days(7))
            )]
        );
        assert!(commands(&plan).contains(&&UserCommand::LinkDirectory {
            source: Source::Entra,
            directory_id: ObjectId::new("entra-1")
        }));
    }

    #[test]
    fn u4_groups_with_mail_become_lists_with_their_members() {
        let mut g = obj("g", "team@example.com");
        g.kind = ObjectKind::Group;
        g.members = vec![
            ObjectId::new("1"),
            ObjectId::new("2"),
            ObjectId::new("outside"),
        ];
        let plan = Env::new().run(
            vec![g, obj("1", "ann@example.com"), obj("2", "bob@example.com")],
            &[],
        );
        let list = adds(&plan)
            .into_iter()
            .find(|x| x.kind == Kind::DistributionList)
            .unwrap();
        assert_eq!(
            list.members,
            vec![a("ann@example.com"), a("bob@example.com")]
        );
        let mut g2 = obj("g2", "");
        g2.kind = ObjectKind::Group;
        g2.mail = None;
        let plan = Env::new().run(vec![g2], &[]);
        assert!(
            plan.steps.is_empty() && plan.counts.skipped == 0,
            "groups without mail are not lists"
        );
    }

    #[test]
    fn d3s_the_plan_counts_its_flags_and_the_guard_holds_mass_deletions() {
        let users: Vec<CurrentUser> = (0..100)
            .map(|i| {
                user(
                    i,
                    &format!("u{i}@example.com"),
                    Source::Ldap,
                    Some(&format!("{i}")),
                )
            })
            .collect();
        // A base DN typo: the directory returns nobody.
        let plan = Env::new().run(vec![], &users);
        assert_eq!(plan.flags, 100);
        assert_eq!(plan.directory_users, 100);
        let guard = GuardSettings::default();
        assert!(guard.holds(plan.flags, plan.directory_users));
        assert!(!guard.holds(10, 100), "10% is not more than 10%");
        assert!(guard.holds(11, 100));
        assert!(!guard.holds(5, 20), "25% but not more than 5 users");
        assert!(guard.holds(6, 20));
        assert!(guard.holds(501, 1_000_000), "more than 500 users");
        assert!(!guard.holds(500, 1_000_000));
    }

    #[test]
    fn d3t_the_plan_lists_every_change_it_would_make() {
        let users = vec![
            user(1, "gone@example.com", Source::Ldap, Some("1")),
            user(2, "ann@example.com", Source::Ldap, Some("2")),
        ];
        let mut o = obj("2", "ann@example.com");
        o.profile.mobile = Some("+1".into());
        let plan = Env::new().run(vec![o, obj("3", "new@example.com")], &users);
        let actions: Vec<(&str, &str)> = plan
            .changes
            .iter()
            .map(|c| (c.address.as_str(), c.action.as_str()))
            .collect();
        assert!(actions.contains(&("ann@example.com", "update")));
        assert!(actions.contains(&("gone@example.com", "flag")));
        assert!(actions.contains(&("new@example.com", "add")));
    }

    #[test]
    fn d3_a_recreated_object_with_the_same_address_is_relinked_not_flagged() {
        let u = user(1, "ann@example.com", Source::Ldap, Some("old-guid"));
        let plan = Env::new().run(vec![obj("new-guid", "ann@example.com")], &[u]);
        assert!(flags(&plan).is_empty());
        assert!(commands(&plan).contains(&&UserCommand::LinkDirectory {
            source: Source::Ldap,
            directory_id: ObjectId::new("new-guid")
        }));
    }

    #[test]
    fn d3_renames_never_take_an_address_another_user_keeps() {
        let a1 = user(1, "ann@example.com", Source::Ldap, Some("1"));
        let manual = user(2, "boss@example.com", Source::Manual, None);
        let plan = Env::new().run(vec![obj("1", "boss@example.com")], &[a1, manual]);
        assert!(!commands(&plan)
            .iter()
            .any(|c| matches!(c, UserCommand::ChangeAddress { .. })));
        assert!(plan
            .changes
            .iter()
            .any(|c| c.detail.contains("not renamed to boss@example.com")));
        let s = &plan.report.skipped[0];
        assert_eq!(
            (s.scope, s.reason),
            (SkipScope::Rename, SkipReason::AddressInUse)
        );
        assert!(flags(&plan).is_empty());
    }

    // ---- issue 12: address moves converge in one run ---------------------

    /// `obj` with proxyAddresses: `SMTP:primary` and `smtp:` aliases.
    fn ad(id: &str, primary: &str, aliases: &[&str]) -> DirectoryObject {
        let mut o = obj(id, primary);
        o.proxy_addresses = std::iter::once(format!("SMTP:{primary}"))
            .chain(aliases.iter().map(|x| format!("smtp:{x}")))
            .collect();
        o
    }
    fn dir_user(n: u128, address: &str, aliases: &[&str]) -> CurrentUser {
        CurrentUser {
            aliases: aliases.iter().map(|x| a(x)).collect(),
            ..user(n, address, Source::Ldap, Some(&n.to_string()))
        }
    }
    /// Runs the plan through the user aggregate and the claims, event by
    /// event (no address owned twice after any of them), checks that a
    /// second run on the same read changes nothing, and returns the world.
    fn converge(env: &Env, objects: Vec<DirectoryObject>, users: &[CurrentUser]) -> (Plan, World) {
        let plan = env.run(objects.clone(), users);
        let mut world = World::of(users);
        world
            .apply(plan.steps.clone())
            .unwrap_or_else(|e| panic!("{e}\n{:#?}", plan.steps));
        let again = env.run(objects, &world.current());
        let moves: Vec<&UserCommand> = again
            .steps
            .iter()
            .map(|s| &s.command)
            .filter(|c| !matches!(c, UserCommand::UpdateProfile { .. }))
            .collect();
        assert!(moves.is_empty(), "a second run still changes: {moves:?}");
        (plan, world)
    }
    fn has(world: &World, address: &str, id: u128, aliases: &[&str]) {
        let (uid, got) = world
            .by_address(address)
            .unwrap_or_else(|| panic!("nobody has {address}"));
        assert_eq!(uid, UserId(uuid::Uuid::from_u128(id)), "{address}");
        let want: BTreeSet<String> = aliases.iter().map(|x| x.to_string()).collect();
        assert_eq!(got, want, "aliases of {address}");
    }

    #[test]
    fn u1_d3_a_swap_of_two_primaries_and_their_aliases_converges_in_one_run() {
        let users = [
            dir_user(1, "a@example.com", &["a1@example.com"]),
            dir_user(2, "b@example.com", &["b1@example.com"]),
        ];
        let objects = vec![
            ad("1", "b@example.com", &["b1@example.com"]),
            ad("2", "a@example.com", &["a1@example.com"]),
        ];
        let (plan, world) = converge(&Env::new(), objects, &users);
        has(&world, "b@example.com", 1, &["b1@example.com"]);
        has(&world, "a@example.com", 2, &["a1@example.com"]);
        assert_eq!(plan.counts.renamed, 2);
        assert!(plan.report.skipped.is_empty(), "{:?}", plan.report.skipped);
        // The cycle opens with one release, and the renames name each other.
        let renames: Vec<&UserCommand> = commands(&plan)
            .into_iter()
            .filter(|c| {
                matches!(
                    c,
                    UserCommand::ReleaseAddress { .. } | UserCommand::ChangeAddress { .. }
                )
            })
            .collect();
        assert_eq!(renames.len(), 3, "{renames:?}");
        assert!(
            matches!(renames[0], UserCommand::ReleaseAddress { next, .. } if next == &a("b@example.com"))
        );
        assert!(renames.contains(&&UserCommand::ChangeAddress {
            address: a("a@example.com"),
            taken_from: Some(a("b@example.com")),
            released_to: Some(a("b@example.com")),
        }));
        let moved: Vec<(&str, Option<&str>)> = plan
            .changes
            .iter()
            .filter(|c| c.action == "unmap_alias")
            .map(|c| (c.detail.as_str(), c.to.as_deref()))
            .collect();
        assert!(
            moved.contains(&(
                "a1@example.com moves to a@example.com",
                Some("a@example.com")
            )),
            "{moved:?}"
        );
    }

    #[test]
    fn u1_d3_a_rotation_of_three_renamed_in_one_read_converges() {
        let users = [
            dir_user(1, "x@example.com", &[]),
            dir_user(2, "y@example.com", &[]),
            dir_user(3, "z@example.com", &[]),
        ];
        let objects = vec![
            ad("1", "y@example.com", &[]),
            ad("2", "z@example.com", &[]),
            ad("3", "x@example.com", &[]),
        ];
        let (plan, world) = converge(&Env::new(), objects.clone(), &users);
        has(&world, "y@example.com", 1, &[]);
        has(&world, "z@example.com", 2, &[]);
        has(&world, "x@example.com", 3, &[]);
        let releases = commands(&plan)
            .iter()
            .filter(|c| matches!(c, UserCommand::ReleaseAddress { .. }))
            .count();
        assert_eq!(releases, 1, "one release opens the cycle");
        // The same log whatever order the server returns the objects in.
        let mut reversed = objects;
        reversed.reverse();
        let again = Env::new().run(reversed, &users);
        assert_eq!(again.steps, plan.steps);
    }

    #[test]
    fn d3_a_chain_renames_and_takes_the_old_address_in_the_same_run() {
        // X is renamed to a new address and Y takes X's old one (defect 2).
        let users = [
            dir_user(1, "x@example.com", &[]),
            dir_user(2, "y@example.com", &[]),
        ];
        let objects = vec![
            ad("1", "x.new@example.com", &[]),
            ad("2", "x@example.com", &[]),
        ];
        let (plan, world) = converge(&Env::new(), objects, &users);
        has(&world, "x.new@example.com", 1, &[]);
        has(&world, "x@example.com", 2, &[]);
        assert_eq!(
            commands(&plan)
                .iter()
                .filter(|c| matches!(c, UserCommand::ReleaseAddress { .. }))
                .count(),
            0,
            "a chain needs no release: the end goes first"
        );
        // A new object takes an old address freed by a rename, too.
        let objects = vec![
            ad("1", "x.new@example.com", &[]),
            ad("2", "y@example.com", &[]),
            ad("9", "x@example.com", &[]),
        ];
        let (_, world) = converge(&Env::new(), objects, &users);
        assert!(world.by_address("x@example.com").is_some());
    }

    #[test]
    fn d3u_a_rename_onto_another_users_alias_leaves_it_with_its_owner() {
        // S changes its mail to an address D still lists as its alias (defect 3).
        let users = [
            dir_user(1, "s@example.com", &[]),
            dir_user(2, "d@example.com", &["d.alias@example.com"]),
        ];
        let objects = vec![
            ad("1", "d.alias@example.com", &[]),
            ad("2", "d@example.com", &["d.alias@example.com"]),
        ];
        let (plan, world) = converge(&Env::new(), objects, &users);
        has(&world, "s@example.com", 1, &[]);
        has(&world, "d@example.com", 2, &["d.alias@example.com"]);
        let c = &plan.report.contested[0];
        assert_eq!(c.address, a("d.alias@example.com"));
        assert_eq!(c.kept_by.as_deref(), Some("2"));
        let names: Vec<&str> = c.claimants.iter().map(|x| x.object_id.as_str()).collect();
        assert_eq!(names, vec!["1", "2"], "every claimant is named");
        let s = &plan.report.skipped[0];
        assert_eq!(
            (s.object_id.as_str(), s.scope, s.reason),
            ("1", SkipScope::Rename, SkipReason::Contested)
        );
        // Once D drops it, S gets it in the same run as D's change.
        let objects = vec![
            ad("1", "d.alias@example.com", &[]),
            ad("2", "d@example.com", &[]),
        ];
        let (_, world) = converge(&Env::new(), objects, &users);
        has(&world, "d.alias@example.com", 1, &[]);
    }

    #[test]
    fn d3h_a_user_whose_address_leaves_the_managed_domains_or_is_cleared_is_flagged() {
        let users = [
            dir_user(1, "gone@example.com", &["g@example.com"]),
            dir_user(2, "cleared@example.com", &[]),
            dir_user(3, "stays@example.com", &[]),
        ];
        let mut cleared = obj("2", "");
        cleared.mail = None;
        let objects = vec![
            ad("1", "gone@elsewhere.net", &["g@example.com"]),
            cleared,
            ad("3", "stays@example.com", &[]),
        ];
        let plan = Env::new().run(objects.clone(), &users);
        let mut f: Vec<(UserId, FlagReason)> =
            flags(&plan).into_iter().map(|(u, r, _)| (u, r)).collect();
        f.sort_by_key(|x| x.0);
        assert_eq!(
            f,
            vec![
                (
                    UserId(uuid::Uuid::from_u128(1)),
                    FlagReason::UnmanagedDomain
                ),
                (UserId(uuid::Uuid::from_u128(2)), FlagReason::NoAddress),
            ]
        );
        assert_eq!(
            flags(&plan)[0].2,
            Some(now() + chrono::Duration::days(7)),
            "the deletion delay applies"
        );
        let reasons: Vec<(&str, SkipReason)> = plan
            .report
            .skipped
            .iter()
            .map(|s| (s.object_id.as_str(), s.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("1", SkipReason::UnmanagedDomain),
                ("2", SkipReason::NoAddress)
            ]
        );
        // Flagged users keep their addresses; the next run flags nobody again.
        let mut world = World::of(&users);
        world.apply(plan.steps.clone()).unwrap();
        has(&world, "gone@example.com", 1, &["g@example.com"]);
        assert!(Env::new().run(objects, &world.current()).steps.is_empty());
        // An alias of a leaving user moves to an object that alone claims it.
        let objects = vec![
            ad("1", "gone@elsewhere.net", &[]),
            ad("3", "stays@example.com", &["g@example.com"]),
        ];
        let (_, world) = converge(&Env::new(), objects, &world.current());
        has(&world, "stays@example.com", 3, &["g@example.com"]);
        has(&world, "gone@example.com", 1, &[]);
    }

    #[test]
    fn d3h_u1_a_leaving_users_primary_is_kept_until_it_is_deleted() {
        // X's mail moves to an unmanaged domain and Y takes X's old address:
        // X is flagged (the delay protects a directory mistake) and keeps
        // it; Y waits, and is told why.
        let users = [
            dir_user(1, "x@example.com", &[]),
            dir_user(2, "y@example.com", &[]),
        ];
        let objects = vec![
            ad("1", "x@elsewhere.net", &[]),
            ad("2", "x@example.com", &[]),
        ];
        let (plan, world) = converge(&Env::new(), objects, &users);
        has(&world, "x@example.com", 1, &[]);
        has(&world, "y@example.com", 2, &[]);
        let s = plan
            .report
            .skipped
            .iter()
            .find(|s| s.object_id.as_str() == "2")
            .unwrap();
        assert_eq!(
            (s.scope, s.reason),
            (SkipScope::Rename, SkipReason::AddressInUse)
        );
        assert!(
            s.detail.contains("flagged for deletion (unmanaged_domain)"),
            "{}",
            s.detail
        );
    }

    #[test]
    fn u4_d6_list_members_outside_the_user_filter_stay_members() {
        let mut g = obj("g", "team@example.com");
        g.kind = ObjectKind::Group;
        g.members = vec![ObjectId::new("1")];
        g.member_addresses = ["Outside@Example.com".into(), "ext@unmanaged.net".into()].into();
        let plan = Env::new().run(vec![g, obj("1", "ann@example.com")], &[]);
        let list = adds(&plan)
            .into_iter()
            .find(|x| x.kind == Kind::DistributionList)
            .unwrap();
        assert_eq!(
            list.members,
            vec![a("ann@example.com"), a("outside@example.com")]
        );
    }

    #[test]
    fn d3u_two_new_claimants_get_nothing_in_any_order_and_both_are_named() {
        let objects = vec![obj("b", "sales@example.com"), obj("a", "sales@example.com")];
        let plan = Env::new().run(objects.clone(), &[]);
        assert!(adds(&plan).is_empty());
        let mut reversed = objects.clone();
        reversed.reverse();
        assert_eq!(Env::new().run(reversed, &[]), plan, "never object-id order");
        let c = &plan.report.contested[0];
        assert_eq!(c.kept_by, None);
        let names: Vec<&str> = c.claimants.iter().map(|x| x.object_id.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(plan.counts.skipped, 2);
        assert!(plan
            .report
            .skipped
            .iter()
            .all(|s| s.reason == SkipReason::Contested));
        // An administrator excludes one: the other gets it.
        let mut env = Env::new();
        env.exceptions.insert(Exception::User {
            object_id: "a".into(),
        });
        let plan = env.run(objects, &[]);
        assert_eq!(
            adds(&plan)[0].directory_id.as_ref().map(ObjectId::as_str),
            Some("b")
        );
    }

    #[test]
    fn d3u_the_user_who_owns_a_contested_address_keeps_it() {
        let owner = dir_user(1, "sales@example.com", &[]);
        let objects = vec![obj("1", "sales@example.com"), obj("0", "sales@example.com")];
        let plan = Env::new().run(objects, std::slice::from_ref(&owner));
        assert!(adds(&plan).is_empty());
        assert!(flags(&plan).is_empty());
        assert_eq!(plan.report.contested[0].kept_by.as_deref(), Some("1"));
        assert_eq!(plan.report.contested[0].claimants.len(), 2);
    }

    #[test]
    fn d3s_b4_counts_mean_what_they_say() {
        // Aliases created inside UserAdded are mapped aliases (issue 11).
        let plan = Env::new().run(
            vec![ad(
                "1",
                "ann@example.com",
                &["a1@example.com", "a2@example.com"],
            )],
            &[],
        );
        assert_eq!(plan.counts.aliases_mapped, 2);
        // The guard counts users, not distribution lists.
        let list = CurrentUser {
            kind: Kind::DistributionList,
            ..user(2, "team@example.com", Source::Ldap, Some("2"))
        };
        let plan = Env::new().run(
            vec![],
            &[user(1, "ann@example.com", Source::Ldap, Some("1")), list],
        );
        assert_eq!(plan.counts.flagged, 2);
        assert_eq!((plan.flags, plan.directory_users), (1, 1));
    }

    #[test]
    fn d3o_an_excluded_alias_a_user_already_has_is_kept() {
        let mut env = Env::new();
        env.exceptions.insert(Exception::Alias {
            address: a("old@example.com"),
        });
        let u = dir_user(1, "ann@example.com", &["old@example.com"]);
        let plan = env.run(vec![ad("1", "ann@example.com", &[])], &[u]);
        assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    }
}
