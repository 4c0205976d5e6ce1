//! A sync run as a user's history links to it (B4, E2): its status,
//! times, counts and failure reason. The directory pages (part 2 of the
//! console) add its per-user report and the held-run decisions.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;

use super::view::{directory_label, run_status_label, when, when_opt};
use super::CustomerPage;
use crate::error::PageError;
use crate::layout::{render, section, Layout};
use crate::ConsoleState;

#[derive(Template)]
#[template(path = "pages/run.html")]
struct RunPage {
    layout: Layout,
    run_id: String,
    source: &'static str,
    trigger: String,
    status: &'static str,
    started: String,
    finished: String,
    reason: String,
    counts: Vec<(&'static str, u64)>,
    held: String,
    over_seat_limit: bool,
}

/// GET /customers/{c}/runs/{run}
pub async fn show(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path((_, run)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let r = roster_projections::directory::run(&state.app.store, customer, &run)
        .await?
        .ok_or(PageError::NotFound)?;
    let counts = r
        .counts
        .map(|k| {
            vec![
                ("Read from the directory", k.read),
                ("Added", k.added),
                ("Came back", k.returned),
                ("Updated", k.updated),
                ("Renamed", k.renamed),
                ("Aliases mapped", k.aliases_mapped),
                ("Aliases removed", k.aliases_unmapped),
                ("Flagged for deletion", k.flagged),
                ("Flags lifted", k.unflagged),
                ("Skipped", k.skipped),
                ("Unchanged", k.unchanged),
            ]
        })
        .unwrap_or_default();
    let held = match (r.would_flag, r.directory_users) {
        (Some(w), Some(d)) => format!("would flag {w} of {d} directory users"),
        _ => String::new(),
    };
    Ok(render(&RunPage {
        layout: super::layout(&admin, &row, "Sync run", section::DASHBOARD),
        source: directory_label(r.kind),
        trigger: r.trigger.as_str().replace('_', " "),
        status: run_status_label(r.status),
        started: when(r.started_at),
        finished: when_opt(r.finished_at),
        reason: [r.code.clone(), r.reason.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": "),
        counts,
        held,
        over_seat_limit: r.over_seat_limit.unwrap_or(false),
        run_id: r.run_id.to_string(),
    }))
}
