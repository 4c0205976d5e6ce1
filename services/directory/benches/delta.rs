//! B1: a resync of a large directory with delta reads (RFC 4533 content
//! synchronisation on slapd with syncprov) against a full read, with no
//! change and with 1% of the users changed.
//!
//! ```sh
//! cargo bench -p roster-directory --bench delta            # 100,000 users
//! ROSTER_BENCH_USERS=20000 cargo bench -p roster-directory --bench delta
//! ```
//!
//! For each syncprov mode (a session log of 20,000 operations: the server
//! reports deletions; none: it lists what is still there, the present
//! phase): a full read that leaves the state, a delta read with no change,
//! then 1% of the users modified and a delta read; and `read()` (a full
//! read) for comparison. Wall times; the state's size.

use std::time::Instant;

use roster_directory::LdapReader;
use roster_domain::snapshot::{DirectoryReader, ReadMode};
use roster_events::{AttributeMap, LdapPreset, LdapSettings, TlsSettings};
use roster_testkit::{DirectoryData, Slapd, SlapdConfig, Style};

fn settings(slapd: &Slapd) -> LdapSettings {
    LdapSettings {
        host: slapd.host().to_string(),
        port: slapd.port(),
        ssl: false,
        starttls: false,
        tls: TlsSettings {
            verify: true,
            ca_pem: None,
        },
        bind_user: slapd.reader_dn(),
        base_dn: slapd.base_dn().to_string(),
        filter: None,
        include_disabled: false,
        include_public_folders: false,
        preset: LdapPreset::Openldap,
        attributes: AttributeMap::default(),
        timeout_secs: 60,
        full_sync_hours: None,
    }
}

async fn one(users: usize, sessionlog: Option<u32>) {
    let data =
        DirectoryData::new(Style::InetOrgPerson, "dc=example,dc=com", "example.org").users(users);
    let slapd = Slapd::start(
        SlapdConfig::inet_org_person()
            .syncprov(sessionlog)
            .data(data.clone()),
    )
    .await
    .expect("slapd");
    let reader = LdapReader::new(settings(&slapd), slapd.reader_password().to_string());
    let mode = match sessionlog {
        Some(_) => "session log",
        None => "present phase",
    };
    let t = Instant::now();
    let first = reader.read_incremental(None).await.expect("first read");
    assert_eq!(first.mode, ReadMode::Full);
    let state = first.state.expect("a state").into_bytes();
    println!(
        "{mode}: first (full) read of {users} users: {:.3} s, state {} bytes ({:.0} a user)",
        t.elapsed().as_secs_f64(),
        state.len(),
        state.len() as f64 / users as f64
    );
    for _ in 0..3 {
        let t = Instant::now();
        let r = reader.read_incremental(Some(&state)).await.expect("delta");
        assert_eq!(r.mode, ReadMode::Delta);
        println!(
            "{mode}: no-change delta read: {:.3} s ({} objects)",
            t.elapsed().as_secs_f64(),
            r.snapshot.objects.len()
        );
    }
    let admin = slapd.admin().await.expect("admin");
    let changed = users / 100;
    for i in 0..changed {
        admin
            .replace(
                &data.user(i * 100).dn,
                "description",
                &[format!("changed {i}")],
            )
            .await
            .expect("modify");
    }
    for _ in 0..3 {
        let t = Instant::now();
        let r = reader.read_incremental(Some(&state)).await.expect("delta");
        assert_eq!(r.mode, ReadMode::Delta);
        println!(
            "{mode}: delta read with {changed} users changed: {:.3} s",
            t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    let full = reader.read().await.expect("full read");
    println!(
        "{mode}: full read() for comparison: {:.3} s ({} objects)",
        t.elapsed().as_secs_f64(),
        full.objects.len()
    );
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent: skip.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let users: usize = std::env::var("ROSTER_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        one(users, Some(20_000)).await;
        one(users, None).await;
    });
}
