//! Helpers shared by the emulator's integration tests: a plain reqwest
//! client speaking to the emulator as a Graph client would.
#![allow(dead_code)]

use reqwest::header::HeaderMap;
use roster_graph_emulator::{GraphEmulator, TenantFixture};
use serde_json::Value;

/// One HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    pub fn value(&self) -> &Vec<Value> {
        self.body["value"].as_array().expect("a collection answer")
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

/// Posts a client-credentials token request with the given form.
pub async fn token_request(emu: &GraphEmulator, tenant: &str, form: &[(&str, &str)]) -> Answer {
    let resp = http()
        .post(emu.token_url(tenant))
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.expect("json body");
    Answer {
        status,
        headers,
        body,
    }
}

/// A valid access token for the fixture's app.
pub async fn token(emu: &GraphEmulator, fx: &TenantFixture) -> String {
    let a = token_request(
        emu,
        &fx.tenant_id,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &fx.client_id),
            ("client_secret", &fx.client_secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["access_token"].as_str().unwrap().to_string()
}

/// GET with a bearer token and extra headers; the body is parsed as JSON
/// when it is JSON, else kept as a string.
pub async fn get(url: &str, token: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = http().get(url);
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("graph request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

/// Follows `@odata.nextLink` to the end; returns every item and the number
/// of pages.
pub async fn get_all(url: &str, token: &str, headers: &[(&str, &str)]) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut next = Some(url.to_string());
    while let Some(u) = next {
        let a = get(&u, token, headers).await;
        assert_eq!(a.status, 200, "{u}: {}", a.body);
        pages += 1;
        items.extend(a.value().iter().cloned());
        next = a.body["@odata.nextLink"].as_str().map(str::to_string);
    }
    (items, pages)
}

/// Runs a delta round from `url` (initial URL or a deltaLink) to its
/// deltaLink; returns the items and the new deltaLink.
pub async fn delta_round(url: &str, token: &str, headers: &[(&str, &str)]) -> (Vec<Value>, String) {
    let mut items = Vec::new();
    let mut next = url.to_string();
    loop {
        let a = get(&next, token, headers).await;
        assert_eq!(a.status, 200, "{next}: {}", a.body);
        items.extend(a.value().iter().cloned());
        if let Some(n) = a.body["@odata.nextLink"].as_str() {
            assert!(a.body.get("@odata.deltaLink").is_none());
            next = n.to_string();
        } else {
            let d = a.body["@odata.deltaLink"]
                .as_str()
                .expect("a round ends with a deltaLink");
            return (items, d.to_string());
        }
    }
}
