//! Inputs that cannot hurt (issue 10), end to end through the real binary on
//! SQLite and on PostgreSQL: a test generated from `/openapi.json` puts a
//! NUL, a C0 control and a 1 MB string into every string field, path and
//! query parameter of every operation. No answer is a 5xx, every one is a
//! clear client error, and nothing reaches the event log.

use reqwest::{Method, StatusCode};
use roster_tests::process::enc;
use roster_tests::process::on_both;
use roster_tests::RosterProcess;
use serde_json::{json, Map, Value};

/// The position of the last event in the log.
async fn log_head(p: &RosterProcess) -> i64 {
    let (s, v) = p.admin().get("/readyz").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["log_head"].as_i64().expect("log_head")
}

/// The hostile values: a NUL, a C0 control (ESC) and a 1 MB string.
fn hostile() -> Vec<(&'static str, String)> {
    vec![
        ("NUL", "a\u{0}b".to_string()),
        ("C0", "a\u{1b}[31mb".to_string()),
        ("1MB", "a".repeat(1 << 20)),
    ]
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn types(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

/// A plain value of a property's type, and whether it is text (a string or
/// an array of strings) that can carry a hostile value.
fn sample(doc: &Value, schema: &Value) -> (Value, bool) {
    let schema = resolve(doc, schema);
    let t = types(schema);
    if t.contains(&"string") {
        (json!("x"), true)
    } else if t.contains(&"integer") || t.contains(&"number") {
        (json!(1), false)
    } else if t.contains(&"boolean") {
        (json!(false), false)
    } else if t.contains(&"array") {
        let items = resolve(doc, &schema["items"]);
        let text = types(items).contains(&"string");
        (if text { json!(["x"]) } else { json!([]) }, text)
    } else {
        (json!({}), false)
    }
}

struct Request {
    what: String,
    method: Method,
    path: String,
    content_type: &'static str,
    body: Option<Vec<u8>>,
}

/// Every request of the document with one hostile value in one place.
fn requests(doc: &Value, values: &Map<String, Value>) -> Vec<Request> {
    let mut out = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            if !op.is_object() {
                continue;
            }
            let params: Vec<&Value> = op["parameters"].as_array().into_iter().flatten().collect();
            let path_of = |hostile_param: Option<(&str, &str)>| {
                let mut path = template.clone();
                for p in &params {
                    if p["in"] != "path" {
                        continue;
                    }
                    let name = p["name"].as_str().unwrap();
                    let value = match hostile_param {
                        Some((n, v)) if n == name => v.to_string(),
                        _ => values[name].as_str().unwrap().to_string(),
                    };
                    path = path.replace(&format!("{{{name}}}"), &enc(&value));
                }
                path
            };
            // The body, when the operation takes one: JSON (every text
            // field in turn) or text (the whole body).
            let content = &op["requestBody"]["content"];
            let json_schema = content["application/json"]["schema"].clone();
            let text_body = content["text/csv"].is_object();
            let mut base_body = Map::new();
            let mut text_fields = Vec::new();
            if json_schema.is_object() {
                let schema = resolve(doc, &json_schema);
                for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
                    let (v, text) = sample(doc, prop);
                    base_body.insert(name.clone(), v);
                    if text {
                        text_fields.push(name.clone());
                    }
                }
            }
            let plain_body = || {
                json_schema
                    .is_object()
                    .then(|| serde_json::to_vec(&base_body).unwrap())
            };
            let content_type = if json_schema.is_object() {
                "application/json"
            } else {
                "text/csv"
            };
            for (kind, h) in hostile() {
                for p in &params {
                    let name = p["name"].as_str().unwrap();
                    match p["in"].as_str() {
                        Some("path") => out.push(Request {
                            what: format!("{method} {template}: path `{name}` = {kind}"),
                            method: method.clone(),
                            path: path_of(Some((name, &h))),
                            content_type,
                            body: plain_body(),
                        }),
                        Some("query") => out.push(Request {
                            what: format!("{method} {template}: query `{name}` = {kind}"),
                            method: method.clone(),
                            path: format!("{}?{}={}", path_of(None), enc(name), enc(&h)),
                            content_type,
                            body: plain_body(),
                        }),
                        _ => {}
                    }
                }
                for field in &text_fields {
                    let mut body = base_body.clone();
                    let value = match &body[field] {
                        Value::Array(_) => json!([h]),
                        _ => json!(h),
                    };
                    body.insert(field.clone(), value);
                    out.push(Request {
                        what: format!("{method} {template}: body `{field}` = {kind}"),
                        method: method.clone(),
                        path: path_of(None),
                        content_type: "application/json",
                        body: Some(serde_json::to_vec(&body).unwrap()),
                    });
                }
                if text_body {
                    out.push(Request {
                        what: format!("{method} {template}: text body = {kind}"),
                        method: method.clone(),
                        path: path_of(None),
                        content_type: "text/csv",
                        body: Some(
                            format!("email,first_name\n{h}@acme.example,{h}\n").into_bytes(),
                        ),
                    });
                }
            }
        }
    }
    out
}

/// One HTTP/1.1 request written on a socket, for URIs longer than a client
/// library builds; the status and the start of the answer.
async fn raw_request(host: &str, token: &str, r: &Request) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let body = r.body.clone().unwrap_or_default();
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.method,
        r.path,
        r.content_type,
        body.len()
    );
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "no status line in {:?}",
                &text[..text.len().min(100)]
            ))
        })?;
    Ok((status, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i10_every_operation_refuses_nul_controls_and_huge_strings_without_5xx_or_events() {
    on_both(|p| async move {
        let api = p.admin();
        let c = api.customer("Acme", 10, &["acme.example"]).await;
        let (s, v) = api
            .post(
                &format!("/v1/customers/{c}/users"),
                json!({"address": "ann@acme.example"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (_, doc) = api.get("/openapi.json").await;
        let values: Map<String, Value> = json!({
            "c": c,
            "address": "ann@acme.example",
            "domain": "acme.example",
            "run": uuid::Uuid::new_v4().to_string(),
            "id": uuid::Uuid::new_v4().to_string(),
        })
        .as_object()
        .unwrap()
        .clone();
        let before = log_head(&p).await;
        let requests = requests(&doc, &values);
        assert!(
            requests.len() > 300,
            "only {} requests generated",
            requests.len()
        );
        let mut failures = Vec::new();
        let host = api.base.trim_start_matches("http://").to_string();
        for r in &requests {
            if r.path.len() > 60_000 {
                // Beyond what an HTTP client library builds: sent as is.
                match raw_request(&host, &api.token, r).await {
                    Ok((status, text)) => {
                        if !(400..500).contains(&status) {
                            failures.push(format!(
                                "{}: {status} {}",
                                r.what,
                                &text[..text.len().min(200)]
                            ));
                        }
                    }
                    Err(e) => failures.push(format!("{}: no answer: {e}", r.what)),
                }
                continue;
            }
            let mut req = api
                .client
                .request(r.method.clone(), format!("{}{}", api.base, r.path))
                .bearer_auth(&api.token);
            if let Some(body) = &r.body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, r.content_type)
                    .body(body.clone());
            }
            let resp = match req.send().await {
                Ok(resp) => resp,
                Err(e) => {
                    failures.push(format!("{}: no answer: {e}", r.what));
                    continue;
                }
            };
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            // A client error, never a server error or an unrouted path. The
            // one success is the import review, which reports the rows'
            // errors and writes nothing to the log (checked below).
            let review = r.method == Method::POST && r.path.ends_with("/imports");
            let ok = (status.is_client_error() || (review && status.is_success()))
                && status != StatusCode::METHOD_NOT_ALLOWED
                && !text.contains("no such route");
            if !ok {
                failures.push(format!(
                    "{}: {status} {}",
                    r.what,
                    &text[..text.len().min(200)]
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} requests:\n{}",
            failures.len(),
            requests.len(),
            failures.join("\n")
        );
        assert_eq!(log_head(&p).await, before, "hostile requests wrote events");
        // The customer and its user are intact and readable.
        let (s, v) = api.get(&format!("/v1/customers/{c}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = api.get(&format!("/v1/customers/{c}/users")).await;
        assert_eq!(
            (s, v["users"].as_array().map(Vec::len)),
            (StatusCode::OK, Some(1)),
            "{v}"
        );
        p.stop().await;
    })
    .await;
}

/// Issue 10, point by point: the named inputs of the report are refused
/// with 400 `invalid_request` naming the field or parameter, and unknown
/// query parameters are refused on every route, on both back-ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i10_named_inputs_with_nul_and_unknown_query_parameters_are_refused() {
    on_both(|p| async move {
        let api = p.admin();
        let c = api.customer("Acme", 10, &["acme.example"]).await;
        let before = log_head(&p).await;
        let cases: Vec<(Method, String, Option<Value>, &str)> = vec![
            (
                Method::POST,
                "/v1/customers".into(),
                Some(json!({"name": "Ev\u{0}il", "seat_limit": 1, "domains": ["evil.example"]})),
                "`name`",
            ),
            (
                Method::POST,
                format!("/v1/customers/{c}/directory/exceptions"),
                Some(json!({"object_id": "x\u{0}y"})),
                "`object_id`",
            ),
            (
                Method::POST,
                format!("/v1/customers/{c}/users"),
                Some(json!({"address": "bob@acme.example", "company": "A\u{7}"})),
                "`company`",
            ),
            (
                Method::GET,
                format!("/v1/customers/{c}/users?q=%00"),
                None,
                "query parameter `q`",
            ),
            (
                Method::GET,
                format!("/v1/customers/{c}/users?format=csv&q=a%00"),
                None,
                "query parameter `q`",
            ),
            (
                Method::GET,
                format!("/v1/customers/{c}/audit?actor=%00"),
                None,
                "query parameter `actor`",
            ),
            (
                Method::GET,
                format!("/v1/customers/{c}/audit?type=%00"),
                None,
                "query parameter `type`",
            ),
            (
                Method::GET,
                format!("/v1/customers/{c}/directory/objects?kind=%00"),
                None,
                "query parameter `kind`",
            ),
            (
                Method::GET,
                format!("/v1/customers/{c}/directory/syncs/%00"),
                None,
                "path parameter `run`",
            ),
            (
                Method::GET,
                format!("/v1/customers/{c}/users/ann%00%40acme.example"),
                None,
                "path parameter `address`",
            ),
            (
                Method::GET,
                format!("/v1/customers/{c}/users?foo=1"),
                None,
                "unknown query parameter `foo`",
            ),
            (
                Method::GET,
                "/v1/customers?page_size=5".into(),
                None,
                "unknown query parameter `page_size`",
            ),
            (
                Method::GET,
                format!("/v1/customers/{c}/users/{}?bogus=", enc("ann@acme.example")),
                None,
                "unknown query parameter `bogus`",
            ),
            (
                Method::GET,
                "/healthz?x=1".into(),
                None,
                "unknown query parameter `x`",
            ),
            (
                Method::POST,
                "/v1/customers".into(),
                Some(json!({"name": "Big", "seat_limit": 10_000_001u64})),
                "seat_limit",
            ),
            (
                Method::POST,
                "/v1/customers".into(),
                Some(json!({"name": "Big", "seat_limit": u64::MAX})),
                "seat_limit",
            ),
            (
                Method::PATCH,
                format!("/v1/customers/{c}"),
                Some(json!({"seat_limit": 9_223_372_036_854_775_808u64})),
                "seat_limit",
            ),
            (
                Method::GET,
                format!("/v1/customers/{c}/users?page_size=1001"),
                None,
                "page_size",
            ),
            (
                Method::GET,
                format!("/v1/customers/{c}/users?page_size=99999999999999999999"),
                None,
                "page_size",
            ),
        ];
        for (method, path, body, names) in cases {
            let (s, v) = api.call(method.clone(), &path, body.clone()).await;
            assert_eq!(
                (s, v["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_request")),
                "{method} {path} {body:?}: {v}"
            );
            let message = v["message"].as_str().unwrap();
            assert!(message.contains(names), "{method} {path}: {message}");
        }
        assert_eq!(log_head(&p).await, before, "refused requests wrote events");
        // The seat limit at its maximum is kept exactly.
        let (s, v) = api
            .patch(
                &format!("/v1/customers/{c}"),
                json!({"seat_limit": 10_000_000}),
            )
            .await;
        assert_eq!(
            (s, v["seat_limit"].as_i64()),
            (StatusCode::OK, Some(10_000_000)),
            "{v}"
        );
        // No customer named with a NUL exists, and its domain is free.
        let (_, v) = api.get("/v1/customers").await;
        assert_eq!(v["customers"].as_array().unwrap().len(), 1, "{v}");
        let (s, v) = api
            .post(
                "/v1/customers",
                json!({"name": "Evil", "seat_limit": 1, "domains": ["evil.example"]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        p.stop().await;
    })
    .await;
}

/// U1: the look-alike list of issue 10 by hand: each spelling is refused
/// with a message saying what to remove, and two spellings of one address
/// (NFC and NFD, U-label and A-label domain) are one user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u1_look_alike_addresses_are_refused_and_two_spellings_are_one_user() {
    on_both(|p| async move {
        let api = p.admin();
        let c = api.customer("Acme", 10, &["b\u{FC}cher.example"]).await;
        let users = format!("/v1/customers/{c}/users");
        let (s, v) = api
            .post(&users, json!({"address": "jos\u{E9}@b\u{FC}cher.example"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        for (address, says) in [
            (
                "jo\u{200B}s\u{E9}@b\u{FC}cher.example",
                "invisible character",
            ),
            ("jo\u{AD}s\u{E9}@b\u{FC}cher.example", "invisible character"),
            (
                "jo\u{200D}s\u{E9}@b\u{FC}cher.example",
                "invisible character",
            ),
            (
                "jo\u{202E}s\u{E9}@b\u{FC}cher.example",
                "text-direction control",
            ),
            (
                "\u{FF4A}\u{FF4F}s\u{E9}@b\u{FC}cher.example",
                "compatibility form",
            ),
        ] {
            let (s, v) = api.post(&users, json!({"address": address})).await;
            assert_eq!(
                (s, v["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_address")),
                "{address:?}: {v}"
            );
            assert!(
                v["message"].as_str().unwrap().contains(says),
                "{address:?}: {v}"
            );
            let (s, v) = api
                .post(
                    &users,
                    json!({"address": "other@xn--bcher-kva.example", "aliases": [address]}),
                )
                .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "alias {address:?}: {v}");
        }
        for same in [
            "jose\u{301}@b\u{FC}cher.example",
            "JOS\u{C9}@xn--bcher-kva.example",
            "jos\u{E9}@B\u{DC}CHER.example",
        ] {
            let (s, v) = api.post(&users, json!({"address": same})).await;
            assert_eq!(
                (s, v["code"].as_str()),
                (StatusCode::CONFLICT, Some("address_taken")),
                "{same:?}: {v}"
            );
            let (s, v) = api.get(&format!("{users}/{}", enc(same))).await;
            assert_eq!(s, StatusCode::OK, "{same:?}: {v}");
        }
        let (_, v) = api.get(&users).await;
        assert_eq!(v["users"].as_array().unwrap().len(), 1, "{v}");
        // Compared as A-labels, shown as U-labels (T2, U1): in the list, the
        // customer's domains, a search typed with U-labels and the CSV export.
        assert_eq!(
            v["users"][0]["address"], "jos\u{E9}@b\u{FC}cher.example",
            "{v}"
        );
        let (_, v) = api.get(&format!("/v1/customers/{c}/domains")).await;
        assert_eq!(v["domains"][0]["domain"], "b\u{FC}cher.example", "{v}");
        let (_, v) = api.get(&format!("/v1/customers/{c}")).await;
        assert_eq!(v["domains"][0]["domain"], "b\u{FC}cher.example", "{v}");
        for q in [
            "b\u{FC}cher.example",
            "JOS\u{C9}@B\u{DC}CHER.example",
            "bcher-kva",
        ] {
            let (_, v) = api.get(&format!("{users}?q={}", enc(q))).await;
            assert_eq!(v["users"].as_array().unwrap().len(), 1, "{q:?}: {v}");
        }
        let (s, csv) = api.get(&format!("{users}?format=csv")).await;
        assert_eq!(s, StatusCode::OK);
        let csv = csv.as_str().unwrap_or_default();
        assert!(csv.contains("jos\u{E9}@b\u{FC}cher.example"), "{csv}");
        p.stop().await;
    })
    .await;
}
