//! Delta reads for LDAP and Active Directory (B1).
//!
//! A delta read fetches only what changed since the previous read and
//! applies it to the directory as that read left it (kept in the state the
//! sync service stores, see [`State`]); the result is still the complete
//! snapshot a full read would give (D3.r).
//!
//! - **Active Directory / Samba**: `uSNChanged` high-water marks. The
//!   rootDSE's `highestCommittedUSN` and the DC's identity (`dsServiceName`
//!   and its `invocationId`) are read before anything else. A delta reads
//!   the users, groups (and public folders) with `uSNChanged` above the mark
//!   under the base DN, then every changed object of the naming context
//!   (ids and classes only, tombstones included with the Show Deleted
//!   control): a changed object the scoped searches did not return left the
//!   scope (deleted, moved out of the base DN, no longer matching the
//!   filter) and leaves the snapshot. A rename or move changes the DN the
//!   groups' `member` values show without changing the groups: the stored
//!   member DNs are rewritten as AD does. A changed organizational unit or
//!   container under the base DN (its children's DNs change without their
//!   `uSNChanged`) makes the read a full one.
//! - **OpenLDAP with syncprov**: the content synchronisation protocol (RFC
//!   4533) in refreshOnly mode with the stored cookie, one search per kind;
//!   both the present phase (entries not reported present are gone) and the
//!   delete phase are handled. A changed container under the base DN, or
//!   `e-syncRefreshRequired`, makes the read a full one.
//! - Anything else: a full read every time (the state is not kept).
//!
//! A full read runs as a backstop every `full_sync_hours` (default 24; 0:
//! always), and whenever the mark is unusable: no state, another server or
//! DC identity, settings changed (fingerprint), the USN went backwards (a
//! restored DC), the cookie rejected. A delta that does not complete is an
//! error like a full read that does not (the run changes nothing).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use ldap3::asn1::{parse_tag, StructureTag, TagClass, PL};
use ldap3::controls::{RawControl, RefreshMode, SyncRequest};
use ldap3::{Ldap, LdapResult, Scope};
use roster_domain::snapshot::{
    DirectoryObject, IncrementalRead, ObjectId, ObjectKind, ReadError, ReadMode, ReadState,
    Snapshot,
};
use roster_events::Profile;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::build::{assemble, expired, ReadGroup, Slots};
use super::dn::normalize_dn;
use super::schema::Mapping;
use super::search::{
    lost, paged_search, parse_entry_into, read_one_with, rest_of_range, result_error, AttrSet, Ctx,
    Range, RawEntry, Search,
};
use super::{disabled_ids, LdapReader, PageEvent, SearchKind};

/// Hours between full reads when `full_sync_hours` is not set (B1).
pub const DEFAULT_FULL_SYNC_HOURS: u32 = 24;

const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";
const SYNC_REQUEST_OID: &str = "1.3.6.1.4.1.4203.1.9.1.1";
const SYNC_STATE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.2";
const SYNC_DONE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.3";
const SYNC_INFO_OID: &str = "1.3.6.1.4.1.4203.1.9.1.4";
/// e-syncRefreshRequired (RFC 4533): the cookie cannot be continued.
const SYNC_REFRESH_REQUIRED: u32 = 4096;
/// The stored state's format: a magic prefix, then bincode (`RLD1`, as
/// states were stored before the reader compressed them), or bincode in an
/// LZ4 frame (`RLD2`).
const STATE_MAGIC: &[u8; 4] = b"RLD1";
const STATE_MAGIC_LZ4: &[u8; 4] = b"RLD2";
/// Entries whose rename or move changes the DNs of the objects below them.
const CONTAINER_FILTER: &str = "(|(objectClass=organizationalUnit)(objectClass=container)(objectClass=organization)(objectClass=domain)(objectClass=builtinDomain))";
const CONTAINER_CLASSES: [&str; 5] = [
    "organizationalunit",
    "container",
    "organization",
    "domain",
    "builtindomain",
];

/// One object as read, in a form changes apply to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Item {
    kind: ObjectKind,
    id: String,
    dn: String,
    display_name: Option<String>,
    mail: Option<String>,
    proxy_addresses: Vec<String>,
    /// first, last, home phone, mobile, company, department, notes.
    profile: [Option<String>; 7],
    /// Disabled by every rule but a shadow expiry day.
    disabled: bool,
    /// The shadow expiry day, if any (disabled from that day on).
    expires: Option<i64>,
    /// Groups: the member DNs as the directory gives them.
    members: Vec<String>,
}

impl Item {
    fn of(o: DirectoryObject, disabled: bool, expires: Option<i64>, members: Vec<String>) -> Item {
        let p = o.profile;
        Item {
            kind: o.kind,
            id: o.id.0,
            dn: o.dn.unwrap_or_default(),
            display_name: o.display_name,
            mail: o.mail,
            proxy_addresses: o.proxy_addresses,
            profile: [
                p.first_name,
                p.last_name,
                p.home_phone,
                p.mobile,
                p.company,
                p.department,
                p.notes,
            ],
            disabled,
            expires,
            members,
        }
    }

    /// What is left where an item was taken out (allocates nothing).
    fn taken() -> Item {
        Item {
            kind: ObjectKind::User,
            id: String::new(),
            dn: String::new(),
            display_name: None,
            mail: None,
            proxy_addresses: Vec::new(),
            profile: Default::default(),
            disabled: false,
            expires: None,
            members: Vec::new(),
        }
    }

    fn into_object(self) -> DirectoryObject {
        DirectoryObject {
            id: ObjectId(self.id),
            kind: self.kind,
            dn: Some(self.dn),
            display_name: self.display_name,
            mail: self.mail,
            proxy_addresses: self.proxy_addresses,
            profile: Profile::from_fields(self.profile),
            disabled: self.disabled || expired(self.expires),
            members: Vec::new(),
            member_addresses: Box::default(),
        }
    }

    /// Users first, then public folders, then groups: the order in which a
    /// full read keeps an object that two searches return.
    fn rank(kind: ObjectKind) -> u8 {
        match kind {
            ObjectKind::User => 0,
            ObjectKind::PublicFolder => 1,
            ObjectKind::Group => 2,
        }
    }
}

/// Where the next delta starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Mark {
    /// Active Directory: the DC (`dsServiceName` and `invocationId`) and
    /// its `highestCommittedUSN` before the read.
    Usn { server: String, usn: u64 },
    /// RFC 4533: the cookie taken before the read, and the servers
    /// (`contextCSN` server ids) that made it.
    Cookie { server: String, cookie: Vec<u8> },
}

/// What is stored between runs: the settings' fingerprint, when the last
/// full read ran, the mark, and the directory as read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct State {
    fingerprint: String,
    full_read_at: i64,
    mark: Mark,
    /// The ids of the organizational units and containers under the base
    /// DN.
    containers: Vec<String>,
    #[serde(deserialize_with = "exact_vec")]
    items: Vec<Item>,
}

/// A sequence decoded into a vector sized from its stated length once,
/// where serde's own `Vec` caps the first allocation at 1 MiB and then
/// doubles: for 100,000 items that was a fifth of a no-change resync's
/// decode in copies and fresh pages (issue 17). The length is taken up to
/// a million items, so corrupt bytes cannot ask for more memory up front.
fn exact_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Exact<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Exact<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1_000_000));
            while let Some(x) = seq.next_element()? {
                out.push(x);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Exact(std::marker::PhantomData))
}

impl State {
    /// The state as stored: bincode written straight into an LZ4 frame
    /// after the magic, so that the whole state never exists uncompressed
    /// (issue 17: 28 MB at 100,000 users, held beside the read, then
    /// beside the plan while the store compressed it).
    pub(crate) fn encode(&self) -> Result<Vec<u8>, ReadError> {
        let failed = |e: &dyn std::fmt::Display| {
            ReadError::Other(format!("the read state could not be encoded: {e}"))
        };
        // With the content's checksum: damaged bytes are no state, never a
        // different one.
        let frame = lz4_flex::frame::FrameInfo::new().content_checksum(true);
        let mut out =
            lz4_flex::frame::FrameEncoder::with_frame_info(frame, STATE_MAGIC_LZ4.to_vec());
        bincode::serde::encode_into_std_write(self, &mut out, bincode::config::standard())
            .map_err(|e| failed(&e))?;
        out.finish().map_err(|e| failed(&e))
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<State> {
        let plain;
        let body = match bytes.strip_prefix(STATE_MAGIC_LZ4.as_slice()) {
            Some(frame) => {
                use std::io::Read;
                // Sized for the usual ratio (about 3.7:1: 7.5 MB for 28 MB
                // at 100,000 users), so that it is rarely grown, and so
                // copied, while it is filled.
                let mut out = Vec::with_capacity(frame.len().saturating_mul(4));
                lz4_flex::frame::FrameDecoder::new(frame)
                    .read_to_end(&mut out)
                    .ok()?;
                plain = out;
                &plain[..]
            }
            None => bytes.strip_prefix(STATE_MAGIC.as_slice())?,
        };
        bincode::serde::decode_from_slice(body, bincode::config::standard())
            .ok()
            .map(|(s, _)| s)
    }
}

/// The complete snapshot of `items`, members resolved as a full read does.
fn snapshot_of(mut items: Vec<Item>) -> Snapshot {
    // The few groups and folders leave the items first; the users then
    // become objects in the items' own buffer (an in-place collect: an
    // object is no larger than an item), not in a second one beside it
    // (issue 17: 34 MB at the read's end at 100,000 users). The slots the
    // groups and folders left are the room `assemble` reserves for them.
    let mut others = Vec::new();
    items.retain_mut(|it| {
        let user = it.kind == ObjectKind::User;
        if !user {
            others.push(std::mem::replace(it, Item::taken()));
        }
        user
    });
    let mut groups = Vec::new();
    let mut folders = Vec::new();
    for mut it in others {
        match it.kind {
            ObjectKind::Group => {
                let members = std::mem::take(&mut it.members);
                groups.push(ReadGroup::new(it.into_object(), members));
            }
            _ => folders.push(it.into_object()),
        }
    }
    let users: Vec<DirectoryObject> = items.into_iter().map(Item::into_object).collect();
    let (objects, _, _) = assemble(users, groups, folders);
    Snapshot { objects }
}

// What the in-place conversion of `snapshot_of` needs.
const _: () = assert!(
    std::mem::size_of::<DirectoryObject>() == std::mem::size_of::<Item>()
        && std::mem::align_of::<DirectoryObject>() == std::mem::align_of::<Item>(),
    "a read's objects are built in the buffer of its items: keep their sizes equal"
);

/// What the rootDSE says the server offers.
#[derive(Debug, Default)]
struct Server {
    /// Active Directory: `highestCommittedUSN`, the DC identity.
    usn: Option<(u64, String)>,
    /// The server offers RFC 4533 content synchronisation.
    sync: bool,
    /// The naming context holding the base DN.
    naming_context: Option<String>,
}

/// One kind of object a read searches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Users,
    Groups,
    PublicFolders,
}

impl Kind {
    fn object(self) -> ObjectKind {
        match self {
            Kind::Users => ObjectKind::User,
            Kind::Groups => ObjectKind::Group,
            Kind::PublicFolders => ObjectKind::PublicFolder,
        }
    }

    fn search(self) -> SearchKind {
        match self {
            Kind::Users => SearchKind::Users,
            Kind::Groups => SearchKind::Groups,
            Kind::PublicFolders => SearchKind::PublicFolders,
        }
    }
}

/// Why a delta could not be used: the read falls back to a full one.
#[derive(Debug)]
enum DeltaError {
    Fallback(String),
    Read(ReadError),
}

impl From<ReadError> for DeltaError {
    fn from(e: ReadError) -> Self {
        DeltaError::Read(e)
    }
}

fn text_of(v: &[u8]) -> String {
    String::from_utf8_lossy(v).trim().to_string()
}

/// Reads the rootDSE: USN and DC identity, content sync support, the
/// naming context of `base`.
async fn probe(ldap: &mut Ldap, ctx: &Ctx<'_>, base: &str) -> Result<Server, ReadError> {
    let attrs = AttrSet::new(vec![
        "highestCommittedUSN".into(),
        "dsServiceName".into(),
        "supportedControl".into(),
        "namingContexts".into(),
    ]);
    let (entry, res) = read_one_with(ldap, ctx, "", &attrs, SearchKind::BaseDn, Vec::new()).await?;
    let Some(e) = entry.filter(|_| res.rc == 0) else {
        return Ok(Server::default());
    };
    let base_n = normalize_dn(base);
    let naming_context = e
        .values(3)
        .map(text_of)
        .filter(|nc| {
            let n = normalize_dn(nc);
            !n.is_empty() && (base_n == n || base_n.ends_with(&format!(",{n}")))
        })
        .max_by_key(|nc| nc.len());
    let sync = e.values(2).any(|c| text_of(c) == SYNC_REQUEST_OID);
    let usn = e
        .values(0)
        .next()
        .and_then(|v| text_of(v).parse::<u64>().ok());
    let service = e.values(1).next().map(text_of);
    let usn = match (usn, service) {
        (Some(usn), Some(service)) => {
            // invocationId changes when the DC is restored from a backup.
            let a = AttrSet::new(vec!["invocationId".into()]);
            let (inv, _) =
                read_one_with(ldap, ctx, &service, &a, SearchKind::BaseDn, Vec::new()).await?;
            let inv = inv
                .and_then(|e| e.values(0).next().map(hex::encode))
                .unwrap_or_default();
            Some((usn, format!("{}|{inv}", normalize_dn(&service))))
        }
        _ => None,
    };
    Ok(Server {
        usn,
        sync,
        naming_context,
    })
}

/// The server ids (`#sid#` of each `contextCSN` value) of the naming
/// context: which providers the cookie's change sequence numbers are of.
async fn csn_servers(ldap: &mut Ldap, ctx: &Ctx<'_>, nc: &str) -> Result<String, ReadError> {
    let a = AttrSet::new(vec!["contextCSN".into()]);
    let (e, _) = read_one_with(ldap, ctx, nc, &a, SearchKind::BaseDn, Vec::new()).await?;
    let mut sids: Vec<String> = e
        .map(|e| {
            e.values(0)
                .filter_map(|v| text_of(v).split('#').nth(2).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    sids.sort();
    Ok(sids.join(","))
}

impl LdapReader {
    /// What the settings select, as a digest: a state read with other
    /// settings is not continued.
    pub(crate) fn fingerprint(&self) -> String {
        let mut s = self.settings.clone();
        s.full_sync_hours = None;
        s.timeout_secs = 0;
        let text = serde_json::to_string(&s).unwrap_or_default();
        let step = self.options.member_range_step.unwrap_or(0);
        hex::encode(Sha256::digest(format!("ldap-v1|{step}|{text}").as_bytes()))
    }

    fn backstop_secs(&self) -> i64 {
        i64::from(
            self.settings
                .full_sync_hours
                .unwrap_or(DEFAULT_FULL_SYNC_HOURS),
        ) * 3600
    }

    /// B1: a full or delta read, as the state and the server allow.
    pub(crate) async fn incremental_inner(
        &self,
        previous: Option<Vec<u8>>,
    ) -> Result<IncrementalRead, ReadError> {
        let started = Instant::now();
        let (mapping, mut session) = self.start().await?;
        let base = self.settings.base_dn.trim().to_string();
        let endpoint = session.endpoint.clone();
        let ctx = self.ctx(&endpoint);
        let ldap = &mut session.ldap;
        let server = probe(ldap, &ctx, &base).await?;
        let mark = self.mark_now(ldap, &ctx, &mapping, &server).await?;
        let Some(mark) = mark else {
            // Neither mechanism (or delta turned off): today's full read.
            return Ok(IncrementalRead {
                snapshot: self.read_session(mapping, session, started).await?,
                mode: ReadMode::Full,
                state: None,
            });
        };
        let fingerprint = self.fingerprint();
        let now = chrono::Utc::now().timestamp();
        let previous = previous
            .as_deref()
            .and_then(State::decode)
            .filter(|s| s.fingerprint == fingerprint);
        let due = previous
            .as_ref()
            .is_some_and(|s| now - s.full_read_at >= self.backstop_secs());
        let outcome = match previous {
            None => Err(DeltaError::Fallback("no usable state".into())),
            Some(_) if due => Err(DeltaError::Fallback("the full-read backstop is due".into())),
            Some(st) => {
                self.delta(ldap, &ctx, &mapping, &base, &server, st, &mark)
                    .await
            }
        };
        let (state, mode, changed, removed) = match outcome {
            Ok(Outcome::Unchanged(st)) => {
                // Nothing changed: the stored state stays as it is.
                let _ = tokio::time::timeout(Duration::from_secs(1), ldap.unbind()).await;
                return Ok(self.finish(started, st.items, ReadMode::Delta, None, 0, 0));
            }
            Ok(Outcome::Applied(d)) => {
                if let Some(hook) = &self.options.on_delta {
                    hook(d.delta.differ);
                }
                (d.state, ReadMode::Delta, d.delta.changed, d.delta.removed)
            }
            Err(DeltaError::Read(e)) => return Err(e),
            Err(DeltaError::Fallback(why)) => {
                tracing::info!(reason = %why, "reading everything");
                let items = self.full_items(ldap, &ctx, &mapping, &base).await?;
                let containers = self.container_ids(ldap, &ctx, &mapping, &base).await?;
                let state = State {
                    fingerprint,
                    full_read_at: now,
                    mark,
                    containers,
                    items,
                };
                (state, ReadMode::Full, 0, 0)
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), ldap.unbind()).await;
        let stored = ReadState::Compressed(state.encode()?);
        Ok(self.finish(started, state.items, mode, Some(stored), changed, removed))
    }

    fn finish(
        &self,
        started: Instant,
        items: Vec<Item>,
        mode: ReadMode,
        state: Option<ReadState>,
        changed: usize,
        removed: usize,
    ) -> IncrementalRead {
        let snapshot = snapshot_of(items);
        tracing::info!(
            mode = mode.as_str(),
            objects = snapshot.objects.len(),
            changed,
            removed,
            state_bytes = state.as_ref().map_or(0, |s| s.bytes().len()),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "directory read complete"
        );
        IncrementalRead {
            snapshot,
            mode,
            state,
        }
    }

    /// The mark to store with this read, taken before anything is read
    /// (changes made while the read goes on are seen again by the next
    /// one); `None` when the server offers no delta mechanism this reader
    /// can use, or delta reads are off.
    async fn mark_now(
        &self,
        ldap: &mut Ldap,
        ctx: &Ctx<'_>,
        mapping: &Mapping,
        server: &Server,
    ) -> Result<Option<Mark>, ReadError> {
        if self.settings.full_sync_hours == Some(0) {
            return Ok(None);
        }
        let id = mapping.id.to_ascii_lowercase();
        if let Some((usn, id_server)) = &server.usn {
            if id != "objectguid" {
                tracing::info!(id = %mapping.id, "delta reads need objectGUID as the id (tombstones keep no other): reading everything");
                return Ok(None);
            }
            let Some(nc) = &server.naming_context else {
                return Ok(None);
            };
            // Deletions are seen only if the bind account can list the
            // tombstones.
            let deleted = format!("CN=Deleted Objects,{nc}");
            let a = AttrSet::new(vec!["1.1".into()]);
            let (e, _) = read_one_with(
                ldap,
                ctx,
                &deleted,
                &a,
                SearchKind::BaseDn,
                vec![show_deleted()],
            )
            .await?;
            if e.is_none() {
                tracing::warn!(container = %deleted, "the bind account cannot read the Deleted Objects container, so deletions cannot be seen by a delta read: reading everything");
                return Ok(None);
            }
            return Ok(Some(Mark::Usn {
                server: id_server.clone(),
                usn: *usn,
            }));
        }
        if server.sync {
            if id != "entryuuid" {
                tracing::info!(id = %mapping.id, "content synchronisation identifies entries by entryUUID, not the id attribute: reading everything");
                return Ok(None);
            }
            let base = self.settings.base_dn.trim();
            let probe = sync_search(
                ldap,
                ctx,
                base,
                Scope::Base,
                "(objectClass=*)",
                &["1.1"],
                None,
            )
            .await?;
            let cookie = match probe {
                Ok(r) => r.cookie,
                Err(why) => {
                    tracing::warn!(reason = %why, "content synchronisation refused: reading everything");
                    return Ok(None);
                }
            };
            let Some(cookie) = cookie else {
                return Ok(None);
            };
            let server = match &server.naming_context {
                Some(nc) => csn_servers(ldap, ctx, nc).await?,
                None => String::new(),
            };
            return Ok(Some(Mark::Cookie { server, cookie }));
        }
        Ok(None)
    }

    /// The attributes and slots a search of `kind` reads.
    fn kind_attrs(&self, mapping: &Mapping, kind: Kind) -> AttrSet {
        match kind {
            Kind::Users => AttrSet::new(mapping.user_attributes()),
            Kind::Groups => {
                let mut a = AttrSet::new(mapping.group_attributes());
                if let Some(step) = self.options.member_range_step {
                    for m in &mapping.member {
                        a = a.with_range(m, step);
                    }
                }
                a
            }
            Kind::PublicFolders => AttrSet::new(mapping.mail_object_attributes()),
        }
    }

    /// The kinds this reader reads, with their filters.
    fn kinds<'m>(&self, mapping: &'m Mapping) -> Vec<(Kind, &'m str)> {
        let mut v = vec![
            (Kind::Users, mapping.user_filter.as_str()),
            (Kind::Groups, mapping.group_filter.as_str()),
        ];
        if self.settings.include_public_folders {
            if let Some(f) = &mapping.public_folder_filter {
                v.push((Kind::PublicFolders, f.as_str()));
            }
        }
        v
    }

    /// Reads the objects of `kind` that `filter` selects under `base`.
    async fn read_kind(
        &self,
        ldap: &mut Ldap,
        ctx: &Ctx<'_>,
        mapping: &Mapping,
        base: &str,
        kind: Kind,
        filter: &str,
    ) -> Result<(Vec<Item>, u64), ReadError> {
        let attrs = self.kind_attrs(mapping, kind);
        let slots = Slots::new(mapping, &attrs);
        let mut items = Vec::new();
        let mut ranged: Vec<(usize, usize, Range)> = Vec::new();
        let mut without_id = 0u64;
        paged_search(
            ldap,
            ctx,
            &Search {
                kind: kind.search(),
                base,
                filter,
                attrs: &attrs,
                controls: &[],
            },
            |e| {
                let pending: Vec<(usize, Range)> = e
                    .ranges
                    .iter()
                    .filter(|(slot, _)| slots.member.contains(slot))
                    .copied()
                    .collect();
                match item_of(&slots, e, kind) {
                    Some(it) => {
                        for (slot, r) in pending {
                            ranged.push((items.len(), slot, r));
                        }
                        items.push(it);
                    }
                    None => without_id += 1,
                }
                Ok(())
            },
        )
        .await?;
        self.rest_of_members(ldap, ctx, &attrs, &mut items, ranged)
            .await?;
        Ok((items, without_id))
    }

    async fn rest_of_members(
        &self,
        ldap: &mut Ldap,
        ctx: &Ctx<'_>,
        attrs: &AttrSet,
        items: &mut [Item],
        ranged: Vec<(usize, usize, Range)>,
    ) -> Result<(), ReadError> {
        for (i, slot, range) in ranged {
            let attr = attrs.names()[slot].clone();
            let dn = items[i].dn.clone();
            let rest =
                rest_of_range(ldap, ctx, &dn, &attr, range, self.options.member_range_step).await?;
            items[i]
                .members
                .extend(rest.into_iter().filter_map(super::build::text));
        }
        Ok(())
    }

    /// Every object, as a full read reads them.
    async fn full_items(
        &self,
        ldap: &mut Ldap,
        ctx: &Ctx<'_>,
        mapping: &Mapping,
        base: &str,
    ) -> Result<Vec<Item>, ReadError> {
        let mut read = ById::default();
        let mut without_id = 0u64;
        for (kind, filter) in self.kinds(mapping) {
            let (items, w) = self
                .read_kind(ldap, ctx, mapping, base, kind, filter)
                .await?;
            without_id += w;
            read.add(items);
        }
        if read.items.is_empty() && without_id > 0 {
            return Err(ReadError::Settings(format!(
                "none of the {without_id} entries found has the id attribute {:?}: check the attribute map",
                mapping.id
            )));
        }
        let mut items = read.items;
        self.apply_disabled_filter(ldap, ctx, mapping, base, items.iter_mut())
            .await?;
        Ok(items)
    }

    /// With `attributes.disabled_filter`: the server's own matching says
    /// which users are disabled (a read of the ids it selects).
    async fn apply_disabled_filter<'i>(
        &self,
        ldap: &mut Ldap,
        ctx: &Ctx<'_>,
        mapping: &Mapping,
        base: &str,
        items: impl Iterator<Item = &'i mut Item> + Send,
    ) -> Result<(), ReadError> {
        if let Some(disabled) = disabled_ids(ldap, ctx, mapping, base).await? {
            for it in items.filter(|i| i.kind == ObjectKind::User) {
                it.disabled = disabled.contains(&ObjectId(it.id.clone()));
                it.expires = None;
            }
        }
        Ok(())
    }

    /// The ids of the containers under the base DN.
    async fn container_ids(
        &self,
        ldap: &mut Ldap,
        ctx: &Ctx<'_>,
        mapping: &Mapping,
        base: &str,
    ) -> Result<Vec<String>, ReadError> {
        let attrs = AttrSet::new(vec![mapping.id.clone()]);
        let slots = Slots::new(mapping, &attrs);
        let mut ids = Vec::new();
        paged_search(
            ldap,
            ctx,
            &Search {
                kind: SearchKind::Groups,
                base,
                filter: CONTAINER_FILTER,
                attrs: &attrs,
                controls: &[],
            },
            |e| {
                if let Some(o) = slots.object(e, ObjectKind::Group) {
                    ids.push(o.id.0);
                }
                Ok(())
            },
        )
        .await?;
        Ok(ids)
    }

    /// A delta read on top of `st`: `None` when nothing changed.
    #[allow(clippy::too_many_arguments)]
    async fn delta(
        &self,
        ldap: &mut Ldap,
        ctx: &Ctx<'_>,
        mapping: &Mapping,
        base: &str,
        server: &Server,
        st: State,
        mark: &Mark,
    ) -> Result<Outcome, DeltaError> {
        match (&st.mark, mark) {
            (
                Mark::Usn {
                    server: a,
                    usn: old,
                },
                Mark::Usn {
                    server: b,
                    usn: new,
                },
            ) => {
                if a != b {
                    return Err(DeltaError::Fallback(
                        "another domain controller answered (or it was restored)".into(),
                    ));
                }
                if new < old {
                    return Err(DeltaError::Fallback(
                        "the domain controller's highestCommittedUSN went backwards".into(),
                    ));
                }
                if new == old {
                    return Ok(Outcome::Unchanged(st));
                }
                let (old, nc) = (*old, server.naming_context.as_deref().unwrap_or(base));
                self.usn_delta(ldap, ctx, mapping, base, nc, st, old, mark.clone())
                    .await
                    .map(Outcome::Applied)
            }
            (
                Mark::Cookie {
                    server: a,
                    cookie: old,
                },
                Mark::Cookie {
                    server: b,
                    cookie: new,
                },
            ) => {
                if a != b {
                    return Err(DeltaError::Fallback(
                        "the cookie was made by other servers".into(),
                    ));
                }
                if old == new {
                    return Ok(Outcome::Unchanged(st));
                }
                let old = old.clone();
                self.sync_delta(ldap, ctx, mapping, base, st, &old, mark.clone())
                    .await
                    .map(Outcome::Applied)
            }
            _ => Err(DeltaError::Fallback(
                "the stored mark is of another mechanism".into(),
            )),
        }
    }

    /// Active Directory: applies the objects changed since `old`.
    #[allow(clippy::too_many_arguments)]
    async fn usn_delta(
        &self,
        ldap: &mut Ldap,
        ctx: &Ctx<'_>,
        mapping: &Mapping,
        base: &str,
        nc: &str,
        st: State,
        old: u64,
        mark: Mark,
    ) -> Result<Applied, DeltaError> {
        let since = format!("(uSNChanged>={})", old + 1);
        let mut found: Vec<Item> = Vec::new();
        for (kind, filter) in self.kinds(mapping) {
            let f = format!("(&{filter}{since})");
            let (items, _) = self.read_kind(ldap, ctx, mapping, base, kind, &f).await?;
            found.extend(items);
        }
        // Every changed object of the naming context, tombstones included.
        let containers: HashSet<&str> = st.containers.iter().map(String::as_str).collect();
        let base_n = normalize_dn(base);
        let attrs = AttrSet::new(vec![mapping.id.clone(), "objectClass".into()]);
        let slots = Slots::new(mapping, &attrs);
        let mut changed: Vec<String> = Vec::new();
        let mut container_moved = None;
        let controls = [show_deleted()];
        paged_search(
            ldap,
            ctx,
            &Search {
                kind: SearchKind::Users,
                base: nc,
                filter: &since,
                attrs: &attrs,
                controls: &controls,
            },
            |e| {
                let container = e
                    .values(1)
                    .any(|c| CONTAINER_CLASSES.contains(&text_of(c).to_ascii_lowercase().as_str()));
                let dn = normalize_dn(&e.dn);
                if let Some(o) = slots.object(e, ObjectKind::Group) {
                    let under = dn == base_n || dn.ends_with(&format!(",{base_n}"));
                    if container && (under || containers.contains(o.id.as_str())) {
                        container_moved = Some(dn);
                    }
                    changed.push(o.id.0);
                }
                Ok(())
            },
        )
        .await?;
        if let Some(dn) = container_moved {
            return Err(DeltaError::Fallback(format!(
                "the container {dn} changed: the DNs of the objects below it may have"
            )));
        }
        self.applied(ldap, ctx, mapping, base, st, mark, found, changed, true)
            .await
    }

    /// Applies what a delta found to the state, with the new mark.
    #[allow(clippy::too_many_arguments)]
    async fn applied(
        &self,
        ldap: &mut Ldap,
        ctx: &Ctx<'_>,
        mapping: &Mapping,
        base: &str,
        mut st: State,
        mark: Mark,
        found: Vec<Item>,
        touched: Vec<String>,
        rename_members: bool,
    ) -> Result<Applied, DeltaError> {
        // The stored items stay in their vector, found through a table of
        // places, as a full read's do: no map of every item beside them
        // (issue 17).
        let mut dir = ById::default();
        dir.add(std::mem::take(&mut st.items));
        let (mut items, delta) = apply(dir, found, touched.into_iter(), rename_members);
        self.apply_disabled_filter(ldap, ctx, mapping, base, items.iter_mut())
            .await?;
        st.items = items;
        st.mark = mark;
        Ok(Applied { state: st, delta })
    }

    /// RFC 4533: applies the changes since `old`, kind by kind.
    #[allow(clippy::too_many_arguments)]
    async fn sync_delta(
        &self,
        ldap: &mut Ldap,
        ctx: &Ctx<'_>,
        mapping: &Mapping,
        base: &str,
        st: State,
        old: &[u8],
        mark: Mark,
    ) -> Result<Applied, DeltaError> {
        // A renamed or moved container changes its children's DNs without
        // their entries: such a change makes the read a full one.
        let r = sync_search(
            ldap,
            ctx,
            base,
            Scope::Subtree,
            CONTAINER_FILTER,
            &["1.1"],
            Some(old),
        )
        .await?
        .map_err(DeltaError::Fallback)?;
        // A session log reports every deletion, whatever the filter: only
        // the containers read before matter (one moved out of the base DN
        // takes the objects below it along).
        let moved_out = r.deleted.iter().any(|u| st.containers.contains(u));
        if r.changed > 0 || moved_out {
            return Err(DeltaError::Fallback(
                "a container under the base DN changed: the DNs of the objects below it may have"
                    .into(),
            ));
        }
        let mut found: Vec<Item> = Vec::new();
        let mut gone: Vec<String> = Vec::new();
        for (kind, filter) in self.kinds(mapping) {
            let attrs = self.kind_attrs(mapping, kind);
            let slots = Slots::new(mapping, &attrs);
            let r = sync_kind(ldap, ctx, base, filter, old, &slots, &attrs, kind).await?;
            let mut r = r.map_err(DeltaError::Fallback)?;
            self.rest_of_members(
                ldap,
                ctx,
                &attrs,
                &mut r.items,
                std::mem::take(&mut r.ranged),
            )
            .await?;
            let kind_o = kind.object();
            if r.present_phase {
                // Every object of this kind not reported is gone.
                let mut keep: HashSet<String> = r.present;
                keep.extend(r.items.iter().map(|i| i.id.clone()));
                gone.extend(
                    st.items
                        .iter()
                        .filter(|i| i.kind == kind_o && !keep.contains(&i.id))
                        .map(|i| i.id.clone()),
                );
            }
            gone.extend(r.deleted);
            found.extend(r.items);
        }
        self.applied(ldap, ctx, mapping, base, st, mark, found, gone, false)
            .await
    }
}

fn show_deleted() -> RawControl {
    RawControl {
        ctype: SHOW_DELETED_OID.into(),
        crit: true,
        val: None,
    }
}

/// The item of an entry, or `None` without an id.
fn item_of(slots: &Slots, e: &mut RawEntry, kind: Kind) -> Option<Item> {
    let (disabled, expires) = if kind == Kind::Users {
        slots.disabled_parts(e)
    } else {
        (false, None)
    };
    let members = if kind == Kind::Groups {
        slots.member_dns(e)
    } else {
        Vec::new()
    };
    let o = slots.object(e, kind.object())?;
    Some(Item::of(o, disabled, expires, members))
}

/// Adds `it` unless an object of a kind a full read keeps first already
/// has its id.
/// A full read's items, one per id, in the order first read, found by id
/// through a table of their places in the vector: no map of the items and
/// no second copy of their ids beside the read (issue 17: at 1,000,000
/// users the `HashMap<String, Item>` it replaced took about 760 MB beside
/// the 340 MB of items as read, the initial sync's peak).
#[derive(Default)]
struct ById {
    items: Vec<Item>,
    places: hashbrown::HashTable<usize>,
    keys: std::hash::RandomState,
}

impl ById {
    /// Adds one search's items. An id read before keeps its place and the
    /// item of the lower rank (users, then public folders, then groups;
    /// the first of equal rank).
    fn add(&mut self, items: Vec<Item>) {
        if !self.items.is_empty() {
            // Sized once per search, not rehashed as it grows (issue 17).
            let ById {
                items: have,
                places,
                keys,
            } = self;
            have.reserve(items.len());
            places.reserve(items.len(), |&i| keys.hash_one(have[i].id.as_str()));
            for it in items {
                self.upsert(it);
            }
            return;
        }
        // The first search (the users, the bulk): its own vector is kept
        // and indexed where it is, not moved item by item into another.
        self.items = items;
        let ById {
            items,
            places,
            keys,
        } = self;
        places.reserve(items.len(), |&i| keys.hash_one(items[i].id.as_str()));
        let mut repeated = Vec::new();
        for i in 0..items.len() {
            let hash = keys.hash_one(items[i].id.as_str());
            match places.find(hash, |&j| items[j].id == items[i].id) {
                Some(&j) => {
                    if Item::rank(items[i].kind) < Item::rank(items[j].kind) {
                        items.swap(i, j);
                    }
                    repeated.push(i);
                }
                None => {
                    places.insert_unique(hash, i, |&j| keys.hash_one(items[j].id.as_str()));
                }
            }
        }
        if !repeated.is_empty() {
            // Rare (an id twice in one search): drop the repeats and index
            // the places again.
            without(items, repeated);
            places.clear();
            for i in 0..items.len() {
                let hash = keys.hash_one(items[i].id.as_str());
                places.insert_unique(hash, i, |&j| keys.hash_one(items[j].id.as_str()));
            }
        }
    }

    /// The hash of `id`, and where its item is.
    fn find(&self, id: &str) -> (u64, Option<usize>) {
        let hash = self.keys.hash_one(id);
        let place = self.places.find(hash, |&i| self.items[i].id == id).copied();
        (hash, place)
    }

    /// Where the item of `id` is.
    fn place(&self, id: &str) -> Option<usize> {
        self.find(id).1
    }

    /// Adds an item whose id is not here yet (`hash` is its id's).
    fn push(&mut self, hash: u64, it: Item) {
        let ById {
            items,
            places,
            keys,
        } = self;
        items.push(it);
        places.insert_unique(hash, items.len() - 1, |&j| {
            keys.hash_one(items[j].id.as_str())
        });
    }

    /// Puts `it` in the place of its id, whatever was there, or at the end.
    fn put(&mut self, it: Item) {
        match self.find(&it.id) {
            (_, Some(i)) => self.items[i] = it,
            (hash, None) => self.push(hash, it),
        }
    }

    /// Adds `it`, or keeps the item of the lower rank where its id is.
    fn upsert(&mut self, it: Item) {
        match self.find(&it.id) {
            (_, Some(i)) => {
                if Item::rank(it.kind) < Item::rank(self.items[i].kind) {
                    self.items[i] = it;
                }
            }
            (hash, None) => self.push(hash, it),
        }
    }
}

/// Drops the items at `places` (ascending, each once) and keeps the
/// others in their order.
fn without(items: &mut Vec<Item>, places: Vec<usize>) {
    let mut at = 0;
    let mut next = places.into_iter().peekable();
    items.retain(|_| {
        let keep = next.peek() != Some(&at);
        if !keep {
            next.next();
        }
        at += 1;
        keep
    });
}

/// What a delta did.
pub(crate) struct Applied {
    state: State,
    delta: Delta,
}

/// What a delta found.
enum Outcome {
    /// Nothing changed since the stored state.
    Unchanged(State),
    Applied(Applied),
}

/// Applies a delta to the state's items: `found` (in scope now, in users,
/// public folders, groups order) replace what they had; the ids in
/// `touched` that were not found left the scope. With `rename_members`
/// (Active Directory), group member DNs follow renamed objects, as the
/// directory shows them.
fn apply(
    mut dir: ById,
    found: Vec<Item>,
    touched: impl Iterator<Item = String>,
    rename_members: bool,
) -> (Vec<Item>, Delta) {
    let mut seen: HashMap<String, ObjectKind> = HashMap::new();
    let mut renamed: HashMap<String, String> = HashMap::new();
    let changed = found.len();
    let mut differ = 0;
    for it in found {
        if let Some(k) = seen.get(&it.id) {
            if Item::rank(*k) <= Item::rank(it.kind) {
                continue;
            }
        }
        seen.insert(it.id.clone(), it.kind);
        match dir.place(&it.id) {
            Some(i) => {
                let old = &dir.items[i];
                let (o, n) = (normalize_dn(&old.dn), normalize_dn(&it.dn));
                if o != n {
                    renamed.insert(o, it.dn.clone());
                }
                differ += usize::from(*old != it);
            }
            None => differ += 1,
        }
        dir.put(it);
    }
    let mut gone: Vec<usize> = touched
        .filter(|id| !seen.contains_key(id))
        .filter_map(|id| dir.place(&id))
        .collect();
    gone.sort_unstable();
    gone.dedup();
    let removed = gone.len();
    let mut items = dir.items;
    without(&mut items, gone);
    if rename_members && !renamed.is_empty() {
        for g in items.iter_mut().filter(|i| i.kind == ObjectKind::Group) {
            for m in &mut g.members {
                if let Some(new) = renamed.get(&normalize_dn(m)) {
                    *m = new.clone();
                }
            }
        }
    }
    (
        items,
        Delta {
            changed,
            removed,
            differ: differ + removed,
        },
    )
}

/// What [`apply`] did.
struct Delta {
    /// Objects the delta found (changed, or only touched).
    changed: usize,
    /// Objects that left the scope.
    removed: usize,
    /// Objects that differ from the stored state (found unlike they were,
    /// new, or gone): a hint, as the disabled filter applies afterwards.
    differ: usize,
}

/// The outcome of one content-synchronisation search.
#[derive(Debug, Default)]
struct SyncResult {
    cookie: Option<Vec<u8>>,
    /// Entries reported added or modified.
    changed: u64,
    /// entryUUIDs reported deleted.
    deleted: Vec<String>,
}

/// One content-synchronisation search of a kind of object.
#[derive(Default)]
struct SyncKind {
    items: Vec<Item>,
    ranged: Vec<(usize, usize, Range)>,
    present: HashSet<String>,
    deleted: Vec<String>,
    present_phase: bool,
}

/// A message of a content-synchronisation search.
enum SyncMsg {
    /// An entry with its sync state (0 present, 1 add, 2 modify, 3 delete)
    /// and entryUUID.
    Entry(u8, String),
    /// A Sync Info message: uuids present (`false`) or deleted (`true`), or
    /// the end of a present phase.
    IdSet(bool, Vec<String>),
    PresentDone,
    Other,
}

fn uuid_text(b: &[u8]) -> String {
    match <[u8; 16]>::try_from(b) {
        Ok(a) => uuid::Uuid::from_bytes(a).to_string(),
        Err(_) => hex::encode(b),
    }
}

/// The Sync State control of an entry: state and entryUUID.
fn sync_state(ctrls: &[ldap3::controls::Control]) -> Option<(u8, String)> {
    let raw = ctrls
        .iter()
        .map(|c| &c.1)
        .find(|r| r.ctype == SYNC_STATE_OID)?;
    let (_, tag) = parse_tag(raw.val.as_deref()?).ok()?;
    let mut it = tag.expect_constructed()?.into_iter();
    let state = *it.next()?.expect_primitive()?.last()?;
    let uuid = it.next()?.expect_primitive()?;
    Some((state, uuid_text(&uuid)))
}

/// The Sync Done control of a result: cookie and refreshDeletes.
fn sync_done(res: &LdapResult) -> Option<(Option<Vec<u8>>, bool)> {
    let raw = res
        .ctrls
        .iter()
        .map(|c| &c.1)
        .find(|r| r.ctype == SYNC_DONE_OID)?;
    let Some(val) = raw.val.as_deref() else {
        return Some((None, false));
    };
    let (_, tag) = parse_tag(val).ok()?;
    let (mut cookie, mut deletes) = (None, false);
    for t in tag.expect_constructed()? {
        match (t.id, t.payload) {
            (4, PL::P(c)) => cookie = Some(c),
            (1, PL::P(b)) => deletes = b.first().is_some_and(|b| *b != 0),
            _ => return None,
        }
    }
    Some((cookie, deletes))
}

/// An intermediate response: a Sync Info message.
fn sync_info(tag: StructureTag) -> Option<SyncMsg> {
    let mut oid_ok = false;
    let mut value = None;
    for t in tag.expect_constructed()? {
        match t.id {
            0 => oid_ok = t.expect_primitive()? == SYNC_INFO_OID.as_bytes(),
            1 => value = Some(t.expect_primitive()?),
            _ => {}
        }
    }
    if !oid_ok {
        return Some(SyncMsg::Other);
    }
    let (_, v) = parse_tag(&value?).ok()?;
    if v.class != TagClass::Context {
        return None;
    }
    match v.id {
        0 => Some(SyncMsg::Other),
        1 => Some(SyncMsg::Other),
        2 => {
            // refreshPresent: its refreshDone ends the present phase.
            Some(SyncMsg::PresentDone)
        }
        3 => {
            let mut deletes = false;
            let mut uuids = Vec::new();
            for t in v.expect_constructed()? {
                match (t.id, t.payload) {
                    (4, PL::P(_)) => {}
                    (1, PL::P(b)) => deletes = b.first().is_some_and(|b| *b != 0),
                    (17, PL::C(set)) => {
                        for u in set {
                            uuids.push(uuid_text(&u.expect_primitive()?));
                        }
                    }
                    _ => return None,
                }
            }
            Some(SyncMsg::IdSet(deletes, uuids))
        }
        _ => None,
    }
}

/// The sync request control: refreshOnly, with `cookie` when continuing.
fn sync_request(cookie: Option<&[u8]>) -> RawControl {
    let mut c = RawControl::from(SyncRequest {
        mode: RefreshMode::RefreshOnly,
        cookie: cookie.map(<[u8]>::to_vec),
        reload_hint: false,
    });
    c.crit = true;
    c
}

/// Runs a content-synchronisation search, giving each message to `each`
/// (entries decoded into a [`RawEntry`] with `attrs`). The outer result is
/// the read; the inner error says why the delta cannot go on (the server
/// refused the control or asks for a full refresh).
#[allow(clippy::too_many_arguments)]
async fn sync_run(
    ldap: &mut Ldap,
    ctx: &Ctx<'_>,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &AttrSet,
    cookie: Option<&[u8]>,
    kind: SearchKind,
    mut each: impl FnMut(SyncMsg, &mut RawEntry) -> Result<(), ReadError>,
) -> Result<Result<(Option<Vec<u8>>, bool), String>, ReadError> {
    let t = ctx.timeout;
    ldap.with_controls(vec![sync_request(cookie)]);
    let names: Vec<&str> = attrs.request_names();
    let mut stream = tokio::time::timeout(t, ldap.streaming_search(base, scope, filter, names))
        .await
        .map_err(|_| ReadError::Timeout(format!("the sync search of {base}: no answer")))?
        .map_err(|e| lost(e, kind, 1, 0, t))?;
    let mut entry = RawEntry::default();
    let mut n = 0u64;
    loop {
        let item = tokio::time::timeout(t, stream.next())
            .await
            .map_err(|_| {
                ReadError::Timeout(format!(
                    "the sync search of {base}: no answer within {}s after {n} entries",
                    t.as_secs()
                ))
            })?
            .map_err(|e| lost(e, kind, 1, n, t))?;
        let Some(re) = item else { break };
        n += 1;
        if re.is_ref() {
            continue;
        }
        if re.is_intermediate() {
            let msg = sync_info(re.0)
                .ok_or_else(|| ReadError::Incomplete("an unreadable Sync Info message".into()))?;
            each(msg, &mut entry)?;
            continue;
        }
        let state = sync_state(&re.1).ok_or_else(|| {
            ReadError::Incomplete("an entry without a readable Sync State control".into())
        })?;
        parse_entry_into(&mut entry, re.0, attrs)
            .ok_or_else(|| ReadError::Incomplete("a malformed entry in a sync search".into()))?;
        each(SyncMsg::Entry(state.0, state.1), &mut entry)?;
    }
    let res = stream.finish().await;
    if res.rc == 0 {
        if let Some(hook) = ctx.hook {
            hook(&PageEvent {
                search: kind,
                page: 1,
                entries: n,
            });
        }
    }
    match res.rc {
        0 => {}
        SYNC_REFRESH_REQUIRED => {
            return Ok(Err(
                "the server asks for a full refresh (e-syncRefreshRequired)".into(),
            ))
        }
        4 | 11 | 12 | 53 => {
            return Ok(Err(format!(
                "the server refused the sync search (result {}): {}",
                res.rc,
                res.text.trim()
            )))
        }
        _ => return Err(result_error(&res, kind, base, 1, n)),
    }
    match sync_done(&res) {
        Some(done) => Ok(Ok(done)),
        None => Ok(Err(
            "the sync search ended without a Sync Done control".into()
        )),
    }
}

/// A sync search that only counts changes (used for the mark and for
/// containers).
async fn sync_search(
    ldap: &mut Ldap,
    ctx: &Ctx<'_>,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[&str],
    cookie: Option<&[u8]>,
) -> Result<Result<SyncResult, String>, ReadError> {
    let attrs = AttrSet::new(attrs.iter().map(|s| s.to_string()).collect());
    let mut out = SyncResult::default();
    let r = sync_run(
        ldap,
        ctx,
        base,
        scope,
        filter,
        &attrs,
        cookie,
        SearchKind::BaseDn,
        |m, _| {
            match m {
                SyncMsg::Entry(3, u) => out.deleted.push(u),
                SyncMsg::Entry(1 | 2, _) => out.changed += 1,
                SyncMsg::IdSet(true, us) => out.deleted.extend(us),
                _ => {}
            }
            Ok(())
        },
    )
    .await?;
    Ok(r.map(|(cookie, _)| {
        out.cookie = cookie;
        out
    }))
}

/// The changes to one kind of object since `cookie`.
#[allow(clippy::too_many_arguments)]
async fn sync_kind(
    ldap: &mut Ldap,
    ctx: &Ctx<'_>,
    base: &str,
    filter: &str,
    cookie: &[u8],
    slots: &Slots,
    attrs: &AttrSet,
    kind: Kind,
) -> Result<Result<SyncKind, String>, ReadError> {
    let mut out = SyncKind::default();
    let r = sync_run(
        ldap,
        ctx,
        base,
        Scope::Subtree,
        filter,
        attrs,
        Some(cookie),
        kind.search(),
        |m, e| {
            match m {
                SyncMsg::Entry(0, u) => {
                    out.present_phase = true;
                    out.present.insert(u);
                }
                SyncMsg::Entry(3, u) => out.deleted.push(u),
                SyncMsg::Entry(_, _) => {
                    let pending: Vec<(usize, Range)> = e
                        .ranges
                        .iter()
                        .filter(|(slot, _)| slots.member.contains(slot))
                        .copied()
                        .collect();
                    if let Some(it) = item_of(slots, e, kind) {
                        for (slot, r) in pending {
                            out.ranged.push((out.items.len(), slot, r));
                        }
                        out.items.push(it);
                    }
                }
                SyncMsg::IdSet(true, us) => out.deleted.extend(us),
                SyncMsg::IdSet(false, us) => {
                    out.present_phase = true;
                    out.present.extend(us);
                }
                SyncMsg::PresentDone => out.present_phase = true,
                SyncMsg::Other => {}
            }
            Ok(())
        },
    )
    .await?;
    Ok(r.map(|(_, refresh_deletes)| {
        if !refresh_deletes {
            out.present_phase = true;
        }
        out
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_events::{LdapPreset, LdapSettings, TlsSettings};
    use roster_testkit::{DirectoryData, Slapd, SlapdConfig, Style};
    use std::collections::BTreeMap;

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
            attributes: Default::default(),
            timeout_secs: 10,
            full_sync_hours: None,
        }
    }

    fn item(id: &str, kind: ObjectKind, dn: &str, members: &[&str]) -> Item {
        Item {
            kind,
            id: id.into(),
            dn: dn.into(),
            display_name: None,
            mail: Some(format!("{id}@x")),
            proxy_addresses: vec![],
            profile: Default::default(),
            disabled: false,
            expires: None,
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn b1_state_round_trips_and_rejects_other_bytes() {
        let st = State {
            fingerprint: "f".into(),
            full_read_at: 7,
            mark: Mark::Usn {
                server: "s".into(),
                usn: 42,
            },
            containers: vec!["c".into()],
            items: vec![item("u1", ObjectKind::User, "cn=a,dc=x", &[])],
        };
        let bytes = st.encode().unwrap();
        // Issue 17: compressed as it is written, in an LZ4 frame.
        assert!(bytes.starts_with(STATE_MAGIC_LZ4));
        let back = State::decode(&bytes).unwrap();
        assert_eq!(back.items, st.items);
        assert_eq!(back.mark, st.mark);
        // A state stored before (bincode after `RLD1`) still reads.
        let mut old = STATE_MAGIC.to_vec();
        old.extend(bincode::serde::encode_to_vec(&st, bincode::config::standard()).unwrap());
        assert_eq!(State::decode(&old).unwrap().items, st.items);
        // A damaged frame is no state, never a different one.
        for at in [bytes.len() / 2, bytes.len() - 2] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x5a;
            assert!(State::decode(&damaged).is_none(), "damaged at {at}");
        }
        assert!(State::decode(&bytes[..bytes.len() - 3]).is_none());
        assert!(State::decode(b"RLD1garbage").is_none());
        assert!(State::decode(br#"{"fingerprint":"f"}"#).is_none());
    }

    /// B1 (issue 17): a full read's items are kept one per id, in the
    /// order first read, the lower rank's item winning an id read twice
    /// (within a search or across searches), as the map of items it
    /// replaced kept them; the first search's vector is the result's.
    #[test]
    fn b1_a_full_reads_items_are_one_per_id_in_first_read_order_lowest_rank_kept() {
        let users = vec![
            item("u1", ObjectKind::User, "cn=1,dc=x", &[]),
            item("u2", ObjectKind::User, "cn=2,dc=x", &[]),
            item("u1", ObjectKind::User, "cn=1-again,dc=x", &[]),
            item("u3", ObjectKind::User, "cn=3,dc=x", &[]),
            item("x", ObjectKind::User, "cn=x-user,dc=x", &[]),
        ];
        let folders = vec![
            item("f1", ObjectKind::PublicFolder, "cn=f1,dc=x", &[]),
            item("u2", ObjectKind::PublicFolder, "cn=u2-folder,dc=x", &[]),
            item("y", ObjectKind::PublicFolder, "cn=y-folder,dc=x", &[]),
        ];
        let groups = vec![
            item("g1", ObjectKind::Group, "cn=g1,dc=x", &["cn=1,dc=x"]),
            item("y", ObjectKind::Group, "cn=y-group,dc=x", &[]),
            item("x", ObjectKind::Group, "cn=x-group,dc=x", &[]),
            item("g1", ObjectKind::Group, "cn=g1-again,dc=x", &[]),
        ];
        // The reference: the map and order the read kept before.
        let mut map: HashMap<String, Item> = HashMap::new();
        let mut order = Vec::new();
        for it in users.iter().chain(&folders).chain(&groups).cloned() {
            match map.get(&it.id) {
                Some(have) if Item::rank(have.kind) <= Item::rank(it.kind) => {}
                Some(_) => {
                    map.insert(it.id.clone(), it);
                }
                None => {
                    order.push(it.id.clone());
                    map.insert(it.id.clone(), it);
                }
            }
        }
        let want: Vec<Item> = order.iter().map(|id| map[id].clone()).collect();

        let buffer = users.as_ptr();
        let mut read = ById::default();
        read.add(users);
        assert_eq!(read.items.as_ptr(), buffer, "the first search's vector");
        read.add(folders);
        read.add(groups);
        assert_eq!(read.items, want);
        let dns: Vec<&str> = read.items.iter().map(|i| i.dn.as_str()).collect();
        assert_eq!(
            dns,
            [
                "cn=1,dc=x",
                "cn=2,dc=x",
                "cn=3,dc=x",
                "cn=x-user,dc=x",
                "cn=f1,dc=x",
                "cn=y-folder,dc=x",
                "cn=g1,dc=x"
            ]
        );

        // A lower rank read later takes the place of a higher one.
        let mut read = ById::default();
        read.add(vec![item("z", ObjectKind::Group, "cn=z-group,dc=x", &[])]);
        read.add(vec![item("z", ObjectKind::User, "cn=z-user,dc=x", &[])]);
        assert_eq!(read.items.len(), 1);
        assert_eq!(read.items[0].dn, "cn=z-user,dc=x");
    }

    #[test]
    fn b1_renames_rewrite_member_dns_on_ad_and_leavers_are_removed() {
        let mut dir = ById::default();
        dir.add(vec![
            item("u1", ObjectKind::User, "cn=a,ou=p,dc=x", &[]),
            item("u2", ObjectKind::User, "cn=b,ou=p,dc=x", &[]),
            item(
                "g1",
                ObjectKind::Group,
                "cn=g,dc=x",
                &["CN=A,OU=P,DC=X", "cn=b,ou=p,dc=x"],
            ),
        ]);
        let (items, d) = apply(
            dir,
            vec![
                item("u1", ObjectKind::User, "cn=a,ou=q,dc=x", &[]),
                // Issue 17: found as it was (a change to an attribute the
                // read does not map) is not a difference.
                item(
                    "g1",
                    ObjectKind::Group,
                    "cn=g,dc=x",
                    &["CN=A,OU=P,DC=X", "cn=b,ou=p,dc=x"],
                ),
            ],
            ["u1".to_string(), "u2".to_string(), "unknown".to_string()].into_iter(),
            true,
        );
        assert_eq!((d.changed, d.removed, d.differ), (2, 1, 2));
        // The stored order is kept; the leaver is gone.
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["u1", "g1"]);
        assert_eq!(items[1].members[0], "cn=a,ou=q,dc=x");
        let snap = snapshot_of(items);
        let g = snap.objects.iter().find(|o| o.id.0 == "g1").unwrap();
        assert_eq!(g.members, vec![ObjectId("u1".into())]);
    }

    /// Issue 17: a delta applied to the stored items in their vector gives
    /// what it gave applied to a map of them (the rule it replaces, kept
    /// here as the reference): the same items and counts, on repeats
    /// within the delta, new objects, leavers named twice or unknown, and
    /// renames; the stored order is kept, new objects at the end.
    #[test]
    fn b1_a_delta_applied_in_place_gives_what_the_map_gave() {
        fn by_map(
            stored: &[Item],
            found: &[Item],
            touched: &[String],
        ) -> (BTreeMap<String, Item>, (usize, usize, usize)) {
            let mut dir: HashMap<String, Item> =
                stored.iter().map(|i| (i.id.clone(), i.clone())).collect();
            let mut seen: HashMap<String, ObjectKind> = HashMap::new();
            let mut renamed: HashMap<String, String> = HashMap::new();
            let mut differ = 0;
            for it in found.iter().cloned() {
                if let Some(k) = seen.get(&it.id) {
                    if Item::rank(*k) <= Item::rank(it.kind) {
                        continue;
                    }
                }
                seen.insert(it.id.clone(), it.kind);
                match dir.get(&it.id) {
                    Some(old) => {
                        let (o, n) = (normalize_dn(&old.dn), normalize_dn(&it.dn));
                        if o != n {
                            renamed.insert(o, it.dn.clone());
                        }
                        differ += usize::from(*old != it);
                    }
                    None => differ += 1,
                }
                dir.insert(it.id.clone(), it);
            }
            let mut removed = 0;
            for id in touched {
                if !seen.contains_key(id) && dir.remove(id).is_some() {
                    removed += 1;
                }
            }
            for g in dir.values_mut().filter(|i| i.kind == ObjectKind::Group) {
                for m in &mut g.members {
                    if let Some(new) = renamed.get(&normalize_dn(m)) {
                        *m = new.clone();
                    }
                }
            }
            let counts = (found.len(), removed, differ + removed);
            (dir.into_iter().collect(), counts)
        }
        let stored: Vec<Item> = (0..30)
            .map(|n| {
                let kind = if n % 10 == 9 {
                    ObjectKind::Group
                } else {
                    ObjectKind::User
                };
                let members = ["cn=u3,ou=a,dc=x", "CN=U4,OU=A,DC=X"];
                let members: &[&str] = if kind == ObjectKind::Group {
                    &members
                } else {
                    &[]
                };
                item(
                    &format!("u{n}"),
                    kind,
                    &format!("cn=u{n},ou=a,dc=x"),
                    members,
                )
            })
            .collect();
        let found = vec![
            // Moved, and a member of the groups.
            item("u3", ObjectKind::User, "cn=u3,ou=b,dc=x", &[]),
            // Found as it was, then again as a group (the user stays).
            item("u5", ObjectKind::User, "cn=u5,ou=a,dc=x", &[]),
            item("u5", ObjectKind::Group, "cn=u5-group,dc=x", &[]),
            // New, first as a group, then as a user (the user wins).
            item("n1", ObjectKind::Group, "cn=n1-group,dc=x", &[]),
            item("n1", ObjectKind::User, "cn=n1,dc=x", &[]),
            item("n2", ObjectKind::User, "cn=n2,dc=x", &[]),
            // Changed in place.
            item("u7", ObjectKind::User, "cn=u7,ou=a,dc=x", &["x"]),
        ];
        let touched: Vec<String> = ["u3", "u11", "u11", "u12", "gone", "u5", "u29"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (want, counts) = by_map(&stored, &found, &touched);
        let mut dir = ById::default();
        dir.add(stored.clone());
        let (items, d) = apply(dir, found.clone(), touched.iter().cloned(), true);
        assert_eq!((d.changed, d.removed, d.differ), counts);
        assert_eq!(counts, (7, 3, 8));
        let got: BTreeMap<String, Item> = items.iter().map(|i| (i.id.clone(), i.clone())).collect();
        assert_eq!(got.len(), items.len(), "an id twice");
        assert_eq!(got, want);
        let order: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        let mut expected: Vec<String> = stored
            .iter()
            .map(|i| i.id.clone())
            .filter(|id| !["u11", "u12", "u29"].contains(&id.as_str()))
            .collect();
        expected.extend(["n1".to_string(), "n2".to_string()]);
        assert_eq!(order, expected);
        assert_eq!(got["u9"].members[0], "cn=u3,ou=b,dc=x");
    }

    #[test]
    fn b1_a_read_becomes_its_snapshot_in_its_own_buffer_groups_and_folders_included() {
        // Issue 17: the users are converted where the items were, and the
        // groups and folders fill the slots they left; every object is
        // there once, members resolved.
        let mut items: Vec<Item> = (0..50)
            .map(|n| {
                item(
                    &format!("u{n}"),
                    ObjectKind::User,
                    &format!("cn=u{n},dc=x"),
                    &[],
                )
            })
            .collect();
        items.insert(
            7,
            item(
                "g1",
                ObjectKind::Group,
                "cn=g,dc=x",
                &["CN=U3,DC=X", "cn=u40,dc=x"],
            ),
        );
        items.insert(30, item("f1", ObjectKind::PublicFolder, "cn=f,dc=x", &[]));
        items[12].expires = Some(1);
        let (buffer, len) = (items.as_ptr() as usize, items.len());
        let snap = snapshot_of(items);
        assert_eq!(snap.objects.as_ptr() as usize, buffer, "converted in place");
        assert_eq!(snap.objects.len(), len);
        let ids: Vec<&str> = snap.objects.iter().map(|o| o.id.as_str()).collect();
        let mut want: Vec<String> = (0..50).map(|n| format!("u{n}")).collect();
        want.extend(["f1".into(), "g1".into()]);
        assert_eq!(ids, want, "users in read order, then folders, then lists");
        let g = &snap.objects[51];
        assert_eq!(g.members, vec![ObjectId::new("u3"), ObjectId::new("u40")]);
        assert_eq!(g.kind, ObjectKind::Group);
        // An item past its shadow expiry day is a disabled object.
        let disabled: Vec<&str> = (snap.objects.iter().filter(|o| o.disabled))
            .map(|o| o.id.as_str())
            .collect();
        assert_eq!(disabled, ["u11"]);
    }

    async fn started() -> (Slapd, LdapReader, State) {
        let data = DirectoryData::new(Style::InetOrgPerson, "dc=example,dc=com", "example.org")
            .users(5)
            .groups(2, 2);
        let slapd = Slapd::start(SlapdConfig::inet_org_person().syncprov(None).data(data))
            .await
            .unwrap();
        let reader = LdapReader::new(settings(&slapd), slapd.reader_password().into());
        let r = reader.incremental_inner(None).await.unwrap();
        assert_eq!(r.mode, ReadMode::Full);
        let st = State::decode(r.state.unwrap().bytes()).unwrap();
        assert!(matches!(st.mark, Mark::Cookie { .. }));
        (slapd, reader, st)
    }

    async fn mode(reader: &LdapReader, st: &State) -> ReadMode {
        reader
            .incremental_inner(Some(st.encode().unwrap()))
            .await
            .unwrap()
            .mode
    }

    #[tokio::test]
    async fn b1_backstop_a_rejected_cookie_another_server_or_an_old_full_read_read_everything() {
        let (slapd, reader, st) = started().await;
        let admin = slapd.admin().await.unwrap();
        let user = DirectoryData::new(Style::InetOrgPerson, "dc=example,dc=com", "example.org")
            .user(0)
            .dn;
        admin
            .replace(&user, "description", &["a change: the cookie moves"])
            .await
            .unwrap();
        assert_eq!(mode(&reader, &st).await, ReadMode::Delta);

        // A cookie from the future: syncprov answers e-syncRefreshRequired.
        let mut future = st.clone();
        if let Mark::Cookie { cookie, .. } = &mut future.mark {
            *cookie = b"rid=000,csn=20991231000000.000000Z#000000#000#000000".to_vec();
        }
        assert_eq!(mode(&reader, &future).await, ReadMode::Full);

        // Made by other servers.
        let mut other = st.clone();
        if let Mark::Cookie { server, .. } = &mut other.mark {
            *server = "07f".into();
        }
        assert_eq!(mode(&reader, &other).await, ReadMode::Full);

        // The last full read is older than full_sync_hours (24).
        let mut old = st.clone();
        old.full_read_at -= 25 * 3600;
        assert_eq!(mode(&reader, &old).await, ReadMode::Full);

        // A USN mark on a server that offers content synchronisation.
        let mut usn = st.clone();
        usn.mark = Mark::Usn {
            server: "x".into(),
            usn: 1,
        };
        assert_eq!(mode(&reader, &usn).await, ReadMode::Full);
    }
}
