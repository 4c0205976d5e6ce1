//! The OpenID Connect relying party (roster-oidc, issue 14) against a real
//! provider (npm oidc-provider, tests/oidc-provider): the code flow with
//! PKCE, state and nonce; a wrong client secret; tampered state and nonce;
//! ID tokens for another audience, from another issuer, expired, unsigned
//! or signed with the client secret; key rotation; email from userinfo.

use std::time::{SystemTime, UNIX_EPOCH};

use roster_oidc::{OidcConfig, OidcError, PendingLogin, Provider};
use roster_tests::oidc::{OidcAccount, OidcOptions, OidcProvider};
use serde_json::{json, Value};

const CALLBACK: &str = "http://127.0.0.1:9/sso/callback";

fn accounts() -> Vec<OidcAccount> {
    vec![OidcAccount::new(
        "ann-1",
        "ann@acme.example",
        "ann's password",
    )]
}

async fn provider(options: OidcOptions) -> OidcProvider {
    OidcProvider::start_with(&[CALLBACK.to_string()], &accounts(), options)
        .await
        .unwrap()
}

fn config(op: &OidcProvider) -> OidcConfig {
    OidcConfig {
        issuer: op.issuer.clone(),
        client_id: op.client_id.clone(),
        client_secret: op.client_secret.clone(),
        redirect_uri: CALLBACK.to_string(),
    }
}

async fn rp(cfg: OidcConfig) -> Provider {
    Provider::discover(cfg, reqwest::Client::new())
        .await
        .unwrap()
}

/// Signs Ann in at the provider: the pending login and the callback's
/// `code` and `state`.
async fn sign_in(op: &OidcProvider, rp: &Provider) -> (PendingLogin, String, String) {
    let (url, pending) = rp.begin();
    let back = op
        .sign_in_http(&url, "ann@acme.example", "ann's password")
        .await
        .unwrap();
    let back = reqwest::Url::parse(&back).unwrap();
    assert!(back.as_str().starts_with(CALLBACK), "{back}");
    let param = |name: &str| {
        back.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {name} in {back}"))
    };
    (pending, param("code"), param("state"))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(op: &OidcProvider, patch: Value) -> Value {
    let mut c = json!({
        "iss": op.issuer, "sub": "ann-1", "aud": op.client_id,
        "iat": now(), "exp": now() + 300, "nonce": "n-1",
        "email": "ann@acme.example", "email_verified": true,
    });
    for (k, v) in patch.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_oidc_code_flow_with_pkce_state_and_nonce_answers_the_identity() {
    let op = provider(OidcOptions::default()).await;
    let rp = rp(config(&op)).await;

    let (url, pending) = rp.begin();
    let query: Vec<(String, String)> = reqwest::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("response_type"), Some("code"));
    assert_eq!(get("scope"), Some("openid email profile"));
    assert_eq!(get("code_challenge_method"), Some("S256"));
    assert_eq!(get("state"), Some(pending.state.as_str()));
    assert_eq!(get("nonce"), Some(pending.nonce.as_str()));
    assert_ne!(get("code_challenge"), Some(pending.pkce_verifier.as_str()));
    let (_, other) = rp.begin();
    assert_ne!(other.state, pending.state, "state is random per sign-in");

    let (pending, code, state) = sign_in(&op, &rp).await;
    let id = rp.finish(&pending, &code, &state).await.unwrap();
    assert_eq!(id.issuer, op.issuer);
    assert_eq!(id.subject, "ann-1");
    assert_eq!(id.email.as_deref(), Some("ann@acme.example"));
    assert_eq!(id.email_verified, Some(true));

    // A code is good once.
    let again = rp.finish(&pending, &code, &state).await.unwrap_err();
    assert!(matches!(again, OidcError::CodeRefused { .. }), "{again}");

    // A wrong password never reaches the callback.
    let (url, _) = rp.begin();
    let wrong = op.sign_in_http(&url, "ann@acme.example", "nope").await;
    assert!(wrong.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_oidc_tampered_state_and_nonce_are_refused() {
    let op = provider(OidcOptions::default()).await;
    let rp = rp(config(&op)).await;
    let (pending, code, state) = sign_in(&op, &rp).await;

    let e = rp.finish(&pending, &code, "forged").await.unwrap_err();
    assert!(matches!(e, OidcError::StateMismatch), "{e}");

    // The state checks before the code is spent; the nonce after.
    let mut tampered = pending.clone();
    tampered.nonce = "another sign-in's nonce".to_string();
    let e = rp.finish(&tampered, &code, &state).await.unwrap_err();
    assert!(matches!(e, OidcError::NonceMismatch), "{e}");
    assert!(e.to_string().contains("start the sign-in again"), "{e}");

    let (mut old, code, state) = sign_in(&op, &rp).await;
    old.created_at -= 11 * 60;
    let e = rp.finish(&old, &code, &state).await.unwrap_err();
    assert!(matches!(e, OidcError::LoginExpired { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_oidc_wrong_client_secret_is_refused_saying_what_to_fix() {
    let op = provider(OidcOptions::default()).await;
    let mut cfg = config(&op);
    cfg.client_secret = "not the secret".to_string();
    let rp = rp(cfg).await;
    let (pending, code, state) = sign_in(&op, &rp).await;
    let e = rp.finish(&pending, &code, &state).await.unwrap_err();
    assert!(matches!(e, OidcError::ClientRefused { .. }), "{e}");
    assert!(
        e.to_string().contains("check the client id and secret"),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains("not the secret"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_oidc_discovery_checks_the_issuer_and_says_what_to_fix() {
    let op = provider(OidcOptions::default()).await;
    let mut cfg = config(&op);
    cfg.issuer = format!("{}/", op.issuer);
    let e = Provider::discover(cfg, reqwest::Client::new())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, OidcError::WrongIssuer { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("set the issuer to exactly {}", op.issuer)),
        "{e}"
    );

    let mut cfg = config(&op);
    cfg.issuer = format!("http://127.0.0.1:{}", roster_tests::process::free_port());
    let e = Provider::discover(cfg, reqwest::Client::new())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, OidcError::Unreachable { .. }), "{e}");
}

/// ID tokens the provider would never issue, signed with its real key (or
/// not): each check of the relying party refuses its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_oidc_id_token_checks_audience_issuer_expiry_and_algorithm() {
    let op = provider(OidcOptions::default()).await;
    let rp = rp(config(&op)).await;
    let verify = |c: Value, alg: &'static str| {
        let op = &op;
        let rp = &rp;
        async move {
            let token = op.mint_id_token(c, alg, "current").await.unwrap();
            rp.verify_id_token(&token, "n-1").await
        }
    };

    let ok = verify(claims(&op, json!({})), "RS256").await.unwrap();
    assert_eq!(ok.sub, "ann-1");

    let e = verify(claims(&op, json!({"aud": "another-client"})), "RS256")
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::WrongAudience { .. }), "{e}");
    // Several audiences need this client as the authorized party.
    let several = json!({"aud": [op.client_id, "another-client"]});
    let e = verify(claims(&op, several), "RS256").await.unwrap_err();
    assert!(matches!(e, OidcError::WrongAudience { .. }), "{e}");
    let several = json!({"aud": [op.client_id, "another-client"], "azp": op.client_id});
    verify(claims(&op, several), "RS256").await.unwrap();

    let e = verify(claims(&op, json!({"iss": "https://evil.example"})), "RS256")
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::TokenIssuer { .. }), "{e}");

    let expired = json!({"iat": now() - 4000, "exp": now() - 3600});
    let e = verify(claims(&op, expired), "RS256").await.unwrap_err();
    assert!(matches!(e, OidcError::Expired { .. }), "{e}");
    let future = json!({"iat": now() + 3600, "exp": now() + 7200});
    let e = verify(claims(&op, future), "RS256").await.unwrap_err();
    assert!(matches!(e, OidcError::Expired { .. }), "{e}");

    let e = verify(claims(&op, json!({"nonce": "n-2"})), "RS256")
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::NonceMismatch), "{e}");

    for alg in ["none", "HS256"] {
        let e = verify(claims(&op, json!({})), alg).await.unwrap_err();
        assert!(
            matches!(e, OidcError::AlgorithmRefused { .. }),
            "{alg}: {e}"
        );
    }

    // A valid token with its signature bytes changed.
    let token = op
        .mint_id_token(claims(&op, json!({})), "RS256", "current")
        .await
        .unwrap();
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{rest}.{flipped}{}", &sig[1..]);
    let e = rp.verify_id_token(&forged, "n-1").await.unwrap_err();
    assert!(matches!(e, OidcError::BadSignature { .. }), "{e}");
}

/// A token signed with a key the provider does not publish is refused after
/// the keys were fetched again; once the provider publishes it (rotation),
/// a relying party that has not seen it fetches the keys again and accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_oidc_unknown_key_refetches_the_jwks_for_rotation() {
    let op = provider(OidcOptions::default()).await;
    let before = rp(config(&op)).await;
    let after = rp(config(&op)).await;
    let token = op
        .mint_id_token(claims(&op, json!({})), "RS256", "next")
        .await
        .unwrap();
    let e = before.verify_id_token(&token, "n-1").await.unwrap_err();
    assert!(matches!(e, OidcError::UnknownKey { .. }), "{e}");

    op.rotate_keys().await.unwrap();
    let ok = after.verify_id_token(&token, "n-1").await.unwrap();
    assert_eq!(ok.sub, "ann-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_oidc_email_from_userinfo_when_the_id_token_lacks_it() {
    let op = provider(OidcOptions {
        email_only_from_userinfo: true,
    })
    .await;
    let rp = rp(config(&op)).await;
    let (pending, code, state) = sign_in(&op, &rp).await;
    let id = rp.finish(&pending, &code, &state).await.unwrap();
    assert_eq!(id.email.as_deref(), Some("ann@acme.example"));
    assert_eq!(id.email_verified, Some(true));
}
