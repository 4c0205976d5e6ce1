//! Sync history (B4, D3.s, D3.t): every run with its trigger, status,
//! duration and counts; a run's page with its per-user changes (the events
//! it wrote), the objects it skipped and the addresses several objects
//! claimed, with reasons; a held run's Confirm and Discard; and the Dry
//! run, which shows the plan of the saved settings and changes nothing.
//! Next to a failed run, or one that skipped users of an unmanaged domain,
//! the guide's troubleshooting ([`super::troubleshoot`]).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use roster_events::{CustomerId, SyncCounts};
use roster_projections::directory::{self as runs, RunRow, RunStatus};
use roster_projections::queries;
use roster_projections::reports;
use serde::Deserialize;

use super::history::{detail, event_label};
use super::troubleshoot::{self, Advice};
use super::view::{self, directory_label, run_status_label, when, when_opt};
use super::CustomerPage;
use crate::error::PageError;
use crate::layout::{redirect_with, render, section, Flash, Layout};
use crate::ConsoleState;

/// Runs, changes and report items per page.
const PAGE_SIZE: i64 = 50;

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/customers/{c}/runs", get(list))
        .route(
            "/customers/{c}/runs/dry-run",
            get(dry_run_again).post(dry_run),
        )
        .route("/customers/{c}/runs/{run}", get(show))
        .route("/customers/{c}/runs/{run}/confirm", post(confirm))
        .route("/customers/{c}/runs/{run}/discard", post(discard))
}

/// A page token that is not ours is a bad link; anything else is itself.
fn page_link(token: Option<&str>) -> impl FnOnce(roster_projections::ProjectionError) -> PageError {
    let had_token = token.is_some();
    move |e| match e {
        roster_projections::ProjectionError::Invalid(_) if had_token => {
            view::bad("This page link is not valid any more: start from the first page.")
        }
        other => other.into(),
    }
}

fn sync_error(e: roster_sync::SyncError) -> PageError {
    PageError::from(roster_app::AppError::from(e))
}

/// A run's duration in words (`finished - started`).
pub fn duration(started: i64, finished: Option<i64>) -> String {
    let Some(f) = finished else {
        return String::new();
    };
    let secs = (f - started).max(0) / 1_000_000;
    match secs {
        0 => "under a second".into(),
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// The counts of a run in one line (only what happened).
pub fn counts_line(k: &SyncCounts) -> String {
    let parts: Vec<String> = [
        ("read", k.read),
        ("added", k.added),
        ("came back", k.returned),
        ("updated", k.updated),
        ("renamed", k.renamed),
        ("flagged", k.flagged),
        ("flags lifted", k.unflagged),
        ("skipped", k.skipped),
    ]
    .into_iter()
    .filter(|(name, n)| *n > 0 || *name == "read")
    .map(|(name, n)| format!("{n} {name}"))
    .collect();
    parts.join(", ")
}

/// Who or what started a run.
pub fn trigger_label(t: roster_events::SyncTrigger) -> &'static str {
    match t {
        roster_events::SyncTrigger::Manual => "Sync Now",
        roster_events::SyncTrigger::Scheduled => "Schedule",
        roster_events::SyncTrigger::Confirmed => "Held run confirmed",
    }
}

fn run_href(customer: &str, run: &impl std::fmt::Display) -> String {
    format!("{}/runs/{run}", view::customer_href(customer))
}

/// The troubleshooting a run needs, if any.
async fn advice_for(
    state: &ConsoleState,
    customer: CustomerId,
    r: &RunRow,
) -> Result<Vec<Advice>, PageError> {
    let mut out = Vec::new();
    if matches!(r.status, RunStatus::Failed | RunStatus::Interrupted) {
        out.extend(r.code.as_deref().and_then(troubleshoot::for_failure));
    }
    if let Some(k) = &r.counts {
        if k.skipped > 0 {
            let counts = reports::counts(&state.app.store, customer, &r.run_id.to_string()).await?;
            let n = counts
                .skipped_by_reason
                .get("unmanaged_domain")
                .copied()
                .unwrap_or(0);
            if n > 0 {
                let href = format!("{}/domains", view::customer_href(&customer));
                out.push(troubleshoot::for_unmanaged_domain(n, href));
            }
        }
        if matches!(r.status, RunStatus::Completed | RunStatus::Held) && k.read == 0 {
            out.push(troubleshoot::for_empty_read());
        }
    }
    Ok(out)
}

pub struct RunItem {
    pub href: String,
    pub started: String,
    pub source: &'static str,
    pub trigger: String,
    pub status: &'static str,
    pub failed: bool,
    pub held: bool,
    pub reason: String,
    pub duration: String,
    pub counts: String,
    pub advice: Vec<Advice>,
}

#[derive(Template)]
#[template(path = "pages/runs.html")]
struct RunsPage {
    layout: Layout,
    csrf: String,
    name: String,
    dry_run_action: String,
    runs: Vec<RunItem>,
    first_href: String,
    next_href: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    pub page: String,
}

fn reason_of(r: &RunRow) -> String {
    [r.code.clone(), r.reason.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ")
}

/// GET /customers/{c}/runs: the sync history, newest first.
pub async fn list(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let page = Some(q.page.trim()).filter(|p| !p.is_empty());
    let before = match page {
        None => None,
        Some(p) => Some(runs::runs_after(p).map_err(page_link(Some(p)))?),
    };
    let mut rows = runs::runs(&state.app.store, customer, before, PAGE_SIZE + 1).await?;
    let c = customer.to_string();
    let base = format!("{}/runs", view::customer_href(&c));
    let next_href = if rows.len() as i64 > PAGE_SIZE {
        rows.truncate(PAGE_SIZE as usize);
        rows.last()
            .map(|r| {
                format!(
                    "{base}?page={}",
                    view::encode(runs::runs_cursor(r).as_str())
                )
            })
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        items.push(RunItem {
            href: run_href(&c, &r.run_id),
            started: when(r.started_at),
            source: directory_label(r.kind),
            trigger: trigger_label(r.trigger).to_string(),
            status: run_status_label(r.status),
            failed: matches!(r.status, RunStatus::Failed | RunStatus::Interrupted),
            held: r.status == RunStatus::Held,
            reason: reason_of(r),
            duration: duration(r.started_at, r.finished_at),
            counts: r.counts.as_ref().map(counts_line).unwrap_or_default(),
            advice: advice_for(&state, customer, r).await?,
        });
    }
    Ok(render(&RunsPage {
        layout: super::layout(
            &admin,
            &row,
            format!("{}: sync history", row.name),
            section::RUNS,
        ),
        csrf: admin.csrf.clone(),
        name: row.name.clone(),
        dry_run_action: format!("{base}/dry-run"),
        runs: items,
        first_href: if page.is_some() { base } else { String::new() },
        next_href,
    }))
}

/// A planned or applied change, in words.
pub fn change_label(action: &str) -> &'static str {
    match action {
        "add" => "Add",
        "update" => "Update details",
        "rename" => "Change primary address",
        "map_alias" => "Add alias",
        "unmap_alias" => "Remove alias",
        "flag" => "Flag for deletion",
        "unflag" => "Lift the flag",
        "link" => "Link to the directory",
        "members" => "Change members",
        "end_ignore" => "End the ignored conflict",
        "skip" => "Skip",
        _ => "Change",
    }
}

/// A plan's detail with its RFC 3339 times as the pages show times
/// (`2027-01-01T20:24:56.01+00:00` reads `2027-01-01 20:24 UTC`).
pub fn readable(detail: &str) -> String {
    detail
        .split(' ')
        .map(|word| {
            let end = word.trim_end_matches([',', ';', '.', ')']);
            match chrono::DateTime::parse_from_rfc3339(end) {
                Ok(t) => format!("{}{}", when(t.timestamp_micros()), &word[end.len()..]),
                Err(_) => word.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub struct PlanItem {
    pub address: String,
    pub what: &'static str,
    pub detail: String,
}

pub struct ContestedItem {
    pub address: String,
    pub claimants: String,
    pub kept_by: String,
}

#[derive(Template)]
#[template(path = "pages/dry_run.html")]
struct DryRunPage {
    layout: Layout,
    name: String,
    history_href: String,
    counts: String,
    guard: String,
    would_hold: bool,
    changes: Vec<PlanItem>,
    contested: Vec<ContestedItem>,
}

fn contested_items(list: &[roster_events::ContestedAddress]) -> Vec<ContestedItem> {
    list.iter()
        .map(|c| ContestedItem {
            address: view::address(c.address.as_str()),
            claimants: c
                .claimants
                .iter()
                .map(|k| {
                    let claim = match k.claim {
                        roster_events::ClaimKind::Primary => "primary address",
                        roster_events::ClaimKind::Alias => "alias",
                    };
                    let who = k.dn.clone().unwrap_or_else(|| k.object_id.to_string());
                    format!(
                        "{who} ({} {}, as {claim})",
                        k.kind,
                        view::address(k.primary.as_str())
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            kept_by: c
                .kept_by
                .clone()
                .unwrap_or_else(|| "nobody, until all claimants but one are excluded".into()),
        })
        .collect()
}

/// GET /customers/{c}/runs/dry-run (a reload of the plan's page): to the
/// history, whose Dry run button reads the directory again.
pub async fn dry_run_again(scoped: CustomerPage) -> Response {
    axum::response::Redirect::to(&format!("{}/runs", view::customer_href(&scoped.customer)))
        .into_response()
}

/// POST /customers/{c}/runs/dry-run (D3.t): reads the directory with the
/// saved settings and shows every change a run would make; changes nothing.
pub async fn dry_run(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let c = customer.to_string();
    let history_href = format!("{}/runs", view::customer_href(&c));
    let plan = match state.sync.dry_run(customer).await.map_err(sync_error)? {
        Ok(plan) => plan,
        Err(e) => {
            let mut message = format!(
                "The dry run could not read the directory ({}): {e}.",
                e.code()
            );
            if let Some(a) = troubleshoot::for_failure(e.code()) {
                message.push_str(&format!(" {}: {}", a.title, a.text));
            }
            return Ok(redirect_with(
                &history_href,
                Flash::error(message),
                state.config.secure(),
            ));
        }
    };
    let changes = plan
        .changes
        .iter()
        .map(|ch| PlanItem {
            address: view::address(&ch.address),
            what: change_label(&ch.action),
            detail: readable(&ch.detail),
        })
        .collect();
    Ok(render(&DryRunPage {
        layout: super::layout(
            &admin,
            &row,
            format!("{}: dry run", row.name),
            section::RUNS,
        ),
        name: row.name.clone(),
        history_href,
        counts: counts_line(&plan.counts),
        guard: format!(
            "would flag {} of {} directory users",
            plan.would_flag, plan.directory_users
        ),
        would_hold: plan.would_hold,
        changes,
        contested: contested_items(&plan.contested),
    }))
}

pub struct ChangeItem {
    pub when: String,
    pub address: String,
    pub href: String,
    pub what: &'static str,
    pub detail: String,
}

pub struct SkippedItem {
    pub kind: String,
    pub object: String,
    pub address: String,
    pub scope: String,
    pub reason: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "pages/run.html")]
struct RunPage {
    layout: Layout,
    csrf: String,
    run_id: String,
    history_href: String,
    source: &'static str,
    trigger: String,
    status: &'static str,
    started: String,
    finished: String,
    duration: String,
    reason: String,
    counts: Vec<(&'static str, u64)>,
    held: String,
    is_held: bool,
    /// For a held run: the users it would flag if confirmed now.
    flags: Vec<PlanItem>,
    flags_total: usize,
    flags_error: String,
    decided_by: String,
    /// The earlier run whose report this run's repeats (issue 17), if any.
    same_report_as: String,
    confirm_action: String,
    discard_action: String,
    dry_run_action: String,
    over_seat_limit: bool,
    advice: Vec<Advice>,
    changes: Vec<ChangeItem>,
    changes_next: String,
    skipped: Vec<SkippedItem>,
    skipped_next: String,
    contested: Vec<ContestedItem>,
    contested_next: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct RunQuery {
    #[serde(default)]
    pub page: String,
    #[serde(default)]
    pub skipped_page: String,
    #[serde(default)]
    pub contested_page: String,
}

fn token(t: &str) -> Option<&str> {
    Some(t.trim()).filter(|t| !t.is_empty())
}

fn counts_table(k: &SyncCounts) -> Vec<(&'static str, u64)> {
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
}

/// The run's per-user changes: the user events it wrote (B4, E2).
async fn changes_of(
    state: &ConsoleState,
    customer: CustomerId,
    r: &RunRow,
    page: Option<&str>,
) -> Result<(Vec<ChangeItem>, Option<String>), PageError> {
    let found = queries::run_changes(&state.app.store, customer, r, page, PAGE_SIZE)
        .await
        .map_err(page_link(page))?;
    let c = customer.to_string();
    let items = found
        .items
        .iter()
        .map(|e| {
            let address = e.address.clone().or_else(|| e.subject.clone());
            ChangeItem {
                when: when(e.recorded_at),
                href: address
                    .as_deref()
                    .map(|a| view::user_href(&c, a))
                    .unwrap_or_default(),
                address: address.as_deref().map(view::address).unwrap_or_default(),
                what: event_label(&e.event_type),
                detail: detail(e),
            }
        })
        .collect();
    Ok((items, found.next_page.map(|p| p.as_str().to_string())))
}

fn skipped_items(list: &[roster_events::SkippedObject]) -> Vec<SkippedItem> {
    let word = |v: serde_json::Result<serde_json::Value>| {
        v.ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
            .unwrap_or_default()
    };
    list.iter()
        .map(|s| SkippedItem {
            kind: s.kind.replace('_', " "),
            object: s.dn.clone().unwrap_or_else(|| s.object_id.to_string()),
            address: s.address.as_deref().map(view::address).unwrap_or_default(),
            scope: word(serde_json::to_value(s.scope)),
            reason: word(serde_json::to_value(s.reason)),
            detail: readable(&s.detail),
        })
        .collect()
}

/// The link to the run page with one list's page moved on.
fn run_page_href(base: &str, q: &RunQuery, key: &str, next: Option<String>) -> String {
    let Some(next) = next else {
        return String::new();
    };
    let pages = [
        ("page", &q.page),
        ("skipped_page", &q.skipped_page),
        ("contested_page", &q.contested_page),
    ];
    view::href(
        base,
        pages.map(|(k, v)| (k, if k == key { next.as_str() } else { v.as_str() })),
    )
}

/// GET /customers/{c}/runs/{run}
pub async fn show(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path((_, run)): Path<(String, String)>,
    Query(q): Query<RunQuery>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let store = &state.app.store;
    let r = runs::run(store, customer, run.trim())
        .await?
        .ok_or(PageError::NotFound)?;
    let c = customer.to_string();
    let run_id = r.run_id.to_string();
    let base = run_href(&c, &run_id);
    let (changes, changes_next) = changes_of(&state, customer, &r, token(&q.page)).await?;
    let (skipped, skipped_next) =
        reports::skipped(store, customer, &run_id, token(&q.skipped_page), PAGE_SIZE)
            .await
            .map_err(page_link(token(&q.skipped_page)))?;
    let (contested, contested_next) = reports::contested(
        store,
        customer,
        &run_id,
        token(&q.contested_page),
        PAGE_SIZE,
    )
    .await
    .map_err(page_link(token(&q.contested_page)))?;
    let is_held = r.status == RunStatus::Held;
    let (flags, flags_total, flags_error) = if is_held {
        would_flag(&state, customer).await?
    } else {
        (Vec::new(), 0, String::new())
    };
    let held = match (r.would_flag, r.directory_users) {
        (Some(w), Some(d)) => format!("would flag {w} of {d} directory users"),
        _ => String::new(),
    };
    let same_report_as = reports::repeat_of(store, customer, &run_id)
        .await?
        .map(|of| run_href(&c, &of))
        .unwrap_or_default();
    let decided_by = r
        .decided_by_run
        .map(|d| run_href(&c, &d))
        .unwrap_or_default();
    Ok(render(&RunPage {
        layout: super::layout(&admin, &row, "Sync run", section::RUNS),
        csrf: admin.csrf.clone(),
        history_href: format!("{}/runs", view::customer_href(&c)),
        source: directory_label(r.kind),
        trigger: trigger_label(r.trigger).to_string(),
        status: run_status_label(r.status),
        started: when(r.started_at),
        finished: when_opt(r.finished_at),
        duration: duration(r.started_at, r.finished_at),
        reason: reason_of(&r),
        counts: r.counts.as_ref().map(counts_table).unwrap_or_default(),
        held,
        is_held,
        flags,
        flags_total,
        flags_error,
        decided_by,
        same_report_as,
        confirm_action: format!("{base}/confirm"),
        discard_action: format!("{base}/discard"),
        dry_run_action: format!("{}/runs/dry-run", view::customer_href(&c)),
        over_seat_limit: r.over_seat_limit.unwrap_or(false),
        advice: advice_for(&state, customer, &r).await?,
        changes,
        changes_next: run_page_href(&base, &q, "page", changes_next),
        skipped: skipped_items(&skipped),
        skipped_next: run_page_href(
            &base,
            &q,
            "skipped_page",
            skipped_next.map(|t| t.as_str().to_string()),
        ),
        contested: contested_items(&contested),
        contested_next: run_page_href(
            &base,
            &q,
            "contested_page",
            contested_next.map(|t| t.as_str().to_string()),
        ),
        run_id,
    }))
}

/// Users listed as a held run would flag, at most.
const WOULD_FLAG_SHOWN: usize = 500;

/// What a held run would flag if confirmed now (D3.s): the dry run's flags,
/// as the directory reads now (Confirm reads it again), or why the
/// directory cannot be read.
async fn would_flag(
    state: &ConsoleState,
    customer: CustomerId,
) -> Result<(Vec<PlanItem>, usize, String), PageError> {
    match state.sync.dry_run(customer).await.map_err(sync_error)? {
        Ok(plan) => {
            let flags: Vec<PlanItem> = plan
                .changes
                .iter()
                .filter(|ch| ch.action == "flag")
                .map(|ch| PlanItem {
                    address: view::address(&ch.address),
                    what: change_label(&ch.action),
                    detail: readable(&ch.detail),
                })
                .collect();
            let total = flags.len();
            Ok((
                flags.into_iter().take(WOULD_FLAG_SHOWN).collect(),
                total,
                String::new(),
            ))
        }
        Err(e) => Ok((
            Vec::new(),
            0,
            format!(
                "The directory cannot be read now ({}): {e}. Confirm would fail the same way.",
                e.code()
            ),
        )),
    }
}

/// The held run of a path, or not-found.
fn held_id(run: &str) -> Result<uuid::Uuid, PageError> {
    uuid::Uuid::parse_str(run.trim()).map_err(|_| PageError::NotFound)
}

/// POST /customers/{c}/runs/{run}/confirm (D3.s): a new run reads the
/// directory again and applies up to the held number of flags.
pub async fn confirm(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path((_, run)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin, customer, ..
    } = scoped;
    let held = held_id(&run)?;
    let c = customer.to_string();
    let secure = state.config.secure();
    runs::run(&state.app.store, customer, &held.to_string())
        .await?
        .ok_or(PageError::NotFound)?;
    match state.sync.confirm(customer, held, admin.actor()).await {
        Ok(new_run) => {
            let done = runs::run(&state.app.store, customer, &new_run.to_string()).await?;
            let outcome = done
                .map(|r| {
                    let counts = r.counts.as_ref().map(counts_line).unwrap_or_default();
                    format!("{}: {counts}", run_status_label(r.status))
                })
                .unwrap_or_default();
            Ok(redirect_with(
                &run_href(&c, &new_run),
                Flash::success(format!("Held run confirmed and applied. {outcome}")),
                secure,
            ))
        }
        Err(e) => Ok(redirect_with(
            &run_href(&c, &held),
            Flash::error(format!(
                "The held run was not confirmed: {}",
                view::message(&sync_error(e))
            )),
            secure,
        )),
    }
}

/// POST /customers/{c}/runs/{run}/discard (D3.s): nothing it would have
/// done is done.
pub async fn discard(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path((_, run)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin, customer, ..
    } = scoped;
    let held = held_id(&run)?;
    let c = customer.to_string();
    runs::run(&state.app.store, customer, &held.to_string())
        .await?
        .ok_or(PageError::NotFound)?;
    let meta = admin.meta(customer, &state);
    let flash = match state.app.written(state.sync.discard(&meta, held)).await {
        Ok(_) => Flash::success("Held run discarded: nothing it would have done was done."),
        Err(e) => Flash::error(format!(
            "The held run was not discarded: {}",
            view::message(&sync_error(e))
        )),
    };
    Ok(redirect_with(
        &run_href(&c, &held),
        flash,
        state.config.secure(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b4_durations_and_counts_in_words() {
        assert_eq!(duration(0, None), "");
        assert_eq!(duration(0, Some(400_000)), "under a second");
        assert_eq!(duration(0, Some(75_000_000)), "1 min 15 s");
        assert_eq!(duration(0, Some(3_700_000_000)), "1 h 1 min");
        let k = SyncCounts {
            read: 14,
            added: 13,
            skipped: 1,
            ..SyncCounts::default()
        };
        assert_eq!(counts_line(&k), "14 read, 13 added, 1 skipped");
        assert_eq!(counts_line(&SyncCounts::default()), "0 read");
    }

    #[test]
    fn d3t_plan_details_show_times_as_the_pages_do() {
        assert_eq!(
            readable("missing; deleted after 2027-01-01T20:24:56.016944965+00:00"),
            "missing; deleted after 2027-01-01 20:24 UTC"
        );
        assert_eq!(readable("renamed from a@ex.com"), "renamed from a@ex.com");
    }

    #[test]
    fn d3t_plan_actions_in_words() {
        assert_eq!(change_label("flag"), "Flag for deletion");
        assert_eq!(change_label("map_alias"), "Add alias");
        assert_eq!(change_label("something_new"), "Change");
    }

    #[test]
    fn b4_run_page_links_keep_the_other_lists_pages() {
        let q = RunQuery {
            page: "p1".into(),
            skipped_page: String::new(),
            contested_page: "c1".into(),
        };
        assert_eq!(
            run_page_href("/r", &q, "skipped_page", Some("s2".into())),
            "/r?page=p1&skipped_page=s2&contested_page=c1"
        );
        assert_eq!(run_page_href("/r", &q, "page", None), "");
    }
}
