//! The token endpoint: client-credentials grant and its AADSTS errors.

mod common;

use std::time::Duration;

use common::{get, token, token_request};
use roster_graph_emulator::{GraphEmulator, Permission};

const GRAPH: &str = "https://graph.microsoft.com/.default";

fn form<'a>(client_id: &'a str, secret: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", secret),
        ("scope", GRAPH),
    ]
}

fn aadsts(a: &common::Answer) -> (u16, String, i64, String) {
    (
        a.status,
        a.body["error"].as_str().unwrap_or("").to_string(),
        a.body["error_codes"][0].as_i64().unwrap_or(0),
        a.body["error_description"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

#[tokio::test]
async fn issues_bearer_tokens_by_tenant_id_or_any_domain() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    for tenant in [
        fx.tenant_id.as_str(),
        "contoso.onmicrosoft.com",
        "Contoso.com",
    ] {
        let a = token_request(&emu, tenant, &form(&fx.client_id, &fx.client_secret)).await;
        assert_eq!(a.status, 200, "{tenant}: {}", a.body);
        assert_eq!(a.body["token_type"], "Bearer");
        assert_eq!(a.body["expires_in"], 3599);
        assert_eq!(a.body["ext_expires_in"], 3599);
        let tok = a.body["access_token"].as_str().unwrap();
        assert_eq!(tok.matches('.').count(), 2, "JWT-shaped");
        assert_eq!(
            a.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
    assert_eq!(emu.token_request_count(), 3);
    assert_eq!(emu.tokens_issued(), 3);
}

#[tokio::test]
async fn token_claims_carry_tenant_app_and_roles() {
    use base64::Engine;
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("fabrikam");
    let tok = token(&emu, &fx).await;
    let payload = tok.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert_eq!(claims["tid"], fx.tenant_id);
    assert_eq!(claims["appid"], fx.client_id);
    let roles: Vec<&str> = claims["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(roles.contains(&"User.Read.All"));
    assert!(roles.contains(&"GroupMember.Read.All"));
}

#[tokio::test]
async fn basic_authentication_of_the_client_is_accepted() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let resp = common::http()
        .post(emu.token_url(&fx.tenant_id))
        .basic_auth(&fx.client_id, Some(&fx.client_secret))
        .form(&[("grant_type", "client_credentials"), ("scope", GRAPH)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn documented_error_responses() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let unknown_tenant = "11111111-2222-3333-4444-555555555555";

    // Unknown tenant: AADSTS90002, 400 invalid_request.
    let a = token_request(
        &emu,
        unknown_tenant,
        &form(&fx.client_id, &fx.client_secret),
    )
    .await;
    let (status, error, code, desc) = aadsts(&a);
    assert_eq!(
        (status, error.as_str(), code),
        (400, "invalid_request", 90002)
    );
    assert!(desc.starts_with(&format!(
        "AADSTS90002: Tenant '{unknown_tenant}' not found."
    )));
    assert!(desc.contains("\r\nTrace ID: "));
    assert!(desc.contains("\r\nCorrelation ID: "));
    assert!(desc.contains("\r\nTimestamp: "));
    for field in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(a.body[field].is_string(), "{field} in {}", a.body);
    }

    // Unknown domain name.
    let a = token_request(
        &emu,
        "nowhere.example",
        &form(&fx.client_id, &fx.client_secret),
    )
    .await;
    assert_eq!(aadsts(&a).2, 90002);

    // Malformed tenant.
    let a = token_request(
        &emu,
        "not a tenant",
        &form(&fx.client_id, &fx.client_secret),
    )
    .await;
    assert_eq!(aadsts(&a).2, 900023);

    // Unknown client id: AADSTS700016, 400 unauthorized_client.
    let a = token_request(
        &emu,
        &fx.tenant_id,
        &form("99999999-9999-4999-8999-999999999999", &fx.client_secret),
    )
    .await;
    let (status, error, code, desc) = aadsts(&a);
    assert_eq!(
        (status, error.as_str(), code),
        (400, "unauthorized_client", 700016)
    );
    assert!(
        desc.contains("was not found in the directory 'Contoso'"),
        "{desc}"
    );

    // Wrong secret: AADSTS7000215, 401 invalid_client.
    let a = token_request(&emu, &fx.tenant_id, &form(&fx.client_id, "wrong")).await;
    let (status, error, code, desc) = aadsts(&a);
    assert_eq!(
        (status, error.as_str(), code),
        (401, "invalid_client", 7000215)
    );
    assert!(desc.starts_with("AADSTS7000215: Invalid client secret provided."));

    // Missing secret: AADSTS7000218.
    let a = token_request(
        &emu,
        &fx.tenant_id,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &fx.client_id),
            ("scope", GRAPH),
        ],
    )
    .await;
    assert_eq!(aadsts(&a).2, 7000218);
    assert_eq!(a.status, 401);

    // Missing grant: AADSTS900144 naming the parameter.
    let a = token_request(
        &emu,
        &fx.tenant_id,
        &[("client_id", fx.client_id.as_str()), ("scope", GRAPH)],
    )
    .await;
    let (status, error, code, desc) = aadsts(&a);
    assert_eq!(
        (status, error.as_str(), code),
        (400, "invalid_request", 900144)
    );
    assert!(desc.contains("'grant_type'"));

    // Another grant type.
    let a = token_request(
        &emu,
        &fx.tenant_id,
        &[
            ("grant_type", "password"),
            ("client_id", fx.client_id.as_str()),
            ("scope", GRAPH),
        ],
    )
    .await;
    assert_eq!(aadsts(&a).1, "unsupported_grant_type");

    // Bad scopes.
    let mut f = form(&fx.client_id, &fx.client_secret);
    f[3].1 = "https://graph.microsoft.com/User.Read.All";
    let a = token_request(&emu, &fx.tenant_id, &f).await;
    assert_eq!(
        (aadsts(&a).1.as_str(), aadsts(&a).2),
        ("invalid_scope", 1002012)
    );
    f[3].1 = "https://foo.microsoft.com/.default";
    let a = token_request(&emu, &fx.tenant_id, &f).await;
    assert_eq!(
        (aadsts(&a).1.as_str(), aadsts(&a).2),
        ("invalid_scope", 70011)
    );
    let mut f = form(&fx.client_id, &fx.client_secret);
    f.pop();
    let a = token_request(&emu, &fx.tenant_id, &f).await;
    assert_eq!(aadsts(&a).2, 900144);

    assert_eq!(emu.tokens_issued(), 0);
}

#[tokio::test]
async fn client_request_id_becomes_the_correlation_id() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let corr = "0b6f1c1e-4b7a-4a44-9d0f-2b1a3c4d5e6f";
    let resp = common::http()
        .post(emu.token_url(&fx.tenant_id))
        .header("client-request-id", corr)
        .form(&form(&fx.client_id, "wrong"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["correlation_id"], corr);
    let recorded = emu.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].client_request_id.as_deref(), Some(corr));
    // The secret is never recorded.
    assert!(recorded[0]
        .form
        .iter()
        .any(|(k, v)| k == "client_secret" && v == "<redacted>"));
}

#[tokio::test]
async fn expired_and_removed_secrets() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let short = fx.app.add_secret("short-lived", Duration::from_secs(60));
    let a = token_request(&emu, &fx.tenant_id, &form(&fx.client_id, "short-lived")).await;
    assert_eq!(a.status, 200);

    emu.advance_time(Duration::from_secs(61));
    let a = token_request(&emu, &fx.tenant_id, &form(&fx.client_id, "short-lived")).await;
    let (status, error, code, desc) = aadsts(&a);
    assert_eq!(
        (status, error.as_str(), code),
        (401, "invalid_client", 7000222)
    );
    assert!(desc.contains("are expired"), "{desc}");

    let other = fx.app.add_secret("other", Duration::from_secs(3600));
    fx.app.expire_secret(other);
    let a = token_request(&emu, &fx.tenant_id, &form(&fx.client_id, "other")).await;
    assert_eq!(aadsts(&a).2, 7000222);

    // A removed secret no longer exists: invalid secret.
    fx.app.remove_secret(short);
    let a = token_request(&emu, &fx.tenant_id, &form(&fx.client_id, "short-lived")).await;
    assert_eq!(aadsts(&a).2, 7000215);

    // The standard secret is still valid.
    let a = token_request(&emu, &fx.tenant_id, &form(&fx.client_id, &fx.client_secret)).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn token_lifetime_and_expiry_on_graph() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    emu.set_token_lifetime(Duration::from_secs(120));
    let a = token_request(&emu, &fx.tenant_id, &form(&fx.client_id, &fx.client_secret)).await;
    assert_eq!(a.body["expires_in"], 120);
    let tok = a.body["access_token"].as_str().unwrap().to_string();
    let users = format!("{}/users?$select=id", emu.graph_base());
    assert_eq!(get(&users, &tok, &[]).await.status, 200);

    emu.advance_time(Duration::from_secs(121));
    let a = get(&users, &tok, &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.error_code(), "InvalidAuthenticationToken");
    assert_eq!(
        a.error_message(),
        "Access token has expired or is not yet valid."
    );
    assert!(a.header("www-authenticate").is_some());

    // A refreshed token works again.
    let fresh = token(&emu, &fx).await;
    assert_eq!(get(&users, &fresh, &[]).await.status, 200);

    // Forced expiry of every issued token.
    emu.expire_access_tokens();
    assert_eq!(get(&users, &fresh, &[]).await.status, 401);
}

#[tokio::test]
async fn graph_rejects_missing_and_foreign_tokens() {
    let emu = GraphEmulator::start().await;
    let users = format!("{}/users", emu.graph_base());
    let a = get(&users, "", &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.error_message(), "Access token is empty.");
    let inner = &a.body["error"]["innerError"];
    for field in ["date", "request-id", "client-request-id"] {
        assert!(inner[field].is_string(), "{field} in {}", a.body);
    }
    let a = get(&users, "eyJhbGciOiJub25lIn0.eyJ0aWQiOiJ4In0.c2ln", &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.error_code(), "InvalidAuthenticationToken");
    let a = get(&users, "opaque", &[]).await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn permissions_are_checked_and_baked_into_tokens() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    fx.app.revoke(Permission::UserReadAll);
    let old = token(&emu, &fx).await;
    let users = format!("{}/users", emu.graph_base());
    let a = get(&users, &old, &[]).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.error_code(), "Authorization_RequestDenied");
    assert_eq!(
        a.error_message(),
        "Insufficient privileges to complete the operation."
    );
    // Groups still readable with Group.Read.All.
    assert_eq!(
        get(&format!("{}/groups", emu.graph_base()), &old, &[])
            .await
            .status,
        200
    );

    // Granting applies to new tokens only.
    fx.app.grant(Permission::DirectoryReadAll);
    assert_eq!(get(&users, &old, &[]).await.status, 403);
    let new = token(&emu, &fx).await;
    assert_eq!(get(&users, &new, &[]).await.status, 200);

    // Withdrawing takes effect once the client gets a new token.
    fx.app.revoke(Permission::DirectoryReadAll);
    assert_eq!(get(&users, &new, &[]).await.status, 200);
    emu.expire_access_tokens();
    let newer = token(&emu, &fx).await;
    assert_eq!(get(&users, &newer, &[]).await.status, 403);
}
