//! The Microsoft identity platform token endpoint, client-credentials grant
//! with a shared secret.
//!
//! Request, success and error shapes follow "Microsoft identity platform and
//! the OAuth 2.0 client credentials flow"
//! (<https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>);
//! the AADSTS codes and texts follow the Entra error-code reference
//! (<https://learn.microsoft.com/entra/identity-platform/reference-error-codes>)
//! and the texts the service is seen to answer.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::http::HeaderMap;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::reply::{Body, Ctx, Reply};
use crate::state::{lock, Shared, TenantState, TokenInfo};

/// The resource every emulated token is for.
pub(crate) const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

/// An OAuth error from the token endpoint.
struct OAuthError {
    status: u16,
    error: &'static str,
    code: u32,
    description: String,
}

fn err(status: u16, error: &'static str, code: u32, description: impl Into<String>) -> OAuthError {
    OAuthError {
        status,
        error,
        code,
        description: description.into(),
    }
}

fn missing(param: &str) -> OAuthError {
    err(
        400,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{param}'."),
    )
}

fn oauth_reply(shared: &Shared, e: OAuthError, ctx: &Ctx, correlation: &str) -> Reply {
    let timestamp = ctx.now.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let trace = &ctx.request_id;
    let body = serde_json::json!({
        "error": e.error,
        "error_description": format!(
            "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {timestamp}",
            e.code, e.description
        ),
        "error_codes": [e.code],
        "timestamp": timestamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": format!("{}/error?code={}", shared.base, e.code),
    });
    token_reply(e.status, body.to_string(), trace)
}

fn token_reply(status: u16, body: String, trace: &str) -> Reply {
    Reply {
        status,
        headers: vec![
            (
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            ),
            ("Cache-Control".into(), "no-store, no-cache".into()),
            ("Pragma".into(), "no-cache".into()),
            ("x-ms-request-id".into(), trace.to_string()),
        ],
        body: Body::Json(body),
        fault: None,
    }
}

/// A transient error of the token endpoint (programmed fault).
pub(crate) fn transient(
    shared: &Shared,
    status: u16,
    retry_after: Option<u64>,
    ctx: &Ctx,
) -> Reply {
    let e = err(
        status,
        "temporarily_unavailable",
        90033,
        "A transient error has occurred. Please try again.",
    );
    let mut r = oauth_reply(shared, e, ctx, &ctx.client_request_id);
    if let Some(s) = retry_after {
        r.headers.push(("Retry-After".into(), s.to_string()));
    }
    r
}

/// A token request with another method than POST.
pub(crate) fn wrong_method(shared: &Shared, method: &str, ctx: &Ctx) -> Reply {
    let e = err(
        400,
        "invalid_request",
        900561,
        format!("The endpoint only accepts POST requests. Received a {method} request."),
    );
    oauth_reply(shared, e, ctx, &ctx.client_request_id)
}

fn is_guid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

fn is_dns_name(s: &str) -> bool {
    s.contains('.')
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn b64(json: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

/// Builds a JWT-shaped access token (header and payload are real JSON with
/// the usual v1 claims; the signature is random: the emulator validates
/// tokens by looking them up, not by signature).
fn mint(
    tenant: &TenantState,
    client_id: &str,
    app_name: &str,
    sp: &str,
    roles: &BTreeSet<crate::Permission>,
    iat: DateTime<Utc>,
    exp: DateTime<Utc>,
) -> String {
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": "emulator"});
    let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    let iss = format!("https://sts.windows.net/{}/", tenant.id);
    let mut payload = serde_json::json!({
        "aud": GRAPH_RESOURCE,
        "iss": iss,
        "iat": iat.timestamp(),
        "nbf": iat.timestamp(),
        "exp": exp.timestamp(),
        "app_displayname": app_name,
        "appid": client_id,
        "appidacr": "1",
        "idp": iss,
        "idtyp": "app",
        "oid": sp,
        "sub": sp,
        "tid": tenant.id,
        "uti": uuid::Uuid::new_v4().simple().to_string(),
        "ver": "1.0",
    });
    if !roles.is_empty() {
        payload["roles"] = serde_json::json!(roles);
    }
    let mut sig = Vec::with_capacity(64);
    sig.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    sig.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    sig.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!(
        "{}.{}.{}",
        b64(&header),
        b64(&payload),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// Client credentials from the `Authorization: Basic` header (RFC 6749
/// section 2.3.1: both parts form-urlencoded).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let dec = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) fn token(
    shared: &Shared,
    tenant_seg: &str,
    headers: &HeaderMap,
    form: &[(String, String)],
    ctx: &Ctx,
) -> Reply {
    // The service echoes a GUID client-request-id as the correlation id.
    let correlation = if is_guid(&ctx.client_request_id) {
        ctx.client_request_id.clone()
    } else {
        uuid::Uuid::new_v4().to_string()
    };
    match issue(shared, tenant_seg, headers, form, ctx) {
        Ok(r) => r,
        Err(e) => oauth_reply(shared, e, ctx, &correlation),
    }
}

fn issue(
    shared: &Shared,
    tenant_seg: &str,
    headers: &HeaderMap,
    form: &[(String, String)],
    ctx: &Ctx,
) -> Result<Reply, OAuthError> {
    let field = |name: &str| -> Option<&str> {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };

    if !is_guid(tenant_seg) && !is_dns_name(tenant_seg) {
        return Err(err(
            400,
            "invalid_request",
            900023,
            format!("Specified tenant identifier '{tenant_seg}' is neither a valid DNS name, nor a valid external domain."),
        ));
    }
    let tenant: Arc<TenantState> = shared.tenant(tenant_seg).ok_or_else(|| {
        err(
            400,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant_seg}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. \
                 Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        )
    })?;

    let grant = field("grant_type").ok_or_else(|| missing("grant_type"))?;
    if grant != "client_credentials" {
        return Err(err(
            400,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        ));
    }

    let basic = basic_credentials(headers);
    let client_id = field("client_id")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|(id, _)| id.clone()))
        .ok_or_else(|| missing("client_id"))?;

    let scope = field("scope").ok_or_else(|| missing("scope"))?;
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    for s in &scopes {
        let resource = s.strip_suffix("/.default");
        match resource {
            None => {
                return Err(err(
                    400,
                    "invalid_scope",
                    1002012,
                    format!(
                        "The provided value for scope {s} is not valid. Client credential flows must have a scope value \
                         with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                ))
            }
            Some(r) if r.trim_end_matches('/') != GRAPH_RESOURCE && r != "00000003-0000-0000-c000-000000000000" => {
                return Err(err(
                    400,
                    "invalid_scope",
                    70011,
                    format!("The provided value for the input parameter 'scope' is not valid. The scope {s} is not valid."),
                ))
            }
            Some(_) => {}
        }
    }

    let apps = lock(&tenant.apps);
    let app = apps
        .iter()
        .find(|a| a.client_id.eq_ignore_ascii_case(&client_id))
        .ok_or_else(|| {
            err(
                400,
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application \
                     has not been installed by the administrator of the tenant or consented to by any user in the tenant. \
                     You may have sent your authentication request to the wrong tenant.",
                    tenant.display_name
                ),
            )
        })?;

    if form.iter().any(|(k, _)| k == "client_assertion") {
        return Err(err(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. (The emulator supports client secrets only.)",
        ));
    }
    let secret = field("client_secret")
        .map(str::to_string)
        .or_else(|| basic.map(|(_, s)| s))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            err(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        })?;
    let matched = app.secrets.iter().find(|s| s.value == secret).ok_or_else(|| {
        err(
            401,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, \
                 not the client secret ID, for a secret added to app '{}'.",
                app.client_id
            ),
        )
    })?;
    if matched.expires <= ctx.now {
        return Err(err(
            401,
            "invalid_client",
            7000222,
            format!(
                "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: \
                 https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                app.client_id
            ),
        ));
    }

    let lifetime = shared.settings().token_lifetime;
    let secs = lifetime.as_secs();
    let exp = ctx.now + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(1));
    let token = mint(
        &tenant,
        &app.client_id,
        &app.display_name,
        &app.service_principal_id,
        &app.permissions,
        ctx.now,
        exp,
    );
    lock(&shared.tokens).insert(
        token.clone(),
        TokenInfo {
            tenant_id: tenant.id.clone(),
            roles: app.permissions.clone(),
            expires: exp,
        },
    );
    shared.tokens_issued.fetch_add(1, Ordering::SeqCst);
    let body = serde_json::json!({
        "token_type": "Bearer",
        "expires_in": secs,
        "ext_expires_in": secs,
        "access_token": token,
    });
    Ok(token_reply(200, body.to_string(), &ctx.request_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_identifier_forms() {
        assert!(is_guid("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(!is_guid("contoso.com"));
        assert!(is_dns_name("contoso.onmicrosoft.com"));
        assert!(!is_dns_name("not a tenant"));
        assert!(!is_dns_name("contoso"));
    }
}
