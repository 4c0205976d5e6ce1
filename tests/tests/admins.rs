//! Administrators and their sign-in (T4, issue 14), on PostgreSQL and on
//! SQLite: passwords and TOTP, throttling, session timeouts and revocation,
//! one-time links. The browser suite (console_auth) drives the same rules
//! through the console.

use chrono::Duration;
use roster_app::admins::{self, Admins, Client, SessionSettings, SignIn};
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

async fn add(s: &TestStore, admins: &Admins, partner: PartnerId, email: &str) {
    admins
        .add(
            email,
            "Ann",
            Scope::Partner(partner),
            Some(PASSWORD),
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
        .enable_totp(admin.admin_id, &totp, &code, now)
        .await
        .unwrap();
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
    let SignIn::Done { secret: a, .. } = admins
        .sign_in("cy@msp.example", PASSWORD, &c, now)
        .await
        .unwrap()
    else {
        panic!()
    };
    let SignIn::Done { secret: b, .. } = admins
        .sign_in("cy@msp.example", PASSWORD, &c, now)
        .await
        .unwrap()
    else {
        panic!()
    };
    let SignIn::Done { secret: d, .. } = admins
        .sign_in("cy@msp.example", PASSWORD, &c, now)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(admins.sessions(admin.admin_id, now).await.unwrap().len(), 3);
    admins.sign_out(&a, now).await.unwrap();
    assert!(admins.current(&a, now).await.unwrap().is_none());
    assert!(admins.current(&b, now).await.unwrap().is_some());
    admins
        .sign_out_everywhere(admin.admin_id, now)
        .await
        .unwrap();
    assert!(admins.current(&b, now).await.unwrap().is_none());
    assert!(admins.current(&d, now).await.unwrap().is_none());
    // A disabled administrator's sessions end and it cannot sign in.
    let SignIn::Done { secret: e, .. } = admins
        .sign_in("cy@msp.example", PASSWORD, &c, now)
        .await
        .unwrap()
    else {
        panic!()
    };
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
        .add("dee@msp.example", "Dee", Scope::Partner(partner), None, now)
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
    let invite = admins.issue_link(id, LinkKind::Invite, now).await.unwrap();
    assert!(
        admins
            .redeem_link(&invite, LinkKind::Reset, PASSWORD, now)
            .await
            .is_err(),
        "an invitation is not a reset link"
    );
    assert!(
        admins
            .redeem_link(&invite, LinkKind::Invite, "short", now)
            .await
            .is_err(),
        "a short password is refused"
    );
    admins
        .redeem_link(&invite, LinkKind::Invite, PASSWORD, now)
        .await
        .unwrap();
    let again = admins
        .redeem_link(&invite, LinkKind::Invite, "another long password", now)
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
    let old = admins.issue_link(id, LinkKind::Reset, now).await.unwrap();
    let new = admins.issue_link(id, LinkKind::Reset, now).await.unwrap();
    assert!(admins
        .redeem_link(&old, LinkKind::Reset, "a new long password", now)
        .await
        .is_err());
    let later = now + Duration::minutes(61);
    assert!(
        admins
            .redeem_link(&new, LinkKind::Reset, "a new long password", later)
            .await
            .is_err(),
        "expired"
    );
    let fresh = admins.issue_link(id, LinkKind::Reset, later).await.unwrap();
    admins
        .redeem_link(&fresh, LinkKind::Reset, "a new long password", later)
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
        .add("EVE@msp.example", "Eve", Scope::Partner(partner), None, now)
        .await;
    assert_eq!(dup.unwrap_err().code(), "admin_exists");
    let nowhere = admins
        .add(
            "x@msp.example",
            "X",
            Scope::Customer(CustomerId::new()),
            None,
            now,
        )
        .await;
    assert_eq!(nowhere.unwrap_err().code(), "not_found");
    let c = s.customer(10, &["cust.example"]).await;
    let id = admins
        .add("cadmin@cust.example", "C", Scope::Customer(c), None, now)
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
        .enable_totp(a.admin_id, &totp, &code, s.clock.now())
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
        s.store
            .db()
            .partner_oidc_secret(&s.key, partner)
            .await
            .unwrap(),
        Some(secret)
    );
}

both_backends!(
    t4_password_then_totp_signs_in_and_wrong_codes_do_not,
    t4_unknown_email_and_wrong_password_answer_alike_and_are_throttled,
    t4_sessions_end_after_idle_and_absolute_timeouts_and_on_revocation,
    t4_invitation_and_reset_links_work_once_and_expire,
    t1_administrators_need_an_existing_scope_and_a_new_email,
    t4_totp_and_sso_secrets_are_sealed_at_rest,
);
