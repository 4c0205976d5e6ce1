//! Observability (issue 16), against the real `roster` binary: OpenTelemetry
//! traces received by an OTLP/HTTP receiver that decodes the real protobuf
//! (a request's span continues the caller's `traceparent`, sync-run
//! phases, import review and commit, and the trace context stored with
//! the events for their CloudEvents); one access-log line per request;
//! `/metrics` parsed as Prometheus text with HELP and TYPE on every family
//! and histograms, on `serve` and on the `project` and `worker` roles; lag
//! measured from the log's head; progress lines of `rebuild --verify`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prom_text_format_parser::{Metric, Type, ValueType};
use prost::Message;
use reqwest::StatusCode;
use roster_testkit::{DirectoryData, Slapd, SlapdConfig, Style};
use roster_tests::e2e::{Db, RosterEnv};
use roster_tests::process::{free_port, roster_binary, TEST_SECRET_KEY};
use serde_json::{json, Value};

/// The spans an OTLP/HTTP receiver got, decoded from protobuf.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
    service_names: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    /// Listens on a free port for `POST /v1/traces`; returns its base URL.
    async fn start() -> (Receiver, String) {
        let r = Receiver::default();
        let state = r.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let state = state.clone();
                async move {
                    let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    for rs in req.resource_spans {
                        if let Some(res) = &rs.resource {
                            for kv in &res.attributes {
                                if kv.key == "service.name" {
                                    if let Some(AnyValue::StringValue(s)) =
                                        kv.value.as_ref().and_then(|v| v.value.clone())
                                    {
                                        state.service_names.lock().unwrap().push(s);
                                    }
                                }
                            }
                        }
                        for ss in rs.scope_spans {
                            state.spans.lock().unwrap().extend(ss.spans);
                        }
                    }
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, base)
    }

    /// Waits until a span satisfies `f`.
    async fn wait_for(&self, what: &str, f: impl Fn(&Span) -> bool) -> Span {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.spans.lock().unwrap().iter().find(|s| f(s)) {
                return s.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no span {what}; got: {:?}",
                self.spans
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.clone())
        .map(|v| match v {
            AnyValue::StringValue(s) => s,
            AnyValue::IntValue(i) => i.to_string(),
            AnyValue::BoolValue(b) => b.to_string(),
            AnyValue::DoubleValue(d) => d.to_string(),
            other => format!("{other:?}"),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_traces_exported_over_otlp_continue_the_callers_traceparent() {
    let (receiver, endpoint) = Receiver::start().await;
    let env = RosterEnv::launch(
        Db::Sqlite,
        None,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let r = env
        .api
        .client
        .post(format!("{}/v1/customers", env.p.base))
        .bearer_auth(&env.api.token)
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .json(&json!({"name": "Traced", "seat_limit": 100, "domains": ["example.org"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let c = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The request's span: named by its route template, a child of the
    // caller's span in the caller's trace, with route and status.
    let span = receiver
        .wait_for("POST /v1/customers", |s| s.name == "POST /v1/customers")
        .await;
    assert_eq!(hex(&span.trace_id), trace_id);
    assert_eq!(hex(&span.parent_span_id), parent_id);
    assert_eq!(attr(&span, "http.route").as_deref(), Some("/v1/customers"));
    assert_eq!(
        attr(&span, "http.response.status_code").as_deref(),
        Some("201")
    );
    assert!(attr(&span, "actor").is_some_and(|a| a.starts_with("token:")));
    assert_eq!(
        receiver
            .service_names
            .lock()
            .unwrap()
            .first()
            .map(String::as_str),
        Some("roster")
    );

    // A customer route's span names the customer.
    let (s, _) = env.api.get(&format!("/v1/customers/{c}/users")).await;
    assert_eq!(s, StatusCode::OK);
    let span = receiver
        .wait_for("GET users", |s| s.name == "GET /v1/customers/{c}/users")
        .await;
    assert_eq!(attr(&span, "customer").as_deref(), Some(c.as_str()));

    // The events the request wrote carry its trace context, which the
    // relay publishes as the CloudEvents `traceparent` attribute.
    let db = roster_store::Db::open_sqlite(&env.p.data_dir)
        .await
        .unwrap();
    let store = roster_store::Store::open(db).await.unwrap();
    let events = store.read_from(0, 100).await.unwrap();
    let first = events.first().expect("the customer's events").clone();
    let tp = first.metadata.value().unwrap()["traceparent"]
        .as_str()
        .expect("traceparent in the event's metadata")
        .to_string();
    assert!(
        tp.starts_with(&format!("00-{trace_id}-")) && tp.ends_with("-01"),
        "{tp}"
    );
    let cloudevent = roster_relay::envelope::cloudevent(first, &roster_events::upcasters());
    assert_eq!(cloudevent.traceparent.as_deref(), Some(tp.as_str()));
    let published = serde_json::to_value(&cloudevent).unwrap();
    assert_eq!(published["traceparent"], tp.as_str());
    store.db().close().await;

    // An import's review and commit are spans of their requests.
    let (s, review) = env
        .api
        .post(
            &format!("/v1/customers/{c}/imports"),
            json!({"text": "email,first_name\nann@example.org,Ann\n"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{review}");
    let (s, done) = env
        .api
        .call(
            reqwest::Method::POST,
            &format!(
                "/v1/customers/{c}/imports/{}/commit",
                review["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let review_span = receiver
        .wait_for("import.review", |s| s.name == "import.review")
        .await;
    let commit_span = receiver
        .wait_for("import.commit", |s| s.name == "import.commit")
        .await;
    let parent_of = |child: &Span, name: &str| {
        let spans = receiver.spans.lock().unwrap();
        spans
            .iter()
            .find(|s| s.span_id == child.parent_span_id)
            .map(|s| s.name == name)
            .unwrap_or(false)
    };
    assert!(parent_of(&review_span, "POST /v1/customers/{c}/imports"));
    assert!(parent_of(
        &commit_span,
        "POST /v1/customers/{c}/imports/{id}/commit"
    ));

    // A sync run: a span per phase, children of the run's span, in the
    // trace of the request that started it.
    let data = DirectoryData::new(Style::AdLike, "dc=example,dc=com", "example.org")
        .users(3)
        .groups(1, 2);
    let slapd = Slapd::start(SlapdConfig::ad_like().data(data))
        .await
        .expect("slapd");
    let (s, v) = env
        .api
        .call(
            reqwest::Method::PUT,
            &format!("/v1/customers/{c}/directory"),
            Some(roster_tests::e2e::with(
                roster_tests::e2e::ldap_settings(&slapd, "dc=example,dc=com"),
                json!({"guard": {"max_flags": 100000, "max_percent": 100, "min_flags_for_percent": 100000}}),
            )),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let run = env.start_sync_answer(&c).await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let detail = env.run_detail(&c, &run).await;
    assert_eq!(detail["run"]["status"], "completed", "{detail}");
    let run_span = receiver
        .wait_for("sync.run", |s| s.name == "sync.run")
        .await;
    let sync_request = receiver
        .wait_for("POST .../directory/sync", |s| {
            s.name == "POST /v1/customers/{c}/directory/sync"
        })
        .await;
    assert_eq!(run_span.trace_id, sync_request.trace_id);
    assert_eq!(attr(&run_span, "run").as_deref(), Some(run.as_str()));
    for phase in [
        "sync.read",
        "sync.plan",
        "sync.stage",
        "sync.append",
        "sync.project",
    ] {
        let s = receiver.wait_for(phase, |s| s.name == phase).await;
        assert_eq!(s.trace_id, run_span.trace_id, "{phase}");
    }
    env.p.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_one_access_log_line_per_request_4xx_included() {
    let env = RosterEnv::launch(Db::Sqlite, None, &[("RUST_LOG", "info")]).await;
    let c = env.customer("Logged", &["example.org"]).await;
    let (s, _) = env.api.get(&format!("/v1/customers/{c}/users")).await;
    assert_eq!(s, StatusCode::OK);
    let anonymous = reqwest::Client::new()
        .get(format!("{}/v1/customers", env.p.base))
        .header("x-request-id", "client-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let anonymous_id = anonymous.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let (s, _) = env.api.get("/v1/no-such-route").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let lines: Vec<Value> = env
            .p
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "roster::access")
            .collect();
        if lines.len() >= 4 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let find = |route: &str, status: u64| {
        lines
            .iter()
            .find(|l| l["route"] == route && l["status"] == status)
            .unwrap_or_else(|| panic!("no access line for {route} {status}: {lines:#?}"))
            .clone()
    };
    let users = find("/v1/customers/{c}/users", 200);
    assert_eq!(users["method"], "GET");
    assert_eq!(users["customer"], c.as_str());
    assert!(users["actor"].as_str().unwrap().starts_with("token:"));
    assert!(users["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(!users["request_id"].as_str().unwrap().is_empty());
    let denied = find("/v1/customers", 401);
    assert_eq!(denied["actor"], "-");
    assert_eq!(denied["request_id"], anonymous_id.as_str());
    find("unmatched", 404);
    let created = find("/v1/customers", 201);
    assert_eq!(created["method"], "POST");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["route"] == "/v1/customers/{c}/users")
            .count(),
        1,
        "one line per request"
    );
    env.p.stop().await;
}

/// `/metrics` parsed as Prometheus text (a parser of the exposition
/// format's families): every family has HELP and TYPE, and none is a
/// summary (replicas cannot aggregate summaries).
async fn scrape(url: &str) -> Vec<Metric> {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    let scrape = prom_text_format_parser::Scrape::parse(&text)
        .unwrap_or_else(|e| panic!("not Prometheus text: {e:?}\n{text}"));
    assert!(!scrape.metrics.is_empty());
    for m in &scrape.metrics {
        assert!(
            m.help_desc.as_deref().is_some_and(|h| !h.is_empty()),
            "{} has no HELP line",
            m.name
        );
        assert_ne!(m.kind, Type::Untyped, "{} has no TYPE line", m.name);
        assert_ne!(m.kind, Type::Summary, "{} is a summary", m.name);
    }
    scrape.metrics
}

/// The value of a family's plain sample with these labels.
fn gauge(metrics: &[Metric], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sample(metrics, name, labels, ValueType::Sample).map(|s| s.value.value.as_f64())
}

fn sample<'a>(
    metrics: &'a [Metric],
    name: &str,
    labels: &[(&str, &str)],
    kind: ValueType,
) -> Option<&'a prom_text_format_parser::Sample> {
    metrics
        .iter()
        .filter(|m| m.name == name)
        .flat_map(|m| m.samples.iter())
        .find(|s| {
            s.value.value_type == kind
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|l| l.key == *k && l.value == *v))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_metrics_are_histograms_with_help_and_lag_from_the_log_head() {
    let env = RosterEnv::launch(Db::Postgres, None, &[]).await;
    let c = env.customer("Metered", &["example.org"]).await;
    for i in 0..5 {
        let (s, v) = env
            .api
            .post(
                &format!("/v1/customers/{c}/users"),
                json!({"address": format!("u{i}@example.org")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, _) = env.api.get(&format!("/v1/customers/{c}/users")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = reqwest::get(format!("{}/v1/customers", env.p.base))
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let first = scrape(&format!("{}/metrics", env.p.base)).await;
    let scrape_ = first;
    // Latency by route and status, as a histogram with buckets.
    let latency = scrape_
        .iter()
        .find(|m| m.name == "roster_http_request_seconds")
        .expect("request latency");
    assert_eq!(latency.kind, Type::Histogram);
    let route = [("route", "/v1/customers/{c}/users"), ("status", "201")];
    let buckets = latency
        .samples
        .iter()
        .filter(|s| {
            s.value.value_type == ValueType::Sample
                && route
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|l| l.key == *k && l.value == *v))
        })
        .count();
    assert!(buckets >= 10, "{buckets} buckets");
    let count = sample(
        &scrape_,
        "roster_http_request_seconds",
        &route,
        ValueType::Count,
    )
    .expect("a count");
    assert_eq!(count.value.value.as_f64(), 5.0);
    assert!(
        gauge(
            &scrape_,
            "roster_http_requests_total",
            &[("route", "/v1/customers"), ("status", "401")]
        ) == Some(1.0),
        "4xx counted"
    );
    assert_eq!(
        gauge(
            &scrape_,
            "roster_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(gauge(&scrape_, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(gauge(&scrape_, "process_open_fds", &[]).unwrap() > 0.0);
    assert!(gauge(&scrape_, "roster_db_pool_connections", &[("state", "idle")]).is_some());
    assert_eq!(
        gauge(&scrape_, "roster_db_pool_max_connections", &[]),
        Some(16.0)
    );
    assert_eq!(gauge(&scrape_, "roster_sync_runs_running", &[]), Some(0.0));
    // The gauges read from the database are refreshed every 5 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    let head = loop {
        let m = scrape(&format!("{}/metrics", env.p.base)).await;
        let head = gauge(&m, "roster_log_head_position", &[]).unwrap_or(0.0);
        if head >= 6.0 {
            assert_eq!(gauge(&m, "roster_relay_lag_events", &[]), Some(0.0));
            assert!(gauge(&m, "roster_relay_lag_seconds", &[]).is_some());
            break head;
        }
        assert!(Instant::now() < deadline, "log head {head}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // After a restart the lag is still measured from the log's head (the
    // documented formula compared it with a per-process counter: 20,018
    // against 8).
    let url = env.pg.as_ref().unwrap().url().to_string();
    let dir = tempfile::tempdir().unwrap();
    let second = roster_tests::RosterProcess::start_with(dir.path(), Some(&url), &[]).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let scrape2 = loop {
        let s = scrape(&format!("{}/metrics", second.base)).await;
        if gauge(&s, "roster_log_head_position", &[]).is_some()
            && gauge(
                &s,
                "roster_projection_lag_seconds",
                &[("projection", "users_v2")],
            )
            .is_some()
        {
            break s;
        }
        assert!(Instant::now() < deadline, "no lag gauges");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(gauge(&scrape2, "roster_log_head_position", &[]), Some(head));
    assert_eq!(
        gauge(
            &scrape2,
            "roster_projection_lag_events",
            &[("projection", "users_v2")]
        ),
        Some(0.0)
    );
    assert_eq!(
        gauge(
            &scrape2,
            "roster_projection_lag_seconds",
            &[("projection", "users_v2")]
        ),
        Some(0.0)
    );
    second.stop().await;

    // The project and worker roles serve /healthz, /readyz and /metrics on
    // their --listen port, with the same families described.
    for role in ["project", "worker"] {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut child = tokio::process::Command::new(roster_binary())
            .args([role, "--listen", &listen])
            .env("DATABASE_URL", &url)
            .env("ROSTER_SECRET_KEY", TEST_SECRET_KEY)
            .env("ROSTER_DATA_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://{listen}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = reqwest::get(format!("{base}/readyz"))
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "{role} not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let healthz = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(healthz.status(), StatusCode::OK);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = scrape(&format!("{base}/metrics")).await;
            if gauge(
                &s,
                "roster_projection_lag_events",
                &[("projection", "users_v2")],
            ) == Some(0.0)
                && gauge(&s, "roster_build_info", &[]).is_some()
                && gauge(&s, "roster_db_pool_connections", &[("state", "idle")]).is_some()
            {
                break;
            }
            assert!(Instant::now() < deadline, "{role}: gauges missing");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    env.p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_rebuild_verify_reports_progress_when_not_on_a_terminal() {
    let env = RosterEnv::launch(Db::Sqlite, None, &[]).await;
    let c = env.customer("Replayed", &["example.org"]).await;
    for i in 0..20 {
        let (s, v) = env
            .api
            .post(
                &format!("/v1/customers/{c}/users"),
                json!({"address": format!("u{i}@example.org")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let data_dir = env.p.data_dir.clone();
    env.p.stop().await;
    for args in [
        &["rebuild", "--verify"][..],
        &["rebuild"][..],
        &["migrate"][..],
    ] {
        let out = tokio::process::Command::new(roster_binary())
            .args(args)
            .env("ROSTER_DATA_DIR", &data_dir)
            .env("ROSTER_SECRET_KEY", TEST_SECRET_KEY)
            .env("ROSTER_LOG_FORMAT", "json")
            .env("ROSTER_PROGRESS_SECS", "0.01")
            .env("RUST_LOG", "info")
            .env_remove("DATABASE_URL")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        let messages: Vec<String> = err
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["message"].as_str().map(str::to_string))
            .collect();
        let has = |needle: &str| messages.iter().any(|m| m.contains(needle));
        match args[0] {
            "rebuild" => {
                assert!(has("replaying: started"), "{args:?}: {messages:#?}");
                assert!(has("replaying: done"), "{args:?}: {messages:#?}");
            }
            _ => {
                for phase in [
                    "taking the startup lock",
                    "applying migrations",
                    "creating the projection tables",
                ] {
                    assert!(has(phase), "{phase}: {messages:#?}");
                }
            }
        }
        if args.len() == 2 {
            assert!(
                has("catching up the live projections: done"),
                "{messages:#?}"
            );
            assert!(
                err.contains("every projection equals the live one"),
                "{err}"
            );
        }
    }
}
