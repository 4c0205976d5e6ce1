//! CSS and JavaScript compiled into the binary, served at `/assets/<name>`
//! and linked as `/assets/<name>?v=<content hash>`, so that a browser may
//! keep them for a year and still gets a new file after an upgrade.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::PageError;

/// Every asset: name, content type, bytes. Add a page's script here.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console.js"),
    ),
    (
        "directory.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/directory.js"),
    ),
    (
        "import.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/import.js"),
    ),
];

static HASHES: LazyLock<Vec<(&'static str, String)>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|(name, _, bytes)| (*name, hex::encode(&Sha256::digest(bytes)[..8])))
        .collect()
});

/// The URL of an asset, with its content hash.
pub fn url(name: &str) -> String {
    match HASHES.iter().find(|(n, _)| *n == name) {
        Some((_, hash)) => format!("/assets/{name}?v={hash}"),
        None => format!("/assets/{name}"),
    }
}

pub async fn serve(Path(name): Path<String>) -> Result<Response, PageError> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or(PageError::NotFound)?;
    let mut res = bytes.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(res)
}
