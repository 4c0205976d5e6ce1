//! A private nats-server >= 2.10 with JetStream, and its outage controls.

use std::time::Duration;

use roster_testkit::NatsServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A JetStream API request over the plain NATS protocol; returns the reply.
async fn js_request(port: u16, subject: &str, body: &str) -> serde_json::Value {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("INFO "), "{line}");
    let msg = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true}}\r\nSUB _INBOX.t 1\r\nPUB {subject} _INBOX.t {}\r\n{body}\r\nPING\r\n",
        body.len()
    );
    w.write_all(msg.as_bytes()).await.unwrap();
    loop {
        line.clear();
        tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
            .await
            .expect("reply in time")
            .unwrap();
        if line.starts_with("MSG ") {
            let len: usize = line.split_whitespace().last().unwrap().parse().unwrap();
            let mut payload = vec![0u8; len + 2];
            tokio::io::AsyncReadExt::read_exact(&mut r, &mut payload)
                .await
                .unwrap();
            return serde_json::from_slice(&payload[..len]).unwrap();
        }
        assert!(!line.starts_with("-ERR"), "{line}");
    }
}

#[tokio::test]
async fn runs_a_current_server_with_jetstream() {
    let nats = NatsServer::start().await.unwrap();
    assert!(nats.url().starts_with("nats://127.0.0.1:"));
    let info = nats.info().await.unwrap();
    let version = info["version"].as_str().unwrap().to_string();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap());
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    assert!((major, minor) >= (2, 10), "version {version}");
    assert_eq!(info["jetstream"], serde_json::Value::Bool(true), "{info}");

    let account = js_request(nats.port(), "$JS.API.INFO", "").await;
    assert_eq!(
        account["type"], "io.nats.jetstream.api.v1.account_info_response",
        "{account}"
    );
    let created = js_request(
        nats.port(),
        "$JS.API.STREAM.CREATE.EVENTS",
        r#"{"name":"EVENTS","subjects":["events.>"],"storage":"file"}"#,
    )
    .await;
    assert_eq!(created["config"]["name"], "EVENTS", "{created}");
    // Key-value buckets (streams named KV_*) need 2.10+ behaviour.
    let kv = js_request(
        nats.port(),
        "$JS.API.STREAM.CREATE.KV_leases",
        r#"{"name":"KV_leases","subjects":["$KV.leases.>"],"max_msgs_per_subject":1,"allow_rollup_hdrs":true,"deny_delete":true,"allow_direct":true}"#,
    )
    .await;
    assert!(kv.get("error").is_none(), "{kv}");
}

#[tokio::test]
async fn survives_stop_kill_and_start_again_on_the_same_port_and_store() {
    let mut nats = NatsServer::start().await.unwrap();
    let port = nats.port();
    js_request(
        port,
        "$JS.API.STREAM.CREATE.KEEP",
        r#"{"name":"KEEP","subjects":["keep.>"],"storage":"file"}"#,
    )
    .await;

    nats.stop().await;
    assert!(!nats.is_running());
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    nats.start_again().await.unwrap();
    assert_eq!(nats.port(), port);
    let info = js_request(port, "$JS.API.STREAM.INFO.KEEP", "").await;
    assert_eq!(
        info["config"]["name"], "KEEP",
        "the stream survives a graceful restart: {info}"
    );

    nats.kill();
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    nats.start_again().await.unwrap();
    let info = js_request(port, "$JS.API.STREAM.INFO.KEEP", "").await;
    assert_eq!(info["config"]["name"], "KEEP", "and a crash: {info}");
}

#[tokio::test]
async fn servers_are_isolated_and_removed_on_drop() {
    let a = NatsServer::start().await.unwrap();
    let b = NatsServer::start().await.unwrap();
    assert_ne!(a.port(), b.port());
    let (dir, port) = (a.store_dir(), a.port());
    assert!(dir.exists());
    drop(a);
    assert!(!dir.exists());
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    drop(b);
}
