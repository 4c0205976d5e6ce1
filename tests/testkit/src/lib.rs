//! Real servers for roster's integration tests, end-to-end tests and
//! benchmarks, each on its own private ports, folder or namespace, so that
//! a fresh clone needs nothing arranged beforehand except the programs that
//! `deploy/test-deps.sh` installs (slapd, Samba AD DC, ldb-tools, iproute2,
//! nats-server >= 2.10, a running PostgreSQL).
//!
//! | server | start | isolation |
//! | --- | --- | --- |
//! | [`PgDb`] | one database on the shared PostgreSQL (`ROSTER_TEST_PG`) | a unique database |
//! | [`NatsServer`] | private nats-server with JetStream | free port, temp store |
//! | [`Slapd`] | private OpenLDAP from a generated slapd.conf | free ports, temp folder |
//! | [`SambaDc`] | Samba AD DC (real Active Directory) | a network namespace; per test an OU ([`SambaDc::new_ou`]) |
//!
//! ```no_run
//! use roster_testkit::{PgDb, NatsServer, Slapd, SlapdConfig, SambaDc, Security};
//!
//! # async fn example() -> roster_testkit::Result<()> {
//! let db = PgDb::create().await?;                       // db.url()
//! let nats = NatsServer::start().await?;                // nats.url()
//!
//! // An AD-like OpenLDAP with AD's 1000-entry cap, TLS, and 5000 users
//! // bulk-loaded before it starts.
//! let config = SlapdConfig::ad_like().page_cap(true).tls(true);
//! let data = roster_testkit::DirectoryData::new(
//!     roster_testkit::Style::AdLike, "dc=example,dc=com", "example.org")
//!     .users(5000)
//!     .groups(20, 50);
//! let slapd = Slapd::start(config.data(data.clone())).await?;
//! let ldap = slapd.bind(Security::Ldaps, &slapd.reader_dn(), slapd.reader_password()).await?;
//! let expected = data.user(42);                         // what user 42 looks like
//!
//! // Real Active Directory: one DC per process, one OU per test.
//! let dc = SambaDc::shared().await?;
//! let ou = dc.new_ou().await?;
//! let mut user = ou.new_user("Ada", "Lovelace", "example.org");
//! user.disabled = true;
//! ou.create_user(&user).await?;
//! ou.load(&ou.data("example.org").users(20).groups(2, 5)).await?;
//! # let _ = (db, nats, ldap, expected);
//! # Ok(()) }
//! ```
//!
//! # Cleanup
//!
//! Every server is killed and its folder removed when its handle is
//! dropped. For everything a drop does not reach (statics such as
//! [`SambaDc::shared`], a test process killed by a runner's timeout, an
//! aborting panic) a per-process watchdog (`setsid sh`, reading cleanup
//! commands on a pipe) runs the remaining cleanups when the test process
//! exits, however it exits. Samba namespaces and databases left by a machine
//! crash are removed by the next harness that starts one.
//!
//! # Servers
//!
//! - [`PgDb::create`] makes `roster_test_<pid>_<random>` on
//!   `ROSTER_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//!   and drops it (`WITH (FORCE)`) on [`PgDb::drop_now`] or drop.
//! - [`NatsServer::start`] finds a nats-server >= 2.10 (`ROSTER_NATS_SERVER`,
//!   `PATH`, pip / pyenv script folders; Debian's 2.9 is skipped) and runs
//!   `-a 127.0.0.1 -p <port> -js -sd <temp>`; [`NatsServer::stop`],
//!   [`NatsServer::kill`] and [`NatsServer::start_again`] (same port and
//!   store) are for outage tests.
//! - [`Slapd::start`] writes slapd.conf (mdb; core, cosine, inetorgperson,
//!   nis, plus the AD-like schema of `deploy/testkit/ad-like.schema` for
//!   [`Flavour::AdLike`]), bulk-loads with `slapadd -q`, and runs slapd on
//!   127.0.0.1. Options: the AD page cap (see [`SlapdConfig::page_cap`]; an
//!   ordinary account [`Slapd::reader_dn`] sees it, the rootdn does not),
//!   TLS with a throwaway CA ([`Slapd::ca_pem`], and
//!   [`Slapd::untrusted_ca_pem`] for negative tests). Online changes go
//!   through [`Slapd::admin`] ([`LdapAdmin`]) or [`Slapd::apply_ldif`].
//!   [`Slapd::kill`], [`Slapd::stop`] and [`Slapd::start_again`] for failure
//!   tests.
//! - [`SambaDc`] provisions a DC (realm `CORP.EXAMPLE.COM`, `--use-rfc2307`,
//!   no DNS, LDAP only) into a temp folder and runs it inside network
//!   namespace `roster-tk-<slot>-<pid>`, reachable at `10.231.x.y` over a veth
//!   pair; its certificate names that IP. Needs root. [`SambaDc::shared`]
//!   is one DC per test process; [`SambaDc::start`] a private one for tests
//!   that kill or stop it. Users and groups: [`SambaOu`] over LDAP(S), or
//!   [`SambaOu::load_offline`] / [`SambaDc::ldbadd`] for bulk.
//!
//! # Environment
//!
//! | variable | effect |
//! | --- | --- |
//! | `ROSTER_TEST_PG` | PostgreSQL server for [`PgDb`] (a user that may create databases) |
//! | `ROSTER_NATS_SERVER` | the nats-server binary (must be >= 2.10) |
//! | `ROSTER_SLAPD` | the slapd binary (slapadd is taken from its folder) |
//! | `ROSTER_SAMBA_TEMPLATE_DIR` | opt-in cache: the first provisioned domain is kept there and later DCs copy it (about 1 s instead of 6-10 s); off by default so that nothing outlives a test run |
//!
//! # Start-up times (this 2-core machine, idle)
//!
//! PgDb about 50 ms; NatsServer about 0.3-0.6 s; an empty Slapd under 0.1 s
//! (with TLS too), with 20,000 generated users about 2 s, with 100,000 about
//! 10 s (LDIF generation in a debug build plus `slapadd -q`); SambaDc about
//! 7 s (provisioning 6 s, then 0.5 s to answer LDAP), 1 s from a template;
//! ldbadd about 400 users a second, LDAP adds about 100 a second.
//!
//! # Data
//!
//! [`DirectoryData`] generates deterministic users and groups in a
//! [`Style`] (InetOrgPerson, AdLike, Samba): write them as LDIF for
//! `slapadd` / `ldbadd`, or add them online; [`DirectoryData::user`] tells
//! a test what user `i` looks like.
//!
//! TLS uses rustls with the ring provider only (set explicitly in every
//! client configuration this crate builds).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod data;
mod error;
mod ldap;
mod nats;
mod pg;
mod process;
mod samba;
mod slapd;
mod tls;

pub use data::{
    deterministic_guid, escape_rdn_value, first_rdn, organizational_unit, parent_dn, unicode_pwd,
    write_ldif_line, DirectoryData, Entry, Group, Style, User, GROUP_TYPE_GLOBAL_SECURITY,
    UAC_ACCOUNTDISABLE, UAC_NORMAL_ACCOUNT,
};
pub use error::{Error, Result};
pub use ldap::{bind as ldap_bind, connect as ldap_connect, LdapAdmin, Security};
pub use nats::{find_nats_server, NatsServer};
pub use pg::{PgDb, DB_PREFIX, DEFAULT_PG_URL};
pub use process::free_port;
pub use samba::{
    SambaDc, SambaOu, BASE_DN as SAMBA_BASE_DN, DNS_DOMAIN as SAMBA_DNS_DOMAIN,
    DOMAIN as SAMBA_DOMAIN, REALM as SAMBA_REALM,
};
pub use slapd::{Flavour, Slapd, SlapdConfig, AD_LIKE_SCHEMA, MAX_NAMING_CONTEXTS};
pub use tls::{client_config, ServerCert, TestCa};

/// The ldap3 crate this harness uses, for tests that need its types
/// (`Scope`, `SearchEntry`, `Mod`, adapters, controls).
pub use ldap3;
