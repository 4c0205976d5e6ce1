//! Responses before they become HTTP, so that they can be recorded.

use chrono::{DateTime, Utc};

use crate::error::GraphError;

/// Per-request context.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub request_id: String,
    pub client_request_id: String,
    pub now: DateTime<Utc>,
}

impl Ctx {
    /// `innerError.date` format of Graph errors (`2021-05-18T19:03:10`).
    pub fn error_date(&self) -> String {
        self.now.format("%Y-%m-%dT%H:%M:%S").to_string()
    }
}

/// Body of a reply.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Json(String),
    Text(String),
    /// Headers, then this much of a body, then the connection is dropped.
    Broken(String),
}

/// A reply ready to be sent.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    pub fault: Option<String>,
}

/// Content type of Graph's JSON answers.
pub(crate) const GRAPH_JSON: &str =
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

impl Reply {
    pub fn json(status: u16, body: String) -> Self {
        Reply {
            status,
            headers: vec![("Content-Type".into(), GRAPH_JSON.into())],
            body: Body::Json(body),
            fault: None,
        }
    }

    pub fn text(status: u16, body: String) -> Self {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: Body::Text(body),
            fault: None,
        }
    }

    pub fn graph_error(e: &GraphError, ctx: &Ctx) -> Self {
        let mut r = Reply::json(
            e.status,
            e.body(&ctx.error_date(), &ctx.request_id, &ctx.client_request_id),
        );
        r.headers.extend(e.headers.iter().cloned());
        r
    }
}
