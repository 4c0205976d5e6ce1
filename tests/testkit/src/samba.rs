//! A real Active Directory: a Samba AD DC provisioned into a temp folder and
//! run inside a private network namespace (Samba's ports 389/636 are fixed),
//! reachable from the test process over a veth pair with a private /30.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use crate::data::{organizational_unit, DirectoryData, Group, Style, User};
use crate::error::{Error, Result};
use crate::ldap::{LdapAdmin, Security};
use crate::process::{self, sh_quote, ExitCleanup, ServerProcess};
use crate::slapd::write;
use crate::tls::TestCa;

/// The realm every harness DC is provisioned with.
pub const REALM: &str = "CORP.EXAMPLE.COM";
/// The NetBIOS domain name.
pub const DOMAIN: &str = "CORP";
/// The domain's DNS name.
pub const DNS_DOMAIN: &str = "corp.example.com";
/// The domain's base DN.
pub const BASE_DN: &str = "DC=corp,DC=example,DC=com";
/// The DC's host name.
pub const HOST_NAME: &str = "dc1";
const ADMIN_PASSWORD: &str = "Roster-Test-Admin-1!";
const NETNS_PREFIX: &str = "roster-tk-";
const SLOTS: u32 = 4096;
const START_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Network namespace slots

/// A network namespace with a veth pair: slot `s` owns namespace
/// `roster-tk-<s>-<pid>`, interfaces `rtk<s>h` (root side) / `rtk<s>n`, and the
/// /30 `10.231.<s / 64>.<(s % 64) * 4>`. A slot is owned by holding the
/// abstract Unix socket `roster-testkit-netns-<s>`, which the kernel
/// releases when the process dies: a namespace whose slot nobody holds is
/// stale, and is cleaned up (its processes killed, the namespace deleted)
/// by the next harness that looks.
#[derive(Debug)]
struct NetnsSlot {
    name: String,
    host_if: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
    ip: PathBuf,
    _exit_cleanup: ExitCleanup,
    _lock: UnixListener,
}

fn slot_lock(slot: u32) -> std::io::Result<UnixListener> {
    let addr = UnixAddr::from_abstract_name(format!("roster-testkit-netns-{slot}").as_bytes())?;
    UnixListener::bind_addr(&addr)
}

/// Namespace name (unique to this acquisition: the process id is in it, so
/// a late exit-time cleanup of a previous owner cannot delete it), root-side
/// and namespace-side interface names.
fn slot_names(slot: u32) -> (String, String, String) {
    (
        format!("{NETNS_PREFIX}{slot}-{}", std::process::id()),
        format!("rtk{slot}h"),
        format!("rtk{slot}n"),
    )
}

/// The slot of a namespace named by [`slot_names`].
fn slot_of(netns_name: &str) -> Option<u32> {
    netns_name
        .strip_prefix(NETNS_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

fn netns_pids(ip: &Path, name: &str) -> Vec<i32> {
    std::process::Command::new(ip)
        .args(["netns", "pids", name])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn kill_netns_processes(ip: &Path, name: &str) {
    for _ in 0..50 {
        let pids = netns_pids(ip, name);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes whatever earlier owners of slot `slot` left behind: their
/// processes, namespaces and root-side interface. Only for slots this
/// process holds the lock of.
fn clean_slot(ip: &Path, slot: u32) {
    let (_, host_if, _) = slot_names(slot);
    let ip_s = ip.display().to_string();
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if slot_of(&name) == Some(slot) {
                kill_netns_processes(ip, &name);
                let _ = process::run_sync(&ip_s, &["netns", "del", &name]);
            }
        }
    }
    // A namespace is torn down asynchronously; its veth pair may linger.
    let link = Path::new("/sys/class/net").join(&host_if);
    for _ in 0..100 {
        if !link.exists() {
            return;
        }
        let _ = process::run_sync(&ip_s, &["link", "del", &host_if]);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Cleans up namespaces of earlier harness processes that are gone.
fn sweep_stale_namespaces(ip: &Path) {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    let mut slots: Vec<u32> = entries
        .flatten()
        .filter_map(|e| slot_of(&e.file_name().to_string_lossy()))
        .collect();
    slots.sort_unstable();
    slots.dedup();
    for slot in slots {
        if let Ok(lock) = slot_lock(slot) {
            clean_slot(ip, slot);
            drop(lock);
        }
    }
}

impl NetnsSlot {
    fn acquire(ip: &Path) -> Result<NetnsSlot> {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(|| sweep_stale_namespaces(ip));
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::Invalid(
                "SambaDc needs root (ip netns add); run the tests as root".into(),
            ));
        }
        let start = (std::process::id().wrapping_mul(7919)) % SLOTS;
        for k in 0..SLOTS {
            let slot = (start + k) % SLOTS;
            let Ok(lock) = slot_lock(slot) else {
                continue;
            };
            clean_slot(ip, slot);
            return NetnsSlot::create(ip, slot, lock);
        }
        Err(Error::Invalid(format!(
            "all {SLOTS} network namespace slots are in use"
        )))
    }

    fn create(ip: &Path, slot: u32, lock: UnixListener) -> Result<NetnsSlot> {
        let (name, host_if, ns_if) = slot_names(slot);
        let third = (slot / 64) as u8;
        let fourth = ((slot % 64) * 4) as u8;
        let host_ip = Ipv4Addr::new(10, 231, third, fourth + 1);
        let ns_ip = Ipv4Addr::new(10, 231, third, fourth + 2);
        let ip_s = ip.display().to_string();
        // Deleting the namespace (once its processes are gone) removes the
        // veth pair too; the interface names are reused by the slot's next
        // owner, so the exit-time cleanup leaves them alone.
        let exit_cleanup = ExitCleanup::register(&format!(
            "for p in $({ip_s} netns pids {name}); do kill -9 $p; done; {ip_s} netns del {name}"
        ));
        let slot = NetnsSlot {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip,
            ns_ip,
            ip: ip.to_path_buf(),
            _exit_cleanup: exit_cleanup,
            _lock: lock,
        };
        let host_cidr = format!("{host_ip}/30");
        let ns_cidr = format!("{ns_ip}/30");
        let steps: [&[&str]; 7] = [
            &["netns", "add", &name],
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &name,
            ],
            &["addr", "add", &host_cidr, "dev", &host_if],
            &["link", "set", &host_if, "up"],
            &["-n", &name, "addr", "add", &ns_cidr, "dev", &ns_if],
            &["-n", &name, "link", "set", &ns_if, "up"],
            &["-n", &name, "link", "set", "lo", "up"],
        ];
        for args in steps {
            // On failure `slot` is dropped, which removes what was made.
            process::run_sync(&ip_s, args)?;
        }
        Ok(slot)
    }
}

impl Drop for NetnsSlot {
    fn drop(&mut self) {
        kill_netns_processes(&self.ip, &self.name);
        let ip_s = self.ip.display().to_string();
        let _ = process::run_sync(&ip_s, &["netns", "del", &self.name]);
        if Path::new("/sys/class/net").join(&self.host_if).exists() {
            let _ = process::run_sync(&ip_s, &["link", "del", &self.host_if]);
        }
    }
}

// ---------------------------------------------------------------------------
// The DC

#[derive(Debug)]
struct Inner {
    // Drop order: the server, then the namespace, then the folder.
    process: Mutex<Option<ServerProcess>>,
    netns: NetnsSlot,
    samba: PathBuf,
    ldbadd: PathBuf,
    ca_pem: String,
    untrusted_ca_pem: String,
    _dir_cleanup: ExitCleanup,
    dir: tempfile::TempDir,
}

/// A Samba Active Directory domain controller (realm [`REALM`], base DN
/// [`BASE_DN`]) serving LDAP on 389 and LDAPS / StartTLS on 636 / 389 at
/// [`SambaDc::ip`], with a certificate for that IP from a throwaway CA
/// ([`SambaDc::ca_pem`]). Simple binds work on plain LDAP too (`ldap server
/// require strong auth = no`).
///
/// Cloning shares the server; it is stopped, its namespace and folder
/// removed, when the last clone is dropped, and in any case when the test
/// process exits.
#[derive(Clone, Debug)]
pub struct SambaDc {
    inner: Arc<Inner>,
}

static SHARED: tokio::sync::OnceCell<SambaDc> = tokio::sync::OnceCell::const_new();

fn find_tool(name: &str) -> Result<PathBuf> {
    process::find_program(name, None).map_err(|_| Error::NotInstalled {
        program: name.to_string(),
        hint: format!(
            "{} (samba-ad-dc, samba-ad-provision, ldb-tools, winbind)",
            process::INSTALL_HINT
        ),
    })
}

impl SambaDc {
    /// The process-wide DC, provisioned on first use (about 6 s) and kept
    /// until the process exits. Give each test its own OU with
    /// [`SambaDc::new_ou`].
    pub async fn shared() -> Result<SambaDc> {
        SHARED.get_or_try_init(SambaDc::start).await.cloned()
    }

    /// Provisions and starts a private DC (for tests that stop or kill it).
    pub async fn start() -> Result<SambaDc> {
        let samba_tool = find_tool("samba-tool")?;
        let samba = find_tool("samba")?;
        let ldbadd = find_tool("ldbadd")?;
        let ip = find_tool("ip")?;

        let dir = tempfile::Builder::new()
            .prefix("roster-samba-")
            .tempdir()
            .map_err(|e| Error::io("creating a temp folder for Samba", e))?;
        let dir_cleanup = ExitCleanup::register(&format!(
            "rm -rf {}",
            sh_quote(&dir.path().display().to_string())
        ));
        let d = dir.path().display().to_string();
        for sub in ["run", "log", "tls"] {
            std::fs::create_dir_all(dir.path().join(sub))
                .map_err(|e| Error::io(format!("creating {d}/{sub}"), e))?;
        }
        let netns = NetnsSlot::acquire(&ip)?;

        provision_or_copy(&samba_tool, dir.path()).await?;

        // TLS: a certificate naming the namespace's IP.
        let ca = TestCa::new("roster-testkit Samba CA")?;
        let cert = ca.server_cert(
            &[IpAddr::V4(netns.ns_ip)],
            &[&format!("{HOST_NAME}.{DNS_DOMAIN}"), "localhost"],
        )?;
        let tls = dir.path().join("tls");
        write(&tls.join("ca.pem"), ca.cert_pem())?;
        write(&tls.join("cert.pem"), &cert.cert_pem)?;
        write(&tls.join("key.pem"), &cert.key_pem)?;
        {
            use std::os::unix::fs::PermissionsExt;
            // Samba refuses a key file others can read.
            std::fs::set_permissions(tls.join("key.pem"), std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io("restricting the key file", e))?;
        }

        // smb.conf: listen on the namespace's address; settings that are
        // silently dropped as provision options go into [global] directly.
        let conf_path = dir.path().join("etc/smb.conf");
        let conf = std::fs::read_to_string(&conf_path)
            .map_err(|e| Error::io(format!("reading {}", conf_path.display()), e))?;
        let extra = format!(
            "[global]\n\tldap server require strong auth = no\n\ttls enabled = yes\n\ttls keyfile = {d}/tls/key.pem\n\ttls certfile = {d}/tls/cert.pem\n\ttls cafile = {d}/tls/ca.pem\n\tprefork children = 2\n"
        );
        let conf = conf
            .replacen(
                "\tinterfaces = lo\n",
                &format!("\tinterfaces = {}/30\n", netns.ns_ip),
                1,
            )
            .replacen("[global]\n", &extra, 1);
        write(&conf_path, &conf)?;

        let dc = SambaDc {
            inner: Arc::new(Inner {
                process: Mutex::new(None),
                netns,
                samba,
                ldbadd,
                ca_pem: ca.cert_pem().to_string(),
                untrusted_ca_pem: TestCa::new("roster-testkit untrusted CA")?
                    .cert_pem()
                    .to_string(),
                _dir_cleanup: dir_cleanup,
                dir,
            }),
        };
        dc.launch().await?;
        Ok(dc)
    }

    async fn launch(&self) -> Result<()> {
        let i = &self.inner;
        let mut cmd = std::process::Command::new(&i.netns.ip);
        cmd.args(["netns", "exec", &i.netns.name])
            .arg(&i.samba)
            .arg("-s")
            .arg(self.smb_conf())
            // Interactive: foreground, logs to stdout, and exits when its
            // stdin (a pipe this process holds) closes.
            .arg("-i");
        let marker = i.dir.path().display().to_string();
        let mut proc = ServerProcess::spawn("samba", cmd, &self.log_path(), &marker, true)?;
        let addr = SocketAddr::from((i.netns.ns_ip, 389));
        let result = proc
            .wait_ready(START_TIMEOUT, async || {
                process::tcp_accepts(addr, Duration::from_millis(200))
            })
            .await;
        *i.process.lock().unwrap_or_else(|p| p.into_inner()) = Some(proc);
        result?;
        // LDAP answers, not just the socket.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = async {
                let mut ldap =
                    crate::ldap::connect(&self.host(), 389, Security::Plain, None).await?;
                ldap.search(
                    "",
                    ldap3::Scope::Base,
                    "(objectClass=*)",
                    vec!["defaultNamingContext"],
                )
                .await
                .and_then(|r| r.success())
                .map_err(|e| Error::ldap("reading Samba's rootDSE", e))?;
                let _ = ldap.unbind().await;
                Ok::<_, Error>(())
            }
            .await;
            match r {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The DC's IPv4 address (inside its namespace, routed from the root
    /// namespace over the veth pair).
    pub fn ip(&self) -> Ipv4Addr {
        self.inner.netns.ns_ip
    }

    /// The root namespace's end of the veth pair.
    pub fn host_side_ip(&self) -> Ipv4Addr {
        self.inner.netns.host_ip
    }

    /// The DC's IP as text (the host to connect to).
    pub fn host(&self) -> String {
        self.ip().to_string()
    }

    /// 389.
    pub fn port(&self) -> u16 {
        389
    }

    /// 636.
    pub fn ldaps_port(&self) -> u16 {
        636
    }

    /// `ldap://<ip>:389`.
    pub fn url(&self) -> String {
        format!("ldap://{}:389", self.ip())
    }

    /// `ldaps://<ip>:636`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://{}:636", self.ip())
    }

    /// [`BASE_DN`].
    pub fn base_dn(&self) -> &'static str {
        BASE_DN
    }

    /// [`REALM`].
    pub fn realm(&self) -> &'static str {
        REALM
    }

    /// [`DOMAIN`].
    pub fn domain(&self) -> &'static str {
        DOMAIN
    }

    /// The Administrator's DN.
    pub fn admin_dn(&self) -> String {
        format!("CN=Administrator,CN=Users,{BASE_DN}")
    }

    /// The Administrator's UPN (also accepted as a bind name).
    pub fn admin_upn(&self) -> String {
        format!("Administrator@{DNS_DOMAIN}")
    }

    /// The Administrator's password.
    pub fn admin_password(&self) -> &'static str {
        ADMIN_PASSWORD
    }

    /// The CA certificate (PEM) that issued the DC's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.inner.ca_pem
    }

    /// A CA certificate (PEM) that did not issue it, for negative tests.
    pub fn untrusted_ca_pem(&self) -> &str {
        &self.inner.untrusted_ca_pem
    }

    /// The network namespace's name.
    pub fn netns(&self) -> &str {
        &self.inner.netns.name
    }

    /// The provisioned folder.
    pub fn dir(&self) -> &Path {
        self.inner.dir.path()
    }

    /// The generated smb.conf.
    pub fn smb_conf(&self) -> PathBuf {
        self.dir().join("etc/smb.conf")
    }

    /// The path of sam.ldb (for ldb tools).
    pub fn sam_ldb(&self) -> PathBuf {
        self.dir().join("private/sam.ldb")
    }

    /// Samba's output.
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("log/samba.out")
    }

    /// A bound connection (`security`: plain 389, StartTLS 389 or LDAPS
    /// 636, TLS verified against [`SambaDc::ca_pem`]).
    pub async fn bind(&self, security: Security, dn: &str, password: &str) -> Result<ldap3::Ldap> {
        let port = if security == Security::Ldaps {
            636
        } else {
            389
        };
        crate::ldap::bind(
            &self.host(),
            port,
            security,
            Some(self.ca_pem()),
            dn,
            password,
        )
        .await
    }

    /// An LDAPS connection bound as Administrator (encrypted, so passwords
    /// can be set).
    pub async fn admin(&self) -> Result<LdapAdmin> {
        let ldap = self
            .bind(Security::Ldaps, &self.admin_dn(), ADMIN_PASSWORD)
            .await?;
        Ok(LdapAdmin::new(ldap))
    }

    /// Creates a fresh OU `OU=t-<tag>,DC=corp,DC=example,DC=com` for one
    /// test, with an admin connection on the current runtime.
    pub async fn new_ou(&self) -> Result<SambaOu> {
        let tag = new_tag();
        let dn = format!("OU=t-{tag},{BASE_DN}");
        let admin = self.admin().await?;
        admin.add(&organizational_unit(&dn)).await?;
        Ok(SambaOu {
            dc: self.clone(),
            dn,
            tag,
            admin,
            counter: AtomicUsize::new(0),
        })
    }

    /// Adds LDIF content records offline with `ldbadd` straight into
    /// sam.ldb (much faster than LDAP for bulk; works while the DC runs).
    pub async fn ldbadd(&self, ldif: &str) -> Result<()> {
        let file = tempfile::Builder::new()
            .prefix("ldbadd-")
            .suffix(".ldif")
            .tempfile_in(self.dir())
            .map_err(|e| Error::io("creating an LDIF file", e))?;
        std::fs::write(file.path(), ldif).map_err(|e| Error::io("writing an LDIF file", e))?;
        self.ldbadd_file(file.path()).await
    }

    /// `ldbadd` of an LDIF file.
    pub async fn ldbadd_file(&self, path: &Path) -> Result<()> {
        let url = self.sam_ldb();
        let conf = format!("--configfile={}", self.smb_conf().display());
        process::run(
            &self.inner.ldbadd,
            &[
                OsStr::new("-H"),
                url.as_os_str(),
                OsStr::new(&conf),
                path.as_os_str(),
            ],
            None,
        )
        .await?;
        Ok(())
    }

    /// Whether samba runs.
    pub fn is_running(&self) -> bool {
        let mut guard = self.inner.process.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(p) => p.exited().is_none(),
            None => false,
        }
    }

    /// SIGKILL samba and every process in its namespace, as a crash. Not
    /// for the [`SambaDc::shared`] instance: other tests use it.
    pub fn kill(&self) {
        let proc = self
            .inner
            .process
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut p) = proc {
            p.kill();
        }
        kill_netns_processes(&self.inner.netns.ip, &self.inner.netns.name);
    }

    /// SIGTERM samba and wait (up to 10 s), then kill what is left.
    pub async fn stop(&self) {
        let proc = self
            .inner
            .process
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut p) = proc {
            p.terminate(Duration::from_secs(10)).await;
        }
        kill_netns_processes(&self.inner.netns.ip, &self.inner.netns.name);
    }

    /// Starts samba again with the same database.
    pub async fn start_again(&self) -> Result<()> {
        self.stop().await;
        self.launch().await
    }
}

/// Bumped when the provisioning options change, so that cached templates of
/// an older harness are not used.
const TEMPLATE_VERSION: u32 = 1;

/// Provisions a domain into `dir` with samba-tool (about 6 s). With
/// `ROSTER_SAMBA_TEMPLATE_DIR` set, the first provisioning on the machine is
/// kept there as a template and later ones copy it (well under a second):
/// only smb.conf names the folder, and nothing in the database depends on
/// the address the DC will listen on.
async fn provision_or_copy(samba_tool: &Path, dir: &Path) -> Result<()> {
    let cache = std::env::var_os("ROSTER_SAMBA_TEMPLATE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let Some(cache) = cache else {
        return provision(samba_tool, dir).await;
    };
    let version = process::run(samba_tool, &[OsStr::new("--version")], None)
        .await
        .unwrap_or_default();
    let version: String = version
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let template = cache.join(format!("samba-{version}-t{TEMPLATE_VERSION}"));
    if template.join(".complete").exists() && copy_template(&template, dir).await.is_ok() {
        return Ok(());
    }
    provision(samba_tool, dir).await?;
    // Best effort: a failure to cache does not fail the test.
    let tmp = cache.join(format!(".tmp-{}-{}", std::process::id(), new_tag()));
    let made = async {
        std::fs::create_dir_all(&cache).ok()?;
        let cp = process::find_program("cp", None).ok()?;
        process::run(
            &cp,
            &[OsStr::new("-a"), dir.as_os_str(), tmp.as_os_str()],
            None,
        )
        .await
        .ok()?;
        std::fs::write(tmp.join(".source"), dir.display().to_string()).ok()?;
        std::fs::write(tmp.join(".complete"), "").ok()?;
        std::fs::rename(&tmp, &template).ok()
    }
    .await;
    if made.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

async fn copy_template(template: &Path, dir: &Path) -> Result<()> {
    let source = std::fs::read_to_string(template.join(".source"))
        .map_err(|e| Error::io("reading the template's source path", e))?;
    let cp = process::find_program("cp", None)?;
    let from = template.join(".");
    process::run(
        &cp,
        &[OsStr::new("-a"), from.as_os_str(), dir.as_os_str()],
        None,
    )
    .await?;
    let _ = std::fs::remove_file(dir.join(".source"));
    let _ = std::fs::remove_file(dir.join(".complete"));
    let conf_path = dir.join("etc/smb.conf");
    let conf = std::fs::read_to_string(&conf_path)
        .map_err(|e| Error::io(format!("reading {}", conf_path.display()), e))?;
    write(
        &conf_path,
        &conf.replace(source.trim(), &dir.display().to_string()),
    )
}

async fn provision(samba_tool: &Path, dir: &Path) -> Result<()> {
    let d = dir.display().to_string();
    let options = [
        "interfaces=lo".to_string(),
        "bind interfaces only=yes".to_string(),
        "server services=ldap".to_string(),
        format!("pid directory={d}/run"),
        format!("ncalrpc dir={d}/run/ncalrpc"),
        format!("winbindd socket directory={d}/run/winbindd"),
        format!("log file={d}/log/samba.log"),
        format!("netbios name={}", HOST_NAME.to_uppercase()),
    ];
    let mut args: Vec<String> = vec![
        "domain".into(),
        "provision".into(),
        format!("--realm={REALM}"),
        format!("--domain={DOMAIN}"),
        "--server-role=dc".into(),
        "--dns-backend=NONE".into(),
        format!("--adminpass={ADMIN_PASSWORD}"),
        "--use-rfc2307".into(),
        format!("--host-name={HOST_NAME}"),
        // Only used for DNS records, which are not made (no DNS backend).
        "--host-ip=127.0.0.1".into(),
        format!("--targetdir={d}"),
    ];
    args.extend(options.iter().map(|o| format!("--option={o}")));
    let args_os: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    process::run(samba_tool, &args_os, None).await?;
    Ok(())
}

fn new_tag() -> String {
    // 8 characters: sAMAccountNames built on it stay under AD's 20.
    let u = uuid::Uuid::new_v4().as_u128();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut n = u;
    let mut s = String::from("k");
    for _ in 0..7 {
        s.push(alphabet[(n % 36) as usize] as char);
        n /= 36;
    }
    s
}

/// One test's OU in a [`SambaDc`], with helpers to fill and change it.
/// Account names made here start with [`SambaOu::tag`], so they are unique
/// in the domain. The OU is left in place when dropped (the DC is
/// per-process).
#[derive(Debug)]
pub struct SambaOu {
    dc: SambaDc,
    dn: String,
    tag: String,
    admin: LdapAdmin,
    counter: AtomicUsize,
}

impl SambaOu {
    /// The OU's DN: point the reader's base DN here.
    pub fn dn(&self) -> &str {
        &self.dn
    }

    /// The unique lower-case tag in the OU's name and in account names.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The DC.
    pub fn dc(&self) -> &SambaDc {
        &self.dc
    }

    /// The Administrator connection (LDAPS) for any change: rename,
    /// move_to, delete, set_disabled, add_member, replace...
    pub fn admin(&self) -> &LdapAdmin {
        &self.admin
    }

    /// A generator in Samba style under this OU, account names prefixed
    /// with the tag.
    pub fn data(&self, mail_domain: &str) -> DirectoryData {
        DirectoryData::new(Style::Samba, &self.dn, mail_domain).prefix(&self.tag)
    }

    /// Adds generated data over LDAP (about 100 entries a second).
    pub async fn load(&self, data: &DirectoryData) -> Result<usize> {
        self.admin.add_all(data.entries()).await
    }

    /// Adds generated data offline with `ldbadd` (about 400 users a second).
    pub async fn load_offline(&self, data: &DirectoryData) -> Result<usize> {
        let file = tempfile::Builder::new()
            .prefix("data-")
            .suffix(".ldif")
            .tempfile_in(self.dc.dir())
            .map_err(|e| Error::io("creating an LDIF file", e))?;
        let n = data.user_count() + data.group_count() + 2;
        let data = data.clone();
        let path = file.path().to_path_buf();
        tokio::task::spawn_blocking(move || data.write_ldif_file(&path))
            .await
            .map_err(|e| Error::Invalid(format!("LDIF writer panicked: {e}")))?
            .map_err(|e| Error::io("writing an LDIF file", e))?;
        self.dc.ldbadd_file(file.path()).await?;
        Ok(n)
    }

    /// An unsaved user `CN=given sn` in this OU with a unique account name
    /// (`<tag>n<k>`), mail `given.sn@mail_domain` and that address as its
    /// `SMTP:` proxy address. Change fields, then [`SambaOu::create_user`].
    pub fn new_user(&self, given: &str, sn: &str, mail_domain: &str) -> User {
        let k = self.counter.fetch_add(1, Ordering::Relaxed);
        let account = format!("{}n{k:04}", self.tag);
        let mut user = User::new(&self.dn, &account, given, sn, mail_domain);
        user.dn = format!("CN={}", &user.dn[3..]);
        user
    }

    /// An unsaved group `cn` in this OU with a unique account name.
    pub fn new_group(&self, cn: &str) -> Group {
        let k = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut group = Group::new(&self.dn, &format!("{}n{k:04}", self.tag), cn);
        group.dn = format!("CN={}", &group.dn[3..]);
        group
    }

    /// Creates the user (its password, if any, goes to unicodePwd).
    pub async fn create_user(&self, user: &User) -> Result<()> {
        self.admin.add(&user.entry(Style::Samba)).await
    }

    /// Creates the group with its members.
    pub async fn create_group(&self, group: &Group) -> Result<()> {
        self.admin.add(&group.entry(Style::Samba)).await
    }

    /// Creates a child OU `OU=<name>,<this OU>` and returns its DN.
    pub async fn create_child_ou(&self, name: &str) -> Result<String> {
        let dn = format!("OU={},{}", crate::data::escape_rdn_value(name), self.dn);
        self.admin.add(&organizational_unit(&dn)).await?;
        Ok(dn)
    }
}
