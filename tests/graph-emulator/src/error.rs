//! Microsoft Graph error responses.
//!
//! Shape from "Microsoft Graph error responses and resource types"
//! (<https://learn.microsoft.com/graph/errors>):
//! `{"error": {"code", "message", "innerError": {"date", "request-id",
//! "client-request-id"}}}`.

/// An error the Graph side answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// Extra response headers (`Retry-After`, `Location`, ...).
    pub headers: Vec<(String, String)>,
    /// Extra members of `innerError` (the throttling sample carries
    /// `code`, `message` and `status` there).
    pub inner: Vec<(String, String)>,
}

impl GraphError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code: code.to_string(),
            message: message.into(),
            headers: Vec::new(),
            inner: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn inner(mut self, name: &str, value: impl Into<String>) -> Self {
        self.inner.push((name.to_string(), value.into()));
        self
    }

    /// 400 `BadRequest` (OData parsing errors).
    pub fn bad_request(message: impl Into<String>) -> Self {
        GraphError::new(400, "BadRequest", message)
    }

    /// 400 `Request_BadRequest`.
    pub fn request_bad_request(message: impl Into<String>) -> Self {
        GraphError::new(400, "Request_BadRequest", message)
    }

    /// 400 `Request_UnsupportedQuery`.
    pub fn unsupported_query(message: impl Into<String>) -> Self {
        GraphError::new(400, "Request_UnsupportedQuery", message)
    }

    /// The error an advanced-only operator answers without `$count=true`
    /// and `ConsistencyLevel: eventual` (advanced queries page).
    pub fn advanced_operator(op: &str) -> Self {
        GraphError::unsupported_query(format!(
            "Operator '{op}' is not supported because the required parameters might be missing. \
             Try adding $count=true query parameter and ConsistencyLevel:eventual header. \
             Refer to https://aka.ms/graph-docs/advanced-queries for more information"
        ))
    }

    /// Filter clause on a property that does not support it (in this mode).
    pub fn unsupported_clause(prop: &str, resource: &str) -> Self {
        GraphError::unsupported_query(format!(
            "Unsupported or invalid query filter clause specified for property '{prop}' of resource '{resource}'."
        ))
    }

    /// 403 `Authorization_RequestDenied`.
    pub fn forbidden() -> Self {
        GraphError::new(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    /// 401 `InvalidAuthenticationToken`.
    pub fn unauthenticated(message: &str) -> Self {
        GraphError::new(401, "InvalidAuthenticationToken", message).header(
            "WWW-Authenticate",
            "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
        )
    }

    /// 404 `Request_ResourceNotFound` for a directory object.
    pub fn not_found(id: &str) -> Self {
        GraphError::new(
            404,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    /// 429 with the body of the throttling guidance sample.
    pub fn throttled(retry_after_secs: u64) -> Self {
        GraphError::new(429, "TooManyRequests", "Please retry again later.")
            .header("Retry-After", retry_after_secs.to_string())
            .inner("code", "429")
            .inner("message", "Please retry after")
            .inner("status", "429")
    }

    /// 503 `serviceNotAvailable`.
    pub fn unavailable(retry_after_secs: Option<u64>) -> Self {
        let e = GraphError::new(
            503,
            "serviceNotAvailable",
            "The service is not available. Try the request again after a delay. There may be a Retry-After header.",
        );
        match retry_after_secs {
            Some(s) => e.header("Retry-After", s.to_string()),
            None => e,
        }
    }

    /// Renders the JSON body.
    pub fn body(&self, date: &str, request_id: &str, client_request_id: &str) -> String {
        let mut inner = serde_json::Map::new();
        for (k, v) in &self.inner {
            inner.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        inner.insert("date".into(), date.into());
        inner.insert("request-id".into(), request_id.into());
        inner.insert("client-request-id".into(), client_request_id.into());
        serde_json::json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": inner,
            }
        })
        .to_string()
    }
}
