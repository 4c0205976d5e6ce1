//! Directory sync: settings (D5, D7), test, Sync Now and dry run (D4, D3.t),
//! enable and disable (D1, D3.q), sync history (B4), held runs (D3.s), the
//! directory as last read (D3.o), exceptions and additions (D3.o, D3.p).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use roster_events::*;
use roster_projections::queries;
use roster_store::{from_micros, Secret};
use roster_sync::SettingsChange;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::dto::AuditView;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Scoped};
use crate::AppState;

/// Directory settings as saved (`PUT`) or tested (`POST .../test`). The
/// password and the client secret are write-only: never returned (D7).
/// LDAP (`kind: ldap`, D5) uses host ... timeout_secs; Microsoft Entra ID
/// (`kind: entra`, D6) uses tenant ... graph_endpoint; both use
/// full_sync_hours, the schedule, delete-after, guard and enable fields.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectorySettingsInput {
    /// `ldap` (LDAP / Active Directory) or `entra` (Microsoft Entra ID).
    pub kind: String,
    /// LDAP: the server's host name or IP address.
    pub host: Option<String>,
    /// LDAP: default 636 with SSL, 389 without.
    pub port: Option<u16>,
    /// LDAP: LDAPS; on by default.
    pub ssl: Option<bool>,
    /// LDAP: StartTLS on a plain connection (with `ssl: false`).
    #[serde(default)]
    pub starttls: bool,
    /// LDAP: certificates are verified unless this is explicitly false.
    pub verify_tls: Option<bool>,
    /// LDAP: a PEM CA certificate to trust besides the system's.
    pub ca_pem: Option<String>,
    /// LDAP: a DN or `user@domain`.
    pub bind_user: Option<String>,
    /// LDAP: required the first time and whenever host, port, ssl,
    /// starttls, verify_tls, ca_pem or bind_user changes (D7, else 400
    /// `secret_required`); omitted: the stored one is kept.
    pub password: Option<String>,
    /// LDAP: e.g. `ou=Staff,dc=example,dc=com`.
    pub base_dn: Option<String>,
    /// LDAP: an RFC 4515 filter. Entra ID: a Graph `$filter` applied to
    /// users only (not groups). Checked when saved.
    pub filter: Option<String>,
    /// Flag nothing for being disabled in the directory (D3.h).
    #[serde(default)]
    pub include_disabled: bool,
    /// LDAP: sync public folders.
    #[serde(default)]
    pub include_public_folders: bool,
    /// LDAP: `active_directory` (default), `openldap` or `389ds`.
    #[serde(default, deserialize_with = "choice")]
    #[schema(value_type = Option<String>)]
    pub preset: Option<LdapPreset>,
    /// LDAP: attribute names overriding the preset's (id, mail, proxy_addresses,
    /// first_name, last_name, home_phone, mobile, company, department, notes,
    /// member) and filters (user_filter, group_filter, disabled_filter: the
    /// disabled users, instead of the preset's rule).
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<AttributeMap>,
    /// LDAP: seconds (default 30).
    pub timeout_secs: Option<u32>,
    /// Entra ID: the directory (tenant) id, a GUID, or a verified domain.
    pub tenant: Option<String>,
    /// Entra ID: the application (client) id, a GUID.
    pub client_id: Option<String>,
    /// Entra ID: the client secret's value; required the first time and
    /// whenever tenant, client_id, login_endpoint or graph_endpoint changes
    /// (D7, else 400 `secret_required`); omitted: the stored one is kept.
    pub client_secret: Option<String>,
    /// Entra ID: the identity platform (default
    /// `https://login.microsoftonline.com`; national clouds).
    pub login_endpoint: Option<String>,
    /// Entra ID: Microsoft Graph v1.0 (default `https://graph.microsoft.com/v1.0`).
    pub graph_endpoint: Option<String>,
    /// Hours between full reads while delta reads are used (default 24;
    /// 0 reads everything at every run) (B1): Entra ID delta links, Active
    /// Directory `uSNChanged`, OpenLDAP content synchronisation.
    pub full_sync_hours: Option<u32>,
    /// `6h` (default), `12h`, `24h`, `3d` or `7d`.
    #[serde(default, deserialize_with = "choice")]
    #[schema(value_type = Option<String>)]
    pub poll_interval: Option<PollInterval>,
    /// `7d` (default), `14d`, `30d` or `never`.
    #[serde(default, deserialize_with = "choice")]
    #[schema(value_type = Option<String>)]
    pub delete_after: Option<DeleteAfter>,
    /// The mass-deletion guard (D3.s); default: more than 500 users, or more
    /// than 10% of the directory users when that is more than 5.
    #[schema(value_type = Option<Object>)]
    pub guard: Option<GuardSettings>,
    /// Enable (true) or disable (false) sync with this save.
    pub enabled: Option<bool>,
    /// Confirms that enabling this directory disables the other one (D1).
    #[serde(default)]
    pub confirm_switch: bool,
}

/// D7: the password and the client secret never reach a log line, even
/// through `Debug`.
impl std::fmt::Debug for DirectorySettingsInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorySettingsInput")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// A JSON body that may be left out (an empty body).
fn optional_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<Option<T>> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    crate::inputs::from_slice(body).map(Some)
}

/// A text setting without the white space around it; empty when absent.
fn trimmed(v: &Option<String>) -> String {
    v.as_deref().unwrap_or("").trim().to_string()
}

/// An enumeration a request names by one of its values.
trait Choices: serde::de::DeserializeOwned {
    /// The values it takes, as an error message lists them.
    const CHOICES: &'static str;

    /// The value `text` (around white space) names, if any.
    fn named(text: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(text.trim().to_string())).ok()
    }
}

impl Choices for DirectoryKind {
    const CHOICES: &'static str = "ldap, entra";
}
impl Choices for LdapPreset {
    const CHOICES: &'static str = "active_directory, openldap, 389ds";
}
impl Choices for PollInterval {
    const CHOICES: &'static str = "6h, 12h, 24h, 3d, 7d";
}
impl Choices for DeleteAfter {
    const CHOICES: &'static str = "7d, 14d, 30d, never";
}

fn parse_enum<T: Choices>(field: &str, value: &str) -> ApiResult<T> {
    T::named(value).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            roster_sync::codes::INVALID_REQUEST,
            format!("{field} must be one of {}", T::CHOICES),
        )
    })
}

/// A body field holding one of an enumeration's values; the error lists
/// them (the body's reader names the field).
fn choice<'de, D: serde::Deserializer<'de>, T: Choices>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) => T::named(&text)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("must be one of {}", T::CHOICES))),
    }
}

impl DirectorySettingsInput {
    /// The LDAP connection (D5) and the password, refusing Entra ID settings.
    fn ldap(&self) -> ApiResult<(Connection, Option<String>)> {
        for (name, set) in [
            ("tenant", self.tenant.is_some()),
            ("client_id", self.client_id.is_some()),
            ("client_secret", self.client_secret.is_some()),
            ("login_endpoint", self.login_endpoint.is_some()),
            ("graph_endpoint", self.graph_endpoint.is_some()),
        ] {
            if set {
                return Err(ApiError::invalid(format!(
                    "{name} is an Entra ID setting; this request is for kind ldap"
                )));
            }
        }
        let ssl = self.ssl.unwrap_or(true);
        let connection = Connection::Ldap(LdapSettings {
            host: trimmed(&self.host),
            port: self.port.unwrap_or(if ssl { 636 } else { 389 }),
            ssl,
            starttls: self.starttls,
            tls: TlsSettings {
                verify: self.verify_tls.unwrap_or(true),
                ca_pem: self.ca_pem.clone().filter(|p| !p.trim().is_empty()),
            },
            bind_user: trimmed(&self.bind_user),
            base_dn: trimmed(&self.base_dn),
            filter: self.filter.clone().filter(|f| !f.trim().is_empty()),
            include_disabled: self.include_disabled,
            include_public_folders: self.include_public_folders,
            preset: self.preset.unwrap_or_default(),
            attributes: self.attributes.clone().unwrap_or_default(),
            timeout_secs: self.timeout_secs.unwrap_or(30),
            full_sync_hours: self.full_sync_hours,
        });
        Ok((connection, self.password.clone()))
    }

    /// The Entra ID connection (D6) and the client secret, refusing LDAP
    /// settings.
    fn entra(&self) -> ApiResult<(Connection, Option<String>)> {
        for (name, set) in [
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("ssl", self.ssl.is_some()),
            ("starttls", self.starttls),
            ("verify_tls", self.verify_tls.is_some()),
            ("ca_pem", self.ca_pem.is_some()),
            ("bind_user", self.bind_user.is_some()),
            ("password", self.password.is_some()),
            ("base_dn", self.base_dn.is_some()),
            ("include_public_folders", self.include_public_folders),
            ("preset", self.preset.is_some()),
            ("attributes", self.attributes.is_some()),
            ("timeout_secs", self.timeout_secs.is_some()),
        ] {
            if set {
                return Err(ApiError::invalid(format!(
                    "{name} is an LDAP setting; this request is for kind entra"
                )));
            }
        }
        let endpoint = |u: &Option<String>| {
            u.as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string)
        };
        // D6: a filter left empty means every user; one given must
        // say something (checked by the sync service).
        let connection = Connection::Entra(EntraSettings {
            tenant: trimmed(&self.tenant),
            client_id: trimmed(&self.client_id),
            include_disabled: self.include_disabled,
            filter: self.filter.clone(),
            login_endpoint: endpoint(&self.login_endpoint),
            graph_endpoint: endpoint(&self.graph_endpoint),
            full_sync_hours: self.full_sync_hours,
        });
        Ok((connection, self.client_secret.clone()))
    }

    fn into_config(self) -> ApiResult<(DirectoryConfig, SettingsChange)> {
        let (connection, secret) =
            match self.kind.trim() {
                "ldap" => self.ldap()?,
                "entra" => self.entra()?,
                _ => return Err(ApiError::invalid(
                    "kind must be ldap (LDAP or Active Directory) or entra (Microsoft Entra ID)",
                )),
            };
        let config = DirectoryConfig {
            connection,
            poll_interval: self.poll_interval.unwrap_or(PollInterval::Hours6),
            delete_after: self.delete_after.unwrap_or(DeleteAfter::Days7),
            guard: self.guard.unwrap_or_default(),
        };
        let change = SettingsChange {
            secret: secret.map(Secret::new),
            enable: self.enabled,
            confirm_switch: self.confirm_switch,
        };
        Ok((config, change))
    }
}

/// LDAP settings as stored, without the password.
#[derive(Debug, Serialize, ToSchema)]
pub struct LdapView {
    pub host: String,
    pub port: u16,
    pub ssl: bool,
    pub starttls: bool,
    pub verify_tls: bool,
    pub ca_pem_set: bool,
    pub bind_user: String,
    /// Whether a password is stored; the password itself is never returned.
    pub password_set: bool,
    pub base_dn: String,
    pub filter: Option<String>,
    pub include_disabled: bool,
    pub include_public_folders: bool,
    /// `active_directory`, `openldap` or `389ds`.
    #[schema(value_type = String)]
    pub preset: LdapPreset,
    #[schema(value_type = Object)]
    pub attributes: AttributeMap,
    pub timeout_secs: u32,
    /// Hours between full reads while delta reads are used (B1); null: 24.
    pub full_sync_hours: Option<u32>,
    /// `6h`, `12h`, `24h`, `3d` or `7d`.
    #[schema(value_type = String)]
    pub poll_interval: PollInterval,
    /// `7d`, `14d`, `30d` or `never`.
    #[schema(value_type = String)]
    pub delete_after: DeleteAfter,
    #[schema(value_type = Object)]
    pub guard: GuardSettings,
}

/// Entra ID settings as stored, without the client secret (D6, D7).
#[derive(Debug, Serialize, ToSchema)]
pub struct EntraView {
    pub tenant: String,
    pub client_id: String,
    /// Whether a client secret is stored; the secret itself is never returned.
    pub client_secret_set: bool,
    pub include_disabled: bool,
    pub filter: Option<String>,
    pub login_endpoint: Option<String>,
    pub graph_endpoint: Option<String>,
    /// Hours between full reads while delta sync is used (B1); null: 24.
    pub full_sync_hours: Option<u32>,
    /// `6h`, `12h`, `24h`, `3d` or `7d`.
    #[schema(value_type = String)]
    pub poll_interval: PollInterval,
    /// `7d`, `14d`, `30d` or `never`.
    #[schema(value_type = String)]
    pub delete_after: DeleteAfter,
    #[schema(value_type = Object)]
    pub guard: GuardSettings,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunningView {
    #[schema(value_type = String)]
    pub run_id: roster_events::RunId,
    pub started_at: DateTime<Utc>,
    #[schema(value_type = String)]
    pub trigger: SyncTrigger,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HeldView {
    #[schema(value_type = String)]
    pub run_id: roster_events::RunId,
    pub would_flag: u64,
}

/// The customer's directory sync.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryView {
    /// `ldap`, `entra` or null when sync is disabled.
    #[schema(value_type = Option<String>)]
    pub enabled: Option<DirectoryKind>,
    pub ldap: Option<LdapView>,
    pub entra: Option<EntraView>,
    pub running: Option<RunningView>,
    /// A run held by the mass-deletion guard, waiting for confirm or discard.
    pub held: Option<HeldView>,
    pub last_started_at: Option<DateTime<Utc>>,
}

async fn view(state: &AppState, customer: CustomerId) -> ApiResult<DirectoryView> {
    let d = state.sync.directory(customer).await?;
    let ldap = d
        .configs
        .get(&DirectoryKind::Ldap)
        .and_then(|c| match &c.connection {
            Connection::Ldap(s) => Some(LdapView {
                host: s.host.clone(),
                port: s.port,
                ssl: s.ssl,
                starttls: s.starttls,
                verify_tls: s.tls.verify,
                ca_pem_set: s.tls.ca_pem.is_some(),
                bind_user: s.bind_user.clone(),
                password_set: d.secret_set.contains(&DirectoryKind::Ldap),
                base_dn: s.base_dn.clone(),
                filter: s.filter.clone(),
                include_disabled: s.include_disabled,
                include_public_folders: s.include_public_folders,
                preset: s.preset,
                attributes: s.attributes.clone(),
                timeout_secs: s.timeout_secs,
                full_sync_hours: s.full_sync_hours,
                poll_interval: c.poll_interval,
                delete_after: c.delete_after,
                guard: c.guard,
            }),
            _ => None,
        });
    let entra = d
        .configs
        .get(&DirectoryKind::Entra)
        .and_then(|c| match &c.connection {
            Connection::Entra(s) => Some(EntraView {
                tenant: s.tenant.clone(),
                client_id: s.client_id.clone(),
                client_secret_set: d.secret_set.contains(&DirectoryKind::Entra),
                include_disabled: s.include_disabled,
                filter: s.filter.clone(),
                login_endpoint: s.login_endpoint.clone(),
                graph_endpoint: s.graph_endpoint.clone(),
                full_sync_hours: s.full_sync_hours,
                poll_interval: c.poll_interval,
                delete_after: c.delete_after,
                guard: c.guard,
            }),
            _ => None,
        });
    Ok(DirectoryView {
        enabled: d.enabled,
        ldap,
        entra,
        running: d.running.as_ref().map(|r| RunningView {
            run_id: r.run_id.into(),
            started_at: r.started_at,
            trigger: r.trigger,
        }),
        held: d.held.as_ref().map(|h| HeldView {
            run_id: h.run_id.into(),
            would_flag: h.would_flag,
        }),
        last_started_at: d.last_started_at,
    })
}

/// The directory sync settings (never the password) and state.
#[utoipa::path(get, path = "/v1/customers/{c}/directory", tag = "directory",
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, body = DirectoryView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
) -> ApiResult<Json<DirectoryView>> {
    Ok(Json(view(&state, customer).await?))
}

/// Saves the directory settings (D5), checked before saving (filter per
/// RFC 4515); the password is sealed apart from the log (D7).
#[utoipa::path(put, path = "/v1/customers/{c}/directory", tag = "directory", request_body = DirectorySettingsInput,
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, body = DirectoryView), (status = 400, description = "invalid_request: the message names the field; secret_required: a connection field changed without the password / client secret (D7)", body = ErrorBody),
        (status = 409, description = "confirm_switch", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiJson(body): ApiJson<DirectorySettingsInput>,
) -> ApiResult<Json<DirectoryView>> {
    let (config, change) = body.into_config()?;
    state
        .written(
            state
                .sync
                .save_settings(&caller.meta(customer, &state), config, change),
        )
        .await?;
    Ok(Json(view(&state, customer).await?))
}

/// Tests a connection: the settings in the body (before saving them) or the
/// stored ones. A missing password / client secret is taken from the stored
/// settings only when every connection field is as saved (D7). Every test
/// is recorded in the audit trail (`DirectoryTested`).
#[utoipa::path(post, path = "/v1/customers/{c}/directory/test", tag = "directory", request_body(content = DirectorySettingsInput, description = "optional"),
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, description = "the outcome: ok, or the specific failure (LDAP: name_resolution, refused, timeout, tls, bind_rejected, base_dn_not_found; Entra ID: tenant_not_found, client_id_not_found, secret_rejected, secret_expired, permission, invalid_filter, throttled)", body = TestView),
        (status = 400, description = "invalid_request (the message names the field); secret_required (a connection field differs from the saved settings and the password / client secret was not given, D7)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn test(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    body: axum::body::Bytes,
) -> ApiResult<Json<TestView>> {
    let candidate = match optional_json::<DirectorySettingsInput>(&body)? {
        Some(b) => {
            let (config, change) = b.into_config()?;
            Some((config, change.secret))
        }
        None => None,
    };
    let o = state
        .written(state.sync.test(&caller.meta(customer, &state), candidate))
        .await?;
    Ok(Json(TestView {
        ok: o.ok,
        code: o.code,
        message: o.message,
        users: o.users,
        groups: o.groups,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestView {
    pub ok: bool,
    pub code: Option<String>,
    pub message: String,
    pub users: Option<u64>,
    pub groups: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// Preview the run: every change it would make, without making it (D3.t).
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncStarted {
    #[schema(value_type = String)]
    pub run_id: roster_events::RunId,
    pub message: String,
}

/// Sync Now (D4): starts a run (202) or answers that one is running (409
/// `sync_running`). A run held by the guard is superseded by the new run
/// (D3.s). With `dry_run=true` returns the plan and changes nothing.
#[utoipa::path(post, path = "/v1/customers/{c}/directory/sync", tag = "directory",
    params(("c" = String, Path, description = "customer id"), SyncQuery),
    responses((status = 202, body = SyncStarted), (status = 200, description = "dry run: the plan", body = Object),
        (status = 409, description = "sync_running, sync_not_enabled", body = ErrorBody),
        (status = 422, description = "dry run: directory_read_failed", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sync(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiQuery(q): ApiQuery<SyncQuery>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    if q.dry_run {
        return match state.sync.dry_run(customer).await? {
            Ok(plan) => Ok((
                StatusCode::OK,
                Json(serde_json::to_value(plan).map_err(ApiError::internal)?),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                roster_sync::codes::DIRECTORY_READ_FAILED,
                format!("{} ({})", e, e.code()),
            )),
        };
    }
    let run = state
        .sync
        .spawn(customer, SyncTrigger::Manual, caller.actor())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            serde_json::to_value(SyncStarted {
                run_id: run.into(),
                message: "the sync has started".into(),
            })
            .map_err(ApiError::internal)?,
        ),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableInput {
    /// `ldap` or `entra`; default: the configured directory (required
    /// when both are configured).
    pub kind: Option<String>,
    /// Confirms that enabling this directory disables the other one (D1).
    #[serde(default)]
    pub confirm_switch: bool,
}

/// Enables directory sync (D1: enabling one while the other is enabled
/// needs `confirm_switch`).
#[utoipa::path(post, path = "/v1/customers/{c}/directory/enable", tag = "directory", request_body(content = EnableInput, description = "optional"),
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, body = DirectoryView), (status = 409, description = "not_configured, confirm_switch", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn enable(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    body: axum::body::Bytes,
) -> ApiResult<Json<DirectoryView>> {
    let body = optional_json::<EnableInput>(&body)?.unwrap_or(EnableInput {
        kind: None,
        confirm_switch: false,
    });
    let kind = match body.kind.as_deref() {
        Some(k) => parse_enum::<DirectoryKind>("kind", k)?,
        None => {
            let d = state.sync.directory(customer).await?;
            let mut configured = d.configs.keys().copied();
            match (configured.next(), configured.next()) {
                (Some(only), None) => only,
                (Some(_), Some(_)) => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        roster_sync::codes::INVALID_REQUEST,
                        "both LDAP and Entra ID are configured: say which to enable (kind: ldap or entra)",
                    ))
                }
                (None, _) => {
                    return Err(roster_sync::SyncError::from(
                        roster_domain::DirectoryError::NotConfigured(DirectoryKind::Ldap),
                    )
                    .into())
                }
            }
        }
    };
    state
        .written(
            state
                .sync
                .enable(&caller.meta(customer, &state), kind, body.confirm_switch),
        )
        .await?;
    Ok(Json(view(&state, customer).await?))
}

/// Disables directory sync (D3.q): every user is kept; existing flags still
/// expire; no new flags are raised.
#[utoipa::path(post, path = "/v1/customers/{c}/directory/disable", tag = "directory",
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, body = DirectoryView)),
    security(("bearer" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
) -> ApiResult<Json<DirectoryView>> {
    state
        .written(state.sync.disable(&caller.meta(customer, &state)))
        .await?;
    Ok(Json(view(&state, customer).await?))
}

/// A sync run (B4).
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    #[schema(value_type = String)]
    pub run_id: roster_events::RunId,
    #[schema(value_type = String)]
    pub kind: roster_events::DirectoryKind,
    /// scheduled, manual or confirmed.
    #[schema(value_type = String)]
    pub trigger: roster_events::SyncTrigger,
    /// running, completed, failed, held, confirmed, discarded, superseded.
    #[schema(value_type = String)]
    pub status: roster_projections::directory::RunStatus,
    pub started_at: DateTime<Utc>,
    /// When the run's outcome was visible: for a completed run, once its
    /// changes could be read (issue 11).
    pub finished_at: Option<DateTime<Utc>>,
    /// `finished_at - started_at` in seconds.
    pub duration_secs: Option<f64>,
    /// Why a run failed (stable code) and the reason in words.
    pub code: Option<String>,
    pub reason: Option<String>,
    #[schema(value_type = Object)]
    pub counts: Option<SyncCounts>,
    pub would_flag: Option<i64>,
    pub directory_users: Option<i64>,
    /// T3: directory users take the customer beyond its seat limit.
    pub over_seat_limit: Option<bool>,
    /// For a confirmed held run: the run that applied it; for a superseded
    /// one: the run that replaced it.
    #[schema(value_type = Option<String>)]
    pub decided_by_run: Option<roster_events::RunId>,
    /// The run's live progress (issue 15), in the run's own view
    /// (`GET .../syncs/{run}`) once it recorded any: left out of lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<RunProgressView>,
}

/// Where a run is, as the replica running it last recorded it (at each
/// phase change and at most once a second): the same the console's Sync
/// Now shows. It stays as the run left it once the run ended (`status`
/// says how).
#[derive(Debug, Serialize, ToSchema)]
pub struct RunProgressView {
    /// `read` (reading the directory), `plan` (planning the changes) or
    /// `apply` (applying them).
    pub phase: String,
    /// While reading: the entries received so far (LDAP reports them page
    /// by page); from the `plan` phase on: the objects of the complete read.
    pub read: Option<u64>,
    /// What the plan does (the counts of `counts`), once planned.
    #[schema(value_type = Option<Object>)]
    pub planned: Option<SyncCounts>,
    /// The planned changes.
    pub steps: u64,
    /// How many of them are applied: 0 until the run's append commits,
    /// then `steps` (a run's changes land together, in one append).
    pub applied: u64,
    pub updated_at: DateTime<Utc>,
}

impl From<roster_projections::directory::RunProgress> for RunProgressView {
    fn from(p: roster_projections::directory::RunProgress) -> Self {
        RunProgressView {
            phase: p.phase.as_str().to_string(),
            read: p.read,
            planned: p.planned,
            steps: p.steps,
            applied: p.applied,
            updated_at: from_micros(p.updated_at),
        }
    }
}

impl From<roster_projections::directory::RunRow> for RunView {
    fn from(r: roster_projections::directory::RunRow) -> Self {
        RunView {
            run_id: r.run_id,
            kind: r.kind,
            trigger: r.trigger,
            status: r.status,
            started_at: from_micros(r.started_at),
            finished_at: r.finished_at.map(from_micros),
            duration_secs: r
                .finished_at
                .map(|f| (f - r.started_at).max(0) as f64 / 1_000_000.0),
            code: r.code,
            reason: r.reason,
            counts: r.counts,
            would_flag: r.would_flag,
            directory_users: r.directory_users,
            over_seat_limit: r.over_seat_limit,
            decided_by_run: r.decided_by_run,
            progress: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunView>,
    #[schema(value_type = Option<String>)]
    pub next_page: Option<roster_projections::Cursor>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub page: Option<String>,
    pub page_size: Option<i64>,
}

fn page_size(p: Option<i64>) -> ApiResult<i64> {
    let n = p.unwrap_or(100);
    if !(1..=1000).contains(&n) {
        return Err(ApiError::invalid("page_size must be between 1 and 1000"));
    }
    Ok(n)
}

/// The sync history, newest first (B4).
#[utoipa::path(get, path = "/v1/customers/{c}/directory/syncs", tag = "directory",
    params(("c" = String, Path, description = "customer id"), PageQuery),
    responses((status = 200, body = RunList)),
    security(("bearer" = [])))]
pub async fn runs(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<RunList>> {
    let limit = page_size(q.page_size)?;
    let before = match q.page.as_deref() {
        None => None,
        Some(p) => Some(roster_projections::directory::runs_after(p)?),
    };
    let mut rows =
        roster_projections::directory::runs(&state.store, customer, before, limit + 1).await?;
    let next_page = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(roster_projections::directory::runs_cursor)
    } else {
        None
    };
    Ok(Json(RunList {
        runs: rows.into_iter().map(RunView::from).collect(),
        next_page,
    }))
}

/// One run and what it changed, user by user (B4): the events it wrote.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDetail {
    pub run: RunView,
    pub changes: Vec<AuditView>,
    #[schema(value_type = Option<String>)]
    pub next_page: Option<roster_projections::Cursor>,
    pub report: RunReport,
}

/// What a run did not sync (issue 11), for completed and held runs alike.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunReport {
    /// Objects not synced at all, by reason: `excluded`, `no_address`,
    /// `invalid_address`, `unmanaged_domain`, `disabled`, `contested`,
    /// `address_in_use`.
    #[schema(value_type = Object)]
    pub skipped_by_reason: std::collections::BTreeMap<String, u64>,
    /// Aliases not mapped and renames not applied, by reason.
    #[schema(value_type = Object)]
    pub not_applied_by_reason: std::collections::BTreeMap<String, u64>,
    /// How many addresses several directory objects claimed (D3.u).
    pub contested_count: u64,
    /// One page of the skipped objects and addresses (`object_id`, `kind`,
    /// `dn`, `address`, `scope`: object | alias | rename, `reason`, `detail`).
    #[schema(value_type = Vec<Object>)]
    pub skipped: Vec<roster_events::SkippedObject>,
    /// Pass as `skipped_page` for the next page.
    #[schema(value_type = Option<String>)]
    pub skipped_next_page: Option<roster_projections::Cursor>,
    /// One page of the contested addresses, each with every claimant
    /// (`object_id`, `kind`, `dn`, `primary`, `claim`: primary | alias) and
    /// `kept_by` (the claimant whose user keeps it, if any).
    #[schema(value_type = Vec<Object>)]
    pub contested: Vec<roster_events::ContestedAddress>,
    /// Pass as `contested_page` for the next page.
    #[schema(value_type = Option<String>)]
    pub contested_next_page: Option<roster_projections::Cursor>,
    /// When the report is, item for item, an earlier run's: that run's id.
    /// The run recorded a reference instead of the items again (issue 17);
    /// the report above is that run's, and this one's.
    pub same_as_run: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// The page of `changes`.
    pub page: Option<String>,
    /// The page of `report.skipped`.
    pub skipped_page: Option<String>,
    /// The page of `report.contested`.
    pub contested_page: Option<String>,
    /// Items per page of each list (1-1000, default 100).
    pub page_size: Option<i64>,
}

/// One sync run with the per-user list of its changes.
#[utoipa::path(get, path = "/v1/customers/{c}/directory/syncs/{run}", tag = "directory",
    params(("c" = String, Path, description = "customer id"), ("run" = String, Path, description = "run id"), RunQuery),
    responses((status = 200, body = RunDetail), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn run(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
    ApiPath((_c, run)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> ApiResult<Json<RunDetail>> {
    let row = roster_projections::directory::run(&state.store, customer, run.trim())
        .await?
        .ok_or_else(|| ApiError::not_found("no such sync run"))?;
    let page = queries::run_changes(
        &state.store,
        customer,
        &row,
        q.page.as_deref(),
        page_size(q.page_size)?,
    )
    .await?;
    let report = run_report(&state, customer, &row.run_id.to_string(), &q).await?;
    let progress = roster_projections::directory::run_progress(
        &state.store,
        customer,
        &row.run_id.to_string(),
    )
    .await?;
    let mut run = RunView::from(row);
    run.progress = progress.map(RunProgressView::from);
    Ok(Json(RunDetail {
        run,
        changes: page.items.into_iter().map(AuditView::from).collect(),
        next_page: page.next_page,
        report,
    }))
}

async fn run_report(
    state: &AppState,
    customer: CustomerId,
    run: &str,
    q: &RunQuery,
) -> ApiResult<RunReport> {
    use roster_projections::reports;
    let size = page_size(q.page_size)?;
    let counts = reports::counts(&state.store, customer, run).await?;
    let (skipped, skipped_next_page) =
        reports::skipped(&state.store, customer, run, q.skipped_page.as_deref(), size).await?;
    let (contested, contested_next_page) = reports::contested(
        &state.store,
        customer,
        run,
        q.contested_page.as_deref(),
        size,
    )
    .await?;
    let same_as_run = reports::repeat_of(&state.store, customer, run).await?;
    Ok(RunReport {
        same_as_run,
        skipped_by_reason: counts.skipped_by_reason,
        not_applied_by_reason: counts.not_applied_by_reason,
        contested_count: counts.contested,
        skipped,
        skipped_next_page,
        contested,
        contested_next_page,
    })
}

/// Applies a run held by the mass-deletion guard (D3.s): a new run reads the
/// directory again and may flag as many users as the held one would have.
#[utoipa::path(post, path = "/v1/customers/{c}/directory/syncs/{run}/confirm", tag = "directory",
    params(("c" = String, Path, description = "customer id"), ("run" = String, Path, description = "held run id")),
    responses((status = 200, body = RunView), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn confirm(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiPath((_c, run)): ApiPath<(String, String)>,
) -> ApiResult<Json<RunView>> {
    let held =
        uuid::Uuid::parse_str(run.trim()).map_err(|_| ApiError::not_found("no such sync run"))?;
    let new_run = state.sync.confirm(customer, held, caller.actor()).await?;
    let row = roster_projections::directory::run(&state.store, customer, &new_run.to_string())
        .await?
        .ok_or_else(|| ApiError::internal("the confirming run is not in the history"))?;
    Ok(Json(row.into()))
}

/// Discards a held run: nothing it would have done is done.
#[utoipa::path(post, path = "/v1/customers/{c}/directory/syncs/{run}/discard", tag = "directory",
    params(("c" = String, Path, description = "customer id"), ("run" = String, Path, description = "held run id")),
    responses((status = 200, body = RunView), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn discard(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiPath((_c, run)): ApiPath<(String, String)>,
) -> ApiResult<Json<RunView>> {
    let held =
        uuid::Uuid::parse_str(run.trim()).map_err(|_| ApiError::not_found("no such sync run"))?;
    state
        .written(state.sync.discard(&caller.meta(customer, &state), held))
        .await?;
    let row = roster_projections::directory::run(&state.store, customer, &held.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("no such sync run"))?;
    Ok(Json(row.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ObjectQuery {
    /// Part of an address, name or DN.
    pub q: Option<String>,
    /// `user`, `group` or `public_folder`.
    pub kind: Option<String>,
    pub page: Option<String>,
    pub page_size: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectList {
    #[schema(value_type = Vec<Object>)]
    pub objects: Vec<ObjectSummary>,
    #[schema(value_type = Option<String>)]
    pub next_page: Option<roster_projections::Cursor>,
}

/// The directory as last read (D3.o), to pick exceptions from.
#[utoipa::path(get, path = "/v1/customers/{c}/directory/objects", tag = "directory",
    params(("c" = String, Path, description = "customer id"), ObjectQuery),
    responses((status = 200, body = ObjectList)),
    security(("bearer" = [])))]
pub async fn objects(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
    ApiQuery(q): ApiQuery<ObjectQuery>,
) -> ApiResult<Json<ObjectList>> {
    let (objects, next_page) = roster_projections::directory::objects(
        &state.store,
        customer,
        q.q.as_deref(),
        q.kind.as_deref(),
        q.page.as_deref(),
        page_size(q.page_size)?,
    )
    .await?;
    Ok(Json(ObjectList { objects, next_page }))
}

/// An exception: a directory user or group by object id, or an alias by address.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionInput {
    /// `user`, `group` or `alias`.
    pub kind: String,
    /// For users and groups: the object id from `.../directory/objects`.
    pub object_id: Option<String>,
    /// For aliases.
    pub address: Option<String>,
}

impl ExceptionInput {
    fn parse(self) -> ApiResult<Exception> {
        let id = || {
            self.object_id
                .clone()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    ApiError::invalid("object_id is required for user and group exceptions")
                })
        };
        match self.kind.as_str() {
            "user" => Ok(Exception::User { object_id: id()? }),
            "group" => Ok(Exception::Group { object_id: id()? }),
            "alias" => {
                let a = self
                    .address
                    .as_deref()
                    .ok_or_else(|| ApiError::invalid("address is required for alias exceptions"))?;
                Ok(Exception::Alias {
                    address: Address::parse(a)?,
                })
            }
            _ => Err(ApiError::invalid("kind must be user, group or alias")),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExceptionList {
    #[schema(value_type = Vec<Object>)]
    pub exceptions: Vec<Exception>,
}

impl ExceptionList {
    fn of(d: roster_domain::Directory) -> Self {
        ExceptionList {
            exceptions: d.exceptions.into_iter().collect(),
        }
    }
}

/// Exceptions (D3.o): excluded objects are not added, updated or flagged;
/// an excluded alias is not mapped.
#[utoipa::path(get, path = "/v1/customers/{c}/directory/exceptions", tag = "directory",
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, body = ExceptionList)),
    security(("bearer" = [])))]
pub async fn exceptions(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
) -> ApiResult<Json<ExceptionList>> {
    let d = state.sync.directory(customer).await?;
    Ok(Json(ExceptionList::of(d)))
}

#[utoipa::path(post, path = "/v1/customers/{c}/directory/exceptions", tag = "directory", request_body = ExceptionInput,
    params(("c" = String, Path, description = "customer id")),
    responses((status = 201, body = ExceptionList), (status = 409, description = "already_listed", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_exception(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiJson(body): ApiJson<ExceptionInput>,
) -> ApiResult<(StatusCode, Json<ExceptionList>)> {
    state
        .written(
            state
                .sync
                .add_exception(&caller.meta(customer, &state), body.parse()?),
        )
        .await?;
    let d = state.sync.directory(customer).await?;
    Ok((StatusCode::CREATED, Json(ExceptionList::of(d))))
}

#[utoipa::path(delete, path = "/v1/customers/{c}/directory/exceptions", tag = "directory", request_body = ExceptionInput,
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, body = ExceptionList), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_exception(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiJson(body): ApiJson<ExceptionInput>,
) -> ApiResult<Json<ExceptionList>> {
    state
        .written(
            state
                .sync
                .remove_exception(&caller.meta(customer, &state), body.parse()?),
        )
        .await?;
    let d = state.sync.directory(customer).await?;
    Ok(Json(ExceptionList::of(d)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdditionInput {
    pub address: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdditionList {
    pub additions: Vec<String>,
}

impl AdditionList {
    fn of(d: &roster_domain::Directory) -> Self {
        AdditionList {
            additions: d.additions.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// Additions (D3.p): addresses created at once with the directory as their
/// source and not flagged while they stay on the list.
#[utoipa::path(get, path = "/v1/customers/{c}/directory/additions", tag = "directory",
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, body = AdditionList)),
    security(("bearer" = [])))]
pub async fn additions(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
) -> ApiResult<Json<AdditionList>> {
    let d = state.sync.directory(customer).await?;
    Ok(Json(AdditionList::of(&d)))
}

#[utoipa::path(post, path = "/v1/customers/{c}/directory/additions", tag = "directory", request_body = AdditionInput,
    params(("c" = String, Path, description = "customer id")),
    responses((status = 201, body = AdditionList), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_addition(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiJson(body): ApiJson<AdditionInput>,
) -> ApiResult<(StatusCode, Json<AdditionList>)> {
    let address = Address::parse(&body.address)?;
    state
        .written(
            state
                .sync
                .add_addition(&caller.meta(customer, &state), address),
        )
        .await?;
    let d = state.sync.directory(customer).await?;
    Ok((StatusCode::CREATED, Json(AdditionList::of(&d))))
}

#[utoipa::path(delete, path = "/v1/customers/{c}/directory/additions", tag = "directory", request_body = AdditionInput,
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, body = AdditionList), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_addition(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiJson(body): ApiJson<AdditionInput>,
) -> ApiResult<Json<AdditionList>> {
    let address = Address::parse(&body.address)?;
    state
        .written(
            state
                .sync
                .remove_addition(&caller.meta(customer, &state), address),
        )
        .await?;
    let d = state.sync.directory(customer).await?;
    Ok(Json(AdditionList::of(&d)))
}
