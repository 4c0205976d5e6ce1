//! The Microsoft Entra ID reader (D6, B1): [`EntraReader`] implements
//! [`DirectoryReader`] over Microsoft Graph v1.0 with the client-credentials
//! grant.
//!
//! A **full read** lists `/users` (`$select` of exactly the mapped
//! properties, the administrator's `$filter`, advanced query parameters
//! when the filter needs them), the mail-enabled `/groups`, and each
//! group's `/members`, following every `@odata.nextLink`. Before it, when
//! delta sync is on, it takes `users/delta` and `groups/delta` links with
//! `$deltatoken=latest`, so changes made while it reads are seen again by
//! the next round.
//!
//! A **delta read** (B1) follows the stored delta links, applies the
//! changed, new and `@removed` objects (and `members@delta`) to the
//! directory as the previous read left it, and returns the complete
//! result: the reconciler always gets a whole snapshot. With a custom
//! filter, which Graph's delta query cannot apply, the round also lists
//! the ids the filter selects (`$select=id`), keeps those, and reads the
//! users that entered the scope whole. A full read runs
//! instead on the first run, when the stored state was read with other
//! settings, when `full_sync_hours` have passed since the last full read
//! (the backstop: only a full read is authoritative about scope), and
//! whenever Graph rejects the delta link (410 Gone).
//!
//! Any request that fails after its retries fails the whole read: never a
//! partial snapshot (D3.r).

mod client;
mod model;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use roster_domain::snapshot::{
    DirectoryReader, IncrementalRead, ReadError, ReadMode, ReadState, Snapshot, TestReport,
};
use roster_events::EntraSettings;
use sha2::{Digest, Sha256};

use self::client::{GetError, Graph, Page};
use self::model::{merge, DeltaState, GraphGroup, GraphUser, MemberRef, GROUP_SELECT, USER_SELECT};
use crate::outbound::OutboundPolicy;

/// The public cloud's identity platform.
pub const DEFAULT_LOGIN_ENDPOINT: &str = "https://login.microsoftonline.com";
/// The public cloud's Graph v1.0.
pub const DEFAULT_GRAPH_ENDPOINT: &str = "https://graph.microsoft.com/v1.0";
/// Hours between full reads when `full_sync_hours` is not set (B1).
pub const DEFAULT_FULL_SYNC_HOURS: u32 = 24;
/// Graph's largest page.
pub const MAX_PAGE_SIZE: u32 = 999;

/// How the reader talks to Graph, beyond its settings. The defaults are
/// what production uses.
#[derive(Debug, Clone)]
pub struct EntraOptions {
    /// `$top` of list requests, 1-999.
    pub page_size: u32,
    /// Retries of one request answered 429 / 503 (or 502 / 504).
    pub max_retries: u32,
    /// A `Retry-After` longer than this gives up at once (the run fails
    /// as throttled and the next one tries again).
    pub max_retry_after: Duration,
    /// First wait when a 503 carries no `Retry-After` (doubles each time).
    pub backoff: Duration,
    /// Per request.
    pub timeout: Duration,
    /// Groups whose members are listed at the same time.
    pub member_concurrency: usize,
    /// Where the client may connect (the service passes the operator's
    /// policy; the default is unrestricted).
    pub outbound: Arc<OutboundPolicy>,
}

impl Default for EntraOptions {
    fn default() -> Self {
        EntraOptions {
            page_size: MAX_PAGE_SIZE,
            max_retries: 5,
            max_retry_after: Duration::from_secs(300),
            backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(60),
            member_concurrency: 8,
            outbound: Arc::new(OutboundPolicy::unrestricted()),
        }
    }
}

/// Reads a Microsoft Entra ID tenant described by [`EntraSettings`], with a
/// client secret kept apart from them (D7: never logged, never in an
/// error, never in `Debug` output).
pub struct EntraReader {
    settings: EntraSettings,
    graph: Result<Graph, ReadError>,
}

impl std::fmt::Debug for EntraReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraReader")
            .field("settings", &self.settings)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// Why a delta round could not be used.
enum DeltaError {
    /// The delta link was rejected (410 Gone): read everything again.
    Gone(String),
    Read(ReadError),
}

impl From<ReadError> for DeltaError {
    fn from(e: ReadError) -> Self {
        DeltaError::Read(e)
    }
}

impl From<GetError> for DeltaError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Graph(f) if f.status == 410 => {
                DeltaError::Gone(format!("{}: {}", f.code, f.message))
            }
            other => DeltaError::Read(other.into_read()),
        }
    }
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_domain(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && s.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|t| t.len() >= 2 && t.chars().all(|c| c.is_ascii_alphabetic()))
}

fn check_endpoint(name: &str, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("{name} must be an absolute URL such as https://...: {e}"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(format!(
            "{name} must use https (the client secret and tokens cross it)"
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{name} must not carry a query or a fragment"));
    }
    Ok(())
}

/// Whether the endpoints are where the operator lets Roster connect
/// (https to the national clouds' hosts unless allowed otherwise, no
/// refused address): see [`crate::outbound`].
pub fn check_outbound(s: &EntraSettings, policy: &OutboundPolicy) -> Result<(), String> {
    policy.check_entra_endpoint(
        "login_endpoint",
        s.login_endpoint
            .as_deref()
            .unwrap_or(DEFAULT_LOGIN_ENDPOINT)
            .trim(),
        crate::outbound::LOGIN_HOSTS,
    )?;
    policy.check_entra_endpoint(
        "graph_endpoint",
        s.graph_endpoint
            .as_deref()
            .unwrap_or(DEFAULT_GRAPH_ENDPOINT)
            .trim(),
        crate::outbound::GRAPH_HOSTS,
    )
}

/// D6: checks Entra ID settings when they are saved or tested, naming the
/// field to fix.
pub fn validate_settings(s: &EntraSettings) -> Result<(), String> {
    let tenant = s.tenant.trim();
    if tenant.is_empty() {
        return Err("tenant is required: the directory (tenant) id, a GUID, or a verified domain such as contoso.onmicrosoft.com".into());
    }
    let lower = tenant.to_ascii_lowercase();
    if ["common", "organizations", "consumers"].contains(&lower.as_str()) {
        return Err(format!(
            "tenant must name one directory: '{tenant}' is a multi-tenant alias, which the client-credentials grant cannot use; give the directory (tenant) id or a verified domain"
        ));
    }
    if !is_guid(tenant) && !is_domain(tenant) {
        return Err(format!(
            "tenant '{tenant}' is neither a directory (tenant) id (a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47) nor a domain name such as contoso.onmicrosoft.com"
        ));
    }
    let client = s.client_id.trim();
    if client.is_empty() {
        return Err(
            "client_id is required: the application (client) id of the app registration, a GUID"
                .into(),
        );
    }
    if !is_guid(client) {
        return Err(format!(
            "client_id '{client}' is not an application (client) id: expected a GUID such as 00001111-aaaa-2222-bbbb-3333cccc4444"
        ));
    }
    if let Some(f) = &s.filter {
        let f = f.trim();
        if f.is_empty() {
            return Err("filter must not be empty: leave it out to read every user".into());
        }
        if f.len() > 2048 {
            return Err("filter is longer than 2048 characters".into());
        }
        let mut depth = 0i32;
        let mut quoted = false;
        for (i, c) in f.char_indices() {
            match c {
                '\'' => quoted = !quoted,
                '(' if !quoted => depth += 1,
                ')' if !quoted => {
                    depth -= 1;
                    if depth < 0 {
                        return Err(format!(
                            "filter is not a valid Graph $filter: ')' at position {} closes nothing",
                            i + 1
                        ));
                    }
                }
                _ => {}
            }
        }
        if quoted {
            return Err("filter is not a valid Graph $filter: a quoted string is not closed (write a quote inside a string as '')".into());
        }
        if depth != 0 {
            return Err("filter is not a valid Graph $filter: a '(' is not closed".into());
        }
    }
    if let Some(u) = &s.login_endpoint {
        check_endpoint("login_endpoint", u.trim())?;
    }
    if let Some(u) = &s.graph_endpoint {
        check_endpoint("graph_endpoint", u.trim())?;
    }
    if let Some(h) = s.full_sync_hours {
        if h > 24 * 30 {
            return Err(
                "full_sync_hours must be between 0 (every run reads everything) and 720 (30 days)"
                    .into(),
            );
        }
    }
    Ok(())
}

/// Whether a user filter needs Graph's advanced query parameters
/// (`ConsistencyLevel: eventual` and `$count=true`), per the advanced
/// queries page: `ne`, `not`, `endsWith`, `$count` in filters, and the
/// properties that support filtering only in advanced queries. A filter
/// this misses is retried with them when Graph says so.
pub fn needs_advanced(filter: &str) -> bool {
    let f = format!(" {} ", filter.to_ascii_lowercase());
    [" ne ", " not ", "not(", "endswith(", "$count"]
        .iter()
        .any(|p| f.contains(p))
        || [
            "companyname",
            "mobilephone",
            "officelocation",
            "employeeid",
            "employeehiredate",
            "onpremisessamaccountname",
            "faxnumber",
            "othermails",
            "preferreddatalocation",
            "showinaddresslist",
            "onpremisesextensionattributes",
        ]
        .iter()
        .any(|p| f.contains(p))
}

fn url(base: &str, path: &str, params: &[(&str, &str)]) -> Result<String, ReadError> {
    let mut u = reqwest::Url::parse(&format!("{base}{path}"))
        .map_err(|e| ReadError::Settings(format!("graph_endpoint is not usable: {e}")))?;
    if !params.is_empty() {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    Ok(u.to_string())
}

fn is_advanced_refusal(e: &GetError) -> bool {
    matches!(e, GetError::Graph(f) if f.status == 400
        && f.code == "Request_UnsupportedQuery"
        && (f.message.contains("required parameters might be missing")
            || f.message.contains("ConsistencyLevel")
            || f.message.to_ascii_lowercase().contains("advanced")))
}

impl EntraReader {
    /// A reader with the production options.
    pub fn new(settings: EntraSettings, client_secret: String) -> EntraReader {
        Self::with_options(settings, client_secret, EntraOptions::default())
    }

    /// A reader with explicit options.
    pub fn with_options(
        settings: EntraSettings,
        client_secret: String,
        mut options: EntraOptions,
    ) -> EntraReader {
        options.page_size = options.page_size.clamp(1, MAX_PAGE_SIZE);
        options.member_concurrency = options.member_concurrency.max(1);
        let graph = validate_settings(&settings)
            .and_then(|_| check_outbound(&settings, &options.outbound))
            .map_err(ReadError::Settings)
            .and_then(|_| {
                Graph::new(
                    settings
                        .login_endpoint
                        .as_deref()
                        .unwrap_or(DEFAULT_LOGIN_ENDPOINT)
                        .trim(),
                    settings
                        .graph_endpoint
                        .as_deref()
                        .unwrap_or(DEFAULT_GRAPH_ENDPOINT)
                        .trim(),
                    &settings.tenant,
                    &settings.client_id,
                    &client_secret,
                    options,
                )
            });
        EntraReader { settings, graph }
    }

    /// The settings it reads with.
    pub fn settings(&self) -> &EntraSettings {
        &self.settings
    }

    fn graph(&self) -> Result<&Graph, ReadError> {
        self.graph.as_ref().map_err(Clone::clone)
    }

    fn filter(&self) -> Option<&str> {
        self.settings
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
    }

    /// B1: delta rounds are used unless `full_sync_hours` is 0. With a
    /// custom filter, each round also lists the ids the filter selects
    /// (Graph's delta query cannot apply the filter itself).
    pub fn delta_enabled(&self) -> bool {
        self.settings.full_sync_hours != Some(0)
    }

    fn fingerprint(&self) -> String {
        let s = &self.settings;
        let text = format!(
            "v1|{}|{}|{}|{}|{}",
            s.tenant.trim().to_ascii_lowercase(),
            s.client_id.trim().to_ascii_lowercase(),
            s.filter.as_deref().unwrap_or("").trim(),
            s.login_endpoint
                .as_deref()
                .unwrap_or(DEFAULT_LOGIN_ENDPOINT)
                .trim(),
            s.graph_endpoint
                .as_deref()
                .unwrap_or(DEFAULT_GRAPH_ENDPOINT)
                .trim(),
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    /// Follows `@odata.nextLink` from `first` to the last page.
    async fn pages<T: serde::de::DeserializeOwned>(
        &self,
        first: String,
        advanced: bool,
        mut each: impl FnMut(Vec<T>),
    ) -> Result<Option<String>, GetError> {
        let g = self.graph()?;
        let mut next = Some(first);
        let mut pages = 0u32;
        while let Some(u) = next.take() {
            let page: Page<T> = g.get(&u, advanced).await?;
            pages += 1;
            each(page.value);
            match (page.next_link, page.delta_link) {
                (Some(n), _) => next = Some(n),
                (None, delta) => {
                    tracing::debug!(pages, "Graph collection read to its last page");
                    return Ok(delta);
                }
            }
        }
        Ok(None)
    }

    /// Every user the settings select.
    async fn read_users(&self) -> Result<Vec<GraphUser>, ReadError> {
        self.list_users(USER_SELECT).await
    }

    /// `/users` with `select` and the custom filter, every page; with the
    /// advanced query parameters when the filter needs them.
    async fn list_users<T: serde::de::DeserializeOwned>(
        &self,
        select: &str,
    ) -> Result<Vec<T>, ReadError> {
        let g = self.graph()?;
        let top = g_top(g);
        let mut users = Vec::new();
        let filter = self.filter();
        let mut advanced = filter.is_some_and(needs_advanced);
        loop {
            let mut params = vec![("$select", select), ("$top", top.as_str())];
            if let Some(f) = filter {
                params.push(("$filter", f));
            }
            if advanced {
                params.push(("$count", "true"));
            }
            let first = url(g.base(), "/users", &params)?;
            users.clear();
            match self.pages::<T>(first, advanced, |v| users.extend(v)).await {
                Ok(_) => return Ok(users),
                Err(e) if !advanced && filter.is_some() && is_advanced_refusal(&e) => {
                    tracing::info!("the user filter needs Graph's advanced query parameters; retrying with them");
                    advanced = true;
                }
                Err(e) => return Err(e.into_read()),
            }
        }
    }

    /// B1 with a custom filter: Graph's delta cannot apply it, so a delta
    /// round reports every changed user; which ones the filter selects is
    /// asked with an id-only list, and users that entered the scope are
    /// read whole.
    async fn rescope(
        &self,
        users: &mut std::collections::BTreeMap<String, GraphUser>,
        known_before: &BTreeSet<String>,
    ) -> Result<bool, ReadError> {
        let g = self.graph()?;
        let scope: BTreeSet<String> = self
            .list_users::<MemberRef>("id")
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect();
        let before = users.len();
        users.retain(|id, _| scope.contains(id));
        let mut changed = users.len() != before;
        let entered: Vec<String> = scope
            .iter()
            .filter(|id| !known_before.contains(*id))
            .cloned()
            .collect();
        if !entered.is_empty() {
            changed = true;
            let concurrency = g.member_concurrency();
            let read: Vec<GraphUser> = futures::stream::iter(entered)
                .map(|id| async move {
                    let u = url(
                        g.base(),
                        &format!("/users/{id}"),
                        &[("$select", USER_SELECT)],
                    )?;
                    g.get::<GraphUser>(&u, false)
                        .await
                        .map_err(GetError::into_read)
                })
                .buffer_unordered(concurrency)
                .try_collect()
                .await?;
            for u in read {
                users.insert(u.id.clone(), u);
            }
        }
        Ok(changed)
    }

    /// Every mail-enabled group, without members.
    async fn read_groups(&self) -> Result<Vec<GraphGroup>, ReadError> {
        let g = self.graph()?;
        let top = g_top(g);
        let first = url(
            g.base(),
            "/groups",
            &[
                ("$select", GROUP_SELECT),
                ("$filter", "mailEnabled eq true"),
                ("$top", top.as_str()),
            ],
        )?;
        let mut groups = Vec::new();
        self.pages::<GraphGroup>(first, false, |v| groups.extend(v))
            .await
            .map_err(GetError::into_read)?;
        groups.retain(GraphGroup::is_mail_enabled);
        Ok(groups)
    }

    /// Fills in the direct members of `groups` (all pages of each).
    async fn read_members(&self, groups: &mut [&mut GraphGroup]) -> Result<(), ReadError> {
        let g = self.graph()?;
        let top = g_top(g);
        let concurrency = self.graph()?.member_concurrency();
        let ids: Vec<String> = groups.iter().map(|x| x.id.clone()).collect();
        type Members = (String, Vec<String>, BTreeMap<String, String>);
        let lists: Vec<Members> = futures::stream::iter(ids)
            .map(|id| {
                let top = top.clone();
                async move {
                    let first = url(
                        g.base(),
                        &format!("/groups/{id}/members"),
                        &[("$select", "id,mail"), ("$top", top.as_str())],
                    )?;
                    let mut members = Vec::new();
                    let mut mail = BTreeMap::new();
                    self.pages::<MemberRef>(first, false, |v| {
                        for m in v {
                            mail.insert(m.id.clone(), m.mail.unwrap_or_default());
                            members.push(m.id);
                        }
                    })
                    .await
                    .map_err(GetError::into_read)?;
                    Ok::<_, ReadError>((id, members, mail))
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        let mut by_id: std::collections::HashMap<String, (Vec<String>, BTreeMap<String, String>)> =
            lists
                .into_iter()
                .map(|(id, m, mail)| (id, (m, mail)))
                .collect();
        for grp in groups.iter_mut() {
            let (members, mail) = by_id.remove(&grp.id).unwrap_or_default();
            grp.members = members;
            grp.member_mail = mail;
        }
        Ok(())
    }

    /// `$deltatoken=latest` links: "sync from now".
    async fn latest_links(&self) -> Result<(String, String), ReadError> {
        let g = self.graph()?;
        let users = url(
            g.base(),
            "/users/delta",
            &[("$select", USER_SELECT), ("$deltatoken", "latest")],
        )?;
        let groups = url(
            g.base(),
            "/groups/delta",
            &[
                ("$select", &format!("{GROUP_SELECT},members")),
                ("$deltatoken", "latest"),
            ],
        )?;
        let link = |p: Page<serde_json::Value>, what: &str| {
            p.delta_link.ok_or_else(|| {
                ReadError::Incomplete(format!("Microsoft Graph gave no {what} delta link"))
            })
        };
        let u: Page<serde_json::Value> = g.get(&users, false).await.map_err(GetError::into_read)?;
        let gr: Page<serde_json::Value> =
            g.get(&groups, false).await.map_err(GetError::into_read)?;
        Ok((link(u, "users")?, link(gr, "groups")?))
    }

    /// A full read; with `links`, the delta links are taken first.
    async fn full(&self, links: bool) -> Result<DeltaState, ReadError> {
        let (users_delta, groups_delta) = if links {
            self.latest_links().await?
        } else {
            (String::new(), String::new())
        };
        let users = self.read_users().await?;
        let mut groups = self.read_groups().await?;
        {
            let mut refs: Vec<&mut GraphGroup> = groups.iter_mut().collect();
            self.read_members(&mut refs).await?;
        }
        Ok(DeltaState {
            fingerprint: self.fingerprint(),
            users_delta,
            groups_delta,
            full_read_at: chrono::Utc::now().timestamp(),
            users: users.into_iter().map(|u| (u.id.clone(), u)).collect(),
            groups: groups.into_iter().map(|g| (g.id.clone(), g)).collect(),
        })
    }

    /// One delta round on top of `state`.
    /// The second value is whether the round changed anything.
    async fn delta(&self, mut state: DeltaState) -> Result<(DeltaState, bool), DeltaError> {
        type Item = serde_json::Map<String, serde_json::Value>;
        let bad = |e: serde_json::Error| {
            DeltaError::Read(ReadError::Incomplete(format!(
                "a delta item could not be read: {e}"
            )))
        };
        // Users.
        let mut items: Vec<Item> = Vec::new();
        let link = self
            .pages::<Item>(state.users_delta.clone(), false, |v| items.extend(v))
            .await?
            .ok_or_else(|| {
                ReadError::Incomplete("the users delta round ended without a delta link".into())
            })?;
        let (mut changed, mut removed) = (0u64, 0u64);
        let known_before: BTreeSet<String> = state.users.keys().cloned().collect();
        for item in &items {
            let Some(id) = item.get("id").and_then(|v| v.as_str()) else {
                continue;
            };
            if item.contains_key("@removed") {
                removed += u64::from(state.users.remove(id).is_some());
            } else {
                let merged: GraphUser = merge(state.users.get(id), item).map_err(bad)?;
                state.users.insert(id.to_string(), merged);
                changed += 1;
            }
        }
        state.users_delta = link;
        let rescoped = match self.filter() {
            Some(_) => self.rescope(&mut state.users, &known_before).await?,
            None => false,
        };
        // Groups, with members@delta.
        let mut items: Vec<Item> = Vec::new();
        let link = self
            .pages::<Item>(state.groups_delta.clone(), false, |v| items.extend(v))
            .await?
            .ok_or_else(|| {
                ReadError::Incomplete("the groups delta round ended without a delta link".into())
            })?;
        let mut refetch: BTreeSet<String> = BTreeSet::new();
        for item in &items {
            let Some(id) = item.get("id").and_then(|v| v.as_str()) else {
                continue;
            };
            if item.contains_key("@removed") {
                state.groups.remove(id);
                continue;
            }
            let base = state.groups.get(id);
            let known = base.is_some_and(GraphGroup::is_mail_enabled);
            let mut merged: GraphGroup = merge(base, item).map_err(bad)?;
            if let Some(serde_json::Value::Array(ms)) = item.get("members@delta") {
                for m in ms {
                    let Some(mid) = m.get("id").and_then(|v| v.as_str()) else {
                        continue;
                    };
                    merged.members.retain(|x| x != mid);
                    if m.get("@removed").is_none() {
                        merged.members.push(mid.to_string());
                    }
                }
            }
            if !merged.is_mail_enabled() {
                state.groups.remove(id);
                continue;
            }
            // A member the users do not hold (outside the user filter) whose
            // address is not known yet: the list's members are read again,
            // with their addresses (D6).
            let unknown_member = merged
                .members
                .iter()
                .any(|m| !state.users.contains_key(m) && !merged.member_mail.contains_key(m));
            merged.member_mail.retain(|m, _| merged.members.contains(m));
            if !known || unknown_member {
                // Newly mail-enabled (or new): members@delta is not a full list.
                refetch.insert(id.to_string());
            }
            state.groups.insert(id.to_string(), merged);
        }
        state.groups_delta = link;
        if !refetch.is_empty() {
            let mut refs: Vec<&mut GraphGroup> = state
                .groups
                .values_mut()
                .filter(|g| refetch.contains(&g.id))
                .collect();
            self.read_members(&mut refs).await?;
        }
        tracing::info!(
            users_changed = changed,
            users_removed = removed,
            groups_changed = items.len(),
            "Entra ID delta round applied"
        );
        let any = rescoped || changed + removed > 0 || !items.is_empty();
        Ok((state, any))
    }
}

fn g_top(g: &Graph) -> String {
    g.page_size().to_string()
}

#[async_trait::async_trait]
impl DirectoryReader for EntraReader {
    async fn read(&self) -> Result<Snapshot, ReadError> {
        Ok(self.read_incremental(None).await?.snapshot)
    }

    async fn test(&self) -> Result<TestReport, ReadError> {
        let g = self.graph()?;
        g.token().await?;
        let users = match self.filter() {
            Some(f) => url(g.base(), "/users/$count", &[("$filter", f)])?,
            None => url(g.base(), "/users/$count", &[])?,
        };
        let users = g.count(&users).await.map_err(GetError::into_read)?;
        let groups = url(
            g.base(),
            "/groups/$count",
            &[("$filter", "mailEnabled eq true")],
        )?;
        let groups = g.count(&groups).await.map_err(GetError::into_read)?;
        // Members are read with GroupMember.Read.All (or Group / Directory):
        // list one group's members to prove it.
        let one = url(
            g.base(),
            "/groups",
            &[
                ("$select", "id"),
                ("$filter", "mailEnabled eq true"),
                ("$top", "1"),
            ],
        )?;
        let page: Page<MemberRef> = g.get(&one, false).await.map_err(GetError::into_read)?;
        if let Some(first) = page.value.first() {
            let m = url(
                g.base(),
                &format!("/groups/{}/members", first.id),
                &[("$select", "id"), ("$top", "1")],
            )?;
            let _: Page<MemberRef> = g.get(&m, false).await.map_err(GetError::into_read)?;
        }
        Ok(TestReport {
            users,
            groups,
            details: format!(
                "tenant {}: {users} users and {groups} mail-enabled groups selected",
                self.settings.tenant.trim()
            ),
        })
    }

    async fn read_incremental(
        &self,
        previous: Option<&[u8]>,
    ) -> Result<IncrementalRead, ReadError> {
        let started = std::time::Instant::now();
        let delta = self.delta_enabled();
        let backstop = i64::from(
            self.settings
                .full_sync_hours
                .unwrap_or(DEFAULT_FULL_SYNC_HOURS),
        ) * 3600;
        let now = chrono::Utc::now().timestamp();
        let fingerprint = self.fingerprint();
        let previous: Option<DeltaState> = previous
            .filter(|_| delta)
            .and_then(|b| serde_json::from_slice(b).ok())
            .filter(|s: &DeltaState| s.fingerprint == fingerprint && !s.users_delta.is_empty());
        // An empty delta round leaves the stored state as it is: its link
        // still yields exactly the changes from now on, and rewriting the
        // whole directory for nothing is the dearest part of a quiet run.
        let mut keep_stored = false;
        let (state, mode) = match previous {
            Some(st) if now - st.full_read_at < backstop => match self.delta(st).await {
                Ok((s, changed)) => {
                    keep_stored = !changed;
                    (s, ReadMode::Delta)
                }
                Err(DeltaError::Gone(why)) => {
                    tracing::warn!(reason = %why, "Microsoft Graph rejected the delta link; reading everything");
                    metrics::counter!("roster_entra_delta_link_rejected_total").increment(1);
                    (self.full(true).await?, ReadMode::Full)
                }
                Err(DeltaError::Read(e)) => return Err(e),
            },
            Some(_) => {
                tracing::info!("the full-read backstop is due; reading everything");
                (self.full(true).await?, ReadMode::Full)
            }
            None => (self.full(delta).await?, ReadMode::Full),
        };
        // Serialized first, then turned into the snapshot as it is freed:
        // the directory is never held as state, snapshot and JSON at once.
        let stored = if delta && !keep_stored {
            let json = serde_json::to_vec(&state).map_err(|e| ReadError::Other(e.to_string()))?;
            Some(ReadState::Plain(json))
        } else {
            None
        };
        let snapshot = state.into_snapshot();
        let state = stored;
        tracing::info!(
            mode = mode.as_str(),
            objects = snapshot.objects.len(),
            seconds = started.elapsed().as_secs_f64(),
            "Entra ID read complete"
        );
        Ok(IncrementalRead {
            snapshot,
            mode,
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EntraSettings {
        EntraSettings {
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "00001111-aaaa-2222-bbbb-3333cccc4444".into(),
            include_disabled: false,
            filter: None,
            login_endpoint: None,
            graph_endpoint: None,
            full_sync_hours: None,
        }
    }

    #[test]
    fn d6_settings_are_checked_with_what_to_fix() {
        assert!(validate_settings(&settings()).is_ok());
        let mut s = settings();
        s.tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47".into();
        assert!(validate_settings(&s).is_ok());
        s.tenant = "not a tenant".into();
        assert!(validate_settings(&s).unwrap_err().contains("tenant"));
        s.tenant = "common".into();
        assert!(validate_settings(&s).unwrap_err().contains("multi-tenant"));
        let mut s = settings();
        s.client_id = "my-app".into();
        assert!(validate_settings(&s).unwrap_err().contains("client_id"));
        let mut s = settings();
        s.filter = Some("  ".into());
        assert!(validate_settings(&s).unwrap_err().contains("filter"));
        s.filter = Some("startsWith(department,'Sales'".into());
        assert!(validate_settings(&s).unwrap_err().contains("not closed"));
        s.filter = Some("department eq 'R''n''D'".into());
        assert!(validate_settings(&s).is_ok());
        let mut s = settings();
        s.graph_endpoint = Some("ftp://graph.example.com/v1.0".into());
        assert!(validate_settings(&s).unwrap_err().contains("https"));
        s.graph_endpoint = Some("http://graph.example.com/v1.0".into());
        assert!(validate_settings(&s).is_ok());
        let strict = OutboundPolicy::default();
        assert!(check_outbound(&s, &strict).unwrap_err().contains("https"));
        s.graph_endpoint = Some("http://127.0.0.1:8080/v1.0".into());
        assert!(check_outbound(&s, &strict).is_err());
        let emulator = OutboundPolicy::parse("http,loopback,127.0.0.1").unwrap();
        assert!(check_outbound(&s, &emulator).is_ok());
        s.graph_endpoint = None;
        assert!(check_outbound(&s, &strict).is_ok(), "the default endpoints");
    }

    #[test]
    fn d6_filters_that_need_advanced_queries_are_recognised() {
        assert!(needs_advanced("accountEnabled ne false"));
        assert!(needs_advanced("endsWith(mail,'@contoso.com')"));
        assert!(needs_advanced("NOT startsWith(displayName,'A')"));
        assert!(needs_advanced("companyName eq 'Contoso'"));
        assert!(!needs_advanced("department eq 'Sales'"));
        assert!(!needs_advanced("startsWith(displayName,'Ann')"));
    }
}
