//! Administrators and their sign-in (T4, issue 14), on PostgreSQL and on
//! SQLite: passwords and TOTP, throttling, session timeouts and revocation,
//! one-time links. The browser suite (console_auth) drives the same rules
//! through the console.

use chrono::Duration;
use roster_app::admins::{self, Admins, Client, SessionSettings, SignIn};
use roster_app::security::By;
use roster_events::{CustomerId, PartnerId};
use roster_store::admins::LinkKind;
use roster_store::auth::Scope;
use roster_store::Clock;
use roster_tests::{both_backends, TestStore};

const PASSWORD: &str = "correct horse battery staple";

fn client(addr: &str) -> Client {
    Client {
        addr: addr.into(),
        user_agent: "test".into(),
    }
}

async fn setup(s: &TestStore) -> (Admins, PartnerId) {
    let admins = Admins::new(
        s.store.db().clone(),
        s.key.clone(),
        SessionSettings::default(),
    );
    let partner = s
        .store
        .db()
        .create_partner("acme msp", s.clock.now())
        .await
        .unwrap();
    (admins, partner)
}

/// Signs in with the right password (no TOTP): the session's secret.
async fn signed_in(
    admins: &Admins,
    email: &str,
    c: &Client,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    match admins.sign_in(email, PASSWORD, c, now).await.unwrap() {
        SignIn::Done { secret, .. } => secret,
        other => panic!("{email} signs in: {other:?}"),
    }
}

async fn add(s: &TestStore, admins: &Admins, partner: PartnerId, email: &str) {
    admins
        .add(
            email,
            "Ann",
            Scope::Partner(partner),
            Some(PASSWORD),
            &By::cli(),
            s.clock.now(),
        )
        .await
        .unwrap();
}

async fn t4_password_then_totp_signs_in_and_wrong_codes_do_not(s: TestStore) {
    let (admins, partner) = setup(&s).await;
    add(&s, &admins, partner, "ann@msp.example").await;
    let c = client("192.0.2.1");
    let now = s.clock.now();
    // Without TOTP the password signs in at once; emails ignore case.
    let SignIn::Done { admin, secret, .. } = admins
        .sign_in("ANN@msp.example", PASSWORD, &c, now)
        .await
        .unwrap()
    else {
        panic!("the right password signs in");
    };
    assert!(admins.current(&secret, now).await.unwrap().is_some());
    let totp = admins::new_totp_secret();
    let code = admins::totp_code(&totp, now).unwrap();
    admins
        .enable_totp(&admin, &totp, &code, &By::cli(), now)
        .await
        .unwrap();
    // The code typed to enrol is used up (RFC 6238 section 5.2): the next
    // sign-in takes the next step's code.
    s.clock.advance(Duration::seconds(30));
    let now = s.clock.now();
    let code = admins::totp_code(&totp, now).unwrap();
    // With TOTP: the password only opens the second step.
    let SignIn::NeedTotp { secret: pending } = admins
        .sign_in("ann@msp.example", PASSWORD, &c, now)
        .await
        .unwrap()
    else {
        panic!("TOTP is asked for");
    };
    assert!(
        admins.current(&pending, now).await.unwrap().is_none(),
        "a pending session is not signed in"
    );
    assert!(matches!(
        admins
            .sign_in_totp(&pending, "000000", &c, now)
            .await
            .unwrap(),
        SignIn::Refused
    ));
    let SignIn::Done { secret: full, .. } =
        admins.sign_in_totp(&pending, &code, &c, now).await.unwrap()
    else {
        panic!("the right code signs in");
    };
    assert!(admins.current(&full, now).await.unwrap().is_some());
    // The pending session is used up.
    assert!(matches!(
        admins.sign_in_totp(&pending, &code, &c, now).await.unwrap(),
        SignIn::Refused
    ));
    // A code is good once (RFC 6238 section 5.2): a second sign-in within
    // the same 30 seconds cannot reuse it, even with a new pending session,
    // and nor can an earlier step's code; the next step's code works.
    let SignIn::NeedTotp { secret: again } = admins
        .sign_in("ann@msp.example", PASSWORD, &c, now)
        .await
        .unwrap()
    else {
        panic!("TOTP is asked for");
    };
    assert!(matches!(
        admins.sign_in_totp(&again, &code, &c, now).await.unwrap(),
        SignIn::Refused
    ));
    let earlier = admins::totp_code(&totp, now - Duration::seconds(30)).unwrap();
    assert!(matches!(
        admins
            .sign_in_totp(&again, &earlier, &c, now)
            .await
            .unwrap(),
        SignIn::Refused
    ));
    let later = now + Duration::seconds(30);
    let next = admins::totp_code(&totp, later).unwrap();
    assert!(matches!(
        admins.sign_in_totp(&again, &next, &c, later).await.unwrap(),
        SignIn::Done { .. }
    ));
    // Every sign-in and failure is in the partner's security log (T4).
    let log = admins
        .security_log(Some(Scope::Partner(partner)), None, 100)
        .await
        .unwrap();
    let kinds: Vec<String> = log.events.iter().map(|e| e.kind.to_string()).collect();
    let count = |k: &str| kinds.iter().filter(|x| x.as_str() == k).count();
    assert_eq!(count("AdminSignedIn"), 3, "{kinds:?}");
    assert_eq!(count("AdminSignInFailed"), 3, "{kinds:?}");
    assert_eq!(count("AdminTotpEnabled"), 1, "{kinds:?}");
    assert_eq!(count("AdminAdded"), 1, "{kinds:?}");
    let replay = log
        .events
        .iter()
        .filter(|e| e.detail == "a TOTP code used before")
        .count();
    assert_eq!(
        replay, 2,
        "the reuse and the earlier step are logged as replays"
    );
    assert!(log
        .events
        .iter()
        .all(|e| e.email.as_deref() == Some("ann@msp.example") && e.partner_id == Some(partner)));
}

/// An administrator of `partner` and one of a second partner (answered).
async fn with_other_partner(
    s: &TestStore,
    admins: &Admins,
    partner: PartnerId,
    mine: &str,
    theirs: &str,
) -> PartnerId {
    let other = s
        .store
        .db()
        .create_partner("other msp", s.clock.now())
        .await
        .unwrap();
    add(s, admins, partner, mine).await;
    add(s, admins, other, theirs).await;
    other
}

/// T4: the security log is append-only, scoped, paged, and keeps failed
/// sign-ins for unknown emails out of every partner's view.
async fn t4_security_log_is_scoped_paged_and_append_only(s: TestStore) {
    let (admins, partner) = setup(&s).await;
    let other =
        with_other_partner(&s, &admins, partner, "gil@msp.example", "hal@other.example").await;
    let c = client("192.0.2.20");
    for i in 0..5 {
        s.clock.advance(Duration::seconds(1));
        admins
            .sign_in("gil@msp.example", PASSWORD, &c, s.clock.now())
            .await
            .unwrap();
        admins
            .sign_in(
                &format!("ghost{i}@nowhere.example"),
                PASSWORD,
                &c,
                s.clock.now(),
            )
            .await
            .unwrap();
    }
    let mine = Some(Scope::Partner(partner));
    let first = admins.security_log(mine, None, 4).await.unwrap();
    assert_eq!(first.events.len(), 4);
    let second = admins
        .security_log(mine, first.next.as_deref(), 4)
        .await
        .unwrap();
    assert_eq!(second.events.len(), 2, "5 sign-ins and 1 AdminAdded");
    assert!(second.next.is_none());
    let all: Vec<_> = first.events.iter().chain(&second.events).collect();
    assert!(all.windows(2).all(|w| w[0].recorded_at >= w[1].recorded_at));
    assert!(
        all.iter().all(|e| e.partner_id == Some(partner)),
        "no other partner's rows"
    );
    assert!(all
        .iter()
        .all(|e| !e.email.as_deref().unwrap_or("").contains("ghost")));
    let theirs = admins
        .security_log(Some(Scope::Partner(other)), None, 100)
        .await
        .unwrap();
    assert_eq!(theirs.events.len(), 1, "only hal's AdminAdded");
    // The operator sees the unknown emails' failures.
    let everything = admins.security_log(None, None, 200).await.unwrap();
    let ghosts = everything
        .events
        .iter()
        .filter(|e| e.partner_id.is_none() && e.kind.to_string() == "AdminSignInFailed")
        .count();
    assert_eq!(ghosts, 5);
    assert!(admins.security_log(mine, Some("garbage"), 4).await.is_err());
    // Append-only: the database refuses to change or delete a row.
    let (upd, del) = roster_store::with_db!(s.store.db(), |p| (
        sqlx::query("UPDATE security_events SET detail = 'x'")
            .execute(p)
            .await
            .is_err(),
        sqlx::query("DELETE FROM security_events")
            .execute(p)
            .await
            .is_err(),
    ));
    assert!(upd && del, "security_events is append-only");
}

async fn t4_unknown_email_and_wrong_password_answer_alike_and_are_throttled(s: TestStore) {
    let (admins, partner) = setup(&s).await;
    add(&s, &admins, partner, "bob@msp.example").await;
    let now = s.clock.now();
    let unknown = admins
        .sign_in("nobody@msp.example", PASSWORD, &client("192.0.2.7"), now)
        .await
        .unwrap();
    assert!(matches!(unknown, SignIn::Refused), "{unknown:?}");
    // A NUL or another control character in the email is an unknown email
    // (PostgreSQL refuses NUL in text: never a 500), logged escaped.
    for hostile in ["bob\0@msp.example", "bob@msp.example\n"] {
        let r = admins
            .sign_in(hostile, PASSWORD, &client("192.0.2.9"), now)
            .await
            .unwrap();
        assert!(matches!(r, SignIn::Refused), "{hostile:?}: {r:?}");
    }
    let log = admins.security_log(None, None, 10).await.unwrap();
    assert!(log
        .events
        .iter()
        .any(|e| e.email.as_deref() == Some("bob\\0@msp.example")));
    // Per account: three failures are free, the fourth blocks for 2 s, then 4 s.
    let c = client("192.0.2.8");
    for _ in 0..4 {
        let r = admins
            .sign_in("bob@msp.example", "wrong password!", &c, now)
            .await
            .unwrap();
        assert!(matches!(r, SignIn::Refused), "{r:?}");
    }
    let r = admins
        .sign_in("bob@msp.example", PASSWORD, &c, now)
        .await
        .unwrap();
    assert!(
        matches!(r, SignIn::Throttled { retry_after: 2 }),
        "blocked even with the right password: {r:?}"
    );
    s.clock.advance(Duration::seconds(3));
    let r = admins
        .sign_in("bob@msp.example", "wrong password!", &c, s.clock.now())
        .await
        .unwrap();
    assert!(matches!(r, SignIn::Refused));
    let r = admins
        .sign_in("bob@msp.example", PASSWORD, &c, s.clock.now())
        .await
        .unwrap();
    assert!(
        matches!(r, SignIn::Throttled { retry_after: 4 }),
        "the delay grows: {r:?}"
    );
    s.clock.advance(Duration::seconds(5));
    let r = admins
        .sign_in("bob@msp.example", PASSWORD, &c, s.clock.now())
        .await
        .unwrap();
    assert!(
        matches!(r, SignIn::Done { .. }),
        "after the delay the right password works: {r:?}"
    );
    // Per client address: eleven failures on different accounts block the address.
    let noisy = client("198.51.100.9");
    for i in 0..11 {
        admins
            .sign_in(
                &format!("x{i}@msp.example"),
                "wrong password!",
                &noisy,
                s.clock.now(),
            )
            .await
            .unwrap();
    }
    let r = admins
        .sign_in("bob@msp.example", PASSWORD, &noisy, s.clock.now())
        .await
        .unwrap();
    assert!(matches!(r, SignIn::Throttled { .. }), "{r:?}");
}

async fn t4_sessions_end_after_idle_and_absolute_timeouts_and_on_revocation(s: TestStore) {
    let (admins, partner) = setup(&s).await;
    add(&s, &admins, partner, "cy@msp.example").await;
    let c = client("192.0.2.2");
    let SignIn::Done { secret, admin, .. } = admins
        .sign_in("cy@msp.example", PASSWORD, &c, s.clock.now())
        .await
        .unwrap()
    else {
        panic!("signs in");
    };
    // Used every 20 minutes, it lives until the absolute timeout (12 h).
    for _ in 0..35 {
        s.clock.advance(Duration::minutes(20));
        assert!(admins
            .current(&secret, s.clock.now())
            .await
            .unwrap()
            .is_some());
    }
    s.clock.advance(Duration::minutes(20));
    assert!(
        admins
            .current(&secret, s.clock.now())
            .await
            .unwrap()
            .is_none(),
        "12 h after sign-in it is over"
    );
    // Idle for 31 minutes: over.
    let SignIn::Done { secret: idle, .. } = admins
        .sign_in("cy@msp.example", PASSWORD, &c, s.clock.now())
        .await
        .unwrap()
    else {
        panic!("signs in");
    };
    s.clock.advance(Duration::minutes(31));
    assert!(
        admins
            .current(&idle, s.clock.now())
            .await
            .unwrap()
            .is_none(),
        "idle timeout"
    );
    // Sign out, and sign out everywhere.
    let now = s.clock.now();
    let a = signed_in(&admins, "cy@msp.example", &c, now).await;
    let b = signed_in(&admins, "cy@msp.example", &c, now).await;
    let d = signed_in(&admins, "cy@msp.example", &c, now).await;
    assert_eq!(admins.sessions(admin.admin_id, now).await.unwrap().len(), 3);
    admins.sign_out(&a, "192.0.2.2", now).await.unwrap();
    assert!(admins.current(&a, now).await.unwrap().is_none());
    assert!(admins.current(&b, now).await.unwrap().is_some());
    admins
        .sign_out_everywhere(&admin, &By::cli(), now)
        .await
        .unwrap();
    assert!(admins.current(&b, now).await.unwrap().is_none());
    assert!(admins.current(&d, now).await.unwrap().is_none());
    // A disabled administrator's sessions end and it cannot sign in.
    let e = signed_in(&admins, "cy@msp.example", &c, now).await;
    s.store
        .db()
        .disable_admin(admin.admin_id, now)
        .await
        .unwrap();
    assert!(admins.current(&e, now).await.unwrap().is_none());
    assert!(matches!(
        admins
            .sign_in("cy@msp.example", PASSWORD, &c, now)
            .await
            .unwrap(),
        SignIn::Refused
    ));
}

async fn t4_invitation_and_reset_links_work_once_and_expire(s: TestStore) {
    let (admins, partner) = setup(&s).await;
    let now = s.clock.now();
    let id = admins
        .add(
            "dee@msp.example",
            "Dee",
            Scope::Partner(partner),
            None,
            &By::cli(),
            now,
        )
        .await
        .unwrap();
    // Invited, without a password: nothing signs in.
    assert!(matches!(
        admins
            .sign_in("dee@msp.example", "", &client("192.0.2.3"), now)
            .await
            .unwrap(),
        SignIn::Refused
    ));
    let invite = admins
        .issue_link(id, LinkKind::Invite, &By::cli(), now)
        .await
        .unwrap();
    assert!(
        admins
            .redeem_link(&invite, LinkKind::Reset, PASSWORD, "192.0.2.9", now)
            .await
            .is_err(),
        "an invitation is not a reset link"
    );
    assert!(
        admins
            .redeem_link(&invite, LinkKind::Invite, "short", "192.0.2.9", now)
            .await
            .is_err(),
        "a short password is refused"
    );
    admins
        .redeem_link(&invite, LinkKind::Invite, PASSWORD, "192.0.2.9", now)
        .await
        .unwrap();
    let again = admins
        .redeem_link(
            &invite,
            LinkKind::Invite,
            "another long password",
            "192.0.2.9",
            now,
        )
        .await;
    assert_eq!(again.unwrap_err().code(), "link_expired", "used once only");
    assert!(matches!(
        admins
            .sign_in("dee@msp.example", PASSWORD, &client("192.0.2.3"), now)
            .await
            .unwrap(),
        SignIn::Done { .. }
    ));
    // A reset link expires after an hour; a newer one replaces an older one.
    let old = admins
        .issue_link(id, LinkKind::Reset, &By::cli(), now)
        .await
        .unwrap();
    let new = admins
        .issue_link(id, LinkKind::Reset, &By::cli(), now)
        .await
        .unwrap();
    assert!(admins
        .redeem_link(
            &old,
            LinkKind::Reset,
            "a new long password",
            "192.0.2.9",
            now
        )
        .await
        .is_err());
    let later = now + Duration::minutes(61);
    assert!(
        admins
            .redeem_link(
                &new,
                LinkKind::Reset,
                "a new long password",
                "192.0.2.9",
                later
            )
            .await
            .is_err(),
        "expired"
    );
    let fresh = admins
        .issue_link(id, LinkKind::Reset, &By::cli(), later)
        .await
        .unwrap();
    admins
        .redeem_link(
            &fresh,
            LinkKind::Reset,
            "a new long password",
            "192.0.2.9",
            later,
        )
        .await
        .unwrap();
    assert!(matches!(
        admins
            .sign_in(
                "dee@msp.example",
                "a new long password",
                &client("192.0.2.3"),
                later
            )
            .await
            .unwrap(),
        SignIn::Done { .. }
    ));
}

async fn t1_administrators_need_an_existing_scope_and_a_new_email(s: TestStore) {
    let (admins, partner) = setup(&s).await;
    let now = s.clock.now();
    add(&s, &admins, partner, "eve@msp.example").await;
    let dup = admins
        .add(
            "EVE@msp.example",
            "Eve",
            Scope::Partner(partner),
            None,
            &By::cli(),
            now,
        )
        .await;
    assert_eq!(dup.unwrap_err().code(), "admin_exists");
    let nowhere = admins
        .add(
            "x@msp.example",
            "X",
            Scope::Customer(CustomerId::new()),
            None,
            &By::cli(),
            now,
        )
        .await;
    assert_eq!(nowhere.unwrap_err().code(), "not_found");
    let c = s.customer(10, &["cust.example"]).await;
    let id = admins
        .add(
            "cadmin@cust.example",
            "C",
            Scope::Customer(c),
            None,
            &By::cli(),
            now,
        )
        .await
        .unwrap();
    let a = s.store.db().admin(id).await.unwrap().unwrap();
    assert_eq!(a.scope, Scope::Customer(c));
    // A partner's TOTP requirement covers its customers' administrators.
    assert!(!admins.totp_required(&a).await.unwrap());
    let p = s.store.db().customer_partner(c).await.unwrap().unwrap();
    s.store.db().set_require_totp(p, true, now).await.unwrap();
    assert!(admins.totp_required(&a).await.unwrap());
}

async fn t4_totp_and_sso_secrets_are_sealed_at_rest(s: TestStore) {
    let (admins, partner) = setup(&s).await;
    add(&s, &admins, partner, "fay@msp.example").await;
    let a = s
        .store
        .db()
        .admin_by_email("fay@msp.example")
        .await
        .unwrap()
        .unwrap();
    let totp = admins::new_totp_secret();
    let code = admins::totp_code(&totp, s.clock.now()).unwrap();
    admins
        .enable_totp(&a, &totp, &code, &By::cli(), s.clock.now())
        .await
        .unwrap();
    let secret = roster_store::Secret::new("oidc-client-secret-canary");
    s.store
        .db()
        .set_partner_oidc(
            &s.key,
            partner,
            Some(("https://idp.example", "roster", &secret)),
            s.clock.now(),
        )
        .await
        .unwrap();
    let dump = roster_tests::backend::dump_everything(&s).await;
    assert!(!dump.contains(&totp), "the TOTP secret is sealed");
    assert!(!dump.contains("oidc-client-secret-canary"));
    assert_eq!(
        s.store
            .db()
            .admin_totp(&s.key, a.admin_id)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        totp
    );
    assert_eq!(
        s.store.db().partner_oidc(&s.key, partner).await.unwrap(),
        Some(("https://idp.example".into(), "roster".into(), secret))
    );
}

both_backends!(
    t4_password_then_totp_signs_in_and_wrong_codes_do_not,
    t4_unknown_email_and_wrong_password_answer_alike_and_are_throttled,
    t4_sessions_end_after_idle_and_absolute_timeouts_and_on_revocation,
    t4_invitation_and_reset_links_work_once_and_expire,
    t1_administrators_need_an_existing_scope_and_a_new_email,
    t4_totp_and_sso_secrets_are_sealed_at_rest,
    t4_security_log_is_scoped_paged_and_append_only,
    t4_single_sign_on_maps_the_email_to_an_existing_administrator_only,
);

fn query_of(url: &str, key: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// T4 (issue 14): single sign-on against the real OpenID provider. The
/// provider's email maps to an administrator of the partner (or of one of
/// its customers); a person without an account here, or an administrator
/// of another partner, is refused and nobody is created; a callback is good
/// once; the stored client secret follows only its issuer and client id.
async fn t4_single_sign_on_maps_the_email_to_an_existing_administrator_only(s: TestStore) {
    use roster_app::sso::SsoSignIn;
    use roster_tests::oidc::{OidcAccount, OidcProvider};
    let (admins, partner) = setup(&s).await;
    with_other_partner(&s, &admins, partner, "ivy@msp.example", "jon@other.example").await;
    let redirect = "http://127.0.0.1:9/sso/callback".to_string();
    let pw = "provider password";
    let provider = OidcProvider::start(
        std::slice::from_ref(&redirect),
        &[
            OidcAccount::new("ivy", "ivy@msp.example", pw),
            OidcAccount::new("jon", "jon@other.example", pw),
            OidcAccount::new("kim", "kim@msp.example", pw),
        ],
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let by = By::cli();
    let now = s.clock.now();
    let c = client("192.0.2.30");
    // Not set up: nothing starts.
    assert_eq!(
        admins
            .sso_begin(&http, partner, &redirect, "/", now)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    // A wrong issuer is refused when saved, saying what to fix.
    let wrong = admins
        .set_sso(
            &by,
            &http,
            partner,
            &format!("{}/x", provider.issuer),
            &provider.client_id,
            &provider.client_secret,
            &redirect,
            now,
        )
        .await
        .unwrap_err();
    assert!(wrong.to_string().contains("issuer"), "{wrong}");
    admins
        .set_sso(
            &by,
            &http,
            partner,
            &provider.issuer,
            &provider.client_id,
            &provider.client_secret,
            &redirect,
            now,
        )
        .await
        .unwrap();
    // Saved again without the secret: kept, for the same issuer and client.
    admins
        .set_sso(
            &by,
            &http,
            partner,
            &provider.issuer,
            &provider.client_id,
            "",
            &redirect,
            now,
        )
        .await
        .unwrap();
    // Another client id without the secret: refused (the secret is bound).
    let rebound = admins
        .set_sso(
            &by,
            &http,
            partner,
            &provider.issuer,
            "another-client",
            "",
            &redirect,
            now,
        )
        .await
        .unwrap_err();
    assert!(rebound.to_string().contains("client secret"), "{rebound}");

    let finish = |email: &'static str| {
        let admins = admins.clone();
        let http = http.clone();
        let redirect = redirect.clone();
        let provider = &provider;
        let c = c.clone();
        async move {
            let (url, state) = admins
                .sso_begin(&http, partner, &redirect, "/customers", now)
                .await
                .unwrap();
            let back = provider.sign_in_http(&url, email, pw).await.unwrap();
            assert!(back.starts_with(&redirect), "{back}");
            assert_eq!(query_of(&back, "state").as_deref(), Some(state.as_str()));
            let code = query_of(&back, "code").unwrap();
            let first = admins
                .sso_finish(&http, &code, &state, &redirect, &c, now)
                .await
                .unwrap();
            let again = admins
                .sso_finish(&http, &code, &state, &redirect, &c, now)
                .await
                .unwrap();
            assert!(
                matches!(again, SsoSignIn::Refused { .. }),
                "a callback is good once"
            );
            first
        }
    };
    let SsoSignIn::Done { secret, next, .. } = finish("ivy@msp.example").await else {
        panic!("ivy is an administrator of the partner");
    };
    assert_eq!(next, "/customers");
    let (session, admin) = admins.current(&secret, now).await.unwrap().unwrap();
    assert_eq!(admin.email, "ivy@msp.example");
    assert_eq!(session.method, "sso");
    for stranger in ["kim@msp.example", "jon@other.example"] {
        let SsoSignIn::Refused { message } = finish(stranger).await else {
            panic!("{stranger} is not an administrator of this partner");
        };
        assert_eq!(message, roster_app::sso::SSO_NO_ADMIN);
    }
    assert!(s
        .store
        .db()
        .admin_by_email("kim@msp.example")
        .await
        .unwrap()
        .is_none());
    let log = admins
        .security_log(Some(Scope::Partner(partner)), None, 100)
        .await
        .unwrap();
    let lines: Vec<String> = log
        .events
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e.kind,
                e.email.clone().unwrap_or_default(),
                e.detail
            )
        })
        .collect();
    for want in [
        "AdminSignedIn ivy@msp.example sso",
        "AdminSignInFailed kim@msp.example single sign-on: no administrator has this email",
        "AdminSignInFailed jon@other.example single sign-on: the administrator belongs to another organisation",
        "SingleSignOnConfigured ",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(want)), "{want} in {lines:#?}");
    }
    // Removed: the button and the flow are gone, and the secret with them.
    admins.remove_sso(&by, partner, now).await.unwrap();
    assert!(admins.sso_partners().await.unwrap().is_empty());
    assert!(s
        .store
        .db()
        .partner_oidc(&s.key, partner)
        .await
        .unwrap()
        .is_none());
}
