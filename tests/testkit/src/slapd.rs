//! A private OpenLDAP server per test: its own slapd.conf, mdb database,
//! ports and (optionally) certificates in a temp folder. The system's slapd
//! and its configuration are never touched.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::data::{DirectoryData, Entry, Style};
use crate::error::{Error, Result};
use crate::ldap::{LdapAdmin, Security};
use crate::process::{self, ExitCleanup, ServerProcess};
use crate::tls::TestCa;

/// The AD-like schema (deploy/testkit/ad-like.schema), loaded by
/// [`Flavour::AdLike`] servers.
pub const AD_LIKE_SCHEMA: &str = include_str!("../../../deploy/testkit/ad-like.schema");

const SCHEMA_DIR: &str = "/etc/ldap/schema";
const MODULE_DIR: &str = "/usr/lib/ldap";
const ROOT_PASSWORD: &str = "admin-secret";
const READER_PASSWORD: &str = "reader-secret";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Which directory a [`Slapd`] imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// A plain OpenLDAP directory (core, cosine, inetorgperson, nis);
    /// entries carry slapd's `entryUUID`.
    InetOrgPerson,
    /// The same plus an AD-like schema: `user` and `group` objects with
    /// sAMAccountName, userPrincipalName, proxyAddresses,
    /// userAccountControl, objectGUID, company, department, groupType, with
    /// AD's OIDs.
    AdLike,
}

impl Flavour {
    /// The [`Style`] data generators should write for this flavour.
    pub fn style(self) -> Style {
        match self {
            Flavour::InetOrgPerson => Style::InetOrgPerson,
            Flavour::AdLike => Style::AdLike,
        }
    }
}

#[derive(Clone, Debug)]
enum Initial {
    Ldif(String),
    File(PathBuf),
    Data(DirectoryData),
}

/// How to build a [`Slapd`]. Start from [`SlapdConfig::inet_org_person`] or
/// [`SlapdConfig::ad_like`].
#[derive(Clone, Debug)]
pub struct SlapdConfig {
    flavour: Flavour,
    base_dn: String,
    page_cap: bool,
    tls: bool,
    memberof: bool,
    ppolicy: bool,
    syncprov: Option<Option<u32>>,
    schemas: Vec<String>,
    initial: Vec<Initial>,
    contexts: Vec<(String, PathBuf)>,
}

impl SlapdConfig {
    /// A `flavour` directory with suffix `dc=example,dc=com`, no page cap,
    /// no TLS, the memberof overlay on, and no data beyond the suffix entry
    /// and the reader account.
    pub fn new(flavour: Flavour) -> SlapdConfig {
        SlapdConfig {
            flavour,
            base_dn: "dc=example,dc=com".to_string(),
            page_cap: false,
            tls: false,
            memberof: true,
            ppolicy: false,
            syncprov: None,
            schemas: Vec::new(),
            initial: Vec::new(),
            contexts: Vec::new(),
        }
    }

    /// [`SlapdConfig::new`] with [`Flavour::InetOrgPerson`].
    pub fn inet_org_person() -> SlapdConfig {
        SlapdConfig::new(Flavour::InetOrgPerson)
    }

    /// [`SlapdConfig::new`] with [`Flavour::AdLike`].
    pub fn ad_like() -> SlapdConfig {
        SlapdConfig::new(Flavour::AdLike)
    }

    /// The suffix (base DN); its first RDN must be `dc=`, `o=` or `ou=`.
    pub fn base_dn(mut self, base_dn: &str) -> Self {
        self.base_dn = base_dn.to_string();
        self
    }

    /// Active Directory's 1000-entry cap (`sizelimit size.soft=1000
    /// size.hard=1000 size.pr=1000 size.prtotal=unlimited`): unpaged searches
    /// stop at 1000 entries with result code 4 and pages over 1000 are
    /// refused. The rootdn bypasses limits: search as
    /// [`Slapd::reader_dn`]. Without the cap searches are unlimited.
    pub fn page_cap(mut self, on: bool) -> Self {
        self.page_cap = on;
        self
    }

    /// Serves LDAPS on a second port and StartTLS on the first, with a
    /// certificate for IP 127.0.0.1 and DNS `localhost` from a throwaway CA
    /// ([`Slapd::ca_pem`]).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// The memberof overlay (on by default): online group changes maintain
    /// `memberOf` on members. `slapadd` bypasses overlays, so bulk-loaded
    /// groups do not.
    pub fn memberof(mut self, on: bool) -> Self {
        self.memberof = on;
        self
    }

    /// The password policy overlay (off by default): its operational
    /// attributes, e.g. `pwdAccountLockedTime` (a locked account), exist
    /// and the root account may set them.
    pub fn ppolicy(mut self, on: bool) -> Self {
        self.ppolicy = on;
        self
    }

    /// The syncprov overlay (off by default): the content synchronisation
    /// protocol (RFC 4533) on the main suffix. With `sessionlog`, a
    /// session log of that many operations: a refresh then reports
    /// deletions (the delete phase); without, it enumerates what is still
    /// there (the present phase).
    pub fn syncprov(mut self, sessionlog: Option<u32>) -> Self {
        self.syncprov = Some(sessionlog);
        self
    }

    /// A further schema (slapd.conf `attributetype` / `objectclass`
    /// text), included after the standard ones.
    pub fn schema(mut self, text: impl Into<String>) -> Self {
        self.schemas.push(text.into());
        self
    }

    /// LDIF content records loaded with `slapadd -q` before the server starts.
    pub fn ldif(mut self, ldif: impl Into<String>) -> Self {
        self.initial.push(Initial::Ldif(ldif.into()));
        self
    }

    /// An LDIF file loaded with `slapadd -q` before the server starts.
    pub fn ldif_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.initial.push(Initial::File(path.into()));
        self
    }

    /// A further naming context: its own `mdb` database with suffix
    /// `suffix` (first RDN `dc=`, `o=` or `ou=`, outside every other
    /// suffix), its root entry, then the LDIF file's entries, loaded with
    /// `slapadd -q -b` before the server starts. A real customer's
    /// directory is its own server: a search in one context never walks
    /// another's entries, as it would under one shared suffix. The reader
    /// account of the main suffix can read it; the limits are the main
    /// database's.
    ///
    /// At most [`MAX_NAMING_CONTEXTS`] per server: each `mdb` database a
    /// slapd thread serves takes one of the thread's few pool keys, and a
    /// thread out of keys answers every search with result 80 (`internal
    /// error`, logged as `mdb_opinfo_get: thread_pool_setkey failed err
    /// (12)`). Start several servers for more.
    pub fn naming_context(mut self, suffix: &str, ldif: impl Into<PathBuf>) -> Self {
        self.contexts.push((suffix.to_string(), ldif.into()));
        self
    }

    /// Generated data loaded with `slapadd -q` before the server starts
    /// (100,000 users take a few seconds). Its base DN must be at or below
    /// the suffix.
    pub fn data(mut self, data: DirectoryData) -> Self {
        self.initial.push(Initial::Data(data));
        self
    }
}

/// How many [`SlapdConfig::naming_context`]s one server takes: slapd's
/// thread pool has 32 keys per thread, some taken by slapd itself, one
/// per `mdb` database the thread serves.
pub const MAX_NAMING_CONTEXTS: usize = 16;

/// A running private OpenLDAP server. Dropping it kills the server and
/// removes its folder.
#[derive(Debug)]
pub struct Slapd {
    flavour: Flavour,
    base_dn: String,
    page_cap: bool,
    port: u16,
    ldaps_port: Option<u16>,
    ca_pem: Option<String>,
    untrusted_ca_pem: Option<String>,
    slapd: PathBuf,
    slapadd: PathBuf,
    process: Option<ServerProcess>,
    // Dropped after `process` (fields drop in order): the folder goes last.
    _dir_cleanup: ExitCleanup,
    dir: tempfile::TempDir,
}

fn root_entry(base_dn: &str) -> Result<Entry> {
    let rdn = crate::data::first_rdn(base_dn);
    let (attr, value) = rdn
        .split_once('=')
        .ok_or_else(|| Error::Invalid(format!("base DN {base_dn:?} has no attribute=value RDN")))?;
    let e = Entry::new(base_dn).with("objectClass", "top");
    Ok(match attr.trim().to_ascii_lowercase().as_str() {
        "dc" => e
            .with("objectClass", "dcObject")
            .with("objectClass", "organization")
            .with("dc", value)
            .with("o", value),
        "o" => e.with("objectClass", "organization").with("o", value),
        "ou" => e
            .with("objectClass", "organizationalUnit")
            .with("ou", value),
        _ => {
            return Err(Error::Invalid(format!(
                "base DN {base_dn:?}: the first RDN must be dc=, o= or ou="
            )))
        }
    })
}

impl Slapd {
    /// Writes the configuration, bulk-loads the initial data, starts slapd
    /// on free ports and waits until it answers LDAP.
    pub async fn start(config: SlapdConfig) -> Result<Slapd> {
        let slapd = process::find_program("slapd", Some("ROSTER_SLAPD"))?;
        let slapadd = slapd.with_file_name("slapadd");
        if !process::is_executable(&slapadd) {
            return Err(Error::NotInstalled {
                program: slapadd.display().to_string(),
                hint: process::INSTALL_HINT.into(),
            });
        }
        for schema in ["core", "cosine", "inetorgperson", "nis"] {
            let p = Path::new(SCHEMA_DIR).join(format!("{schema}.schema"));
            if !p.exists() {
                return Err(Error::NotInstalled {
                    program: p.display().to_string(),
                    hint: process::INSTALL_HINT.into(),
                });
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("roster-slapd-")
            .tempdir()
            .map_err(|e| Error::io("creating a temp folder for slapd", e))?;
        let dir_cleanup = ExitCleanup::register(&format!(
            "rm -rf {}",
            process::sh_quote(&dir.path().display().to_string())
        ));

        let (ca_pem, untrusted_ca_pem) = if config.tls {
            let ca = TestCa::new("roster-testkit slapd CA")?;
            let cert = ca.server_cert(&[IpAddr::V4(Ipv4Addr::LOCALHOST)], &["localhost"])?;
            let tls = dir.path().join("tls");
            write(&tls.join("ca.pem"), ca.cert_pem())?;
            write(&tls.join("server.pem"), &cert.cert_pem)?;
            write(&tls.join("server.key"), &cert.key_pem)?;
            let untrusted = TestCa::new("roster-testkit untrusted CA")?;
            (
                Some(ca.cert_pem().to_string()),
                Some(untrusted.cert_pem().to_string()),
            )
        } else {
            (None, None)
        };

        let mut server = Slapd {
            flavour: config.flavour,
            base_dn: config.base_dn.clone(),
            page_cap: config.page_cap,
            port: 0,
            ldaps_port: None,
            ca_pem,
            untrusted_ca_pem,
            slapd,
            slapadd,
            process: None,
            _dir_cleanup: dir_cleanup,
            dir,
        };
        std::fs::create_dir_all(server.dir.path().join("data"))
            .map_err(|e| Error::io("creating the slapd data folder", e))?;
        for n in 0..config.contexts.len() {
            std::fs::create_dir_all(server.dir.path().join(format!("data-{n}")))
                .map_err(|e| Error::io("creating a slapd data folder", e))?;
        }
        if config.flavour == Flavour::AdLike {
            write(&server.dir.path().join("ad-like.schema"), AD_LIKE_SCHEMA)?;
        }
        for (i, text) in config.schemas.iter().enumerate() {
            write(&server.dir.path().join(format!("extra-{i}.schema")), text)?;
        }
        write(&server.conf_path(), &server.slapd_conf(&config))?;

        // The suffix entry and the reader account, then the test's data.
        let skeleton = format!(
            "{}{}",
            root_entry(&config.base_dn)?.to_ldif(),
            Entry::new(server.reader_dn())
                .with("objectClass", "applicationProcess")
                .with("objectClass", "simpleSecurityObject")
                .with("cn", "reader")
                .with("userPassword", READER_PASSWORD)
                .with(
                    "description",
                    "ordinary bind user with read access (subject to limits)"
                )
                .to_ldif()
        );
        server.slapadd_text(&skeleton, "skeleton").await?;
        for (n, initial) in config.initial.iter().enumerate() {
            match initial {
                Initial::Ldif(text) => server.slapadd_text(text, &format!("initial-{n}")).await?,
                Initial::File(path) => server.slapadd_file(path).await?,
                Initial::Data(data) => server.slapadd_data(data.clone()).await?,
            }
        }
        if config.contexts.len() > MAX_NAMING_CONTEXTS {
            return Err(Error::Invalid(format!(
                "{} naming contexts in one slapd: at most {MAX_NAMING_CONTEXTS} (start several servers)",
                config.contexts.len()
            )));
        }
        for (n, (suffix, path)) in config.contexts.iter().enumerate() {
            let root = server.dir.path().join(format!("context-{n}.ldif"));
            write(&root, &root_entry(suffix)?.to_ldif())?;
            server.slapadd_into(Some(suffix), &root).await?;
            let _ = std::fs::remove_file(&root);
            server.slapadd_into(Some(suffix), path).await?;
        }

        // Free ports can be taken between our probe and slapd's bind: retry.
        let mut attempt = 0;
        loop {
            attempt += 1;
            server.port = process::free_port()?;
            server.ldaps_port = if config.tls {
                Some(process::free_port()?)
            } else {
                None
            };
            match server.launch().await {
                Ok(()) => return Ok(server),
                Err(e) if attempt < 5 && server.lost_port_race() => {
                    let _ = e;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn lost_port_race(&mut self) -> bool {
        let lost = self
            .process
            .as_ref()
            .map(|p| p.lost_port_race())
            .unwrap_or(false);
        if lost {
            // Start the next attempt with a fresh log.
            self.process = None;
            let _ = std::fs::remove_file(self.log_path());
        }
        lost
    }

    fn slapd_conf(&self, config: &SlapdConfig) -> String {
        let d = self.dir.path().display().to_string();
        let mut c = String::from("# Generated by roster-testkit. Private test server.\n");
        for schema in ["core", "cosine", "inetorgperson", "nis"] {
            c += &format!("include {SCHEMA_DIR}/{schema}.schema\n");
        }
        if config.flavour == Flavour::AdLike {
            c += &format!("include {d}/ad-like.schema\n");
        }
        for i in 0..config.schemas.len() {
            c += &format!("include {d}/extra-{i}.schema\n");
        }
        c += &format!("modulepath {MODULE_DIR}\nmoduleload back_mdb\n");
        if config.memberof {
            c += "moduleload memberof\n";
        }
        if config.ppolicy {
            c += "moduleload ppolicy\n";
        }
        if config.syncprov.is_some() {
            c += "moduleload syncprov\n";
        }
        c += &format!("pidfile {d}/slapd.pid\nargsfile {d}/slapd.args\n");
        if config.tls {
            c += &format!(
                "TLSCACertificateFile {d}/tls/ca.pem\nTLSCertificateFile {d}/tls/server.pem\nTLSCertificateKeyFile {d}/tls/server.key\n"
            );
        }
        c += "\ndatabase mdb\n";
        c += &format!(
            "suffix \"{}\"\nrootdn \"{}\"\nrootpw {ROOT_PASSWORD}\ndirectory {d}/data\n",
            self.base_dn,
            self.root_dn()
        );
        // A sparse map: room for large generated directories.
        c += "maxsize 8589934592\ndbnosync\n";
        c += "index objectClass eq\nindex entryUUID eq\nindex cn,uid,mail eq\nindex member eq\n";
        if config.syncprov.is_some() {
            c += "index entryCSN eq\n";
        }
        if config.flavour == Flavour::AdLike {
            c += "index sAMAccountName,userPrincipalName,proxyAddresses eq\nindex objectGUID eq\n";
        }
        let limits = if config.page_cap {
            "sizelimit size.soft=1000 size.hard=1000 size.pr=1000 size.prtotal=unlimited\n"
        } else {
            "sizelimit unlimited\n"
        };
        c += limits;
        c += "access to attrs=userPassword\n\tby self write\n\tby anonymous auth\n\tby * none\n";
        c += "access to *\n\tby * read\n";
        if config.memberof {
            let group_oc = match config.flavour {
                Flavour::InetOrgPerson => "groupOfNames",
                Flavour::AdLike => "group",
            };
            c += &format!(
                "overlay memberof\nmemberof-group-oc {group_oc}\nmemberof-member-ad member\nmemberof-memberof-ad memberOf\nmemberof-refint TRUE\n"
            );
        }
        if config.ppolicy {
            c += "overlay ppolicy\n";
        }
        if let Some(sessionlog) = config.syncprov {
            c += "overlay syncprov\nsyncprov-checkpoint 100 1\n";
            if let Some(n) = sessionlog {
                c += &format!("syncprov-sessionlog {n}\n");
            }
        }
        for (n, (suffix, _)) in config.contexts.iter().enumerate() {
            c += &format!(
                "\ndatabase mdb\nsuffix \"{suffix}\"\ndirectory {d}/data-{n}\nmaxsize 1073741824\ndbnosync\n"
            );
            c +=
                "index objectClass eq\nindex entryUUID eq\nindex cn,uid,mail eq\nindex member eq\n";
            c += limits;
            c += "access to attrs=userPassword\n\tby * none\n";
            c += "access to *\n\tby * read\n";
        }
        c
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("slapd.conf")
    }

    async fn slapadd_text(&self, ldif: &str, name: &str) -> Result<()> {
        let path = self.dir.path().join(format!("{name}.ldif"));
        write(&path, ldif)?;
        let r = self.slapadd_file(&path).await;
        let _ = std::fs::remove_file(&path);
        r
    }

    async fn slapadd_file(&self, path: &Path) -> Result<()> {
        self.slapadd_into(None, path).await
    }

    /// `slapadd -q` of a file into the main database, or with a suffix
    /// into that naming context's.
    async fn slapadd_into(&self, suffix: Option<&str>, path: &Path) -> Result<()> {
        let conf = self.conf_path();
        let mut args = vec![OsStr::new("-q"), OsStr::new("-f"), conf.as_os_str()];
        if let Some(suffix) = suffix {
            args.extend([OsStr::new("-b"), OsStr::new(suffix)]);
        }
        args.extend([OsStr::new("-l"), path.as_os_str()]);
        process::run(&self.slapadd, &args, None).await?;
        Ok(())
    }

    /// Streams generated data into `slapadd -q` (generation and loading
    /// overlap; no LDIF file is written).
    async fn slapadd_data(&self, data: DirectoryData) -> Result<()> {
        use std::io::Write;
        let mut cmd = std::process::Command::new(&self.slapadd);
        cmd.arg("-q")
            .arg("-f")
            .arg(self.conf_path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let shown = format!(
            "{} -q -f {}",
            self.slapadd.display(),
            self.conf_path().display()
        );
        tokio::task::spawn_blocking(move || {
            let mut child = cmd
                .spawn()
                .map_err(|e| Error::io(format!("starting `{shown}`"), e))?;
            let stdin = child.stdin.take().expect("stdin was piped");
            let mut w = std::io::BufWriter::with_capacity(1 << 20, stdin);
            // A write error means slapadd stopped reading: its status and
            // output below say why.
            let _ = data.write_ldif(&mut w).and_then(|()| w.flush());
            drop(w);
            let out = child
                .wait_with_output()
                .map_err(|e| Error::io(format!("waiting for `{shown}`"), e))?;
            if out.status.success() {
                return Ok(());
            }
            Err(Error::Command {
                command: shown,
                status: out.status.to_string(),
                output: process::tail_lines(
                    &format!(
                        "{}\n{}",
                        String::from_utf8_lossy(&out.stderr),
                        String::from_utf8_lossy(&out.stdout)
                    ),
                    30,
                ),
            })
        })
        .await
        .map_err(|e| Error::Invalid(format!("slapadd feeder panicked: {e}")))?
    }

    /// Bulk-loads LDIF content records with `slapadd -q` while the server
    /// is stopped (after [`Slapd::stop`] or [`Slapd::kill`]; then
    /// [`Slapd::start_again`]).
    pub async fn slapadd(&self, ldif: &str) -> Result<()> {
        if self.process.is_some() {
            return Err(Error::Invalid(
                "slapadd needs a stopped server: call stop() first".into(),
            ));
        }
        let name = format!("slapadd-{}", uuid::Uuid::new_v4().simple());
        self.slapadd_text(ldif, &name).await
    }

    async fn launch(&mut self) -> Result<()> {
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(p) = self.ldaps_port {
            urls += &format!(" ldaps://127.0.0.1:{p}/");
        }
        let mut cmd = std::process::Command::new(&self.slapd);
        // -d 0: stay in the foreground (a child we can kill), log nothing
        // but startup errors.
        cmd.arg("-f")
            .arg(self.conf_path())
            .arg("-h")
            .arg(&urls)
            .arg("-d")
            .arg("0");
        let marker = self.dir.path().display().to_string();
        let log = self.log_path();
        let mut proc = ServerProcess::spawn("slapd", cmd, &log, &marker, false)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let result = proc
            .wait_ready(START_TIMEOUT, async || {
                process::tcp_accepts(addr, Duration::from_millis(200))
            })
            .await;
        self.process = Some(proc);
        result?;
        // LDAP itself answers (the rootDSE), not just the socket.
        let mut ldap = crate::ldap::connect("127.0.0.1", self.port, Security::Plain, None).await?;
        ldap.search(
            "",
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["namingContexts"],
        )
        .await
        .and_then(|r| r.success())
        .map_err(|e| Error::ldap("reading the rootDSE of the new slapd", e))?;
        let _ = ldap.unbind().await;
        Ok(())
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The LDAP (and StartTLS) port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The LDAPS port, when TLS is on.
    pub fn ldaps_port(&self) -> Option<u16> {
        self.ldaps_port
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:<port>`, when TLS is on.
    pub fn ldaps_url(&self) -> Option<String> {
        self.ldaps_port.map(|p| format!("ldaps://127.0.0.1:{p}"))
    }

    /// The suffix.
    pub fn base_dn(&self) -> &str {
        &self.base_dn
    }

    /// The rootdn (`cn=admin,<suffix>`): full access, no limits.
    pub fn root_dn(&self) -> String {
        format!("cn=admin,{}", self.base_dn)
    }

    /// The rootdn's password.
    pub fn root_password(&self) -> &'static str {
        ROOT_PASSWORD
    }

    /// An ordinary account (`cn=reader,<suffix>`) with read access, subject
    /// to the size limits (use it to see the AD page cap).
    pub fn reader_dn(&self) -> String {
        format!("cn=reader,{}", self.base_dn)
    }

    /// The reader's password.
    pub fn reader_password(&self) -> &'static str {
        READER_PASSWORD
    }

    /// The CA certificate (PEM) that issued the server certificate, when TLS
    /// is on.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A CA certificate (PEM) that did not issue the server certificate,
    /// for negative tests, when TLS is on.
    pub fn untrusted_ca_pem(&self) -> Option<&str> {
        self.untrusted_ca_pem.as_deref()
    }

    /// The flavour.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// Whether the AD page cap is on.
    pub fn page_cap(&self) -> bool {
        self.page_cap
    }

    /// A generator for this server's style, under the suffix.
    pub fn data(&self, mail_domain: &str) -> DirectoryData {
        DirectoryData::new(self.flavour.style(), &self.base_dn, mail_domain)
    }

    /// The server's private folder (configuration, database, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// slapd's output (startup errors).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("slapd.log")
    }

    /// A bound connection: `security` picks plain, StartTLS or LDAPS (with
    /// the server's CA).
    pub async fn bind(&self, security: Security, dn: &str, password: &str) -> Result<ldap3::Ldap> {
        let port = match security {
            Security::Ldaps => self
                .ldaps_port
                .ok_or_else(|| Error::Invalid("LDAPS needs SlapdConfig::tls(true)".into()))?,
            _ => self.port,
        };
        crate::ldap::bind("127.0.0.1", port, security, self.ca_pem(), dn, password).await
    }

    /// A plain connection bound as the rootdn, with change helpers.
    pub async fn admin(&self) -> Result<LdapAdmin> {
        let ldap = self
            .bind(Security::Plain, &self.root_dn(), ROOT_PASSWORD)
            .await?;
        Ok(LdapAdmin::new(ldap))
    }

    /// Adds generated data online (through the overlays, so `memberOf` is
    /// maintained), as the rootdn.
    pub async fn load(&self, data: &DirectoryData) -> Result<usize> {
        let admin = self.admin().await?;
        let n = admin.add_all(data.entries()).await?;
        let _ = admin.unbind().await;
        Ok(n)
    }

    /// Applies LDIF with `ldapmodify -a` as the rootdn: content records are
    /// added, change records (`changetype: modify`, `delete`, `modrdn`)
    /// applied.
    pub async fn apply_ldif(&self, ldif: &str) -> Result<()> {
        let ldapmodify = process::find_program("ldapmodify", None)?;
        let url = self.url();
        let root = self.root_dn();
        process::run(
            &ldapmodify,
            &[
                OsStr::new("-x"),
                OsStr::new("-a"),
                OsStr::new("-H"),
                OsStr::new(&url),
                OsStr::new("-D"),
                OsStr::new(&root),
                OsStr::new("-w"),
                OsStr::new(ROOT_PASSWORD),
            ],
            Some(ldif.as_bytes().to_vec()),
        )
        .await?;
        Ok(())
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        match self.process.as_mut() {
            Some(p) => p.exited().is_none(),
            None => false,
        }
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.pid())
    }

    /// SIGKILL: the server dies at once (mid-search, mid-page), as a crash.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// SIGTERM and wait (up to 10 s, then SIGKILL).
    pub async fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.terminate(Duration::from_secs(10)).await;
        }
    }

    /// Starts the server again on the same ports with the same database.
    pub async fn start_again(&mut self) -> Result<()> {
        self.stop().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch().await {
                Ok(()) => return Ok(()),
                // The old socket may linger a moment, or another process
                // took the port: retry for a while.
                Err(e) if Instant::now() < deadline && self.lost_port_race() => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

pub(crate) fn write(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    std::fs::write(path, contents).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
