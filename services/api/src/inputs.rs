//! Inputs that cannot hurt (issue 10): every text a request carries (JSON
//! body fields, path and query parameters) is checked once, here, before a
//! handler runs, so no store, filter or event ever sees a NUL or another
//! control character, an oversized string or a query parameter the
//! operation does not take. The query parameters an operation takes are the
//! ones its OpenAPI document lists, so the document and the checks cannot
//! drift apart.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use axum::extract::{MatchedPath, RawPathParams, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// The longest text a JSON field, path or query parameter may hold, in
/// characters; fields with a tighter limit check it where they are parsed.
pub const TEXT_MAX: usize = 4096;
/// The longest PEM bundle of CA certificates (`ca_pem`).
pub const PEM_MAX: usize = 65_536;

/// Body fields that may hold line breaks and tabs: notes, a PEM bundle, and
/// pasted CSV text (whose cells the import checks one by one, as a file's).
const MULTILINE: &[&str] = &["notes", "ca_pem", "text"];

/// The first character of `value` that a field cannot hold: every control
/// character (C0, DEL, C1), except tab and line breaks in multi-line fields.
fn control_character(value: &str, multiline: bool) -> Option<char> {
    value
        .chars()
        .find(|&c| c.is_control() && !(multiline && matches!(c, '\t' | '\n' | '\r')))
}

/// Checks one text input; `what` names it for the message, such as
/// "query parameter `q`" or "`customer.name`".
fn check_text(what: &str, value: &str, multiline: bool, max: usize) -> ApiResult<()> {
    if let Some(c) = control_character(value, multiline) {
        return Err(ApiError::invalid(format!(
            "{what} holds the control character U+{:04X}: remove it",
            u32::from(c)
        )));
    }
    if value.len() > max && value.chars().count() > max {
        return Err(ApiError::invalid(format!(
            "{what} is longer than {max} characters"
        )));
    }
    Ok(())
}

/// Checks every string (and key) of a JSON body, naming the field by its
/// path, such as `domains[1]` or `ldap.host`.
pub fn check_json(value: &Value) -> ApiResult<()> {
    fn walk(path: &mut String, field: &str, value: &Value) -> ApiResult<()> {
        match value {
            Value::String(s) => {
                let name = if path.is_empty() { "the body" } else { path };
                let multiline = MULTILINE.contains(&field);
                let max = match field {
                    "ca_pem" => PEM_MAX,
                    // Bounded by the import's body limit.
                    "text" => usize::MAX,
                    _ => TEXT_MAX,
                };
                check_text(&format!("`{name}`"), s, multiline, max)
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(path, field, item)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Value::Object(map) => {
                for (key, item) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    check_text("a field name", key, false, 256)?;
                    walk(path, key, item)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    walk(&mut String::new(), "", value)
}

/// A JSON body already parsed as a value, checked, then read as `T`; a
/// wrong field is named by its path.
pub fn from_value<T: DeserializeOwned>(value: Value) -> ApiResult<T> {
    check_json(&value)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::invalid(format!("the request body is not valid: {inner}"))
        } else {
            ApiError::invalid(format!("the request body is not valid: {path}: {inner}"))
        }
    })
}

/// A JSON body from its bytes (for routes whose body is optional).
pub fn from_slice<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}")))?;
    from_value(value)
}

/// The query parameters each documented operation takes, by route and method.
static QUERY_PARAMETERS: LazyLock<HashMap<(String, Method), BTreeSet<String>>> =
    LazyLock::new(|| {
        use utoipa::openapi::path::ParameterIn;
        let doc = crate::openapi::document();
        let mut map = HashMap::new();
        for (path, item) in &doc.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let names = operation
                    .parameters
                    .iter()
                    .flatten()
                    .filter(|p| matches!(p.parameter_in, ParameterIn::Query))
                    .map(|p| p.name.clone())
                    .collect();
                map.insert((path.clone(), method), names);
            }
        }
        map
    });

/// Refuses a request whose path or query parameters hold control characters
/// or oversized text, or whose query names a parameter the operation does
/// not take (400 `invalid_request`, naming the parameter).
pub async fn check_request(
    matched: Option<MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    match check_parts(matched.as_ref(), params, &request) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

fn check_parts(
    matched: Option<&MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    request: &Request,
) -> ApiResult<()> {
    // Unmatched routes answer 404 from the fallback, and undocumented
    // methods 405 from the router; HEAD is answered by GET.
    let Some(matched) = matched else {
        return Ok(());
    };
    let method = match request.method() {
        &Method::HEAD => Method::GET,
        m => m.clone(),
    };
    let Some(allowed) = QUERY_PARAMETERS.get(&(matched.as_str().to_string(), method)) else {
        return Ok(());
    };
    match params {
        Ok(params) => {
            for (name, value) in &params {
                check_text(&format!("path parameter `{name}`"), value, false, TEXT_MAX)?;
            }
        }
        Err(axum::extract::rejection::RawPathParamsRejection::InvalidUtf8InPathParam(e)) => {
            return Err(ApiError::invalid(format!("the path is not valid: {e}")));
        }
        // A route without parameters.
        Err(_) => {}
    }
    let Some(query) = request.uri().query() else {
        return Ok(());
    };
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if !allowed.contains(name.as_ref()) {
            check_text("a query parameter name", &name, false, 256)?;
            let takes = if allowed.is_empty() {
                "this operation takes no query parameters".to_string()
            } else {
                format!(
                    "this operation takes {}",
                    allowed
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(ApiError::invalid(format!(
                "unknown query parameter `{name}`: {takes} (see /openapi.json)"
            )));
        }
        check_text(
            &format!("query parameter `{name}`"),
            &value,
            false,
            TEXT_MAX,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_control_character_is_named_by_its_field_path() {
        let e = check_json(&json!({"name": "a\u{0}b"})).unwrap_err();
        assert_eq!(e.code, "invalid_request");
        assert!(
            e.message.contains("`name`") && e.message.contains("U+0000"),
            "{}",
            e.message
        );
        let e = check_json(&json!({"domains": ["a.example", "b\u{1b}.example"]})).unwrap_err();
        assert!(e.message.contains("`domains[1]`"), "{}", e.message);
        let e = check_json(&json!({"ldap": {"host": "h\u{85}"}})).unwrap_err();
        assert!(
            e.message.contains("`ldap.host`") && e.message.contains("U+0085"),
            "{}",
            e.message
        );
    }

    #[test]
    fn line_breaks_only_in_multi_line_fields_and_text_is_bounded() {
        check_json(&json!({"notes": "one\ntwo\tthree\r\n"})).unwrap();
        check_json(&json!({"ca_pem": "-----BEGIN\nx\n-----END\n"})).unwrap();
        assert!(check_json(&json!({"first_name": "one\ntwo"})).is_err());
        assert!(check_json(&json!({"notes": "a\u{0}"})).is_err());
        let e = check_json(&json!({"company": "x".repeat(1 << 20)})).unwrap_err();
        assert!(e.message.contains("longer than 4096"), "{}", e.message);
        assert!(check_json(&json!({"ca_pem": "x".repeat(1 << 20)})).is_err());
    }
}
