//! End-to-end: addresses that move between users converge in one run
//! (issue 12), and a run reports every object it skipped and every
//! contested address with all its claimants (issue 11, D3.u). The real
//! `roster` binary over HTTP, against OpenLDAP (an Active Directory-like
//! schema) and a real Active Directory (Samba AD DC over LDAPS): the same
//! directory changes, the same outcome on both servers.

use reqwest::StatusCode;
use roster_testkit::{
    deterministic_guid, DirectoryData, Flavour, SambaDc, Slapd, SlapdConfig, Style, User as DirUser,
};
use roster_tests::e2e::{Db, RosterEnv};
use roster_tests::process::enc;
use serde_json::{json, Value};

const BASE: &str = "dc=example,dc=com";
const PEOPLE: &str = "ou=People,dc=example,dc=com";
const DOMAIN: &str = "example.org";

fn strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

async fn sync(env: &RosterEnv, c: &str) -> Value {
    let run = env.start_sync_answer(c).await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = env.run_detail(c, &run).await;
    assert_eq!(d["run"]["status"], "completed", "{}", d["run"]);
    d
}

async fn id_of(env: &RosterEnv, c: &str, address: &str) -> Value {
    env.user(c, address).await["id"].clone()
}

/// The users of the swap and the rotation: (given, surname, alias).
const PEOPLE_OF_MOVES: [(&str, &str, &str); 5] = [
    ("Ann", "One", "ann.alias"),
    ("Bob", "Two", "bob.alias"),
    ("Cyd", "Three", "cyd.alias"),
    ("Dee", "Four", "dee.alias"),
    ("Eve", "Five", "eve.alias"),
];

fn primary(i: usize) -> String {
    let (g, s, _) = PEOPLE_OF_MOVES[i];
    format!("{}.{}@{DOMAIN}", g.to_lowercase(), s.to_lowercase())
}
fn alias(i: usize) -> String {
    format!("{}@{DOMAIN}", PEOPLE_OF_MOVES[i].2)
}
/// Who has whose addresses after the change: Ann and Bob swap; Cyd takes
/// Dee's, Dee Eve's and Eve Cyd's.
const AFTER: [usize; 5] = [1, 0, 3, 4, 2];

fn proxies(i: usize) -> Vec<String> {
    vec![format!("SMTP:{}", primary(i)), format!("smtp:{}", alias(i))]
}

/// Before: everyone has their own addresses. After the directory change
/// (applied by `change`, all at once): one run renames the five users,
/// moves their aliases, and no address is ever owned twice.
async fn swap_and_rotation(
    env: &RosterEnv,
    c: &str,
    dns: &[String],
    change: impl std::future::Future<Output = ()>,
) {
    let first = sync(env, c).await;
    assert_eq!(first["run"]["counts"]["added"], 5, "{}", first["run"]);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(id_of(env, c, &primary(i)).await);
    }
    change.await;
    let d = sync(env, c).await;
    let counts = &d["run"]["counts"];
    assert_eq!(
        (
            counts["renamed"].as_u64(),
            counts["flagged"].as_u64(),
            counts["skipped"].as_u64()
        ),
        (Some(5), Some(0), Some(0)),
        "{counts}"
    );
    assert!(
        d["report"]["skipped"].as_array().unwrap().is_empty(),
        "{}",
        d["report"]
    );
    for i in 0..5 {
        let u = env.user(c, &primary(AFTER[i])).await;
        assert_eq!(
            u["id"],
            ids[i],
            "{} now belongs to the user of {}",
            primary(AFTER[i]),
            dns[i]
        );
        assert_eq!(strings(&u["aliases"]), vec![alias(AFTER[i])], "{u}");
        assert_eq!(u["status"], "active");
    }
    // Each cycle opens with one release, named in the run's events.
    let types: Vec<&str> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "AddressReleased").count(),
        2,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "AddressChanged").count(),
        5,
        "{types:?}"
    );
    // Ann's history says from whom to whom.
    let (s, h) = env
        .api
        .get(&format!(
            "/v1/customers/{c}/users/{}/history",
            enc(&primary(1))
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let changed = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "AddressChanged")
        .unwrap_or_else(|| panic!("no rename in {h}"))
        .clone();
    let data = if changed["data"].is_null() {
        &changed["payload"]
    } else {
        &changed["data"]
    };
    let text = data.to_string();
    assert!(text.contains(&primary(0)), "{changed}");
    // Nothing left to do: a second run changes nobody.
    let again = sync(env, c).await;
    let counts = &again["run"]["counts"];
    assert_eq!(
        (counts["renamed"].as_u64(), counts["updated"].as_u64()),
        (Some(0), Some(0)),
        "{counts}"
    );
}

fn ad_user(k: u64, given: &str, sn: &str, mail: Option<&str>, proxies: &[String]) -> DirUser {
    let mut u = DirUser::new(PEOPLE, &format!("m{k:05}"), given, sn, DOMAIN);
    u.mail = mail.map(str::to_string);
    u.proxy_addresses = proxies.to_vec();
    u.object_guid = Some(deterministic_guid(12, 3, k));
    u
}

async fn slapd() -> Slapd {
    let data = DirectoryData::new(Style::AdLike, BASE, DOMAIN);
    Slapd::start(SlapdConfig::ad_like().data(data))
        .await
        .expect("slapd")
}

fn ldap_settings(slapd: &Slapd) -> Value {
    json!({
        "kind": "ldap",
        "host": slapd.host(),
        "port": slapd.port(),
        "ssl": false,
        "bind_user": slapd.root_dn(),
        "password": slapd.root_password(),
        "base_dn": BASE,
        "preset": match slapd.flavour() {
            Flavour::AdLike => "active_directory",
            Flavour::InetOrgPerson => "openldap",
        },
        "timeout_secs": 20,
        "enabled": true,
    })
}

fn modify(dn: &str, i: usize) -> String {
    let mut s = format!(
        "dn: {dn}\nchangetype: modify\nreplace: mail\nmail: {}\n-\nreplace: proxyAddresses\n",
        primary(i)
    );
    for p in proxies(i) {
        s.push_str(&format!("proxyAddresses: {p}\n"));
    }
    s.push_str("-\n\n");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u1_d3_a_swap_and_a_rotation_of_three_renamed_in_one_ldif_converge_in_one_run_on_slapd() {
    let env = RosterEnv::launch(Db::Sqlite, None, &[]).await;
    let slapd = slapd().await;
    let admin = slapd.admin().await.unwrap();
    let users: Vec<DirUser> = (0..5)
        .map(|i| {
            let (g, s, _) = PEOPLE_OF_MOVES[i];
            ad_user(i as u64 + 1, g, s, Some(&primary(i)), &proxies(i))
        })
        .collect();
    for u in &users {
        admin.add(&u.entry(Style::AdLike)).await.unwrap();
    }
    let c = env.customer("Moves", &[DOMAIN]).await;
    env.put_directory(&c, ldap_settings(&slapd)).await;
    let dns: Vec<String> = users.iter().map(|u| u.dn.clone()).collect();
    let ldif: String = (0..5).map(|i| modify(&dns[i], AFTER[i])).collect();
    swap_and_rotation(&env, &c, &dns, async {
        slapd.apply_ldif(&ldif).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u1_d3_a_swap_and_a_rotation_of_three_converge_in_one_run_on_samba_ad() {
    let env = RosterEnv::launch(Db::Sqlite, None, &[]).await;
    let dc = SambaDc::shared().await.expect("Samba AD DC");
    let ou = dc.new_ou().await.unwrap();
    let mut users = Vec::new();
    for (i, &(g, s, _)) in PEOPLE_OF_MOVES.iter().enumerate().take(5) {
        let mut u = ou.new_user(g, s, DOMAIN);
        u.mail = Some(primary(i));
        u.proxy_addresses = proxies(i);
        ou.create_user(&u).await.unwrap();
        users.push(u);
    }
    let c = env.customer("Moves", &[DOMAIN]).await;
    env.put_directory(&c, samba_settings(&dc, ou.dn())).await;
    let dns: Vec<String> = users.iter().map(|u| u.dn.clone()).collect();
    let admin = ou.admin();
    let change = async {
        for i in 0..5 {
            let j = AFTER[i];
            admin.replace(&dns[i], "mail", &[primary(j)]).await.unwrap();
            admin
                .replace(&dns[i], "proxyAddresses", &proxies(j))
                .await
                .unwrap();
        }
    };
    swap_and_rotation(&env, &c, &dns, change).await;
}

fn samba_settings(dc: &SambaDc, base: &str) -> Value {
    json!({
        "kind": "ldap",
        "host": dc.host(),
        "ca_pem": dc.ca_pem(),
        "bind_user": dc.admin_upn(),
        "password": dc.admin_password(),
        "base_dn": base,
        "timeout_secs": 30,
        "enabled": true,
        "guard": {"max_flags": 100000, "max_percent": 100, "min_flags_for_percent": 100000},
    })
}

// ---------------------------------------------------------------------------
// Skipped objects and contested addresses (issue 11, D3.u).

/// The objects of the second phase: (given, surname, mail, extra proxy
/// addresses, disabled).
type Spec = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
    bool,
);

const OWNER: Spec = ("Olga", "Owner", Some("owner@example.org"), &[], false);
const SECOND_PHASE: [Spec; 6] = [
    // Two new objects claim one address: nobody gets it (D3.u).
    ("Nia", "First", Some("sales@example.org"), &[], false),
    ("Ned", "Second", Some("sales@example.org"), &[], false),
    // A new object lists the owner's address as its alias: the owner keeps it.
    (
        "Pia",
        "Alias",
        Some("pia@example.org"),
        &["smtp:owner@example.org"],
        false,
    ),
    (
        "Uma",
        "Unmanaged",
        Some("uma@unmanaged.example"),
        &[],
        false,
    ),
    ("Zed", "Nomail", None, &[], false),
    ("Dot", "Disabled", Some("dot@example.org"), &[], true),
];

fn proxies_of(s: &Spec) -> Vec<String> {
    s.2.iter()
        .map(|m| format!("SMTP:{m}"))
        .chain(s.3.iter().map(|p| p.to_string()))
        .collect()
}

/// The report the second phase gives, on any server.
async fn check_report(env: &RosterEnv, c: &str, dn_of: impl Fn(&str) -> String) {
    let d = sync(env, c).await;
    let r = &d["report"];
    assert_eq!(
        r["skipped_by_reason"],
        json!({"contested": 2, "unmanaged_domain": 1, "no_address": 1, "disabled": 1}),
        "{r}"
    );
    assert_eq!(r["not_applied_by_reason"], json!({"contested": 1}), "{r}");
    assert_eq!(r["contested_count"], 2, "{r}");
    assert_eq!(d["run"]["counts"]["skipped"], 5, "{}", d["run"]);
    let contested = r["contested"].as_array().unwrap();
    let by: std::collections::BTreeMap<&str, &Value> = contested
        .iter()
        .map(|x| (x["address"].as_str().unwrap(), x))
        .collect();
    let dns = |x: &Value| -> Vec<String> {
        let mut v: Vec<String> = x["claimants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["dn"].as_str().unwrap().to_lowercase())
            .collect();
        v.sort();
        v
    };
    let mut both = vec![dn_of("Nia").to_lowercase(), dn_of("Ned").to_lowercase()];
    both.sort();
    assert_eq!(dns(by["sales@example.org"]), both, "both claimants named");
    assert!(
        by["sales@example.org"]["kept_by"].is_null(),
        "nobody gets it"
    );
    let mut pair = vec![dn_of("Olga").to_lowercase(), dn_of("Pia").to_lowercase()];
    pair.sort();
    assert_eq!(dns(by["owner@example.org"]), pair);
    let kept = by["owner@example.org"]["kept_by"].as_str().unwrap();
    let owner_claim = by["owner@example.org"]["claimants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["object_id"] == kept)
        .unwrap();
    assert_eq!(owner_claim["claim"], "primary", "the owner keeps it");
    // The outcome in the user list.
    assert_eq!(env.status_of(c, "sales@example.org").await, "absent");
    assert_eq!(env.user(c, "owner@example.org").await["aliases"], json!([]));
    assert_eq!(env.user(c, "pia@example.org").await["aliases"], json!([]));
    // Every skipped object is listed with its reason, paged.
    let (s, p) = env
        .api
        .get(&format!(
            "/v1/customers/{c}/directory/syncs/{}?page_size=2",
            d["run"]["run_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let mut reasons: Vec<String> = Vec::new();
    let mut page = p;
    loop {
        for x in page["report"]["skipped"].as_array().unwrap() {
            reasons.push(format!(
                "{}:{}",
                x["scope"].as_str().unwrap(),
                x["reason"].as_str().unwrap()
            ));
        }
        let Some(next) = page["report"]["skipped_next_page"].as_str() else {
            break;
        };
        let (s, p) = env
            .api
            .get(&format!(
                "/v1/customers/{c}/directory/syncs/{}?page_size=2&skipped_page={}",
                d["run"]["run_id"].as_str().unwrap(),
                enc(next)
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        page = p;
    }
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "alias:contested",
            "object:contested",
            "object:contested",
            "object:disabled",
            "object:no_address",
            "object:unmanaged_domain"
        ]
    );
    // An administrator excludes one claimant: the other gets the address.
    let ned = contested_object(by["sales@example.org"], &dn_of("Ned"));
    let (s, v) = env
        .api
        .post(
            &format!("/v1/customers/{c}/directory/exceptions"),
            json!({"kind": "user", "object_id": ned}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    sync(env, c).await;
    assert_eq!(env.user(c, "sales@example.org").await["first_name"], "Nia");
}

fn contested_object(x: &Value, dn: &str) -> String {
    x["claimants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["dn"].as_str().unwrap().eq_ignore_ascii_case(dn))
        .unwrap()["object_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d3u_b4_skipped_objects_and_contested_addresses_are_reported_with_every_claimant_on_slapd()
{
    let env = RosterEnv::launch(Db::Sqlite, None, &[]).await;
    let slapd = slapd().await;
    let admin = slapd.admin().await.unwrap();
    let c = env.customer("Report", &[DOMAIN]).await;
    let mk = |k: u64, s: &Spec| {
        let mut u = ad_user(k, s.0, s.1, s.2, &proxies_of(s));
        u.disabled = s.4;
        u
    };
    let owner = mk(1, &OWNER);
    admin.add(&owner.entry(Style::AdLike)).await.unwrap();
    env.put_directory(&c, ldap_settings(&slapd)).await;
    sync(&env, &c).await;
    let mut dns = vec![("Olga".to_string(), owner.dn.clone())];
    for (k, s) in SECOND_PHASE.iter().enumerate() {
        let u = mk(k as u64 + 2, s);
        admin.add(&u.entry(Style::AdLike)).await.unwrap();
        dns.push((s.0.to_string(), u.dn.clone()));
    }
    check_report(&env, &c, |given| {
        dns.iter().find(|(g, _)| g == given).unwrap().1.clone()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d3u_b4_skipped_objects_and_contested_addresses_are_reported_with_every_claimant_on_samba_ad(
) {
    let env = RosterEnv::launch(Db::Sqlite, None, &[]).await;
    let dc = SambaDc::shared().await.expect("Samba AD DC");
    let ou = dc.new_ou().await.unwrap();
    let c = env.customer("Report", &[DOMAIN]).await;
    let mk = |s: &Spec| {
        let mut u = ou.new_user(s.0, s.1, DOMAIN);
        u.mail = s.2.map(str::to_string);
        u.proxy_addresses = proxies_of(s);
        u.disabled = s.4;
        u
    };
    let owner = mk(&OWNER);
    ou.create_user(&owner).await.unwrap();
    env.put_directory(&c, samba_settings(&dc, ou.dn())).await;
    sync(&env, &c).await;
    let mut dns = vec![("Olga".to_string(), owner.dn.clone())];
    for s in &SECOND_PHASE {
        let u = mk(s);
        ou.create_user(&u).await.unwrap();
        dns.push((s.0.to_string(), u.dn.clone()));
    }
    check_report(&env, &c, |given| {
        dns.iter().find(|(g, _)| g == given).unwrap().1.clone()
    })
    .await;
}

// ---------------------------------------------------------------------------
// Microsoft Entra ID (the Graph emulator): the same swap and rotation, read
// by a delta round; and a list keeps its members outside the user filter.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u1_d3_u4_d6_entra_swap_and_rotation_in_a_delta_round_and_members_outside_the_filter() {
    use roster_graph_emulator::{GraphEmulator, Group, User};
    let env = RosterEnv::launch(Db::Sqlite, None, &[]).await;
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("moves");
    let d = fx.domain.clone();
    let mail = |i: usize| primary(i).replace(DOMAIN, &d);
    let alias_of = |i: usize| alias(i).replace(DOMAIN, &d);
    let mut ids = Vec::new();
    for (i, &(g, s, _)) in PEOPLE_OF_MOVES.iter().enumerate().take(5) {
        let mut u = User::new(&format!("{}{}@{d}", g.to_lowercase(), i)).named(g, s);
        u.mail = Some(mail(i));
        u.proxy_addresses = vec![format!("SMTP:{}", mail(i)), format!("smtp:{}", alias_of(i))];
        u.department = Some("Staff".into());
        ids.push(fx.tenant.add_user(u));
    }
    // Outside the user filter, but a member of the list.
    let mut out = User::new(&format!("contractor@{d}")).named("Con", "Tractor");
    out.department = Some("Contractors".into());
    let outside = fx.tenant.add_user(out);
    let team = fx
        .tenant
        .add_group(Group::distribution("Team", &format!("team@{d}")));
    fx.tenant.set_group_members(&team, &[&ids[0], &outside]);
    let c = env.customer("Moves", &[&d]).await;
    env.put_directory(
        &c,
        json!({
            "kind": "entra",
            "tenant": fx.tenant_id,
            "client_id": fx.client_id,
            "client_secret": fx.client_secret,
            "login_endpoint": emu.login_base(),
            "graph_endpoint": emu.graph_base(),
            "filter": "department eq 'Staff'",
            "enabled": true,
        }),
    )
    .await;
    let first = sync(&env, &c).await;
    assert_eq!(
        first["run"]["counts"]["added"], 6,
        "five users and the list: {}",
        first["run"]
    );
    assert_eq!(
        env.status_of(&c, &format!("contractor@{d}")).await,
        "absent",
        "outside the filter"
    );
    let list = env.user(&c, &format!("team@{d}")).await;
    assert_eq!(
        strings(&list["members"]),
        vec![mail(0), format!("contractor@{d}")],
        "D6: {list}"
    );
    let mut user_ids = Vec::new();
    for i in 0..5 {
        user_ids.push(id_of(&env, &c, &mail(i)).await);
    }
    // The swap and the rotation, then a delta round.
    for i in 0..5 {
        let j = AFTER[i];
        let (m, a) = (mail(j), alias_of(j));
        fx.tenant.update_user(&ids[i], |u| {
            u.mail = Some(m.clone());
            u.proxy_addresses = vec![format!("SMTP:{m}"), format!("smtp:{a}")];
        });
    }
    emu.clear_requests();
    let d2 = sync(&env, &c).await;
    assert!(
        emu.graph_requests()
            .iter()
            .any(|r| r.path.ends_with("/users/delta")),
        "a delta round"
    );
    assert_eq!(d2["run"]["counts"]["renamed"], 5, "{}", d2["run"]);
    for i in 0..5 {
        let u = env.user(&c, &mail(AFTER[i])).await;
        assert_eq!(u["id"], user_ids[i], "{u}");
        assert_eq!(strings(&u["aliases"]), vec![alias_of(AFTER[i])], "{u}");
    }
    let list = env.user(&c, &format!("team@{d}")).await;
    assert_eq!(
        strings(&list["members"]),
        vec![mail(AFTER[0]), format!("contractor@{d}")],
        "the list follows the rename and keeps the member outside the filter: {list}"
    );
}
