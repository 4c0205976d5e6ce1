#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! # roster-graph-emulator
//!
//! An in-process emulator of the **Microsoft identity platform token
//! endpoint** (client-credentials grant) and of the **Microsoft Graph v1.0**
//! directory endpoints Roster's Entra ID sync calls. Tests and benchmarks
//! start it on `127.0.0.1:0`, point the real client at [`GraphEmulator::login_base`]
//! and [`GraphEmulator::graph_base`], program tenants, data and faults, and
//! assert on the requests the client sent.
//!
//! ```no_run
//! # async fn demo() {
//! use roster_graph_emulator::{GraphEmulator, GenerateUsers, Fault};
//!
//! let emu = GraphEmulator::start().await;
//! let fx = emu.standard_tenant("contoso"); // tenant, app, secret, read permissions
//! fx.tenant.generate_users(GenerateUsers::new(2_500, "contoso.com"));
//! // token URL: {login_base}/{tenant}/oauth2/v2.0/token
//! let token_url = emu.token_url(&fx.tenant_id);
//! // Graph:     {graph_base}/users?$select=id,mail&$top=999
//! let users_url = format!("{}/users", emu.graph_base());
//! emu.inject(Fault::throttle(2).on_path("/users").after(1)); // page 2 answers 429
//! # let _ = (token_url, users_url);
//! # }
//! ```
//!
//! ## What is emulated, and from which documentation
//!
//! **Token endpoint** — `POST {login_base}/{tenant}/oauth2/v2.0/token`,
//! tenant given by id (GUID) or by any verified domain. Form-encoded
//! `grant_type=client_credentials`, `client_id`, `client_secret` (or HTTP
//! Basic), `scope=https://graph.microsoft.com/.default`. Success:
//! `{token_type: "Bearer", expires_in, ext_expires_in, access_token}`
//! (lifetime configurable). Errors carry the documented OAuth body
//! (`error`, `error_description` starting with the AADSTS code and ending
//! with trace/correlation ids and timestamp, `error_codes`, `timestamp`,
//! `trace_id`, `correlation_id`, `error_uri`): malformed tenant
//! AADSTS900023 (400 `invalid_request`); unknown tenant AADSTS90002 (400
//! `invalid_request`; the live service has lately also been seen to say
//! `invalid_tenant`); missing parameter AADSTS900144 (400
//! `invalid_request`); other grant types AADSTS70003 (400
//! `unsupported_grant_type`); scope without `/.default` AADSTS1002012 and
//! scope for another resource AADSTS70011 (400 `invalid_scope`); unknown
//! client id AADSTS700016 (400 `unauthorized_client`); no secret
//! AADSTS7000218, wrong or removed secret AADSTS7000215, expired secret
//! AADSTS7000222 (401 `invalid_client`). A GUID `client-request-id` is
//! echoed as `correlation_id`. Access tokens are JWT-shaped (real header
//! and v1 claims: `aud`, `iss`, `tid`, `appid`, `roles`, `exp`, ...) with a
//! random signature; Graph validates them by lookup. Application
//! permissions are baked into a token when it is issued, as in Entra:
//! granting or withdrawing one affects tokens issued afterwards (use
//! [`GraphEmulator::expire_access_tokens`] to force a new token).
//! Sources: [client credentials flow], [AADSTS error codes].
//!
//! **Graph authentication** — missing bearer token → 401
//! `InvalidAuthenticationToken` "Access token is empty."; expired token →
//! 401 "Access token has expired or is not yet valid." (with
//! `WWW-Authenticate`); unknown token → 401. A token without a permission
//! the call needs → 403 `Authorization_RequestDenied` "Insufficient
//! privileges to complete the operation.". Least-privileged permissions per
//! the API pages: users and `users/delta` need `User.Read.All`,
//! `User.ReadWrite.All` or `Directory.Read(Write).All`; groups,
//! `groups/delta` and members accept `GroupMember.Read.All`,
//! `Group.Read(Write).All` or `Directory.Read(Write).All`. Listing members
//! without a user-read permission returns user members with only
//! `@odata.type` and `id` (other properties `null`), as documented.
//!
//! **Collections** — `GET /users`, `/groups`, `/groups/{id}/members`,
//! `/groups/{id}/transitiveMembers` (OData casts `/microsoft.graph.user`
//! and `/microsoft.graph.group`), `/users/{id|userPrincipalName}`,
//! `/groups/{id}`, and the `$count` segments. Envelopes carry
//! `@odata.context`, `value`, `@odata.nextLink` (absolute, on the emulator,
//! repeating the other query options, with an opaque `$skiptoken`) and
//! `@odata.count`. Default user properties are those of the List users page
//! (`businessPhones`, `displayName`, `givenName`, `jobTitle`, `mail`,
//! `mobilePhone`, `officeLocation`, `preferredLanguage`, `surname`,
//! `userPrincipalName`, `id`); `accountEnabled`, `proxyAddresses`,
//! `companyName`, `department`, ... are "returned only on `$select`".
//! Members carry `@odata.type` (`#microsoft.graph.user` /
//! `#microsoft.graph.group`).
//! - `$select`: only the selected properties are returned (select `id`
//!   explicitly, as Graph does not add it on list reads); names are
//!   case-insensitive; an unknown name → 400 `BadRequest` "Parsing OData
//!   Select and Expand failed: Could not find a property named ...";
//!   single-object-only properties (`aboutMe`, `skills`, ...) on a
//!   collection → 501 `NotImplemented`. Properties Graph has but the
//!   emulator does not model (`onPremisesImmutableId`, `usageLocation`,
//!   `assignedLicenses`, ...) can be selected and come back `null` (or
//!   `[]`), and cannot be filtered on.
//! - `$top`: default page size 100; 1–999, otherwise 400
//!   `Request_UnsupportedQuery` "Invalid page size specified: '1000'. Must be
//!   between 1 and 999 inclusive."; `$skip` is refused.
//! - `$filter`: `eq`, `ne`, `ge`, `le`, `in`, `not`, `and`, `or`,
//!   parentheses, `startsWith`, `endsWith`, `null`, the `any` lambda on
//!   string collections (`proxyAddresses/any(p:startsWith(p,'smtp:'))`),
//!   `/$count eq|ne N`. String comparisons are case-insensitive. Each
//!   clause is checked against the per-property operator tables of the
//!   advanced-queries page: clauses that require advanced query parameters
//!   (`ne`, `not`, `endsWith`, `$count` in filters, and every operator on
//!   `companyName`, `mobilePhone`, `officeLocation`, ...) fail without both
//!   `ConsistencyLevel: eventual` and `$count=true` with 400
//!   `Request_UnsupportedQuery` (the documented "Operator 'endsWith' is not
//!   supported because the required parameters might be missing..."), and
//!   unsupported clauses with "Unsupported or invalid query filter clause
//!   specified for property ...". Unknown properties, type mismatches and
//!   syntax errors give the OData `BadRequest` "Invalid filter clause: ..."
//!   texts. Filtering members needs the advanced parameters.
//! - `$count=true` adds `@odata.count` to the first page only, and only
//!   with `ConsistencyLevel: eventual` (without it, it is silently ignored,
//!   as documented); the `$count` segment without the header → 400
//!   `Request_BadRequest` "$count is not currently supported.".
//! - `$search="property:term"` (`AND`/`OR`), tokenised prefix matching;
//!   without `ConsistencyLevel: eventual` → 400 `Request_UnsupportedQuery`.
//! - `$orderby` on `displayName` (and users' `userPrincipalName`); with
//!   `$filter` only in advanced queries.
//!
//! **Delta** — `GET /users/delta` and `/groups/delta` (also as
//! `microsoft.graph.delta`). The first round returns every current object
//! in pages linked by `@odata.nextLink` (`$skiptoken`) and ends with an
//! `@odata.deltaLink` (`$deltatoken`); query options of the first request
//! are encoded in the tokens. A later round returns only objects changed
//! since: new and restored objects in full, changed objects with the
//! selected properties (or, with `Prefer: return=minimal`, only the changed
//! ones), deleted objects as `{"id", "@removed": {"reason": "changed"}}`
//! (soft delete) or `"deleted"` (permanent). With `$select`, only changes to
//! selected properties count, as documented; `id` is always returned.
//! Groups carry `members@delta` (all members in the first round, then
//! additions and `@removed` removals) when no `$select` is given, when
//! `members` is selected, or with `$expand=members`. Scoping by
//! `$filter=id eq '...' or ...` (50 ids at most) works; other filters are
//! refused. `$deltatoken=latest` returns an empty page with a deltaLink.
//! Delta tokens older than 7 days (configurable) or invalidated by the test
//! answer **410 Gone** with `syncStateNotFound` (or `resyncRequired`) and a
//! `Location` header holding the initial query with an empty
//! `$deltatoken`.
//!
//! **Errors and throttling** — every Graph error has the documented body
//! `{"error": {"code", "message", "innerError": {"date", "request-id",
//! "client-request-id"}}}`; responses carry `request-id` and echo
//! `client-request-id`. Programmable [`Fault`]s: 429 with `Retry-After` and
//! the throttling page's sample body (`TooManyRequests`, `innerError.code`
//! "429"), 503 `serviceNotAvailable` with or without `Retry-After`, any
//! status/code/message, a connection dropped mid-body, and delays — for the
//! next N requests, optionally after letting some through, on one path, a
//! path prefix, or the token endpoint. [`GraphEmulator::set_latency`] slows
//! every request.
//!
//! **Test data** — tenants with several domains, apps with expiring
//! secrets and permissions, users and groups (add, update, disable,
//! soft-delete, restore, permanently delete), group memberships, and
//! deterministic bulk generation ([`Tenant::generate_users`]) sized for
//! 100,000-user benchmarks: objects live in ordered maps and a skiptoken is
//! the last id returned, so each page costs O(page + log n).
//!
//! Every request is recorded ([`RecordedRequest`]: method, path, query,
//! headers such as `ConsistencyLevel` and `client-request-id`, whether
//! `Authorization` was present, token form with the secret redacted,
//! status, fault), and token requests are counted so tests can assert
//! token caching. The emulator clock can be advanced
//! ([`GraphEmulator::advance_time`]) to expire tokens, secrets and delta
//! tokens without waiting.
//!
//! ## Deliberately left out
//!
//! Writes through Graph (POST/PATCH/DELETE: data is changed through this
//! crate's API instead), `$batch`, `$expand` on collections (`$expand`
//! limits of 20 items etc.), `$orderby` beyond the default-sortable
//! properties and on members, certificate and federated credentials
//! (`client_assertion` is refused), delegated flows and `/common`, national
//! clouds, the beta endpoint, replication delays and eventual consistency,
//! paging of very large `members@delta` lists across pages (all of a
//! group's member changes come in one object), the 1,000-object-per-page
//! delta sizes (delta pages hold [`GraphEmulator::set_delta_page_size`]
//! objects, default 100), real throttling limits (throttling happens only
//! when programmed), `x-ms-throttle-*` headers, and JWT signatures.
//!
//! ## Documentation relied on
//!
//! - [List users], [List groups], [List group members], [user resource],
//!   [group resource]
//! - [user: delta], [group: delta], [delta query overview], [delta query
//!   for users], [delta query for groups]
//! - [paging], [query parameters], [advanced queries] (and its
//!   per-property filter tables)
//! - [throttling], [throttling limits], [errors]
//! - [client credentials flow], [AADSTS error codes]
//!
//! [List users]: https://learn.microsoft.com/graph/api/user-list
//! [List groups]: https://learn.microsoft.com/graph/api/group-list
//! [List group members]: https://learn.microsoft.com/graph/api/group-list-members
//! [user resource]: https://learn.microsoft.com/graph/api/resources/user
//! [group resource]: https://learn.microsoft.com/graph/api/resources/group
//! [user: delta]: https://learn.microsoft.com/graph/api/user-delta
//! [group: delta]: https://learn.microsoft.com/graph/api/group-delta
//! [delta query overview]: https://learn.microsoft.com/graph/delta-query-overview
//! [delta query for users]: https://learn.microsoft.com/graph/delta-query-users
//! [delta query for groups]: https://learn.microsoft.com/graph/delta-query-groups
//! [paging]: https://learn.microsoft.com/graph/paging
//! [query parameters]: https://learn.microsoft.com/graph/query-parameters
//! [advanced queries]: https://learn.microsoft.com/graph/aad-advanced-queries
//! [throttling]: https://learn.microsoft.com/graph/throttling
//! [throttling limits]: https://learn.microsoft.com/graph/throttling-limits
//! [errors]: https://learn.microsoft.com/graph/errors
//! [client credentials flow]: https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
//! [AADSTS error codes]: https://learn.microsoft.com/entra/identity-platform/reference-error-codes

mod error;
mod filter;
mod graph;
mod identity;
mod json;
mod model;
mod reply;
mod state;
mod store;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::{Body as AxumBody, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};

pub use model::{Group, Permission, RemovedReason, User};
pub use state::{Endpoint, Fault, RecordedRequest};
pub use store::{DataError, GenerateUsers};

use error::GraphError;
use reply::{Body, Ctx, Reply};
use state::{lock, read, write, AppState, FaultAction, GoneKind, SecretState, Shared, TenantState};
use store::{guid, Directory};

/// A running emulator. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct GraphEmulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GraphEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

static SECRET_IDS: AtomicU64 = AtomicU64::new(1);

impl GraphEmulator {
    /// Binds `127.0.0.1:0` and serves both the token endpoint and Graph.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start() -> GraphEmulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("graph emulator: bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("graph emulator: local address");
        let shared = Arc::new(Shared::new(format!("http://{addr}")));
        let app = Router::new()
            .fallback(dispatch)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GraphEmulator { shared, addr, task }
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base of the identity platform: the token URL is
    /// `{login_base}/{tenant}/oauth2/v2.0/token`.
    pub fn login_base(&self) -> String {
        self.shared.base.clone()
    }

    /// Base of Graph v1.0, e.g. `http://127.0.0.1:PORT/v1.0`.
    pub fn graph_base(&self) -> String {
        self.shared.graph_base()
    }

    /// `{login_base}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.shared.base)
    }

    // -- tenants ------------------------------------------------------------

    /// Creates a tenant whose id is derived from `primary_domain`
    /// (deterministic), with that domain verified.
    ///
    /// # Panics
    /// If the domain is already used by another tenant.
    pub fn create_tenant(&self, primary_domain: &str) -> Tenant {
        let id = guid(fnv(&primary_domain.to_ascii_lowercase()), 0);
        self.create_tenant_with_id(&id, primary_domain)
    }

    /// Creates a tenant with the given id (a GUID) and primary domain.
    ///
    /// # Panics
    /// If the id or the domain is already in use.
    pub fn create_tenant_with_id(&self, tenant_id: &str, primary_domain: &str) -> Tenant {
        assert!(
            self.shared.tenant(tenant_id).is_none(),
            "tenant id {tenant_id} already exists"
        );
        assert!(
            self.shared.tenant(primary_domain).is_none(),
            "domain {primary_domain} already belongs to a tenant"
        );
        let label = primary_domain.split('.').next().unwrap_or(primary_domain);
        let mut display: Vec<char> = label.chars().collect();
        if let Some(c) = display.first_mut() {
            *c = c.to_ascii_uppercase();
        }
        let state = Arc::new(TenantState {
            id: tenant_id.to_ascii_lowercase(),
            display_name: display.into_iter().collect(),
            domains: RwLock::new(vec![primary_domain.to_ascii_lowercase()]),
            apps: Mutex::new(Vec::new()),
            dir: RwLock::new(Directory::new(fnv(tenant_id))),
            delta_epoch: Mutex::new((0, GoneKind::SyncStateNotFound)),
        });
        write(&self.shared.tenants).push(Arc::clone(&state));
        Tenant {
            shared: Arc::clone(&self.shared),
            state,
        }
    }

    /// Finds a tenant by id or verified domain.
    pub fn tenant(&self, id_or_domain: &str) -> Option<Tenant> {
        self.shared.tenant(id_or_domain).map(|state| Tenant {
            shared: Arc::clone(&self.shared),
            state,
        })
    }

    /// A ready-to-use tenant: `{name}.onmicrosoft.com` plus `{name}.com`,
    /// one application with a secret valid for a year and the
    /// `User.Read.All`, `Group.Read.All` and `GroupMember.Read.All`
    /// application permissions.
    pub fn standard_tenant(&self, name: &str) -> TenantFixture {
        let tenant = self.create_tenant(&format!("{name}.onmicrosoft.com"));
        tenant.add_domain(&format!("{name}.com"));
        let app = tenant.register_app("Roster Directory Sync");
        let secret = format!("{name}~{}", guid(fnv(name), 9).replace('-', ""));
        app.add_secret(&secret, Duration::from_secs(365 * 24 * 3600));
        app.grant(Permission::UserReadAll);
        app.grant(Permission::GroupReadAll);
        app.grant(Permission::GroupMemberReadAll);
        TenantFixture {
            tenant_id: tenant.id().to_string(),
            domain: format!("{name}.com"),
            client_id: app.client_id().to_string(),
            client_secret: secret,
            tenant,
            app,
        }
    }

    // -- settings and clock -------------------------------------------------

    /// Lifetime of access tokens issued from now on (`expires_in`;
    /// default 3599 s).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        lock(&self.shared.settings).token_lifetime = lifetime;
    }

    /// Objects per delta page (default 100).
    pub fn set_delta_page_size(&self, n: usize) {
        lock(&self.shared.settings).delta_page_size = n.max(1);
    }

    /// Age after which a delta token answers 410 (default 7 days).
    pub fn set_delta_token_max_age(&self, age: Duration) {
        lock(&self.shared.settings).delta_token_max_age =
            chrono::Duration::from_std(age).unwrap_or(chrono::Duration::days(7));
    }

    /// Latency added to every request (default none).
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared.settings).latency = latency;
    }

    /// Moves the emulator clock forward: tokens, secrets and delta tokens
    /// expire as if that time had passed.
    pub fn advance_time(&self, by: Duration) {
        *lock(&self.shared.clock_offset) +=
            chrono::Duration::from_std(by).expect("duration fits chrono");
    }

    /// The emulator clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.now()
    }

    /// Expires every access token issued so far (the next Graph call with
    /// one answers 401 "Access token has expired or is not yet valid.").
    pub fn expire_access_tokens(&self) {
        let past = self.shared.now() - chrono::Duration::seconds(1);
        for t in lock(&self.shared.tokens).values_mut() {
            t.expires = past;
        }
    }

    // -- faults ---------------------------------------------------------------

    /// Programs a fault (see [`Fault`]). Faults are consulted in the order
    /// injected; the first that matches answers.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Removes every programmed fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Number of programmed faults not yet used up.
    pub fn pending_faults(&self) -> usize {
        lock(&self.shared.faults).len()
    }

    // -- recording ----------------------------------------------------------

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The Graph requests received so far.
    pub fn graph_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.endpoint == Endpoint::Graph)
            .collect()
    }

    /// Forgets the recorded requests (counters are kept).
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Requests received by the token endpoint (successful or not).
    pub fn token_request_count(&self) -> u64 {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// Access tokens issued.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.tokens_issued.load(Ordering::SeqCst)
    }
}

/// What [`GraphEmulator::standard_tenant`] set up.
#[derive(Debug, Clone)]
pub struct TenantFixture {
    /// The tenant.
    pub tenant: Tenant,
    /// The registered application.
    pub app: App,
    /// Tenant id (GUID).
    pub tenant_id: String,
    /// The custom verified domain (`{name}.com`).
    pub domain: String,
    /// The application's client id.
    pub client_id: String,
    /// A valid client secret of the application.
    pub client_secret: String,
}

/// Handle on one tenant: its domains, applications and directory data.
///
/// Data methods panic on misuse (unknown ids, duplicate ids): they are test
/// set-up, where a panic is the clearest report.
#[derive(Debug, Clone)]
pub struct Tenant {
    shared: Arc<Shared>,
    state: Arc<TenantState>,
}

fn ok<T>(r: Result<T, DataError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("graph emulator: {e}"),
    }
}

impl Tenant {
    fn now(&self) -> String {
        self.shared.now().to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// The tenant id (GUID, lower case).
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// The tenant's display name (used in AADSTS700016 messages).
    pub fn display_name(&self) -> &str {
        &self.state.display_name
    }

    /// The verified domains.
    pub fn domains(&self) -> Vec<String> {
        read(&self.state.domains).clone()
    }

    /// Adds a verified domain (token requests may name the tenant by it).
    ///
    /// # Panics
    /// If another tenant already has the domain.
    pub fn add_domain(&self, domain: &str) {
        if let Some(other) = self.shared.tenant(domain) {
            assert_eq!(
                other.id, self.state.id,
                "domain {domain} already belongs to another tenant"
            );
            return;
        }
        write(&self.state.domains).push(domain.to_ascii_lowercase());
    }

    // -- applications ---------------------------------------------------------

    /// Registers an application with a derived client id, no secret and no
    /// permission.
    pub fn register_app(&self, display_name: &str) -> App {
        let n = lock(&self.state.apps).len() as u64;
        let client_id = guid(fnv(&format!("{}/{display_name}", self.state.id)), n + 1);
        self.register_app_with_id(&client_id, display_name)
    }

    /// Registers an application with the given client id.
    ///
    /// # Panics
    /// If the client id is already registered in this tenant.
    pub fn register_app_with_id(&self, client_id: &str, display_name: &str) -> App {
        let mut apps = lock(&self.state.apps);
        assert!(
            !apps
                .iter()
                .any(|a| a.client_id.eq_ignore_ascii_case(client_id)),
            "application {client_id} already registered"
        );
        apps.push(AppState {
            client_id: client_id.to_ascii_lowercase(),
            display_name: display_name.to_string(),
            secrets: Vec::new(),
            permissions: BTreeSet::new(),
            service_principal_id: guid(fnv(client_id), 2),
        });
        App {
            shared: Arc::clone(&self.shared),
            tenant: Arc::clone(&self.state),
            client_id: client_id.to_ascii_lowercase(),
        }
    }

    /// A registered application.
    pub fn app(&self, client_id: &str) -> Option<App> {
        lock(&self.state.apps)
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
            .map(|a| App {
                shared: Arc::clone(&self.shared),
                tenant: Arc::clone(&self.state),
                client_id: a.client_id.clone(),
            })
    }

    // -- users ----------------------------------------------------------------

    /// Adds a user; returns its id (assigned when `user.id` is empty).
    pub fn add_user(&self, user: User) -> String {
        let now = self.now();
        ok(write(&self.state.dir).add_user(user, &now))
    }

    /// Changes a user through `f`; returns whether anything changed. Delta
    /// reports the changed properties.
    pub fn update_user(&self, id: &str, f: impl FnOnce(&mut User)) -> bool {
        ok(write(&self.state.dir).update_user(id, f))
    }

    /// Enables or disables a user (`accountEnabled`).
    pub fn set_account_enabled(&self, id: &str, enabled: bool) {
        self.update_user(id, |u| u.account_enabled = enabled);
    }

    /// Deletes a user to the recycle bin (delta: `@removed` reason
    /// `changed`). The user leaves all its groups.
    pub fn delete_user(&self, id: &str) {
        ok(write(&self.state.dir).delete_user(id, RemovedReason::Changed))
    }

    /// Deletes a user permanently (delta: `@removed` reason `deleted`).
    pub fn delete_user_permanently(&self, id: &str) {
        ok(write(&self.state.dir).delete_user(id, RemovedReason::Deleted))
    }

    /// Restores a soft-deleted user (memberships are not restored).
    pub fn restore_user(&self, id: &str) {
        ok(write(&self.state.dir).restore_user(id))
    }

    /// A live user by id.
    pub fn user(&self, id: &str) -> Option<User> {
        read(&self.state.dir)
            .users
            .get(id)
            .filter(|r| r.live())
            .map(|r| r.obj.clone())
    }

    /// Ids of all live users, in the order Graph lists them.
    pub fn user_ids(&self) -> Vec<String> {
        read(&self.state.dir)
            .users
            .iter()
            .filter(|(_, r)| r.live())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Number of live users.
    pub fn user_count(&self) -> usize {
        read(&self.state.dir).live_users()
    }

    /// Bulk-creates users deterministically; returns their ids in creation
    /// order. 100,000 users take well under a second in release builds.
    pub fn generate_users(&self, spec: GenerateUsers) -> Vec<String> {
        let now = self.now();
        write(&self.state.dir).generate_users(&spec, &now)
    }

    // -- groups ---------------------------------------------------------------

    /// Adds a group; returns its id.
    pub fn add_group(&self, group: Group) -> String {
        let now = self.now();
        ok(write(&self.state.dir).add_group(group, &now))
    }

    /// Number of live groups.
    pub fn group_count(&self) -> usize {
        read(&self.state.dir).live_groups()
    }

    /// Changes a group through `f`; returns whether anything changed.
    pub fn update_group(&self, id: &str, f: impl FnOnce(&mut Group)) -> bool {
        ok(write(&self.state.dir).update_group(id, f))
    }

    /// Deletes a group to the recycle bin (delta reason `changed`).
    pub fn delete_group(&self, id: &str) {
        ok(write(&self.state.dir).delete_group(id, RemovedReason::Changed))
    }

    /// Deletes a group permanently (delta reason `deleted`).
    pub fn delete_group_permanently(&self, id: &str) {
        ok(write(&self.state.dir).delete_group(id, RemovedReason::Deleted))
    }

    /// A live group by id.
    pub fn group(&self, id: &str) -> Option<Group> {
        read(&self.state.dir)
            .groups
            .get(id)
            .filter(|r| r.live())
            .map(|r| r.obj.clone())
    }

    /// Replaces a group's direct members (user or group ids).
    pub fn set_group_members(&self, group: &str, members: &[&str]) {
        let ids: Vec<String> = members.iter().map(|s| s.to_string()).collect();
        ok(write(&self.state.dir).set_members(group, &ids))
    }

    /// Adds a direct member (no-op when already a member).
    pub fn add_group_member(&self, group: &str, member: &str) {
        ok(write(&self.state.dir).add_member(group, member))
    }

    /// Removes a direct member.
    pub fn remove_group_member(&self, group: &str, member: &str) {
        ok(write(&self.state.dir).remove_member(group, member))
    }

    /// A group's direct member ids, in id order.
    pub fn group_members(&self, group: &str) -> Vec<String> {
        read(&self.state.dir)
            .members
            .get(group)
            .map(|m| m.current.keys().cloned().collect())
            .unwrap_or_default()
    }

    // -- delta tokens ---------------------------------------------------------

    /// Invalidates every delta and delta-page token issued so far: using
    /// one answers 410 Gone `syncStateNotFound` ("the delta token is expired
    /// and data must be synchronized again").
    pub fn expire_delta_tokens(&self) {
        let mut e = lock(&self.state.delta_epoch);
        *e = (e.0 + 1, GoneKind::SyncStateNotFound);
    }

    /// Like [`Tenant::expire_delta_tokens`], answering `resyncRequired`
    /// (the "synchronization reset" of the delta-query overview).
    pub fn require_resync(&self) {
        let mut e = lock(&self.state.delta_epoch);
        *e = (e.0 + 1, GoneKind::ResyncRequired);
    }
}

/// Identifies a client secret of an [`App`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretId(u64);

/// Handle on an application registration.
#[derive(Debug, Clone)]
pub struct App {
    shared: Arc<Shared>,
    tenant: Arc<TenantState>,
    client_id: String,
}

impl App {
    fn with<R>(&self, f: impl FnOnce(&mut AppState) -> R) -> R {
        let mut apps = lock(&self.tenant.apps);
        let app = apps
            .iter_mut()
            .find(|a| a.client_id == self.client_id)
            .expect("application exists");
        f(app)
    }

    /// The application (client) id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Adds a client secret valid for `valid_for` from the emulator's now.
    pub fn add_secret(&self, value: &str, valid_for: Duration) -> SecretId {
        let expires = self.shared.now()
            + chrono::Duration::from_std(valid_for).unwrap_or(chrono::Duration::days(3650));
        self.add_secret_expiring_at(value, expires)
    }

    /// Adds a client secret expiring at `expires`.
    pub fn add_secret_expiring_at(&self, value: &str, expires: DateTime<Utc>) -> SecretId {
        let id = SECRET_IDS.fetch_add(1, Ordering::SeqCst);
        self.with(|a| {
            a.secrets.push(SecretState {
                id,
                value: value.to_string(),
                expires,
            })
        });
        SecretId(id)
    }

    /// Removes (revokes) a secret: using it answers AADSTS7000215.
    pub fn remove_secret(&self, id: SecretId) {
        self.with(|a| a.secrets.retain(|s| s.id != id.0));
    }

    /// Expires a secret now: using it answers AADSTS7000222.
    pub fn expire_secret(&self, id: SecretId) {
        let past = self.shared.now() - chrono::Duration::seconds(1);
        self.with(|a| {
            for s in a.secrets.iter_mut().filter(|s| s.id == id.0) {
                s.expires = past;
            }
        });
    }

    /// Grants an application permission (admin consent). Applies to tokens
    /// issued afterwards.
    pub fn grant(&self, permission: Permission) {
        self.with(|a| a.permissions.insert(permission));
    }

    /// Withdraws an application permission. Applies to tokens issued
    /// afterwards, as in Entra; combine with
    /// [`GraphEmulator::expire_access_tokens`] to take effect at once.
    pub fn revoke(&self, permission: Permission) {
        self.with(|a| a.permissions.remove(&permission));
    }

    /// The granted permissions.
    pub fn permissions(&self) -> Vec<Permission> {
        self.with(|a| a.permissions.iter().copied().collect())
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

fn classify(path: &str) -> (Endpoint, String, String) {
    if path == "/v1.0" || path.starts_with("/v1.0/") {
        return (
            Endpoint::Graph,
            path["/v1.0".len()..].to_string(),
            String::new(),
        );
    }
    let segs: Vec<&str> = path.split('/').collect();
    if segs.len() == 5
        && segs[0].is_empty()
        && segs[2] == "oauth2"
        && segs[3] == "v2.0"
        && segs[4] == "token"
        && !segs[1].is_empty()
    {
        return (Endpoint::Token, String::new(), segs[1].to_string());
    }
    (Endpoint::Other, String::new(), String::new())
}

fn fault_reply(shared: &Shared, fault: &Fault, endpoint: Endpoint, ctx: &Ctx) -> Reply {
    let mut reply = match (&fault.action, endpoint) {
        (FaultAction::DropConnection, _) => Reply {
            status: 200,
            headers: vec![("Content-Type".into(), reply::GRAPH_JSON.into())],
            body: Body::Broken(format!(
                "{{\"@odata.context\":\"{}/$metadata#users\",\"value\":[{{\"id\":\"",
                shared.graph_base()
            )),
            fault: None,
        },
        (FaultAction::Throttle(s), Endpoint::Token) => {
            identity::transient(shared, 429, Some(*s), ctx)
        }
        (FaultAction::Unavailable(s), Endpoint::Token) => identity::transient(shared, 503, *s, ctx),
        (FaultAction::Status { status, .. }, Endpoint::Token) => {
            identity::transient(shared, *status, None, ctx)
        }
        (FaultAction::Throttle(s), _) => Reply::graph_error(&GraphError::throttled(*s), ctx),
        (FaultAction::Unavailable(s), _) => Reply::graph_error(&GraphError::unavailable(*s), ctx),
        (
            FaultAction::Status {
                status,
                code,
                message,
            },
            _,
        ) => Reply::graph_error(&GraphError::new(*status, code, message.clone()), ctx),
        (FaultAction::Delay(_), _) => unreachable!("delays never answer"),
    };
    reply.fault = Some(fault.describe());
    reply
}

async fn dispatch(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 8 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().map(str::to_string);
    let pairs: Vec<(String, String)> = raw_query
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let headers = parts.headers;
    let header = |name: &str| -> Option<String> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = header("client-request-id").unwrap_or_else(|| request_id.clone());
    let (endpoint, rel_path, tenant_seg) = classify(&path);

    let latency = shared.settings().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (delay, fault) = shared.take_fault(endpoint, &rel_path);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let ctx = Ctx {
        request_id: request_id.clone(),
        client_request_id: client_request_id.clone(),
        now: shared.now(),
    };
    let form: Vec<(String, String)> = if endpoint == Endpoint::Token {
        shared.count_token_request();
        form_urlencoded::parse(&bytes).into_owned().collect()
    } else {
        Vec::new()
    };

    let mut reply = match &fault {
        Some(f) => fault_reply(&shared, f, endpoint, &ctx),
        None => match endpoint {
            Endpoint::Token if parts.method != Method::POST => {
                identity::wrong_method(&shared, parts.method.as_str(), &ctx)
            }
            Endpoint::Token => identity::token(&shared, &tenant_seg, &headers, &form, &ctx),
            Endpoint::Graph => {
                graph::handle(&shared, &parts.method, &rel_path, &pairs, &headers, &ctx)
            }
            Endpoint::Other => Reply::graph_error(
                &GraphError::new(
                    404,
                    "NotFound",
                    format!("No emulated endpoint at '{path}'."),
                ),
                &ctx,
            ),
        },
    };
    if endpoint != Endpoint::Token {
        reply
            .headers
            .push(("request-id".into(), request_id.clone()));
        reply
            .headers
            .push(("client-request-id".into(), client_request_id));
        reply.headers.push((
            "x-ms-ags-diagnostic".into(),
            "{\"ServerInfo\":{\"DataCenter\":\"Emulator\",\"Slice\":\"E\",\"Ring\":\"1\",\"ScaleUnit\":\"000\",\"RoleInstance\":\"EMULATOR\"}}".into(),
        ));
    }

    lock(&shared.requests).push(RecordedRequest {
        endpoint,
        method: parts.method.to_string(),
        path,
        query: raw_query,
        query_params: pairs,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        has_authorization: headers.contains_key("authorization"),
        consistency_level: header("consistencylevel"),
        client_request_id: header("client-request-id"),
        request_id,
        form: form
            .into_iter()
            .map(|(k, v)| {
                if k == "client_secret" {
                    (k, "<redacted>".to_string())
                } else {
                    (k, v)
                }
            })
            .collect(),
        status: reply.status,
        fault: reply.fault.clone(),
    });

    into_response(reply)
}

fn into_response(reply: Reply) -> Response {
    let body = match reply.body {
        Body::Json(s) | Body::Text(s) => AxumBody::from(s),
        Body::Broken(partial) => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from(partial)),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "graph emulator: connection dropped by fault",
                )),
            ];
            AxumBody::from_stream(futures::stream::iter(chunks))
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}
