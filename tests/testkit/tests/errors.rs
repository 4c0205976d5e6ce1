//! Missing or unsuitable programs fail with messages that say what to do.
//! (Its own test binary: it changes environment variables.)

use roster_testkit::{Error, NatsServer, Slapd, SlapdConfig};

// One test: the steps change the process's environment.
#[tokio::test]
async fn missing_or_old_programs_and_bad_settings_say_what_to_do() {
    let err = Slapd::start(SlapdConfig::inet_org_person().base_dn("cn=nope"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dc=, o= or ou="), "{err}");

    std::env::set_var("ROSTER_SLAPD", "/nonexistent/slapd");
    let err = Slapd::start(SlapdConfig::inet_org_person())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotInstalled { .. }), "{err}");
    assert!(err.to_string().contains("ROSTER_SLAPD"), "{err}");
    std::env::remove_var("ROSTER_SLAPD");

    // Debian's nats-server 2.9 is too old: refused with the fix.
    if std::path::Path::new("/usr/sbin/nats-server").exists() {
        std::env::set_var("ROSTER_NATS_SERVER", "/usr/sbin/nats-server");
        let err = NatsServer::start().await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("v2.9") && text.contains("deploy/test-deps.sh"),
            "{text}"
        );
    }
    std::env::set_var("ROSTER_NATS_SERVER", "/nonexistent/nats-server");
    let err = NatsServer::start().await.unwrap_err();
    assert!(err.to_string().contains("deploy/test-deps.sh"), "{err}");
    std::env::remove_var("ROSTER_NATS_SERVER");
}
