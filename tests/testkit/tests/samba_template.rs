//! ROSTER_SAMBA_TEMPLATE_DIR: the first DC is provisioned and kept as a
//! template, the next ones are copies that work the same.
//! (Its own test binary: it sets an environment variable.)

use std::time::Instant;

use roster_testkit::{SambaDc, Security};

#[tokio::test]
async fn later_dcs_are_copies_of_a_cached_template() {
    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("ROSTER_SAMBA_TEMPLATE_DIR", cache.path());

    let t = Instant::now();
    let first = SambaDc::start().await.unwrap();
    let provisioned = t.elapsed();
    let templates: Vec<_> = std::fs::read_dir(cache.path()).unwrap().flatten().collect();
    assert_eq!(templates.len(), 1, "one template kept");
    assert!(templates[0].path().join(".complete").exists());

    let t = Instant::now();
    let second = SambaDc::start().await.unwrap();
    let copied = t.elapsed();
    eprintln!("provisioned in {provisioned:?}, copied in {copied:?}");
    assert_ne!(first.ip(), second.ip());
    assert!(!std::fs::read_to_string(second.smb_conf())
        .unwrap()
        .contains(&first.dir().display().to_string()));

    for dc in [&first, &second] {
        let ou = dc.new_ou().await.unwrap();
        let user = ou.new_user("Tem", "Plate", "example.org");
        ou.create_user(&user).await.unwrap();
        dc.bind(Security::Ldaps, &dc.admin_dn(), dc.admin_password())
            .await
            .unwrap();
    }
    std::env::remove_var("ROSTER_SAMBA_TEMPLATE_DIR");
}
