//! A 100,000-user tenant: generation and a full paged read. Timing limits
//! are asserted in release builds (`cargo test --release`); debug builds
//! only check correctness and print the figures.

mod common;

use std::time::Instant;

use common::{get, token};
use roster_graph_emulator::{GenerateUsers, GraphEmulator};

#[tokio::test]
async fn hundred_thousand_users_generate_and_read_fast() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("bigcorp");
    let t0 = Instant::now();
    let ids = fx.tenant.generate_users(GenerateUsers {
        alias_domain: Some("bigcorp.net".into()),
        disabled_every: Some(100),
        ..GenerateUsers::new(100_000, "bigcorp.com")
    });
    let generated = t0.elapsed();
    assert_eq!(ids.len(), 100_000);
    assert_eq!(fx.tenant.user_count(), 100_000);

    let tok = token(&emu, &fx).await;
    let http = common::http();
    let t1 = Instant::now();
    let mut url = Some(format!(
        "{}/users?$top=999&$select=id,mail,proxyAddresses,givenName,surname,accountEnabled",
        emu.graph_base()
    ));
    let (mut n, mut pages, mut disabled) = (0usize, 0usize, 0usize);
    while let Some(u) = url {
        let body: serde_json::Value = http
            .get(&u)
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let value = body["value"].as_array().unwrap();
        n += value.len();
        disabled += value
            .iter()
            .filter(|u| u["accountEnabled"] == false)
            .count();
        pages += 1;
        url = body["@odata.nextLink"].as_str().map(str::to_string);
    }
    let read = t1.elapsed();
    assert_eq!((n, pages, disabled), (100_000, 101, 1_000));
    eprintln!(
        "100k users: generated in {} ms, full read ($top=999, {pages} pages) in {} ms",
        generated.as_millis(),
        read.as_millis()
    );
    if !cfg!(debug_assertions) {
        assert!(
            generated.as_millis() < 1_000,
            "generation took {generated:?}"
        );
        assert!(read.as_millis() < 2_000, "full read took {read:?}");
    }

    // A filtered advanced count over the whole tenant.
    let a = get(
        &format!(
            "{}/users/$count?$filter=accountEnabled eq false",
            emu.graph_base()
        ),
        &tok,
        &[("ConsistencyLevel", "eventual")],
    )
    .await;
    assert_eq!(a.body, serde_json::json!(1_000));
}
