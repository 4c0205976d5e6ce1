//! The LDAP / Active Directory reader (D3, D5): [`LdapReader`] implements
//! [`DirectoryReader`] over ldap3.
//!
//! A read connects (LDAPS, StartTLS, or plain when explicitly chosen),
//! binds, checks the base DN, then reads users, groups and (when enabled)
//! public folders with paged searches (at most 1000 entries a page: Active
//! Directory's cap), fetches ranged `member` values, and resolves group
//! members to snapshot ids. Anything short of every page succeeding is an
//! error: never a partial snapshot (D3.r).

mod build;
mod conn;
mod delta;
pub mod dn;
pub mod filter;
pub mod schema;
mod search;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_domain::snapshot::{
    DirectoryObject, DirectoryReader, IncrementalRead, ObjectKind, ReadError, Snapshot, TestReport,
};
use roster_events::LdapSettings;
use tracing::Instrument;

use self::build::{assemble, ReadGroup, Slots};
use self::conn::{Security, Session};
use self::search::{paged_search, rest_of_range, AttrSet, Ctx, Search};

pub use self::conn::check_ca_pem;
pub use self::delta::DEFAULT_FULL_SYNC_HOURS;
pub use self::dn::{normalize_dn, validate_dn};
pub use self::filter::{check_filter, validate_filter, FilterError};
pub use self::schema::{DisabledRule, Mapping};

/// The largest page a read asks for: Active Directory caps pages at 1000
/// (MaxPageSize) and slapd with the same limit refuses larger ones.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Which search of a read a [`PageEvent`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SearchKind {
    /// The base DN check.
    BaseDn,
    /// Users.
    Users,
    /// Groups (with and without mail).
    Groups,
    /// Public folders.
    PublicFolders,
    /// The rest of a ranged attribute (`member;range=...`).
    MemberRanges,
    /// The users `attributes.disabled_filter` selects (ids only).
    DisabledUsers,
}

impl fmt::Display for SearchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SearchKind::BaseDn => "base DN",
            SearchKind::Users => "user",
            SearchKind::Groups => "group",
            SearchKind::PublicFolders => "public folder",
            SearchKind::MemberRanges => "member range",
            SearchKind::DisabledUsers => "disabled user",
        })
    }
}

/// A page of a paged search has been read completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageEvent {
    /// The search.
    pub search: SearchKind,
    /// The page number, from 1.
    pub page: u32,
    /// Entries on this page.
    pub entries: u64,
}

/// Called after every page of every paged search (tests use it to break a
/// server between two pages).
pub type PageHook = Arc<dyn Fn(&PageEvent) + Send + Sync>;

/// Called once a delta read (B1) has applied what it found to the previous
/// read, before it builds the snapshot, with how many objects now differ
/// from the previous read or left it (issue 17: a run that would reuse its
/// previous plan loads its inputs from then on, beside the rest of the
/// read, only when the directory changed). Not called by full reads, nor
/// by a delta read whose mark did not move (nothing to apply).
pub type DeltaHook = Arc<dyn Fn(usize) + Send + Sync>;

/// How a reader reads, beyond its settings. The defaults are what
/// production uses.
#[derive(Clone)]
pub struct ReaderOptions {
    /// Entries per page, at most [`MAX_PAGE_SIZE`] (larger values are
    /// lowered to it). 0 sends no paging control at all (for directories
    /// without paged results; a size limit then fails the read).
    pub page_size: u32,
    /// Ask for `member` values in explicit ranges of this many
    /// (`member;range=0-<n-1>`, then the next ranges), as Active Directory
    /// forces for large groups; `None` asks for plain `member` and follows
    /// whatever ranges the server imposes.
    pub member_range_step: Option<u32>,
    /// Called after every page.
    pub on_page: Option<PageHook>,
    /// Called when a delta read has applied its changes.
    pub on_delta: Option<DeltaHook>,
    /// Where the reader may connect (the service passes the operator's
    /// policy; the default is unrestricted).
    pub outbound: std::sync::Arc<crate::outbound::OutboundPolicy>,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            page_size: MAX_PAGE_SIZE,
            member_range_step: None,
            on_page: None,
            on_delta: None,
            outbound: std::sync::Arc::new(crate::outbound::OutboundPolicy::unrestricted()),
        }
    }
}

impl fmt::Debug for ReaderOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReaderOptions")
            .field("page_size", &self.page_size)
            .field("member_range_step", &self.member_range_step)
            .field("on_page", &self.on_page.as_ref().map(|_| "hook"))
            .field("on_delta", &self.on_delta.as_ref().map(|_| "hook"))
            .field("outbound", &self.outbound)
            .finish()
    }
}

/// Reads an LDAP / Active Directory directory described by [`LdapSettings`]
/// with a bind password kept apart from them (D7: the password is never
/// logged, never in an error, never in `Debug` output).
#[derive(Clone)]
pub struct LdapReader {
    settings: LdapSettings,
    password: String,
    options: ReaderOptions,
}

impl fmt::Debug for LdapReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapReader")
            .field("host", &self.settings.host)
            .field("port", &self.settings.port)
            .field("bind_user", &self.settings.bind_user)
            .field("base_dn", &self.settings.base_dn)
            .field("password", &"<redacted>")
            .field("options", &self.options)
            .finish()
    }
}

/// Counts a read logs and returns.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    users: u64,
    disabled: u64,
    lists: u64,
    plain_groups: u64,
    public_folders: u64,
    without_id: u64,
}

impl Counts {
    /// Entries without the id attribute are skipped; when every entry
    /// lacks it, the attribute map is wrong and the read fails (D3.r).
    fn check_ids(&self, mapping: &Mapping) -> Result<(), ReadError> {
        if self.without_id == 0 {
            return Ok(());
        }
        if self.users + self.lists + self.plain_groups + self.public_folders == 0 {
            return Err(ReadError::Settings(format!(
                "none of the {} entries found has the id attribute {:?}: check the attribute map",
                self.without_id, mapping.id
            )));
        }
        tracing::warn!(
            skipped = self.without_id,
            id_attribute = %mapping.id,
            "entries without the id attribute were skipped"
        );
        Ok(())
    }
}

impl LdapReader {
    /// A reader for `settings`, binding with `bind_password` (ignored, with
    /// the bind, when both it and the bind user are empty: an anonymous
    /// read).
    pub fn new(settings: LdapSettings, bind_password: String) -> LdapReader {
        LdapReader::with_options(settings, bind_password, ReaderOptions::default())
    }

    /// [`LdapReader::new`] with explicit [`ReaderOptions`].
    pub fn with_options(
        settings: LdapSettings,
        bind_password: String,
        options: ReaderOptions,
    ) -> LdapReader {
        LdapReader {
            settings,
            password: bind_password,
            options,
        }
    }

    /// The settings it reads with.
    pub fn settings(&self) -> &LdapSettings {
        &self.settings
    }

    /// The preset, attribute map and custom filter combined: what a read
    /// asks for. Fails on an invalid filter or attribute name.
    pub fn mapping(&self) -> Result<Mapping, ReadError> {
        Mapping::of(&self.settings)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.settings.timeout_secs.max(1)))
    }

    fn page_size(&self) -> u32 {
        self.options.page_size.min(MAX_PAGE_SIZE)
    }

    fn span(&self, op: &'static str) -> tracing::Span {
        tracing::info_span!(
            "ldap",
            op,
            host = %self.settings.host,
            port = self.settings.port,
            security = Security::of(&self.settings).as_str(),
            base_dn = %self.settings.base_dn,
            preset = ?self.settings.preset,
        )
    }

    /// Checks the settings, warns about weak transport security, connects,
    /// binds and checks the base DN.
    async fn start(&self) -> Result<(Mapping, Session), ReadError> {
        let mapping = Mapping::of(&self.settings)?;
        if self.settings.base_dn.trim().is_empty() {
            return Err(ReadError::Settings("the base DN is empty".into()));
        }
        match Security::of(&self.settings) {
            Security::Plain => tracing::warn!(
                "plain LDAP without TLS was chosen: the bind password and the directory's data cross the network unencrypted"
            ),
            _ if !self.settings.tls.verify => tracing::warn!(
                "TLS certificate verification is turned off for this directory: anyone on the path can impersonate it"
            ),
            _ => {}
        }
        let mut session = conn::open(
            &self.settings,
            &self.password,
            self.timeout(),
            &self.options.outbound,
        )
        .await?;
        let ctx = self.ctx(&session.endpoint);
        search::check_base(&mut session.ldap, &ctx, self.settings.base_dn.trim()).await?;
        Ok((mapping, session))
    }

    fn ctx<'a>(&'a self, endpoint: &'a str) -> Ctx<'a> {
        Ctx {
            timeout: self.timeout(),
            page_size: self.page_size(),
            hook: self.options.on_page.as_ref(),
            endpoint,
        }
    }

    async fn read_inner(&self) -> Result<Snapshot, ReadError> {
        let started = Instant::now();
        let (mapping, session) = self.start().await?;
        self.read_session(mapping, session, started).await
    }

    /// A full read on a started session.
    async fn read_session(
        &self,
        mapping: Mapping,
        mut session: Session,
        started: Instant,
    ) -> Result<Snapshot, ReadError> {
        let base = self.settings.base_dn.trim();
        let endpoint = session.endpoint.clone();
        let ctx = self.ctx(&endpoint);
        let ldap = &mut session.ldap;
        let mut counts = Counts::default();
        let users = self
            .read_users(ldap, &ctx, &mapping, base, &mut counts)
            .await?;
        let groups = self
            .read_groups(ldap, &ctx, &mapping, base, &mut counts)
            .await?;
        let public_folders = self
            .read_public_folders(ldap, &ctx, &mapping, base, &mut counts)
            .await?;
        let _ = tokio::time::timeout(Duration::from_secs(1), ldap.unbind()).await;
        counts.check_ids(&mapping)?;
        let (objects, members, duplicates) = assemble(users, groups, public_folders);
        if duplicates > 0 {
            tracing::warn!(
                duplicates,
                "objects matched by more than one search were kept once"
            );
        }
        tracing::info!(
            users = counts.users,
            disabled = counts.disabled,
            lists = counts.lists,
            groups_without_mail = counts.plain_groups,
            public_folders = counts.public_folders,
            members = members.resolved,
            members_outside = members.outside,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "directory read complete"
        );
        Ok(Snapshot { objects })
    }

    /// The users, and which of them are disabled (D3.h).
    async fn read_users(
        &self,
        ldap: &mut ldap3::Ldap,
        ctx: &Ctx<'_>,
        mapping: &Mapping,
        base: &str,
        counts: &mut Counts,
    ) -> Result<Vec<DirectoryObject>, ReadError> {
        let user_attrs = AttrSet::new(mapping.user_attributes());
        let user_slots = Slots::new(mapping, &user_attrs);
        let mut users = Vec::new();
        paged_search(
            ldap,
            ctx,
            &Search {
                kind: SearchKind::Users,
                base,
                filter: &mapping.user_filter,
                attrs: &user_attrs,
                controls: &[],
            },
            |e| {
                match user_slots.object(e, ObjectKind::User) {
                    Some(o) => {
                        counts.disabled += u64::from(o.disabled);
                        users.push(o);
                    }
                    None => counts.without_id += 1,
                }
                Ok(())
            },
        )
        .await?;
        if let Some(disabled) = disabled_ids(ldap, ctx, mapping, base).await? {
            counts.disabled = 0;
            for u in &mut users {
                u.disabled = disabled.contains(&u.id);
                counts.disabled += u64::from(u.disabled);
            }
        }
        counts.users = users.len() as u64;
        Ok(users)
    }

    /// The groups (U4), then the rest of any ranged member values.
    async fn read_groups(
        &self,
        ldap: &mut ldap3::Ldap,
        ctx: &Ctx<'_>,
        mapping: &Mapping,
        base: &str,
        counts: &mut Counts,
    ) -> Result<Vec<ReadGroup>, ReadError> {
        let mut group_attrs = AttrSet::new(mapping.group_attributes());
        if let Some(step) = self.options.member_range_step {
            for m in &mapping.member {
                group_attrs = group_attrs.with_range(m, step);
            }
        }
        let group_slots = Slots::new(mapping, &group_attrs);
        let mut groups: Vec<ReadGroup> = Vec::new();
        let mut ranged: Vec<(usize, usize, search::Range)> = Vec::new();
        paged_search(
            ldap,
            ctx,
            &Search {
                kind: SearchKind::Groups,
                base,
                filter: &mapping.group_filter,
                attrs: &group_attrs,
                controls: &[],
            },
            |e| {
                let pending: Vec<(usize, search::Range)> = e
                    .ranges
                    .iter()
                    .filter(|(slot, _)| group_slots.member.contains(slot))
                    .copied()
                    .collect();
                let members = group_slots.member_dns(e);
                match group_slots.object(e, ObjectKind::Group) {
                    Some(o) => {
                        for (slot, r) in pending {
                            ranged.push((groups.len(), slot, r));
                        }
                        groups.push(ReadGroup::new(o, members));
                    }
                    None => counts.without_id += 1,
                }
                Ok(())
            },
        )
        .await?;
        for (g, slot, range) in ranged {
            let attr = group_attrs.names()[slot].clone();
            let dn = groups[g].object.dn.clone().unwrap_or_default();
            let rest =
                rest_of_range(ldap, ctx, &dn, &attr, range, self.options.member_range_step).await?;
            tracing::debug!(group = %dn, attribute = %attr, more = rest.len(), "ranged values read");
            groups[g]
                .member_dns
                .extend(rest.into_iter().filter_map(build::text));
        }
        counts.lists = groups.iter().filter(|g| g.mail_enabled).count() as u64;
        counts.plain_groups = groups.len() as u64 - counts.lists;
        Ok(groups)
    }

    /// The public folders, when they are synced (U4).
    async fn read_public_folders(
        &self,
        ldap: &mut ldap3::Ldap,
        ctx: &Ctx<'_>,
        mapping: &Mapping,
        base: &str,
        counts: &mut Counts,
    ) -> Result<Vec<DirectoryObject>, ReadError> {
        let mut public_folders = Vec::new();
        if self.settings.include_public_folders {
            match &mapping.public_folder_filter {
            Some(filter) => {
                let attrs = AttrSet::new(mapping.mail_object_attributes());
                let slots = Slots::new(mapping, &attrs);
                paged_search(
                    ldap,
                    ctx,
                    &Search {
                        kind: SearchKind::PublicFolders,
                        base,
                        filter,
                        attrs: &attrs,
                        controls: &[],
                    },
                    |e| {
                        match slots.object(e, ObjectKind::PublicFolder) {
                            Some(o) => public_folders.push(o),
                            None => counts.without_id += 1,
                        }
                        Ok(())
                    },
                )
                .await?;
            }
            None => tracing::info!(
                "public folders are an Exchange (Active Directory) feature: none to read with this preset"
            ),
        }
        }
        counts.public_folders = public_folders.len() as u64;
        Ok(public_folders)
    }

    async fn test_inner(&self) -> Result<TestReport, ReadError> {
        let (mapping, mut session) = self.start().await?;
        let base = self.settings.base_dn.trim();
        let endpoint = session.endpoint.clone();
        let ctx = self.ctx(&endpoint);
        let ldap = &mut session.ldap;

        let mut names = vec![mapping.id.clone()];
        names.extend(mapping.disabled.iter().map(|r| r.attribute().to_string()));
        let user_attrs = AttrSet::new(names);
        let slots = Slots::new(&mapping, &user_attrs);
        let (mut users, mut disabled, mut without_id) = (0u64, 0u64, 0u64);
        paged_search(
            ldap,
            &ctx,
            &Search {
                kind: SearchKind::Users,
                base,
                filter: &mapping.user_filter,
                attrs: &user_attrs,
                controls: &[],
            },
            |e| {
                if !e.has(slots.id_slot()) {
                    without_id += 1;
                }
                if let Some(o) = slots.object(e, ObjectKind::User) {
                    disabled += u64::from(o.disabled);
                }
                users += 1;
                Ok(())
            },
        )
        .await?;
        if let Some(ids) = disabled_ids(ldap, &ctx, &mapping, base).await? {
            disabled = ids.len() as u64;
        }

        let group_attrs = AttrSet::new(mapping.mail_object_attributes());
        let gslots = Slots::new(&mapping, &group_attrs);
        let mut lists = 0u64;
        paged_search(
            ldap,
            &ctx,
            &Search {
                kind: SearchKind::Groups,
                base,
                filter: &mapping.group_filter,
                attrs: &group_attrs,
                controls: &[],
            },
            |e| {
                if let Some(o) = gslots.object(e, ObjectKind::Group) {
                    lists += u64::from(ReadGroup::new(o, Vec::new()).mail_enabled);
                }
                Ok(())
            },
        )
        .await?;
        let _ = tokio::time::timeout(Duration::from_secs(1), ldap.unbind()).await;

        let tls = match session.security {
            Security::Plain => "no TLS".to_string(),
            s if self.settings.tls.verify => format!("{}, certificate verified", s.as_str()),
            s => format!("{}, certificate NOT verified", s.as_str()),
        };
        let bound = match self.settings.bind_user.trim() {
            "" => "anonymously".to_string(),
            u => format!("as {u}"),
        };
        let mut details = format!(
            "{} ({tls}), bound {bound}, base DN {base}: {users} users ({disabled} disabled), {lists} mail-enabled groups",
            session.endpoint
        );
        if without_id > 0 {
            details.push_str(&format!(
                "; {without_id} users have no {} value and would be skipped",
                mapping.id
            ));
        }
        tracing::info!(users, disabled, lists, "directory test passed");
        Ok(TestReport {
            users,
            groups: lists,
            details,
        })
    }
}

/// With `attributes.disabled_filter`: the ids of the users it selects
/// (within the user filter), read by the server's own matching; `None`
/// when the preset's rules apply.
async fn disabled_ids(
    ldap: &mut ldap3::Ldap,
    ctx: &Ctx<'_>,
    mapping: &Mapping,
    base: &str,
) -> Result<Option<std::collections::HashSet<roster_domain::snapshot::ObjectId>>, ReadError> {
    let Some(filter) = mapping.disabled_users_filter() else {
        return Ok(None);
    };
    let attrs = AttrSet::new(vec![mapping.id.clone()]);
    let slots = Slots::new(mapping, &attrs);
    let mut ids = std::collections::HashSet::new();
    paged_search(
        ldap,
        ctx,
        &Search {
            kind: SearchKind::DisabledUsers,
            base,
            filter: &filter,
            attrs: &attrs,
            controls: &[],
        },
        |e| {
            // Read as a group: only its id matters here.
            if let Some(o) = slots.object(e, ObjectKind::Group) {
                ids.insert(o.id);
            }
            Ok(())
        },
    )
    .await?;
    Ok(Some(ids))
}

/// Runs `work` on one of a bounded pool of reader threads, each with a
/// single-threaded runtime, and waits for its answer (issue 18: not a thread
/// and a runtime per read). A read decodes every entry of the directory: on
/// one thread, ldap3's connection task and the reader hand entries to each
/// other without cross-thread wake-ups (about a third faster than on a
/// multi-threaded runtime), and the CPU-heavy decoding keeps off the
/// caller's runtime. A pool thread interleaves the reads it is given. If the
/// caller stops waiting (drops the future), the work is dropped too,
/// closing the connection.
async fn on_own_thread<T, F, Fut>(span: tracing::Span, work: F) -> Result<T, ReadError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, ReadError>> + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: pool::Job = Box::new(move || {
        Box::pin(async move {
            let mut tx = tx;
            let answer = tokio::select! {
                r = work().instrument(span) => Some(r),
                _ = tx.closed() => None,
            };
            if let Some(answer) = answer {
                let _ = tx.send(answer);
            }
        })
    });
    pool::submit(job)?;
    rx.await.unwrap_or_else(|_| {
        Err(ReadError::Other(
            "the reader's thread ended without an answer".into(),
        ))
    })
}

/// The directory reader threads: `ROSTER_DIRECTORY_READ_THREADS` of them
/// (default: the number of cores), started on first use.
mod pool {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;

    use roster_domain::snapshot::ReadError;
    use tokio::sync::mpsc;

    pub type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

    struct Pool {
        threads: Vec<mpsc::UnboundedSender<Job>>,
        next: AtomicUsize,
    }

    static POOL: OnceLock<Result<Pool, String>> = OnceLock::new();

    /// How many reader threads: the environment's choice or the cores.
    pub fn size() -> Result<usize, String> {
        match std::env::var("ROSTER_DIRECTORY_READ_THREADS") {
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=256).contains(&n) => Ok(n),
                _ => Err(format!(
                    "ROSTER_DIRECTORY_READ_THREADS must be a number of threads from 1 to 256, not {v:?}"
                )),
            },
            Err(_) => Ok(std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)),
        }
    }

    fn start() -> Result<Pool, String> {
        let n = size()?;
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("starting a directory reader's runtime: {e}"))?;
            let dispatch = dispatch.clone();
            std::thread::Builder::new()
                .name(format!("roster-ldap-read-{i}"))
                .spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        let local = tokio::task::LocalSet::new();
                        local.block_on(&rt, async move {
                            while let Some(job) = rx.recv().await {
                                tokio::task::spawn_local(job());
                            }
                        });
                    })
                })
                .map_err(|e| format!("starting a directory reader's thread: {e}"))?;
            threads.push(tx);
        }
        Ok(Pool {
            threads,
            next: AtomicUsize::new(0),
        })
    }

    /// Hands a read to the next thread in turn.
    pub fn submit(job: Job) -> Result<(), ReadError> {
        let pool = POOL
            .get_or_init(start)
            .as_ref()
            .map_err(|e| ReadError::Other(e.clone()))?;
        let i = pool.next.fetch_add(1, Ordering::Relaxed) % pool.threads.len();
        pool.threads[i]
            .send(job)
            .map_err(|_| ReadError::Other("the directory reader's thread stopped".into()))
    }
}

pub use pool::size as read_threads;

#[async_trait::async_trait]
impl DirectoryReader for LdapReader {
    async fn read(&self) -> Result<Snapshot, ReadError> {
        let this = self.clone();
        let r = on_own_thread(
            self.span("read"),
            move || async move { this.read_inner().await },
        )
        .await;
        if let Err(e) = &r {
            let _g = self.span("read").entered();
            tracing::warn!(code = e.code(), error = %e, "directory read failed");
        }
        r
    }

    /// B1: a delta read where the server offers one (AD `uSNChanged`,
    /// RFC 4533 content synchronisation) and the stored state allows it;
    /// otherwise a full read (see the `delta` module).
    async fn read_incremental(
        &self,
        previous: Option<&[u8]>,
    ) -> Result<IncrementalRead, ReadError> {
        let this = self.clone();
        let previous = previous.map(<[u8]>::to_vec);
        let r = on_own_thread(self.span("read"), move || async move {
            this.incremental_inner(previous).await
        })
        .await;
        if let Err(e) = &r {
            let _g = self.span("read").entered();
            tracing::warn!(code = e.code(), error = %e, "directory read failed");
        }
        r
    }

    async fn test(&self) -> Result<TestReport, ReadError> {
        let this = self.clone();
        let r = on_own_thread(
            self.span("test"),
            move || async move { this.test_inner().await },
        )
        .await;
        if let Err(e) = &r {
            let _g = self.span("test").entered();
            tracing::info!(code = e.code(), error = %e, "directory test failed");
        }
        r
    }
}
