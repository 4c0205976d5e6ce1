//! Property test of the reconciler (issue 12): random sequences of
//! directory changes (renames, swaps, rotations, alias moves, deletions,
//! moves to an unmanaged domain, mail cleared, new objects) applied to a
//! model directory. After one run:
//!
//! - applying the plan event by event through the user aggregate and the
//!   address claims never shows an address owned twice (U1) and leaves
//!   nobody without a primary address;
//! - the users equal what [`reference`] computes from the read alone and
//!   the previous ownership (its renames are found by trying every subset,
//!   an independent statement of "as many as can happen together");
//! - a second run on the same read moves nothing.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use roster_events::*;

use crate::reconcile::{reconcile, staged_steps, CurrentUser, Plan, Settings};
use crate::snapshot::{DirectoryObject, ObjectId, ObjectKind, Snapshot};
use crate::testing::World;
use crate::user::UserCommand;

const POOL: usize = 10;

fn pool(i: usize) -> String {
    format!("p{i}@example.com")
}
fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

/// One object of the model directory.
#[derive(Debug, Clone)]
struct MObj {
    id: String,
    /// None: mail cleared.
    primary: Option<String>,
    aliases: Vec<String>,
}

#[derive(Debug, Clone)]
enum Change {
    Rename(usize, usize),
    RenameKeepOld(usize, usize),
    Swap(usize, usize),
    Rotate(usize, usize, usize),
    MoveAlias(usize, usize),
    AddAlias(usize, usize),
    Delete(usize),
    Unmanaged(usize),
    Clear(usize),
    New(usize, usize),
}

fn change() -> impl Strategy<Value = Change> {
    let i = 0..8usize;
    let p = 0..POOL;
    prop_oneof![
        (i.clone(), p.clone()).prop_map(|(a, b)| Change::Rename(a, b)),
        (i.clone(), p.clone()).prop_map(|(a, b)| Change::RenameKeepOld(a, b)),
        (i.clone(), i.clone()).prop_map(|(a, b)| Change::Swap(a, b)),
        (i.clone(), i.clone(), i.clone()).prop_map(|(a, b, c)| Change::Rotate(a, b, c)),
        (i.clone(), i.clone()).prop_map(|(a, b)| Change::MoveAlias(a, b)),
        (i.clone(), p.clone()).prop_map(|(a, b)| Change::AddAlias(a, b)),
        i.clone().prop_map(Change::Delete),
        i.clone().prop_map(Change::Unmanaged),
        i.clone().prop_map(Change::Clear),
        (0..3usize, p).prop_map(|(a, b)| Change::New(a, b)),
    ]
}

/// The directory before the changes: `n` objects, each a user with a
/// distinct primary and up to one alias, all from the pool.
fn initial() -> impl Strategy<Value = Vec<MObj>> {
    (2..=6usize, proptest::collection::vec(any::<bool>(), 6)).prop_map(|(n, with_alias)| {
        (0..n)
            .map(|i| MObj {
                id: format!("o{i}"),
                primary: Some(pool(i)),
                aliases: if with_alias[i] && n + i < POOL {
                    vec![pool(n + i)]
                } else {
                    vec![]
                },
            })
            .collect()
    })
}

fn apply_change(objs: &mut Vec<MObj>, c: &Change) {
    let n = objs.len();
    if n == 0 {
        return;
    }
    match *c {
        Change::Rename(i, p) => objs[i % n].primary = Some(pool(p)),
        Change::RenameKeepOld(i, p) => {
            let o = &mut objs[i % n];
            if let Some(old) = o.primary.replace(pool(p)) {
                o.aliases.push(old);
            }
        }
        Change::Swap(i, j) => {
            let (a, b) = (objs[i % n].clone(), objs[j % n].clone());
            objs[i % n].primary = b.primary;
            objs[i % n].aliases = b.aliases;
            objs[j % n].primary = a.primary;
            objs[j % n].aliases = a.aliases;
        }
        Change::Rotate(i, j, k) => {
            let (a, b, c) = (
                objs[i % n].primary.clone(),
                objs[j % n].primary.clone(),
                objs[k % n].primary.clone(),
            );
            objs[i % n].primary = b;
            objs[j % n].primary = c;
            objs[k % n].primary = a;
        }
        Change::MoveAlias(i, j) => {
            if let Some(a) = objs[i % n].aliases.pop() {
                objs[j % n].aliases.push(a);
            }
        }
        Change::AddAlias(i, p) => objs[i % n].aliases.push(pool(p)),
        Change::Delete(i) => {
            objs.remove(i % n);
        }
        Change::Unmanaged(i) => objs[i % n].primary = Some(format!("x{i}@elsewhere.net")),
        Change::Clear(i) => objs[i % n].primary = None,
        Change::New(k, p) => {
            // Object ids are unique in a directory.
            let mut id = format!("n{k}");
            while objs.iter().any(|o| o.id == id) {
                id.push('x');
            }
            objs.push(MObj {
                id,
                primary: Some(pool(p)),
                aliases: vec![],
            })
        }
    }
}

fn to_object(m: &MObj) -> DirectoryObject {
    DirectoryObject {
        id: ObjectId::new(&m.id),
        kind: ObjectKind::User,
        dn: None,
        display_name: None,
        mail: m.primary.clone(),
        proxy_addresses: m
            .primary
            .iter()
            .map(|p| format!("SMTP:{p}"))
            .chain(m.aliases.iter().map(|a| format!("smtp:{a}")))
            .collect(),
        profile: Profile::default(),
        disabled: false,
        members: vec![],
        member_addresses: Box::default(),
    }
}

/// The users the initial directory gives.
fn users_of(objs: &[MObj]) -> Vec<CurrentUser> {
    objs.iter()
        .enumerate()
        .map(|(i, o)| CurrentUser {
            id: UserId(uuid::Uuid::from_u128(i as u128 + 1)),
            address: addr(o.primary.as_deref().unwrap()),
            aliases: o.aliases.iter().map(|a| addr(a)).collect(),
            kind: Kind::User,
            source: Source::Ldap,
            status: Status::Active,
            profile: Profile::default(),
            directory_id: Some(ObjectId::new(&o.id)),
            flag: None,
            ignored: None,
            members: vec![],
        })
        .collect()
}

/// Who ends up with an address: a current user, or the new user of an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    User(UserId),
    New(String),
}

/// The expected outcome, from the read and the previous ownership alone:
/// each user's (primary, aliases) and each new object's, and who is flagged.
/// The rules, as the issue and D3.u state them: an address claimed by one
/// object goes to its user; one claimed by several stays with the user who
/// owns it if that user's object still claims it, else goes to nobody; a
/// user's primary address leaves it only by a rename that happens, and a
/// flagged user (object gone, unmanaged or without mail) keeps it; an alias
/// its object no longer lists leaves an active user, and leaves a flagged
/// one for an object that alone claims it.
// A test oracle, written as one statement of the rule on purpose.
#[allow(clippy::type_complexity, clippy::too_many_lines)]
fn reference(
    read: &[MObj],
    users: &[CurrentUser],
) -> (
    BTreeMap<Who, (Address, BTreeSet<Address>)>,
    BTreeSet<UserId>,
) {
    let managed = |a: &str| a.ends_with("@example.com");
    // Claims of objects with a managed primary.
    let synced: Vec<&MObj> = read
        .iter()
        .filter(|o| o.primary.as_deref().is_some_and(managed))
        .collect();
    let claims_of = |o: &MObj| -> BTreeSet<Address> {
        let p = addr(o.primary.as_deref().unwrap());
        std::iter::once(p.clone())
            .chain(
                o.aliases
                    .iter()
                    .filter(|a| managed(a))
                    .map(|a| addr(a))
                    .filter(|a| *a != p),
            )
            .collect()
    };
    let mut claimants: BTreeMap<Address, Vec<&str>> = BTreeMap::new();
    for o in &synced {
        for a in claims_of(o) {
            claimants.entry(a).or_default().push(o.id.as_str());
        }
    }
    // Matching: by object id, else (an object whose user is gone) by a
    // primary only it has among such objects.
    let mut user_obj: BTreeMap<UserId, &MObj> = BTreeMap::new();
    let mut obj_user: BTreeMap<&str, UserId> = BTreeMap::new();
    for u in users {
        if let Some(o) = read
            .iter()
            .find(|o| Some(o.id.as_str()) == u.directory_id.as_ref().map(|d| d.as_str()))
        {
            user_obj.insert(u.id, o);
            obj_user.insert(o.id.as_str(), u.id);
        }
    }
    let mut frozen: BTreeSet<UserId> = BTreeSet::new();
    let unmatched: Vec<&CurrentUser> = users
        .iter()
        .filter(|u| !user_obj.contains_key(&u.id))
        .collect();
    for u in unmatched {
        let cands: Vec<&MObj> = synced
            .iter()
            .copied()
            .filter(|o| {
                !obj_user.contains_key(o.id.as_str())
                    && o.primary.as_deref() == Some(u.address.as_str())
            })
            .collect();
        match cands[..] {
            [o] => {
                user_obj.insert(u.id, o);
                obj_user.insert(o.id.as_str(), u.id);
            }
            // Several new objects with its address: kept as it is.
            [_, _, ..] => {
                frozen.insert(u.id);
            }
            [] => {}
        }
    }
    let active = |u: &CurrentUser| {
        user_obj
            .get(&u.id)
            .is_some_and(|o| o.primary.as_deref().is_some_and(managed))
    };
    let holder: BTreeMap<Address, &CurrentUser> = users
        .iter()
        .flat_map(|u| {
            std::iter::once((u.address.clone(), u))
                .chain(u.aliases.iter().map(move |a| (a.clone(), u)))
        })
        .collect();
    let own_claim =
        |u: &CurrentUser, a: &Address| active(u) && claims_of(user_obj[&u.id]).contains(a);
    // Renames: the largest set that can happen together, found by trying
    // every subset.
    let candidates: Vec<(&CurrentUser, Address)> = users
        .iter()
        .filter(|u| active(u))
        .filter_map(|u| {
            let p = addr(user_obj[&u.id].primary.as_deref().unwrap());
            (p != u.address).then_some((u, p))
        })
        .collect();
    let free_for = |u: &CurrentUser, p: &Address, set: &BTreeSet<UserId>| -> bool {
        let sole = claimants.get(p).is_some_and(|c| c.len() == 1);
        match holder.get(p) {
            None => sole,
            Some(h) if h.id == u.id => true,
            Some(h) if own_claim(h, p) || frozen.contains(&h.id) => false,
            Some(h) if active(h) && h.address == *p => sole && set.contains(&h.id),
            Some(h) if active(h) => sole,
            Some(h) => h.address != *p && sole,
        }
    };
    let mut renamed: BTreeSet<UserId> = BTreeSet::new();
    for mask in 0u32..(1 << candidates.len()) {
        let set: BTreeSet<UserId> = (0..candidates.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| candidates[i].0.id)
            .collect();
        if candidates
            .iter()
            .filter(|(u, _)| set.contains(&u.id))
            .all(|(u, p)| free_for(u, p, &set))
        {
            renamed.extend(set);
        }
    }
    let new_primary = |u: &CurrentUser| -> Address {
        if renamed.contains(&u.id) {
            addr(user_obj[&u.id].primary.as_deref().unwrap())
        } else {
            u.address.clone()
        }
    };
    // Who ends with each address.
    let owner = |a: &Address| -> Option<Who> {
        let c = claimants.get(a).cloned().unwrap_or_default();
        let who_of = |oid: &str| {
            obj_user
                .get(oid)
                .map(|u| Who::User(*u))
                .unwrap_or(Who::New(oid.to_string()))
        };
        let sole = (c.len() == 1).then(|| who_of(c[0]));
        match holder.get(a) {
            None => sole,
            Some(h) if own_claim(h, a) || frozen.contains(&h.id) => Some(Who::User(h.id)),
            Some(h) if active(h) && h.address == *a => match renamed.contains(&h.id) {
                true => sole,
                false => Some(Who::User(h.id)),
            },
            Some(h) if active(h) => sole,
            Some(h) if h.address == *a => Some(Who::User(h.id)),
            Some(h) => sole.or(Some(Who::User(h.id))),
        }
    };
    // New objects are added when their primary comes to them; their other
    // addresses only then.
    let added = |oid: &str| -> bool {
        let o = synced.iter().find(|o| o.id == oid).unwrap();
        owner(&addr(o.primary.as_deref().unwrap())) == Some(Who::New(oid.to_string()))
    };
    let mut out: BTreeMap<Who, (Address, BTreeSet<Address>)> = BTreeMap::new();
    for u in users {
        out.insert(Who::User(u.id), (new_primary(u), BTreeSet::new()));
    }
    for o in synced
        .iter()
        .filter(|o| !obj_user.contains_key(o.id.as_str()))
    {
        if added(&o.id) {
            out.insert(
                Who::New(o.id.clone()),
                (addr(o.primary.as_deref().unwrap()), BTreeSet::new()),
            );
        }
    }
    let all: BTreeSet<Address> = claimants.keys().chain(holder.keys()).cloned().collect();
    for a in all {
        let who = match owner(&a) {
            Some(Who::New(oid)) if !added(&oid) => holder
                .get(&a)
                .filter(|h| !active(h) && h.address != a)
                .map(|h| Who::User(h.id)),
            w => w,
        };
        if let Some(w) = who {
            if let Some((p, aliases)) = out.get_mut(&w) {
                if *p != a {
                    aliases.insert(a);
                }
            }
        }
    }
    let flagged = users
        .iter()
        .filter(|u| !active(u) && !frozen.contains(&u.id))
        .map(|u| u.id)
        .collect();
    (out, flagged)
}

fn settings<'a>(
    managed: &'a BTreeSet<Domain>,
    none: &'a BTreeSet<Exception>,
    no: &'a BTreeSet<Address>,
) -> Settings<'a> {
    Settings {
        kind: DirectoryKind::Ldap,
        customer_id: CustomerId(uuid::Uuid::from_u128(99)),
        include_disabled: false,
        delete_after: DeleteAfter::Days7,
        managed,
        exceptions: none,
        additions: no,
        now: chrono::DateTime::UNIX_EPOCH,
        list_changes: true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn u1_d3u_random_directory_changes_converge_to_the_reference_in_one_run(
        start in initial(),
        changes in proptest::collection::vec(change(), 1..6),
    ) {
        let users = users_of(&start);
        let mut read = start.clone();
        for c in &changes {
            apply_change(&mut read, c);
        }
        let managed: BTreeSet<Domain> = [Domain::parse("example.com").unwrap()].into();
        let (none, no) = (BTreeSet::new(), BTreeSet::new());
        let s = settings(&managed, &none, &no);
        let snapshot = Snapshot { objects: read.iter().map(to_object).collect() };
        let plan = reconcile(&snapshot, &users, &s);
        // A run's plan lists no changes and is otherwise the same (issue 17).
        let run = reconcile(&snapshot, &users, &Settings { list_changes: false, ..s.clone() });
        prop_assert!(run.changes.is_empty());
        prop_assert_eq!(&run, &Plan { changes: vec![], ..plan.clone() });
        let mut world = World::of(&users);
        let staged = staged_steps(plan.steps.clone(), plan.additions.clone(), &snapshot, s.customer_id, s.kind.source());
        if let Err(e) = world.apply(staged) {
            return Err(TestCaseError::fail(format!("{e}\nread {read:?}\nsteps {:#?}", plan.steps)));
        }
        // The outcome equals the reference.
        let (want, flagged) = reference(&read, &users);
        let mut got: BTreeMap<Who, (Address, BTreeSet<Address>)> = BTreeMap::new();
        let existing: BTreeSet<UserId> = users.iter().map(|u| u.id).collect();
        for u in world.current() {
            let who = if existing.contains(&u.id) {
                Who::User(u.id)
            } else {
                Who::New(u.directory_id.clone().unwrap().to_string())
            };
            got.insert(who, (u.address.clone(), u.aliases.clone()));
        }
        prop_assert_eq!(&got, &want, "read {:?}", read);
        let got_flagged: BTreeSet<UserId> = world.current().iter().filter(|u| u.flag.is_some()).map(|u| u.id).collect();
        prop_assert_eq!(got_flagged, flagged);
        // A second run on the same read moves nothing.
        let again = reconcile(&snapshot, &world.current(), &s);
        let moves: Vec<&UserCommand> = again.steps.iter().map(|s| &s.command).collect();
        prop_assert!(moves.is_empty(), "a second run still changes {:?}", moves);
        prop_assert!(again.additions.is_empty(), "a second run still adds {:?}", again.additions);
    }
}
