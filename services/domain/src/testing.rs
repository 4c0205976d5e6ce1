//! Test support: a model of the log's append that applies a reconciler
//! plan step by step through the real user aggregate and its claims, as
//! the store does in one transaction, and checks after every single event
//! that no address is owned twice (U1): what any reader of a prefix of the
//! log (a projector batch, a time-travel query, a subscriber) could see.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cqrs_es::Aggregate;
use roster_events::*;

use crate::reconcile::{CurrentUser, Step, Target};
use crate::user::{User, UserCommand, UserServices};

/// The users of one customer and the address claims of the log.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub users: BTreeMap<UserId, User>,
    /// address -> owner, as the claims table holds it.
    pub claims: HashMap<Address, UserId>,
    next_id: u128,
}

impl World {
    /// A world holding these users (as if their events were in the log).
    pub fn of(users: &[CurrentUser]) -> World {
        let mut w = World {
            next_id: 1 << 64,
            ..World::default()
        };
        for u in users {
            let mut user = User {
                user_id: Some(u.id),
                customer_id: Some(CustomerId(uuid::Uuid::from_u128(99))),
                address: Some(u.address.clone()),
                kind: u.kind,
                source: Some(u.source),
                status: u.status,
                profile: u.profile.clone(),
                aliases: u.aliases.clone(),
                directory_id: u.directory_id.clone(),
                members: u.members.clone(),
                ignored: u.ignored,
                ..User::default()
            };
            if let Some(reason) = u.flag {
                user.flag = Some(crate::user::Flag {
                    reason,
                    flagged_at: chrono::DateTime::UNIX_EPOCH,
                    delete_at: None,
                });
            }
            for a in std::iter::once(&u.address).chain(&u.aliases) {
                assert!(w.claims.insert(a.clone(), u.id).is_none(), "{a} held twice");
            }
            w.users.insert(u.id, user);
        }
        w
    }

    /// The users as the reconciler sees them.
    pub fn current(&self) -> Vec<CurrentUser> {
        self.users
            .iter()
            .filter(|(_, u)| u.exists() && u.status != Status::Deleted)
            .map(|(id, u)| CurrentUser {
                id: *id,
                address: u.address.clone().expect("exists"),
                aliases: u.aliases.clone(),
                kind: u.kind,
                source: u.source.unwrap_or(Source::Manual),
                status: u.status,
                profile: u.profile.clone(),
                directory_id: u.directory_id.clone(),
                flag: u.flag.as_ref().map(|f| f.reason),
                ignored: u.ignored,
                members: u.members.clone(),
            })
            .collect()
    }

    /// Who owns each address as the users' states say (not in transit).
    pub fn visible(&self) -> Result<BTreeMap<Address, UserId>, String> {
        let mut out = BTreeMap::new();
        for (id, u) in &self.users {
            if !u.exists() || u.status == Status::Deleted {
                continue;
            }
            let primary = u.address.iter().filter(|_| !u.in_transit);
            for a in primary.chain(u.aliases.iter()) {
                if let Some(other) = out.insert(a.clone(), *id) {
                    return Err(format!("{a} is owned by {other} and {id}"));
                }
            }
        }
        Ok(out)
    }

    fn claim(&mut self, c: &ClaimChange) -> Result<(), String> {
        match c {
            ClaimChange::ClaimAddress { address, owner, .. } => {
                if let Some(h) = self.claims.get(address) {
                    return Err(format!("{address} claimed by {owner} but held by {h}"));
                }
                self.claims.insert(address.clone(), *owner);
            }
            ClaimChange::ReleaseAddress { address, owner, .. } => {
                if self.claims.get(address) != Some(owner) {
                    return Err(format!(
                        "{address} released by {owner} who does not hold it"
                    ));
                }
                self.claims.remove(address);
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies a plan's steps ([`crate::reconcile::staged_steps`]) event by
    /// event, as one append would. Every step must be accepted by its
    /// aggregate, every claim by the claims table, and after every event no
    /// address may be owned twice.
    pub fn apply(&mut self, steps: impl IntoIterator<Item = Step>) -> Result<usize, String> {
        let services = UserServices::default();
        let mut events = 0;
        for step in steps {
            let (id, command) = match (step.target, step.command) {
                (Target::Existing(id), c) => (id, c),
                (Target::New, UserCommand::Add(add)) => {
                    self.next_id += 1;
                    let id = UserId(uuid::Uuid::from_u128(self.next_id));
                    let add = crate::user::AddUser { user_id: id, ..add };
                    (id, UserCommand::Add(add))
                }
                (Target::New, c) => {
                    return Err(format!("a new user's step is not an addition: {c:?}"))
                }
            };
            let user = self.users.entry(id).or_default();
            let produced = user
                .decide(command.clone(), &services)
                .map_err(|e| format!("{id} refused {command:?}: {e}"))?;
            for e in produced {
                let user = self.users.get(&id).expect("present");
                let claims = roster_events::ClaimsOf::claims(user, &id.to_string(), &e);
                for c in &claims {
                    self.claim(c)?;
                }
                self.users.get_mut(&id).expect("present").apply(e);
                self.visible()?;
                events += 1;
            }
        }
        if let Some((id, _)) = self.users.iter().find(|(_, u)| u.in_transit) {
            return Err(format!("{id} is left without a primary address"));
        }
        // The claims table and the users agree.
        let visible = self.visible()?;
        let held: BTreeMap<Address, UserId> =
            self.claims.iter().map(|(a, u)| (a.clone(), *u)).collect();
        if visible != held {
            return Err(format!("claims {held:?} differ from users {visible:?}"));
        }
        Ok(events)
    }

    /// address and aliases of the user with this primary address.
    pub fn by_address(&self, a: &str) -> Option<(UserId, BTreeSet<String>)> {
        let a = Address::parse(a).ok()?;
        self.users
            .iter()
            .find(|(_, u)| u.address.as_ref() == Some(&a) && u.status != Status::Deleted)
            .map(|(id, u)| (*id, u.aliases.iter().map(|x| x.to_string()).collect()))
    }
}
