//! CSV import with review (M2): review a file, look at the review, commit
//! it; the sample file. The service is [`roster_app::imports`].

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use roster_csv::{Delimiter, EncodingChoice, ImportOptions};
use roster_events::ImportId;
use serde::Deserialize;
use tracing::Instrument;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery, Scoped};
use crate::AppState;
use roster_app::imports::{self, ImportSettings, ImportView, InputKind, ReviewInput, RowQuery};

/// The body limit of every route but the import review.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;
/// The body limit of the import review: the largest file, plus room for a
/// multipart envelope or JSON escaping of pasted text.
pub const IMPORT_BODY_LIMIT: usize = roster_csv::DEFAULT_MAX_BYTES + 2 * 1024 * 1024;

/// The routes of this module, merged into the API's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/customers/{c}/imports",
            post(review).layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .route("/v1/customers/{c}/imports/sample.csv", get(sample))
        .route("/v1/customers/{c}/imports/{id}", get(show))
        .route("/v1/customers/{c}/imports/{id}/commit", post(commit))
}

fn is_import_review(req: &Request) -> bool {
    if req.method() != axum::http::Method::POST {
        return false;
    }
    let parts: Vec<&str> = req.uri().path().trim_end_matches('/').split('/').collect();
    matches!(parts.as_slice(), ["", "v1", "customers", _, "imports"])
}

/// The request body limit: 8 MiB, except for the import review, which
/// takes files up to roster-csv's limit (64 MiB). A body over the limit is
/// refused with 413 (`file_too_large` for an import) before it is read.
pub async fn body_limit(req: Request, next: Next) -> Response {
    let import = is_import_review(&req);
    let limit = if import {
        IMPORT_BODY_LIMIT
    } else {
        BODY_LIMIT
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(import, declared.unwrap_or_default()).into_response();
    }
    let (parts, body) = req.into_parts();
    let body = Body::new(http_body_util::Limited::new(body, limit));
    next.run(Request::from_parts(parts, body)).await
}

fn too_large(import: bool, size: u64) -> ApiError {
    if import {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!(
                "the file is {}over the limit of {} bytes: split it into smaller files",
                if size > 0 {
                    format!("{size} bytes, ")
                } else {
                    String::new()
                },
                roster_csv::DEFAULT_MAX_BYTES
            ),
        )
    } else {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("the request body is over the limit of {BODY_LIMIT} bytes"),
        )
    }
}

/// How to read the file (all optional; detected by default).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    /// `auto` (default), `utf-8`, `utf-16le`, `utf-16be` or `windows-1252`.
    pub encoding: Option<String>,
    /// `comma`, `semicolon` or `tab`; detected by default.
    pub delimiter: Option<String>,
    /// The file's name, shown with the review (a raw body has none).
    pub file_name: Option<String>,
    /// Rows of the review in the answer: 1 to 10000, default 1000; the
    /// rest with GET .../imports/{id}.
    pub page_size: Option<i64>,
}

/// Pasted text, as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PastedText {
    /// The CSV text, header line first.
    pub text: String,
    pub encoding: Option<String>,
    pub delimiter: Option<String>,
    pub file_name: Option<String>,
}

/// A file upload (`multipart/form-data`): a `file` part (or pasted `text`),
/// with optional `encoding` and `delimiter` parts.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ImportUpload {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    pub text: Option<String>,
    pub encoding: Option<String>,
    pub delimiter: Option<String>,
}

/// Which rows of a review to show.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// The `next_page` of the previous answer.
    pub page: Option<String>,
    /// 1 to 10000; default 1000.
    pub page_size: Option<i64>,
    /// Only rows with this outcome: `add`, `update`, `unchanged` or `error`.
    pub outcome: Option<String>,
}

fn options(encoding: Option<&str>, delimiter: Option<&str>) -> ApiResult<ImportOptions> {
    let mut o = ImportOptions::default();
    if let Some(e) = encoding.filter(|e| !e.trim().is_empty()) {
        o.encoding = e
            .parse::<EncodingChoice>()
            .map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    if let Some(d) = delimiter.filter(|d| !d.trim().is_empty()) {
        o.delimiter = Some(d.parse::<Delimiter>().map_err(ApiError::invalid)?);
    }
    Ok(o)
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn body_error(e: impl std::error::Error + 'static, import: bool) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return too_large(import, 0);
        }
        source = s.source();
    }
    ApiError::invalid(format!("the request body could not be read: {e}"))
}

/// Reads the file out of the request: a multipart upload, pasted text as
/// JSON, or the body itself.
async fn input(state: &AppState, query: &ReviewQuery, req: Request) -> ApiResult<ReviewInput> {
    let media = media_type(req.headers());
    if media == "multipart/form-data" {
        let mut form = Multipart::from_request(req, state).await.map_err(|e| {
            ApiError::invalid(format!("the upload is not valid: {}", e.body_text()))
        })?;
        let mut file = None;
        let mut text = None;
        let (mut encoding, mut delimiter) = (query.encoding.clone(), query.delimiter.clone());
        let mut file_name = query.file_name.clone();
        while let Some(field) = form.next_field().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(true, 0)
            } else {
                ApiError::invalid(format!("the upload is not valid: {}", e.body_text()))
            }
        })? {
            let name = field.name().unwrap_or("").to_string();
            let upload_name = field.file_name().map(str::to_string);
            let data = field.bytes().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large(true, 0)
                } else {
                    ApiError::invalid(format!("the upload is not valid: {}", e.body_text()))
                }
            })?;
            let value = || String::from_utf8_lossy(&data).trim().to_string();
            match name.as_str() {
                "encoding" => encoding = Some(value()),
                "delimiter" => delimiter = Some(value()),
                "file_name" => file_name = Some(value()),
                "text" if upload_name.is_none() => text = Some(data),
                _ if upload_name.is_some() || name == "file" => {
                    if file.is_some() {
                        return Err(ApiError::invalid(
                            "the upload holds more than one file: send one file per review",
                        ));
                    }
                    if file_name.is_none() {
                        file_name = upload_name;
                    }
                    file = Some(data);
                }
                other => {
                    return Err(ApiError::invalid(format!(
                        "unknown form field '{other}': send the file as 'file' (or pasted text as 'text'), with optional 'encoding' and 'delimiter'"
                    )))
                }
            }
        }
        let (bytes, kind) = match (file, text) {
            (Some(f), None) => (f, InputKind::Upload),
            (None, Some(t)) => (t, InputKind::Text),
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "send either a file or pasted text, not both",
                ))
            }
            (None, None) => {
                return Err(ApiError::invalid(
                    "the upload holds no file: send it as the form field 'file'",
                ))
            }
        };
        return Ok(ReviewInput {
            bytes,
            kind,
            file_name,
            options: options(encoding.as_deref(), delimiter.as_deref())?,
        });
    }
    if media == "application/json" {
        let bytes = axum::body::to_bytes(req.into_body(), IMPORT_BODY_LIMIT)
            .await
            .map_err(|e| body_error(e, true))?;
        let pasted: PastedText = crate::inputs::from_slice(&bytes).map_err(|e| {
            ApiError::invalid(format!(
                "{}; send pasted text as {{\"text\": \"email,first_name\\n...\"}}",
                e.message
            ))
        })?;
        return Ok(ReviewInput {
            bytes: pasted.text.into_bytes().into(),
            kind: InputKind::Text,
            file_name: pasted.file_name.or_else(|| query.file_name.clone()),
            options: options(
                pasted.encoding.as_deref().or(query.encoding.as_deref()),
                pasted.delimiter.as_deref().or(query.delimiter.as_deref()),
            )?,
        });
    }
    let bytes = axum::body::to_bytes(req.into_body(), IMPORT_BODY_LIMIT)
        .await
        .map_err(|e| body_error(e, true))?;
    Ok(ReviewInput {
        bytes,
        kind: if media == "text/plain" {
            InputKind::Text
        } else {
            InputKind::Body
        },
        file_name: query.file_name.clone(),
        options: options(query.encoding.as_deref(), query.delimiter.as_deref())?,
    })
}

fn import_id(raw: &str) -> ApiResult<ImportId> {
    ImportId::parse(raw).map_err(|_| ApiError::not_found("no such import for this customer"))
}

/// Reviews a CSV file (M2): every row's outcome (add, update, unchanged, or
/// error with line, column and reason) and totals. Nothing changes. The
/// file is the request body (`text/csv`, `text/plain` for pasted text, any
/// other type), a `multipart/form-data` upload (`file`, or `text`), or JSON
/// `{"text": ...}`. UTF-8, UTF-16 and Windows-1252; comma, semicolon or tab.
#[utoipa::path(post, path = "/v1/customers/{c}/imports", tag = "imports",
    params(("c" = String, Path, description = "customer id"), ReviewQuery),
    request_body(content(
        (String = "text/csv"),
        (String = "text/plain"),
        (ImportUpload = "multipart/form-data"),
        (PastedText = "application/json"),
    ), description = "The file, pasted text, or an upload"),
    responses(
        (status = 201, description = "The review, with the first page of rows", body = ImportView),
        (status = 400, description = "A file that cannot be read: csv_empty, csv_binary, csv_not_csv, csv_missing_header, csv_no_address_column, csv_duplicate_column, csv_unterminated_quote, csv_invalid_encoding; invalid_request", body = ErrorBody),
        (status = 404, description = "unknown_customer", body = ErrorBody),
        (status = 413, description = "file_too_large, csv_too_many_rows", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn review(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiQuery(query): ApiQuery<ReviewQuery>,
    req: Request,
) -> ApiResult<Response> {
    let input = input(&state, &query, req).await?;
    let settings = ImportSettings::default();
    // A span and a latency histogram for the review (issue 16).
    let started = std::time::Instant::now();
    let id = imports::review(&state, &caller.actor(), customer, input, &settings)
        .instrument(tracing::info_span!("import.review", customer = %customer))
        .await;
    metrics::histogram!("roster_import_review_seconds", "outcome" => outcome(&id))
        .record(started.elapsed().as_secs_f64());
    let id = id?;
    let view = imports::view(
        &state,
        customer,
        id,
        &RowQuery {
            page_size: query.page_size,
            ..RowQuery::default()
        },
    )
    .await?;
    let location = format!("/v1/customers/{customer}/imports/{id}");
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// A review: status, file, totals, seats, the commit's progress and result,
/// and a page of rows (optionally of one outcome).
#[utoipa::path(get, path = "/v1/customers/{c}/imports/{id}", tag = "imports",
    params(("c" = String, Path, description = "customer id"), ("id" = String, Path, description = "import id"), ImportQuery),
    responses((status = 200, body = ImportView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
    ApiPath((_c, id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<ImportQuery>,
) -> ApiResult<Json<ImportView>> {
    let id = import_id(&id)?;
    let outcome =
        match query.outcome.as_deref().filter(|o| !o.trim().is_empty()) {
            Some(o) => Some(imports::Outcome::parse(o).ok_or_else(|| {
                ApiError::invalid("outcome must be add, update, unchanged or error")
            })?),
            None => None,
        };
    let rows = RowQuery {
        page: query.page,
        page_size: query.page_size,
        outcome,
    };
    Ok(Json(imports::view(&state, customer, id, &rows).await?))
}

/// Commits a review: applies exactly its plan with source `csv`, every
/// event correlated by the import id. Refused with 409 `review_stale` (and
/// nothing applied) when a user the plan names changed, an address it
/// claims was taken, or its additions no longer fit the seats; 410
/// `review_expired` after 24 hours. Committing again continues an
/// interrupted commit, or answers a completed one with its first result.
#[utoipa::path(post, path = "/v1/customers/{c}/imports/{id}/commit", tag = "imports",
    params(("c" = String, Path, description = "customer id"), ("id" = String, Path, description = "import id")),
    responses((status = 200, body = imports::CommitResult),
        (status = 404, body = ErrorBody),
        (status = 409, description = "review_stale", body = ErrorBody),
        (status = 410, description = "review_expired", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn commit(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiPath((_c, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<imports::CommitResult>> {
    let id = import_id(&id)?;
    let started = std::time::Instant::now();
    let done: ApiResult<_> = state
        .written(
            imports::commit(
                &state,
                &caller.actor(),
                customer,
                id,
                &ImportSettings::default(),
            )
            .instrument(tracing::info_span!("import.commit", customer = %customer, import = %id)),
        )
        .await
        .map_err(Into::into);
    metrics::histogram!("roster_import_commit_seconds", "outcome" => outcome(&done))
        .record(started.elapsed().as_secs_f64());
    let done = done?;
    Ok(Json(done.result))
}

/// The label of a review's or commit's latency: `ok` or the error code.
/// The outcome label of an import histogram: `ok` or the error's code.
fn outcome<T, E: Into<ApiError> + Clone>(r: &Result<T, E>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.clone().into().code,
    }
}

/// The sample file (M2): the canonical columns and three users in the
/// customer's first managed domain; it imports cleanly.
#[utoipa::path(get, path = "/v1/customers/{c}/imports/sample.csv", tag = "imports",
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sample(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
) -> ApiResult<Response> {
    let text = imports::sample(&state, customer).await?;
    Ok((
        [
            (header::CONTENT_TYPE, crate::export::CSV_CONTENT_TYPE),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"roster-import-sample.csv\"",
            ),
        ],
        text,
    )
        .into_response())
}

/// The OpenAPI part of this module, merged into the document.
#[derive(OpenApi)]
#[openapi(
    paths(review, show, commit, sample),
    components(schemas(
        ImportView, imports::ReviewRow, imports::Outcome, imports::RowIssue, imports::FieldChange,
        imports::FileInfo, imports::ColumnInfo, imports::FileNote, imports::InputKind,
        imports::Totals, imports::SeatInfo, imports::Progress, imports::CommitResult,
        imports::SkippedView, PastedText, ImportUpload,
    )),
    tags((name = "imports", description = "CSV import with review, and the sample file (M2)"))
)]
pub struct ImportsApi;
