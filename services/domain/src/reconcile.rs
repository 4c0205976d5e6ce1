//! The reconciler (D3): a pure function from a complete directory snapshot,
//! the customer's current users, the settings, exceptions, additions and
//! the time, to the commands that bring the user list in step. No IO; every
//! rule of SPEC.md section 3 is a unit test below, named after it.
//!
//! The commands are ordered so that their address claims can be applied in
//! one transaction: aliases leave their users first, then renames, then the
//! other changes, then new aliases, then new users. Addresses are tracked
//! while planning, so the plan never claims an address another user keeps:
//! such a change is skipped and reported instead of failing the run.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use roster_events::*;
use serde::{Deserialize, Serialize};

use crate::snapshot::{DirectoryObject, ObjectId, ObjectKind, Snapshot};
use crate::user::{AddUser, UserCommand};

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
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub changes: Vec<PlanChange>,
    pub counts: SyncCounts,
    /// Users the plan flags (the guard's number, D3.s).
    pub flags: u64,
    /// Directory-sourced users the customer has now (the guard's base).
    pub directory_users: u64,
}

/// How an object's addresses came out.
#[derive(Debug, Clone)]
struct Addresses {
    primary: Address,
    aliases: Vec<Address>,
}

/// Why an object is not synced.
fn skip(plan: &mut Plan, o: &DirectoryObject, address: Option<&str>, detail: String) {
    plan.counts.skipped += 1;
    plan.changes.push(PlanChange {
        address: address
            .map(str::to_string)
            .or_else(|| o.mail.clone())
            .unwrap_or_default(),
        action: "skip".into(),
        detail,
        object_id: Some(o.id.to_string()),
    });
}

/// D3.b / D3.c: the primary address (the `SMTP:` entry of proxyAddresses
/// when present, else `mail`) and the aliases (`smtp:` entries), validated.
fn addresses_of(
    o: &DirectoryObject,
    kind: DirectoryKind,
) -> Result<(Address, Vec<String>), String> {
    let smtp_primary = o
        .proxy_addresses
        .iter()
        .find_map(|p| p.strip_prefix("SMTP:"))
        .filter(|_| kind == DirectoryKind::Ldap);
    let raw = match (smtp_primary, &o.mail) {
        (Some(p), _) => p.to_string(),
        (None, Some(m)) if !m.trim().is_empty() => m.clone(),
        _ => return Err("it has no mail address".into()),
    };
    let primary = Address::parse(&raw).map_err(|e| e.to_string())?;
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

fn kind_of(o: &DirectoryObject) -> Kind {
    match o.kind {
        ObjectKind::User => Kind::User,
        ObjectKind::Group => Kind::DistributionList,
        ObjectKind::PublicFolder => Kind::PublicFolder,
    }
}

fn excluded(settings: &Settings, o: &DirectoryObject) -> bool {
    let id = o.id.as_str().to_string();
    settings.exceptions.iter().any(|e| match e {
        Exception::User { object_id } | Exception::Group { object_id } => {
            object_id.eq_ignore_ascii_case(&id)
        }
        Exception::Alias { .. } => false,
    })
}

fn alias_excluded(settings: &Settings, a: &Address) -> bool {
    settings
        .exceptions
        .contains(&Exception::Alias { address: a.clone() })
}

/// Who holds each address while the plan is built.
struct Owners(HashMap<Address, UserId>);

impl Owners {
    fn holder(&self, a: &Address) -> Option<UserId> {
        self.0.get(a).copied()
    }
    fn free_for(&self, a: &Address, who: Option<UserId>) -> bool {
        match self.holder(a) {
            None => true,
            Some(h) => Some(h) == who,
        }
    }
}

/// Computes the plan. Pure: same inputs, same plan.
pub fn reconcile(snapshot: &Snapshot, users: &[CurrentUser], settings: &Settings) -> Plan {
    let mut plan = Plan {
        directory_users: users.iter().filter(|u| u.source.is_directory()).count() as u64,
        ..Plan::default()
    };
    let mut objects: Vec<&DirectoryObject> = snapshot.objects.iter().collect();
    objects.sort_by(|a, b| a.id.cmp(&b.id));
    plan.counts.read = objects.len() as u64;

    let by_id: HashMap<&ObjectId, &CurrentUser> = users
        .iter()
        .filter_map(|u| u.directory_id.as_ref().map(|d| (d, u)))
        .collect();
    let by_address: HashMap<&Address, &CurrentUser> =
        users.iter().map(|u| (&u.address, u)).collect();
    let mut owners = Owners(
        users
            .iter()
            .flat_map(|u| {
                std::iter::once((u.address.clone(), u.id))
                    .chain(u.aliases.iter().map(|a| (a.clone(), u.id)))
            })
            .collect(),
    );

    // First pass: every object's addresses, so that a primary always wins
    // over another object's alias and list members can be resolved.
    let mut addresses: HashMap<&ObjectId, Addresses> = HashMap::new();
    let mut primaries: BTreeMap<Address, &ObjectId> = BTreeMap::new();
    for o in &objects {
        if excluded(settings, o) {
            continue;
        }
        let Ok((primary, raw_aliases)) = addresses_of(o, settings.kind) else {
            continue;
        };
        if !settings.managed.contains(&primary.domain()) {
            continue;
        }
        if primaries.contains_key(&primary) {
            continue; // a second object with the same primary: reported below
        }
        primaries.insert(primary.clone(), &o.id);
        let aliases = raw_aliases
            .iter()
            .filter_map(|a| Address::parse(a).ok())
            .filter(|a| a != &primary && settings.managed.contains(&a.domain()))
            .collect();
        addresses.insert(&o.id, Addresses { primary, aliases });
    }
    // An alias claimed by two objects, or equal to another's primary, goes to nobody but its first claimant.
    let mut alias_claims: HashMap<Address, &ObjectId> = HashMap::new();
    for o in &objects {
        let Some(a) = addresses.get(&o.id) else {
            continue;
        };
        for alias in &a.aliases {
            if !primaries.contains_key(alias) {
                alias_claims.entry(alias.clone()).or_insert(&o.id);
            }
        }
    }

    let mut seen: BTreeSet<UserId> = BTreeSet::new();
    let mut unmaps: Vec<Step> = Vec::new();
    let mut renames: Vec<Step> = Vec::new();
    let mut updates: Vec<Step> = Vec::new();
    let mut maps: Vec<(UserId, Address)> = Vec::new();
    let mut adds: Vec<(&DirectoryObject, Address, Vec<Address>)> = Vec::new();
    let disabled_skip = |o: &DirectoryObject| o.disabled && !settings.include_disabled;

    // Which current user each object is: by stable id first; by primary
    // address only for users no other object claims by id.
    let id_matched: BTreeSet<UserId> = objects
        .iter()
        .filter_map(|o| by_id.get(&o.id).map(|u| u.id))
        .collect();
    for o in &objects {
        let matched_by_id = by_id.get(&o.id).copied();
        if excluded(settings, o) {
            // D3.o: not added, updated or flagged.
            if let Some(u) = matched_by_id {
                seen.insert(u.id);
            } else if let Ok((p, _)) = addresses_of(o, settings.kind) {
                if let Some(u) = by_address.get(&p) {
                    seen.insert(u.id);
                }
            }
            skip(&mut plan, o, None, "excluded by an exception".into());
            continue;
        }
        let (primary, raw_aliases) = match addresses_of(o, settings.kind) {
            Ok(x) => x,
            Err(reason) => {
                if let Some(u) = matched_by_id {
                    seen.insert(u.id); // never flag a user for an unreadable address
                }
                if o.kind == ObjectKind::User || o.mail.is_some() {
                    skip(&mut plan, o, None, format!("not synced: {reason}"));
                }
                continue;
            }
        };
        if !settings.managed.contains(&primary.domain()) {
            // D3.b: skipped and reported.
            if let Some(u) = matched_by_id {
                seen.insert(u.id);
            }
            skip(
                &mut plan,
                o,
                Some(primary.as_str()),
                format!(
                    "{} is not a managed domain of this customer",
                    primary.domain()
                ),
            );
            continue;
        }
        if primaries.get(&primary) != Some(&&o.id) {
            skip(
                &mut plan,
                o,
                Some(primary.as_str()),
                "another directory object has the same primary address".into(),
            );
            continue;
        }
        let Some(addrs) = addresses.get(&o.id) else {
            continue;
        };
        // D3.c: aliases in managed domains, not excluded, not another object's.
        let mut wanted_aliases: Vec<Address> = Vec::new();
        for a in &addrs.aliases {
            if alias_excluded(settings, a) {
                continue;
            }
            if alias_claims.get(a) != Some(&&o.id) {
                plan.changes.push(PlanChange {
                    address: primary.to_string(),
                    action: "skip".into(),
                    detail: format!("alias {a} belongs to another directory object"),
                    object_id: Some(o.id.to_string()),
                });
                continue;
            }
            wanted_aliases.push(a.clone());
        }
        for raw in raw_aliases {
            if let Ok(a) = Address::parse(&raw) {
                if a != primary && !settings.managed.contains(&a.domain()) {
                    plan.changes.push(PlanChange {
                        address: primary.to_string(),
                        action: "skip".into(),
                        detail: format!("alias {a} is not in a managed domain"),
                        object_id: Some(o.id.to_string()),
                    });
                }
            }
        }
        let matched = matched_by_id.or_else(|| {
            by_address
                .get(&primary)
                .copied()
                .filter(|u| !id_matched.contains(&u.id) && !seen.contains(&u.id))
        });
        let Some(user) = matched else {
            // D3.e (and D3.k / D3.l: a deleted address comes back as a return).
            if disabled_skip(o) {
                skip(
                    &mut plan,
                    o,
                    Some(primary.as_str()),
                    "disabled in the directory".into(),
                );
                continue;
            }
            adds.push((o, primary, wanted_aliases));
            continue;
        };
        seen.insert(user.id);
        let uid = user.id;
        let supplemental = !user.source.is_directory();
        let mut changed = false;
        let mut detail: Vec<String> = Vec::new();

        if disabled_skip(o) {
            // D3.h: disabled directory users are flagged; supplemental ones never (D3.g).
            if !supplemental && user.flag.is_none() && user.ignored != Some(FlagReason::Disabled) {
                flag(
                    &mut plan,
                    &mut updates,
                    user,
                    FlagReason::Disabled,
                    settings,
                );
            } else {
                plan.counts.unchanged += 1;
            }
            continue;
        }

        // D3.j: a flagged user the directory returns, enabled, is unflagged.
        if user.flag.is_some() && !supplemental {
            updates.push(Step {
                target: Target::Existing(uid),
                command: UserCommand::CancelDeletion {
                    reason: CancelReason::ReturnedByDirectory,
                },
            });
            plan.counts.unflagged += 1;
            plan.changes.push(change(
                &user.address,
                "unflag",
                "returned by the directory",
                o,
            ));
            changed = true;
        }
        if user.ignored.is_some() && !supplemental {
            updates.push(Step {
                target: Target::Existing(uid),
                command: UserCommand::EndAbsence,
            });
            plan.changes.push(change(
                &user.address,
                "end_ignore",
                "returned by the directory; an ignored absence no longer applies",
                o,
            ));
            changed = true;
        }

        // Renames: same object, new primary (directory users only).
        let mut current_address = user.address.clone();
        if !supplemental && matched_by_id.is_some() && primary != user.address {
            let freed_own_alias = user.aliases.contains(&primary);
            if owners.free_for(&primary, Some(uid)) {
                renames.push(Step {
                    target: Target::Existing(uid),
                    command: UserCommand::ChangeAddress {
                        address: primary.clone(),
                    },
                });
                owners.0.remove(&user.address);
                owners.0.insert(primary.clone(), uid);
                plan.counts.renamed += 1;
                plan.changes.push(PlanChange {
                    address: primary.to_string(),
                    action: "rename".into(),
                    detail: format!("renamed from {}", user.address),
                    object_id: Some(o.id.to_string()),
                });
                current_address = primary.clone();
                changed = true;
                let _ = freed_own_alias;
            } else {
                plan.changes.push(change(
                    &user.address,
                    "skip",
                    &format!("cannot rename to {primary}: the address belongs to another user"),
                    o,
                ));
            }
        }

        // D2 / recreated objects: the user now belongs to this directory object.
        if !supplemental
            && (user.source != settings.kind.source() || user.directory_id.as_ref() != Some(&o.id))
        {
            updates.push(Step {
                target: Target::Existing(uid),
                command: UserCommand::LinkDirectory {
                    source: settings.kind.source(),
                    directory_id: o.id.to_string(),
                },
            });
            plan.changes.push(change(
                &current_address,
                "link",
                &format!(
                    "now managed by the {} directory object",
                    settings.kind.as_str()
                ),
                o,
            ));
            changed = true;
        }

        // D3.f / D3.g: metadata from the directory; unchanged emits nothing.
        let profile = o.profile.clone().normalised();
        let fields = changed_fields(&user.profile, &profile);
        if !fields.is_empty() {
            updates.push(Step {
                target: Target::Existing(uid),
                command: UserCommand::UpdateProfile { profile },
            });
            plan.changes
                .push(change(&current_address, "update", &fields.join(", "), o));
            detail.extend(fields);
            changed = true;
        }

        // Lists: members (U4).
        if user.kind == Kind::DistributionList && o.kind == ObjectKind::Group {
            let members = members_of(o, &addresses);
            if members != user.members {
                updates.push(Step {
                    target: Target::Existing(uid),
                    command: UserCommand::SetMembers { members },
                });
                plan.changes.push(change(
                    &current_address,
                    "members",
                    "list members changed",
                    o,
                ));
                changed = true;
            }
        }

        // Aliases: the directory is the truth for its users; supplemental users only gain.
        let wanted: BTreeSet<Address> = wanted_aliases.iter().cloned().collect();
        if !supplemental {
            for a in user.aliases.difference(&wanted) {
                if *a == primary || alias_excluded(settings, a) {
                    continue;
                }
                unmaps.push(Step {
                    target: Target::Existing(uid),
                    command: UserCommand::UnmapAlias {
                        alias: a.clone(),
                        reason: UnmapReason::Directory,
                    },
                });
                owners.0.remove(a);
                plan.counts.aliases_unmapped += 1;
                plan.changes
                    .push(change(&current_address, "unmap_alias", a.as_str(), o));
                changed = true;
            }
        }
        for a in wanted.difference(&user.aliases) {
            maps.push((uid, a.clone()));
            changed = true;
        }
        if changed {
            plan.counts.updated += 1;
        } else {
            plan.counts.unchanged += 1;
        }
        let _ = detail;
    }

    // D3.o: an excluded object's user is never flagged, even once the
    // object is gone from the directory.
    let excluded_ids: BTreeSet<String> = settings
        .exceptions
        .iter()
        .filter_map(|e| match e {
            Exception::User { object_id } | Exception::Group { object_id } => {
                Some(object_id.to_ascii_lowercase())
            }
            Exception::Alias { .. } => None,
        })
        .collect();
    // D3.h: directory users the directory no longer returns are flagged,
    // unless on the additions list (D3.p) or ignored (D3.m).
    let mut missing: Vec<&CurrentUser> = users
        .iter()
        .filter(|u| u.source.is_directory() && !seen.contains(&u.id))
        .filter(|u| {
            !u.directory_id
                .as_ref()
                .is_some_and(|d| excluded_ids.contains(d.as_str()))
        })
        .filter(|u| !settings.additions.contains(&u.address))
        .filter(|u| u.flag.is_none() && u.ignored != Some(FlagReason::Missing))
        .collect();
    missing.sort_by(|a, b| a.address.cmp(&b.address));
    for u in missing {
        flag(&mut plan, &mut updates, u, FlagReason::Missing, settings);
    }

    // New aliases, once the addresses they need have been released.
    maps.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
    let mut alias_steps = Vec::new();
    for (uid, a) in maps {
        let address = users
            .iter()
            .find(|u| u.id == uid)
            .map(|u| u.address.to_string())
            .unwrap_or_default();
        if owners.free_for(&a, Some(uid)) {
            owners.0.insert(a.clone(), uid);
            alias_steps.push(Step {
                target: Target::Existing(uid),
                command: UserCommand::MapAlias { alias: a.clone() },
            });
            plan.counts.aliases_mapped += 1;
            plan.changes.push(PlanChange {
                address,
                action: "map_alias".into(),
                detail: a.to_string(),
                object_id: None,
            });
        } else {
            plan.changes.push(PlanChange {
                address,
                action: "skip".into(),
                detail: format!("alias {a} belongs to another user"),
                object_id: None,
            });
        }
    }

    // New users (D3.e), primaries first-come by object id.
    let mut add_steps = Vec::new();
    for (o, primary, aliases) in adds {
        if !owners.free_for(&primary, None) {
            skip(
                &mut plan,
                o,
                Some(primary.as_str()),
                format!("{primary} already belongs to another user or alias"),
            );
            continue;
        }
        let placeholder = UserId(uuid::Uuid::nil());
        owners.0.insert(primary.clone(), placeholder);
        let mut kept = Vec::new();
        for a in aliases {
            if owners.free_for(&a, None) {
                owners.0.insert(a.clone(), placeholder);
                kept.push(a);
            } else {
                plan.changes.push(PlanChange {
                    address: primary.to_string(),
                    action: "skip".into(),
                    detail: format!("alias {a} belongs to another user"),
                    object_id: Some(o.id.to_string()),
                });
            }
        }
        let kind = kind_of(o);
        let members = if kind == Kind::DistributionList {
            members_of(o, &addresses)
        } else {
            vec![]
        };
        plan.counts.added += 1;
        plan.changes.push(PlanChange {
            address: primary.to_string(),
            action: "add".into(),
            detail: kind.as_str().into(),
            object_id: Some(o.id.to_string()),
        });
        add_steps.push(Step {
            target: Target::New,
            command: UserCommand::Add(AddUser {
                user_id: placeholder,
                customer_id: settings.customer_id,
                address: primary,
                kind,
                source: settings.kind.source(),
                profile: o.profile.clone().normalised(),
                aliases: kept,
                directory_id: Some(o.id.to_string()),
                members,
            }),
        });
    }

    plan.steps = unmaps;
    plan.steps.extend(renames);
    plan.steps.extend(updates);
    plan.steps.extend(alias_steps);
    plan.steps.extend(add_steps);
    plan
}

fn change(address: &Address, action: &str, detail: &str, o: &DirectoryObject) -> PlanChange {
    PlanChange {
        address: address.to_string(),
        action: action.into(),
        detail: detail.into(),
        object_id: Some(o.id.to_string()),
    }
}

fn flag(
    plan: &mut Plan,
    steps: &mut Vec<Step>,
    u: &CurrentUser,
    reason: FlagReason,
    settings: &Settings,
) {
    let delete_at = settings.delete_after.duration().map(|d| settings.now + d);
    steps.push(Step {
        target: Target::Existing(u.id),
        command: UserCommand::FlagForDeletion {
            reason,
            at: settings.now,
            delete_at,
        },
    });
    plan.flags += 1;
    plan.counts.flagged += 1;
    plan.changes.push(PlanChange {
        address: u.address.to_string(),
        action: "flag".into(),
        detail: match delete_at {
            Some(t) => format!("{}; deleted after {}", reason.as_str(), t.to_rfc3339()),
            None => format!("{}; never deleted automatically", reason.as_str()),
        },
        object_id: u.directory_id.as_ref().map(|d| d.to_string()),
    });
}

fn changed_fields(old: &Profile, new: &Profile) -> Vec<String> {
    let old = old.clone().normalised();
    old.fields()
        .iter()
        .zip(new.fields().iter())
        .filter(|((_, a), (_, b))| a != b)
        .map(|((name, _), _)| name.to_string())
        .collect()
}

fn members_of(o: &DirectoryObject, addresses: &HashMap<&ObjectId, Addresses>) -> Vec<Address> {
    let mut out: Vec<Address> = o
        .members
        .iter()
        .filter_map(|m| addresses.get(m).map(|a| a.primary.clone()))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
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
            };
            reconcile(&Snapshot { objects }, users, &settings)
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
        assert_eq!(added[0].directory_id.as_deref(), Some("1"));
        assert_eq!(plan.counts.added, 1);
        assert!(matches!(plan.steps[0].target, Target::New));
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
    fn d3c_an_alias_of_another_user_or_object_is_not_mapped() {
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
        assert_eq!(
            by["ann@example.com"],
            vec![a("shared@example.com")],
            "first object wins the alias; bob's primary beats ann's alias"
        );
        assert!(by["carl@example.com"].is_empty());
        assert!(
            by["eve@example.com"].is_empty(),
            "a manual user's alias is not taken"
        );
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
                    address: a("ann.lee@example.com")
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
                    directory_id: "9".into()
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
            directory_id: "entra-1".into()
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
            directory_id: "new-guid".into()
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
            .any(|c| c.detail.contains("cannot rename")));
        assert!(flags(&plan).is_empty());
    }
}
