//! The reconciler alone (issue 17: "plan" of a sync run), on a directory
//! shaped like a customer's: users with `SMTP:`/`smtp:` aliases in a second
//! managed domain (every 5th), `X500:` entries (every 7th), phones,
//! company, department, notes, accented names, every 10th disabled; groups
//! of 10 and a 1,600-member distribution list.
//!
//! `cargo bench -p roster-domain --bench reconcile` (`ROSTER_BENCH_USERS`,
//! default 100000). Prints the read's fingerprint (issue 17: a kept plan
//! is reused when it matches), the plan of an initial sync (no users yet)
//! and of a resync where nothing changed, best of three.

use std::collections::BTreeSet;
use std::time::Instant;

use roster_domain::reconcile::{reconcile, CurrentUser, Settings};
use roster_domain::snapshot::{DirectoryObject, ObjectKind, Snapshot};
use roster_events::*;

fn snapshot(users: usize) -> Snapshot {
    let mut objects = Vec::with_capacity(users + users / 10 + 1);
    for i in 0..users {
        let mut proxy = vec![format!("SMTP:user{i:06}@corp.example")];
        if i % 5 == 0 {
            proxy.push(format!("smtp:u{i:06}@sales.example"));
        }
        if i % 7 == 0 {
            proxy.push(format!(
                "X500:/o=Corp/ou=Exchange/cn=Recipients/cn=user{i:06}"
            ));
        }
        objects.push(DirectoryObject {
            id: ObjectId(format!("{:032x}", i as u128 * 7_919 + 1)),
            kind: ObjectKind::User,
            dn: Some(format!(
                "CN=Zoë Müller {i},OU=Dept{},DC=corp,DC=example",
                i % 40
            )),
            display_name: Some(format!("Zoë Müller {i}")),
            mail: Some(format!("user{i:06}@corp.example")),
            proxy_addresses: proxy,
            profile: Profile {
                first_name: Some("Zoë".into()),
                last_name: Some(format!("Müller {i}")),
                home_phone: Some(format!("+44 20 7946 {:04}", i % 10_000)),
                mobile: Some(format!("+44 7700 9{:05}", i % 100_000)),
                company: Some("Corp Ltd".into()),
                department: Some(format!("Department {}", i % 40)),
                notes: Some("Employee since 2019; desk 4.12".into()),
            },
            disabled: i % 10 == 9,
            members: vec![],
            member_addresses: Box::default(),
        });
    }
    let groups = (users / 10_000).max(1) * 34 / 10;
    for g in 0..groups {
        objects.push(group(
            &format!("team{g:03}"),
            (0..10).map(|k| (g * 10 + k) % users).collect(),
            &objects,
        ));
    }
    let big: Vec<usize> = (0..1_600.min(users)).map(|k| k * 3 % users).collect();
    objects.push(group("everyone", big, &objects));
    Snapshot { objects }
}

fn group(name: &str, members: Vec<usize>, objects: &[DirectoryObject]) -> DirectoryObject {
    DirectoryObject {
        id: ObjectId(format!("g-{name}")),
        kind: ObjectKind::Group,
        dn: Some(format!("CN={name},OU=Groups,DC=corp,DC=example")),
        display_name: Some(name.into()),
        mail: Some(format!("{name}@corp.example")),
        proxy_addresses: vec![format!("SMTP:{name}@corp.example")],
        profile: Profile::default(),
        disabled: false,
        members: members.iter().map(|&i| objects[i].id.clone()).collect(),
        member_addresses: Box::default(),
    }
}

fn main() {
    let users: usize = std::env::var("ROSTER_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let snap = snapshot(users);
    let managed: BTreeSet<Domain> = ["corp.example", "sales.example"]
        .iter()
        .map(|d| Domain::parse(d).unwrap())
        .collect();
    let (exceptions, additions) = (BTreeSet::new(), BTreeSet::new());
    let settings = Settings {
        kind: DirectoryKind::Ldap,
        customer_id: CustomerId(uuid::Uuid::from_u128(1)),
        include_disabled: false,
        delete_after: DeleteAfter::Days7,
        managed: &managed,
        exceptions: &exceptions,
        additions: &additions,
        now: chrono::Utc::now(),
        // As a run plans: the list of changes is a dry run's.
        list_changes: false,
    };
    let best = |what: &str, current: &[CurrentUser]| {
        let mut best = f64::MAX;
        let mut plan = None;
        for _ in 0..3 {
            let t = Instant::now();
            let p = reconcile(&snap, current, &settings);
            best = best.min(t.elapsed().as_secs_f64());
            plan = Some(p);
        }
        let plan = plan.unwrap();
        println!(
            "{what}: {best:.3} s for {} objects and {} users: {} steps, {} additions, counts {:?}",
            snap.objects.len(),
            current.len(),
            plan.steps.len(),
            plan.additions.len(),
            plan.counts
        );
        plan
    };
    let keys = roster_domain::snapshot::FingerprintKeys::default();
    let mut fp = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(snap.fingerprint(&keys));
        fp = fp.min(t.elapsed().as_secs_f64());
    }
    println!(
        "fingerprint of the read: {fp:.3} s for {} objects",
        snap.objects.len()
    );
    best("initial sync", &[]);
    let current = as_synced(&snap, &managed);
    let plan = best("resync, no change", &current);
    assert!(
        plan.steps.is_empty() && plan.additions.is_empty(),
        "the current users are the synced ones"
    );
}

/// The users a sync of `snap` leaves: every enabled object with its
/// managed addresses (a list's members include disabled users, U4).
fn as_synced(snap: &Snapshot, managed: &BTreeSet<Domain>) -> Vec<CurrentUser> {
    let by_id: std::collections::HashMap<&ObjectId, &DirectoryObject> =
        snap.objects.iter().map(|o| (&o.id, o)).collect();
    let primary = |o: &DirectoryObject| Address::parse(o.mail.as_deref().unwrap()).unwrap();
    snap.objects
        .iter()
        .filter(|o| !o.disabled)
        .enumerate()
        .map(|(i, o)| CurrentUser {
            id: UserId(uuid::Uuid::from_u128(i as u128 + 1)),
            address: primary(o),
            aliases: o
                .proxy_addresses
                .iter()
                .filter_map(|p| p.strip_prefix("smtp:"))
                .map(|a| Address::parse(a).unwrap())
                .filter(|a| managed.contains(&a.domain()))
                .collect(),
            kind: match o.kind {
                ObjectKind::User => Kind::User,
                ObjectKind::Group => Kind::DistributionList,
                ObjectKind::PublicFolder => Kind::PublicFolder,
            },
            source: Source::Ldap,
            status: Status::Active,
            profile: o.profile.clone(),
            directory_id: Some(o.id.clone()),
            flag: None,
            ignored: None,
            members: {
                let mut m: Vec<Address> = o
                    .members
                    .iter()
                    .filter_map(|id| by_id.get(id))
                    .map(|m| primary(m))
                    .collect();
                m.sort();
                m.dedup();
                m
            },
        })
        .collect()
}
