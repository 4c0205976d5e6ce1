//! How long a full read of a large directory takes (issue 3: about a second
//! for 100,000 users in release mode; TESTING.md measured ~0.8 s for the
//! raw read), and how much memory the reading process peaks at.
//!
//! ```sh
//! cargo bench -p roster-directory --bench read            # 100,000 users
//! ROSTER_BENCH_USERS=20000 cargo bench -p roster-directory --bench read
//! ```
//!
//! Starts a private slapd (testkit) with generated inetOrgPerson users
//! (every one with mail, names, phones, company, department, notes), then
//! reads it with the OpenLDAP preset over plain LDAP, 1000 entries a page,
//! several times. Prints each run (wall time, and the CPU time of this
//! process and of slapd: on a busy machine wall time says little), the
//! best and the median, and the peak resident set size (VmHWM) of this
//! process during the reads.

use std::time::{Duration, Instant};

use roster_directory::LdapReader;
use roster_domain::snapshot::DirectoryReader;
use roster_events::{AttributeMap, LdapPreset, LdapSettings, TlsSettings};
use roster_testkit::{DirectoryData, Slapd, SlapdConfig, Style};

const RUNS: usize = 5;

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU seconds of process `pid` ("self" for this one).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Resets VmHWM to the current RSS, where the kernel allows it.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.0} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "n/a".into())
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
        let t = Instant::now();
        let data = DirectoryData::new(Style::InetOrgPerson, "dc=example,dc=com", "example.org")
            .users(users);
        let slapd = Slapd::start(SlapdConfig::inet_org_person().data(data))
            .await
            .expect("slapd");
        eprintln!("slapd with {users} users ready in {:.1?}", t.elapsed());

        let settings = LdapSettings {
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
        };
        let reader = LdapReader::new(settings, slapd.reader_password().to_string());

        let before_hwm = vm_hwm_kib();
        let before_rss = vm_rss_kib();
        let resettable = reset_hwm();
        let slapd_pid = slapd.pid().map(|p| p.to_string()).unwrap_or_default();
        let mut times: Vec<Duration> = Vec::new();
        for run in 1..=RUNS {
            let (me, server) = (cpu_secs("self"), cpu_secs(&slapd_pid));
            let t = Instant::now();
            let snap = reader.read().await.expect("read");
            let elapsed = t.elapsed();
            let me = cpu_secs("self").zip(me).map(|(b, a)| b - a).unwrap_or(f64::NAN);
            let server = cpu_secs(&slapd_pid)
                .zip(server)
                .map(|(b, a)| b - a)
                .unwrap_or(f64::NAN);
            assert_eq!(snap.objects.len(), users);
            println!(
                "run {run}: read {} objects in {:.3} s; CPU: reader {me:.2} s, slapd {server:.2} s; peak RSS so far {}",
                snap.objects.len(),
                elapsed.as_secs_f64(),
                mib(vm_hwm_kib())
            );
            times.push(elapsed);
            drop(snap);
        }
        times.sort();
        println!("machine load average: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
        println!(
            "read of {users} inetOrgPerson users (release, plain LDAP, 1000/page): best {:.3} s, median {:.3} s",
            times[0].as_secs_f64(),
            times[RUNS / 2].as_secs_f64()
        );
        println!(
            "peak RSS: {} during the reads{} (RSS before the reads {}, peak before {})",
            mib(vm_hwm_kib()),
            if resettable {
                ""
            } else {
                ", VmHWM not resettable here: includes set-up"
            },
            mib(before_rss),
            mib(before_hwm)
        );
        drop(slapd);
    });
}
