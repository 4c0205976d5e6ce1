//! The console's sign-in over HTTP against the real binary, on SQLite and
//! PostgreSQL (issue 14, T4): an administrator added by `roster admin add`
//! accepts the printed invitation, signs in, and every state-changing
//! request is refused without the session's CSRF token or from another
//! origin; sign-out ends the session.

use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::StatusCode;
use roster_tests::console::{csrf_of, no_redirects, session_cookie};
use roster_tests::e2e::{Db, RosterEnv};

const PASSWORD: &str = "a long enough password";

/// The token a page shows once after creating it.
fn new_token(html: &str) -> String {
    html.split("id=\"new-token\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("the new token, shown once")
        .to_string()
}

async fn i14_invitation_sign_in_csrf_and_sign_out(db: Db) {
    let env = RosterEnv::launch(db, None, &[]).await;
    let base = env.p.base.trim_end_matches('/').to_string();
    let http = no_redirects();
    let out = env.p.run(&[
        "admin",
        "add",
        "--email",
        "Ann@MSP.example",
        "--name",
        "Ann <b>Admin</b>",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8(out.stdout).unwrap();
    let path = link
        .trim()
        .split("/invite/")
        .nth(1)
        .expect("an invitation link is printed");
    let invite = format!("{base}/invite/{path}");
    let page = http.get(&invite).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let form = [("password", PASSWORD), ("confirm", PASSWORD)];
    let no_origin = http.post(&invite).form(&form).send().await.unwrap();
    assert_eq!(
        no_origin.status(),
        StatusCode::FORBIDDEN,
        "a form without Origin or Referer is refused"
    );
    let set = http
        .post(&invite)
        .header(ORIGIN, &base)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::SEE_OTHER);
    let again = http
        .post(&invite)
        .header(ORIGIN, &base)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        StatusCode::GONE,
        "the invitation works once"
    );

    let creds = [
        ("email", "ann@msp.example"),
        ("password", PASSWORD),
        ("next", "/tokens"),
    ];
    let wrong = [
        ("email", "ann@msp.example"),
        ("password", "not the password"),
        ("next", "/"),
    ];
    let refused = http
        .post(format!("{base}/signin"))
        .header(ORIGIN, &base)
        .form(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("The email or password is not right."));
    let signed = http
        .post(format!("{base}/signin"))
        .header(ORIGIN, &base)
        .form(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed.headers()[LOCATION], "/tokens");
    let cookie = session_cookie(&signed).expect("a session cookie");
    let raw = signed
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert!(
        raw.iter().any(|c| c.starts_with("roster_session=")
            && c.contains("HttpOnly")
            && c.contains("SameSite=Lax")),
        "{raw:?}"
    );

    let tokens = http
        .get(format!("{base}/tokens"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(tokens.status(), StatusCode::OK);
    let html = tokens.text().await.unwrap();
    assert!(
        html.contains("Ann &#60;b&#62;Admin&#60;/b&#62;")
            || html.contains("Ann &lt;b&gt;Admin&lt;/b&gt;"),
        "names are escaped"
    );
    let csrf = csrf_of(&html);
    let post = |form: Vec<(&'static str, String)>, origin: Option<&str>| {
        let mut req = http
            .post(format!("{base}/tokens"))
            .header(COOKIE, &cookie)
            .form(&form);
        if let Some(o) = origin {
            req = req.header(ORIGIN, o);
        }
        req.send()
    };
    let r = post(vec![("label", "ci".into())], Some(&base))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let r = post(
        vec![("label", "ci".into()), ("_csrf", "forged".into())],
        Some(&base),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a wrong CSRF token");
    let r = post(
        vec![("label", "ci".into()), ("_csrf", csrf.clone())],
        Some("http://evil.example"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a foreign Origin");
    let r = post(vec![("label", "ci".into()), ("_csrf", csrf.clone())], None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no Origin");
    let r = post(
        vec![("label", "ci".into()), ("_csrf", csrf.clone())],
        Some(&base),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    let secret = new_token(&body);
    // The token works on the API, with the administrator's scope.
    let api = http
        .get(format!("{base}/v1/customers"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::OK);
    // A partner administrator gives a token one customer's scope (T1): it
    // reaches that customer only.
    let one = env.api.customer("One Co", 5, &["one.example"]).await;
    let two = env.api.customer("Two Co", 5, &["two.example"]).await;
    let r = post(
        vec![
            ("label", "one only".into()),
            ("customer", one.clone()),
            ("_csrf", csrf.clone()),
        ],
        Some(&base),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let scoped = new_token(&r.text().await.unwrap());
    let get = |path: String| {
        http.get(format!("{base}{path}"))
            .bearer_auth(&scoped)
            .send()
    };
    assert_eq!(
        get(format!("/v1/customers/{one}")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get(format!("/v1/customers/{two}")).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let r = post(
        vec![
            ("label", "not mine".into()),
            ("customer", roster_events::CustomerId::new().to_string()),
            ("_csrf", csrf.clone()),
        ],
        Some(&base),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "a customer outside the scope"
    );

    let out = http
        .post(format!("{base}/signout"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, &base)
        .form(&[("_csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = http
        .get(format!("{base}/profile"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        StatusCode::SEE_OTHER,
        "the session has ended"
    );
    assert!(after.headers()[LOCATION]
        .to_str()
        .unwrap()
        .starts_with("/signin?next=%2Fprofile"));
    // The API keeps its JSON errors below /v1; unknown console paths get the page.
    let api404 = http.get(format!("{base}/v1/nowhere")).send().await.unwrap();
    assert_eq!(api404.headers()["content-type"], "application/json");
    let page404 = http.get(format!("{base}/nowhere")).send().await.unwrap();
    assert_eq!(page404.status(), StatusCode::NOT_FOUND);
    assert!(page404.text().await.unwrap().contains("Page not found"));
    // Login CSRF (T4): a single sign-on callback without the browser's
    // binding cookie signs nobody in, whatever its state and code.
    let forged = http
        .get(format!(
            "{base}/sso/callback?code=stolen&state=someone-elses"
        ))
        .header(COOKIE, "roster_sso=another-state")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert!(session_cookie(&forged).is_none());
    assert!(forged
        .text()
        .await
        .unwrap()
        .contains("started in another browser"));
    let refused = http
        .get(format!(
            "{base}/sso/callback?error=access_denied&error_description=%3Cscript%3E"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("access_denied: &#60;script&#62;") && !body.contains("<script>"),
        "escaped: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_invitation_sign_in_csrf_and_sign_out_sqlite() {
    i14_invitation_sign_in_csrf_and_sign_out(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_invitation_sign_in_csrf_and_sign_out_postgres() {
    i14_invitation_sign_in_csrf_and_sign_out(Db::Postgres).await;
}
