//! User Conflicts (D3.h, D3.i, D3.m): the users a directory sync flagged
//! for deletion, with why, since when and when they will be deleted;
//! Delete, Ignore and Deactivate on the ticked users, and the Export (the
//! API's formula-safe CSV, M2). The service is
//! [`roster_sync::SyncService::conflict_action`], as for the API.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use roster_events::{Address, Status};
use roster_projections::queries::{self, UserFilter};
use roster_sync::ConflictAction;
use serde::Deserialize;

use super::view::{self, source_label, when_opt};
use super::CustomerPage;
use crate::error::PageError;
use crate::layout::{redirect_with, render, section, Flash, Layout};
use crate::ConsoleState;

/// Rows per page.
const PAGE_SIZE: i64 = 50;
/// Users one action may take (the API's limit).
const MAX_ACTION: usize = 10_000;

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/customers/{c}/conflicts", get(list))
        .route("/customers/{c}/conflicts.csv", get(export))
        .route("/customers/{c}/conflicts/actions", post(act))
}

#[derive(Debug, Default, Deserialize)]
pub struct ConflictQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub page: String,
}

impl ConflictQuery {
    fn filter(&self) -> UserFilter {
        UserFilter {
            q: Some(self.q.trim().to_string()).filter(|q| !q.is_empty()),
            status: Some(Status::PendingDeletion),
            source: None,
            kind: None,
        }
    }

    fn href(&self, base: &str, page: Option<&str>) -> String {
        view::href(base, [("q", self.q.as_str()), ("page", page.unwrap_or(""))])
    }
}

pub struct ConflictItem {
    /// The primary address as stored (the checkbox's value).
    pub value: String,
    pub address: String,
    pub href: String,
    pub name: String,
    pub source: &'static str,
    pub why: String,
    pub since: String,
    pub delete_at: String,
    pub id: String,
}

#[derive(Template)]
#[template(path = "pages/conflicts.html")]
struct ConflictsPage {
    layout: Layout,
    csrf: String,
    name: String,
    q: String,
    search_action: String,
    action: String,
    export_href: String,
    domains_href: String,
    users: Vec<ConflictItem>,
    first_href: String,
    next_href: String,
}

/// GET /customers/{c}/conflicts
pub async fn list(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Query(query): Query<ConflictQuery>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let page = Some(query.page.trim()).filter(|p| !p.is_empty());
    let found =
        queries::list_users(&state.app.store, customer, &query.filter(), page, PAGE_SIZE).await?;
    let c = customer.to_string();
    let base = format!("{}/conflicts", view::customer_href(&c));
    let users = found
        .items
        .iter()
        .enumerate()
        .map(|(i, r)| ConflictItem {
            value: r.address.clone(),
            address: view::address(&r.address),
            href: view::user_href(&c, &r.address),
            name: view::full_name(&r.profile),
            source: source_label(r.source),
            why: r
                .flag_reason
                .map(|f| view::flag_label(f).to_string())
                .unwrap_or_else(|| "flagged for deletion".into()),
            since: when_opt(r.flagged_at),
            delete_at: if r.delete_at.is_some() {
                when_opt(r.delete_at)
            } else {
                "never: kept until an administrator acts".into()
            },
            id: format!("u{i}"),
        })
        .collect();
    Ok(render(&ConflictsPage {
        layout: super::layout(
            &admin,
            &row,
            format!("{}: user conflicts", row.name),
            section::CONFLICTS,
        ),
        csrf: admin.csrf.clone(),
        name: row.name.clone(),
        search_action: base.clone(),
        action: format!("{base}/actions"),
        export_href: query.href(&format!("{base}.csv"), None),
        domains_href: format!("{}/domains", view::customer_href(&c)),
        users,
        first_href: if page.is_some() {
            query.href(&base, None)
        } else {
            String::new()
        },
        next_href: found
            .next_page
            .as_deref()
            .map(|p| query.href(&base, Some(p)))
            .unwrap_or_default(),
        q: query.q,
    }))
}

/// GET /customers/{c}/conflicts.csv: the API's Export, same bytes (M2).
pub async fn export(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Query(query): Query<ConflictQuery>,
) -> Result<Response, PageError> {
    Ok(roster_api::export::conflicts_csv_of(
        state.app.store.clone(),
        scoped.customer,
        query.filter(),
    ))
}

/// The action a button names, in the API's words.
pub fn parse_action(action: &str) -> Option<ConflictAction> {
    match action.trim().to_ascii_lowercase().as_str() {
        "delete" => Some(ConflictAction::Delete),
        "ignore" => Some(ConflictAction::Ignore),
        "deactivate" => Some(ConflictAction::Deactivate),
        _ => None,
    }
}

/// What the flash says after an action: the counts, and each failure with
/// its reason.
pub fn summary(action: ConflictAction, done: usize, failed: &[String]) -> Flash {
    let verb = match action {
        ConflictAction::Delete => "deleted",
        ConflictAction::Ignore => "ignored (kept, no longer flagged)",
        ConflictAction::Deactivate => "deactivated",
    };
    let users = |n: usize| if n == 1 { "user" } else { "users" };
    let head = format!("{done} {} {verb}.", users(done));
    if failed.is_empty() {
        Flash::success(head)
    } else {
        Flash::error(format!(
            "{head} {} {} not changed: {}",
            failed.len(),
            users(failed.len()),
            failed.join("; ")
        ))
    }
}

/// POST /customers/{c}/conflicts/actions: `action` and the ticked
/// `address` fields (repeated).
pub async fn act(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path(c): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin, customer, ..
    } = scoped;
    let back = format!("{}/conflicts", view::customer_href(&c));
    let secure = state.config.secure();
    let action = fields
        .iter()
        .find(|(k, _)| k == "action")
        .and_then(|(_, v)| parse_action(v));
    let Some(action) = action else {
        return Ok(redirect_with(
            &back,
            Flash::error("Choose Delete, Ignore or Deactivate."),
            secure,
        ));
    };
    let mut failed = Vec::new();
    let mut valid = Vec::new();
    for (_, a) in fields.iter().filter(|(k, _)| k == "address") {
        match Address::parse(a) {
            Ok(addr) => valid.push(addr),
            Err(e) => failed.push(format!("{a}: {e}")),
        }
    }
    if valid.is_empty() && failed.is_empty() {
        return Ok(redirect_with(
            &back,
            Flash::error("Tick at least one user, then choose the action."),
            secure,
        ));
    }
    if valid.len() > MAX_ACTION {
        return Ok(redirect_with(
            &back,
            Flash::error(format!("Tick at most {MAX_ACTION} users at a time.")),
            secure,
        ));
    }
    let meta = admin.meta(customer, &state);
    let (results, _) = state
        .app
        .written(state.sync.conflict_action(&meta, action, &valid))
        .await
        .map_err(|e| PageError::from(roster_app::AppError::from(e)))?;
    let mut done = 0;
    for (a, r) in results {
        match r {
            Ok(()) => done += 1,
            Err(e) => failed.push(format!("{}: {e}", view::address(a.as_str()))),
        }
    }
    Ok(redirect_with(&back, summary(action, done, &failed), secure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d3m_actions_are_the_apis_words() {
        assert_eq!(parse_action(" Ignore "), Some(ConflictAction::Ignore));
        assert_eq!(parse_action("delete"), Some(ConflictAction::Delete));
        assert_eq!(parse_action("deactivate"), Some(ConflictAction::Deactivate));
        assert_eq!(parse_action("purge"), None);
    }

    #[test]
    fn d3m_the_flash_counts_and_names_each_failure() {
        let ok = summary(ConflictAction::Ignore, 1, &[]);
        assert_eq!(ok.kind, "success");
        assert_eq!(ok.message, "1 user ignored (kept, no longer flagged).");
        let mixed = summary(
            ConflictAction::Delete,
            2,
            &["x@ex.com: x@ex.com is not a conflict (not flagged for deletion)".into()],
        );
        assert_eq!(mixed.kind, "error");
        assert_eq!(
            mixed.message,
            "2 users deleted. 1 user not changed: x@ex.com: x@ex.com is not a conflict (not flagged for deletion)"
        );
    }
}
