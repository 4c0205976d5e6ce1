//! A real OpenID Connect provider for the single sign-on tests (issue 14):
//! npm `oidc-provider` (pinned in tests/oidc-provider/package.json, installed
//! by deploy/test-deps.sh) run by the machine's Node (`node` from `PATH`, or
//! `ROSTER_NODE`), on a free port, with one confidential client and the
//! accounts a test gives. It is killed when the [`OidcProvider`] drops.
//!
//! Its login page, for a browser: `form#login` with `input#email`,
//! `input#password` and `button#submit`; a wrong email or password shows
//! `p#error` and the form again. There is no consent page. PKCE (S256) is
//! required. [`OidcProvider::sign_in_http`] walks the same pages without a
//! browser.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A person who can sign in at the provider.
#[derive(Debug, Clone, Serialize)]
pub struct OidcAccount {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub password: String,
}

impl OidcAccount {
    /// An account with a verified email.
    pub fn new(sub: &str, email: &str, password: &str) -> OidcAccount {
        OidcAccount {
            sub: sub.to_string(),
            email: email.to_string(),
            email_verified: true,
            password: password.to_string(),
        }
    }
}

/// The provider process and what a relying party needs to know of it.
pub struct OidcProvider {
    /// `http://127.0.0.1:<port>`, also the base of every endpoint.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    http: reqwest::Client,
    _child: Child,
}

/// How long Node may take to start the provider.
const START: Duration = Duration::from_secs(30);

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

/// The options of [`OidcProvider::start_with`].
#[derive(Debug, Clone, Default)]
pub struct OidcOptions {
    /// False: the ID token carries only `sub` (and the protocol's claims);
    /// email comes from the userinfo endpoint, as with some providers.
    pub email_only_from_userinfo: bool,
}

impl OidcProvider {
    /// Starts the provider with a client allowed these redirect URIs and
    /// these accounts; answers once its discovery document answers.
    pub async fn start(
        redirect_uris: &[String],
        accounts: &[OidcAccount],
    ) -> anyhow::Result<OidcProvider> {
        OidcProvider::start_with(redirect_uris, accounts, OidcOptions::default()).await
    }

    /// [`OidcProvider::start`] with options.
    pub async fn start_with(
        redirect_uris: &[String],
        accounts: &[OidcAccount],
        options: OidcOptions,
    ) -> anyhow::Result<OidcProvider> {
        let dir = provider_dir();
        if !dir.join("node_modules/oidc-provider").is_dir() {
            bail!(
                "{} has no node_modules: install the provider's npm packages with \
                 deploy/test-deps.sh (or `npm ci` there)",
                dir.display()
            );
        }
        let client_id = format!("roster-{}", uuid::Uuid::new_v4().simple());
        let client_secret = uuid::Uuid::new_v4().simple().to_string();
        let config = json!({
            "port": 0,
            "client": {
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uris": redirect_uris,
            },
            "accounts": accounts,
            "id_token_claims": !options.email_only_from_userinfo,
        });
        let node = std::env::var("ROSTER_NODE").unwrap_or_else(|_| "node".to_string());
        let mut child = Command::new(&node)
            .arg("server.mjs")
            .current_dir(&dir)
            .env("ROSTER_OIDC_CONFIG", config.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start `{node}` (Node.js 20 or later)"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(START, lines.next_line())
            .await
            .map_err(|_| anyhow!("the OpenID provider did not start within {START:?}"))??
            .ok_or_else(|| anyhow!("the OpenID provider exited before it listened"))?;
        let issuer = line
            .strip_prefix("listening ")
            .ok_or_else(|| anyhow!("the OpenID provider printed {line:?}"))?
            .to_string();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let provider = OidcProvider {
            issuer,
            client_id,
            client_secret,
            redirect_uris: redirect_uris.to_vec(),
            http,
            _child: child,
        };
        provider.wait_discovery().await?;
        Ok(provider)
    }

    async fn wait_discovery(&self) -> anyhow::Result<()> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let deadline = Instant::now() + START;
        loop {
            if let Ok(resp) = self.http.get(&url).send().await {
                if resp.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("{url} did not answer within {START:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signs in as a person with a browser would, without one: follows the
    /// authorization URL to the login page, posts the email and password,
    /// and answers the URL the provider sends the browser back to (the
    /// relying party's redirect URI with `code` and `state`, or `error`),
    /// without opening it. A wrong email or password is an error.
    pub async fn sign_in_http(
        &self,
        authorization_url: &str,
        email: &str,
        password: &str,
    ) -> anyhow::Result<String> {
        let mut jar = CookieJar::default();
        let login = self.redirect(&mut jar, authorization_url, None).await?;
        if !login.starts_with(&format!("{}/interaction/", self.issuer)) {
            // An error answered straight to the relying party.
            return Ok(login);
        }
        let page = jar.attach(self.http.get(&login)).send().await?;
        if page.status() != StatusCode::OK {
            bail!("the login page {login} answered {}", page.status());
        }
        let form = [("email", email), ("password", password)];
        let resume = self
            .redirect(&mut jar, &format!("{login}/login"), Some(&form))
            .await
            .context("signing in at the provider")?;
        let mut next = resume;
        // The provider resumes the authorization, which redirects to the
        // relying party (within a few hops).
        for _ in 0..5 {
            if !next.starts_with(&self.issuer) {
                return Ok(next);
            }
            next = self.redirect(&mut jar, &next, None).await?;
        }
        bail!("the provider kept redirecting to itself: {next}")
    }

    /// One request that must answer a redirect; answers its Location.
    async fn redirect(
        &self,
        jar: &mut CookieJar,
        url: &str,
        form: Option<&[(&str, &str)]>,
    ) -> anyhow::Result<String> {
        let request = match form {
            Some(form) => self.http.post(url).form(form),
            None => self.http.get(url),
        };
        let resp = jar.attach(request).send().await?;
        jar.update(resp.headers().get_all(SET_COOKIE).iter());
        let status = resp.status();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        match location {
            Some(l) if status.is_redirection() => Ok(absolute(&self.issuer, &l)),
            _ => {
                let body = resp.text().await.unwrap_or_default();
                if body.contains("id=\"error\"") {
                    bail!("the provider refused the sign-in: wrong email or password");
                }
                bail!("{url} answered {status} without a redirect: {body}")
            }
        }
    }

    /// Test only: an ID token the provider would never issue, signed with
    /// its real key (`key` "current"), with a key it publishes only after
    /// [`OidcProvider::rotate_keys`] ("next"), or unsigned (`alg` "none") or
    /// signed with the client secret (`alg` "HS256").
    pub async fn mint_id_token(&self, claims: Value, alg: &str, key: &str) -> anyhow::Result<String> {
        let resp = self
            .http
            .post(format!("{}/_test/id-token", self.issuer))
            .body(json!({"claims": claims, "alg": alg, "key": key}).to_string())
            .send()
            .await?
            .error_for_status()?;
        Ok(resp.text().await?)
    }

    /// Test only: publishes the "next" signing key in the JWKS (a key
    /// rotation as a relying party sees it).
    pub async fn rotate_keys(&self) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/_test/rotate", self.issuer))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_string()
    }
}

/// The provider's cookies (its interaction and session cookies), sent back
/// on every request to it.
#[derive(Default)]
struct CookieJar(BTreeMap<String, String>);

impl CookieJar {
    fn update<'a>(&mut self, headers: impl Iterator<Item = &'a reqwest::header::HeaderValue>) {
        for h in headers {
            let Ok(h) = h.to_str() else { continue };
            let pair = h.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let expired = h.to_ascii_lowercase().contains("expires=thu, 01 jan 1970");
            if value.is_empty() || expired {
                self.0.remove(name.trim());
            } else {
                self.0.insert(name.trim().to_string(), value.to_string());
            }
        }
    }

    fn attach(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.0.is_empty() {
            return request;
        }
        let header = self
            .0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        request.header(COOKIE, header)
    }
}
