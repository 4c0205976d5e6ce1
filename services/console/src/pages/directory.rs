//! Directory services (issue 15; SPEC D1, D2, D4-D7): the LDAP and Entra ID
//! tabs with their Connect forms, Test with the step that failed and the
//! guide's troubleshooting in place, Save (asking before enabling one
//! directory disables the other), Sync Now with live progress, and the
//! custom filter checked as it is typed. The Exceptions and Additions tabs
//! are in [`lists`]. Everything goes through
//! [`roster_sync::SyncService`] and the read models, as for the API.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use roster_domain::{Directory, DirectoryError};
use roster_events::{CustomerId, DirectoryKind, SyncTrigger};
use roster_projections::directory::{RunPhase, RunProgress, RunRow, RunStatus};
use roster_sync::SyncError;
use serde::{Deserialize, Serialize};

use super::view::{self, directory_label};
use super::CustomerPage;
use crate::error::PageError;
use crate::layout::{redirect_with, render, section, Flash, Layout};
use crate::session::CurrentAdmin;
use crate::ConsoleState;
use forms::{delete_options, poll_options, preset_options, EntraForm, LdapForm, Opt};
use help::{test_box, TestBox};

pub mod forms;
pub mod help;
pub mod lists;

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/customers/{c}/directory", get(show))
        .route("/customers/{c}/directory/ldap", post(save_ldap))
        .route("/customers/{c}/directory/entra", post(save_entra))
        .route("/customers/{c}/directory/sync", post(sync_now))
        .route(
            "/customers/{c}/directory/syncs/{run}/progress",
            get(progress),
        )
        .route("/customers/{c}/directory/filter-check", get(filter_check))
        .merge(lists::routes())
}

pub fn base(c: &(impl std::fmt::Display + ?Sized)) -> String {
    format!("{}/directory", view::customer_href(c))
}

/// A tab of the directory services pages.
pub struct Tab {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

/// The tabs, `current` being `ldap`, `entra`, `exceptions` or `additions`.
pub fn tabs(c: &(impl std::fmt::Display + ?Sized), current: &str) -> Vec<Tab> {
    let b = base(c);
    [
        ("ldap", "LDAP", format!("{b}?tab=ldap")),
        ("entra", "Entra ID", format!("{b}?tab=entra")),
        ("exceptions", "Exceptions", format!("{b}/exceptions")),
        ("additions", "Additions", format!("{b}/additions")),
    ]
    .into_iter()
    .map(|(id, label, href)| Tab {
        label,
        href,
        current: id == current,
    })
    .collect()
}

/// The run whose progress the page shows.
pub struct RunBox {
    pub running: bool,
    pub ok: bool,
    pub text: String,
    pub max: u64,
    pub value: u64,
    pub progress_href: String,
    pub run_href: String,
    pub refresh_href: String,
    /// A failed run: the step and what to check, as for a failed test.
    pub step: &'static str,
    pub tips: Vec<help::Tip>,
}

#[derive(Template)]
#[template(path = "pages/directory.html")]
struct DirectoryPage {
    layout: Layout,
    csrf: String,
    name: String,
    tab: &'static str,
    tabs: Vec<Tab>,
    status: String,
    action: String,
    sync_action: String,
    filter_check: String,
    ldap: LdapForm,
    entra: EntraForm,
    secret_set: bool,
    /// The other directory when it is enabled ("Entra ID"), else empty.
    other: &'static str,
    switch_message: String,
    poll: Vec<Opt>,
    delete: Vec<Opt>,
    presets: Vec<Opt>,
    test: Option<TestBox>,
    run: Option<RunBox>,
    script: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    pub tab: String,
    #[serde(default)]
    pub run: String,
}

fn kind_of(tab: &str) -> Option<DirectoryKind> {
    DirectoryKind::parse(tab)
}

/// What the page is built from besides the customer.
struct View {
    kind: DirectoryKind,
    dir: Directory,
    ldap: LdapForm,
    entra: EntraForm,
    test: Option<TestBox>,
    run: Option<RunBox>,
    error: Option<String>,
}

impl View {
    fn saved(dir: Directory, kind: DirectoryKind) -> Self {
        let form_of = |k: DirectoryKind| dir.configs.get(&k).map(|c| (c, dir.enabled == Some(k)));
        let ldap = form_of(DirectoryKind::Ldap)
            .map(|(c, e)| LdapForm::of(c, e))
            .unwrap_or_else(LdapForm::blank);
        let entra = form_of(DirectoryKind::Entra)
            .map(|(c, e)| EntraForm::of(c, e))
            .unwrap_or_else(EntraForm::blank);
        View {
            kind,
            dir,
            ldap,
            entra,
            test: None,
            run: None,
            error: None,
        }
    }
}

/// The switch D1 asks about: enabling `kind` while the other is enabled.
fn switch_message(kind: DirectoryKind, other: DirectoryKind, delete_after: &str) -> String {
    let after = match forms::DELETE_AFTER.iter().find(|(v, _)| *v == delete_after) {
        Some(("never", _)) | None => "never deleted".to_string(),
        Some((_, label)) => format!("deleted after {label}"),
    };
    format!(
        "{other} sync is enabled. Enabling {kind} disables {other}: users synced from {other} that {kind} does not have become user conflicts, flagged and {after} (Delete Users After). Continue?",
        other = directory_label(other),
        kind = directory_label(kind),
    )
}

fn page(admin: &CurrentAdmin, row: &roster_projections::queries::CustomerRow, v: View) -> Response {
    let c = &row.customer_id;
    let b = base(c);
    let other_kind = match v.kind {
        DirectoryKind::Ldap => DirectoryKind::Entra,
        DirectoryKind::Entra => DirectoryKind::Ldap,
    };
    let other = if v.dir.enabled == Some(other_kind) {
        directory_label(other_kind)
    } else {
        ""
    };
    let (poll, delete) = match v.kind {
        DirectoryKind::Ldap => (&v.ldap.poll_interval, &v.ldap.delete_after),
        DirectoryKind::Entra => (&v.entra.poll_interval, &v.entra.delete_after),
    };
    let status = match v.dir.enabled {
        Some(k) => format!("{} sync is enabled.", directory_label(k)),
        None => "Directory sync is disabled: users are added by hand or by import.".into(),
    };
    let tab = v.kind.as_str();
    let mut layout = super::layout(
        admin,
        row,
        format!("{}: directory services", row.name),
        section::DIRECTORY,
    );
    let failed = v.error.is_some();
    if let Some(e) = v.error {
        layout = layout.flash(Flash::error(e));
    }
    let html = render(&DirectoryPage {
        layout,
        csrf: admin.csrf.clone(),
        name: row.name.clone(),
        tab,
        tabs: tabs(c, tab),
        status,
        action: format!("{b}/{tab}"),
        sync_action: format!("{b}/sync"),
        filter_check: format!("{b}/filter-check"),
        secret_set: v.dir.secret_set.contains(&v.kind),
        other,
        switch_message: switch_message(v.kind, other_kind, delete),
        poll: poll_options(poll),
        delete: delete_options(delete),
        presets: preset_options(&v.ldap.preset),
        ldap: v.ldap,
        entra: v.entra,
        test: v.test,
        run: v.run,
        script: crate::assets::url("directory.js"),
    });
    if failed {
        (StatusCode::UNPROCESSABLE_ENTITY, html).into_response()
    } else {
        html
    }
}

/// GET /customers/{c}/directory[?tab=ldap|entra][&run=<id>]
pub async fn show(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Query(q): Query<ShowQuery>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let dir = state.sync.directory(customer).await?;
    let kind = kind_of(&q.tab)
        .or(dir.enabled)
        .unwrap_or(DirectoryKind::Ldap);
    // The run asked for, else the one running now.
    let run = match uuid::Uuid::parse_str(q.run.trim()) {
        Ok(r) => Some(r.to_string()),
        Err(_) => dir.running.as_ref().map(|r| r.run_id.to_string()),
    };
    let mut v = View::saved(dir, kind);
    if let Some(run) = run {
        v.run = run_box(&state, customer, &row.customer_id.to_string(), &run, kind).await?;
    }
    Ok(page(&admin, &row, v))
}

/// POST /customers/{c}/directory/ldap: Test or Save (D5, D7).
pub async fn save_ldap(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Form(form): Form<LdapForm>,
) -> Result<Response, PageError> {
    let parsed = form.parse();
    let test = form.action == "test";
    let mut form = form;
    form.password.clear();
    submit(&state, scoped, DirectoryKind::Ldap, parsed, test, |v| {
        v.ldap = form
    })
    .await
}

/// POST /customers/{c}/directory/entra: Test or Save (D6, D7).
pub async fn save_entra(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Form(form): Form<EntraForm>,
) -> Result<Response, PageError> {
    let parsed = form.parse();
    let test = form.action == "test";
    let mut form = form;
    form.client_secret.clear();
    submit(&state, scoped, DirectoryKind::Entra, parsed, test, |v| {
        v.entra = form
    })
    .await
}

/// Tests or saves a Connect form. The page comes back with the form as
/// typed (never the secret) and what happened; a save that worked goes to
/// the saved page.
async fn submit(
    state: &ConsoleState,
    scoped: CustomerPage,
    kind: DirectoryKind,
    parsed: Result<(roster_events::DirectoryConfig, roster_sync::SettingsChange), String>,
    test: bool,
    typed: impl FnOnce(&mut View),
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let dir = state.sync.directory(customer).await?;
    let mut v = View::saved(dir, kind);
    typed(&mut v);
    let (config, change) = match parsed {
        Ok(p) => p,
        Err(e) => {
            v.error = Some(e);
            return Ok(page(&admin, &row, v));
        }
    };
    let meta = admin.meta(customer, state);
    let app = &state.app;
    if test {
        match app
            .written(state.sync.test(&meta, Some((config, change.secret))))
            .await
        {
            Ok(o) => {
                let domains = format!("{}/domains", view::customer_href(&row.customer_id));
                v.test = Some(test_box(kind, &o, &domains));
            }
            Err(e) => v.error = Some(refusal(e, kind)),
        }
        return Ok(page(&admin, &row, v));
    }
    let enabling = change.enable == Some(true);
    match app
        .written(state.sync.save_settings(&meta, config, change))
        .await
    {
        Ok(_) => {
            let label = directory_label(kind);
            let message = if enabling {
                format!("{label} settings saved: {label} sync is enabled.")
            } else {
                format!("{label} settings saved; {label} sync is not enabled.")
            };
            Ok(redirect_with(
                &format!("{}?tab={}", base(&row.customer_id), kind.as_str()),
                Flash::success(message),
                state.config.secure(),
            ))
        }
        Err(e) => {
            v.error = Some(refusal(e, kind));
            Ok(page(&admin, &row, v))
        }
    }
}

/// What a refused save or test says: the app layer's message, and for D1
/// what to do on this form.
fn refusal(e: SyncError, kind: DirectoryKind) -> String {
    match e {
        SyncError::Directory(DirectoryError::SwitchNeedsConfirmation { .. }) => {
            let other = match kind {
                DirectoryKind::Ldap => DirectoryKind::Entra,
                DirectoryKind::Entra => DirectoryKind::Ldap,
            };
            format!(
                "{} sync is enabled: tick “Disable {} and enable {}” to confirm the switch, then Save again (the password or secret too, if you typed one).",
                directory_label(other),
                directory_label(other),
                directory_label(kind)
            )
        }
        other => help::sentence(&view::message(&PageError::from(other))),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct SyncForm {
    #[serde(default)]
    pub tab: String,
}

/// POST /customers/{c}/directory/sync: Sync Now (D4), then the page with
/// the run's live progress.
pub async fn sync_now(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Form(form): Form<SyncForm>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin, customer, ..
    } = scoped;
    let dir = state.sync.directory(customer).await?;
    let tab = kind_of(&form.tab)
        .or(dir.enabled)
        .unwrap_or(DirectoryKind::Ldap);
    let b = base(&customer);
    match state
        .sync
        .spawn(customer, SyncTrigger::Manual, admin.actor())
        .await
    {
        Ok(run) => {
            // The guide's words: "Azure sync has successfully started".
            let label = match dir.enabled {
                Some(DirectoryKind::Entra) => "Azure",
                _ => "LDAP",
            };
            Ok(redirect_with(
                &format!("{b}?tab={}&run={run}#sync-progress", tab.as_str()),
                Flash::success(format!("{label} sync has successfully started.")),
                state.config.secure(),
            ))
        }
        Err(e) => Ok(redirect_with(
            &format!("{b}?tab={}", tab.as_str()),
            Flash::error(refusal(e, tab)),
            state.config.secure(),
        )),
    }
}

/// The progress answer the page's script polls every second.
#[derive(Debug, Serialize)]
pub struct ProgressJson {
    /// The run's status (`running`, `completed`, `failed`, `held`, ...).
    pub status: &'static str,
    pub running: bool,
    /// `read`, `plan`, `apply`, or null before the run recorded any.
    pub phase: Option<&'static str>,
    pub progress: Option<RunProgress>,
    /// What the page shows, in words.
    pub text: String,
    pub max: u64,
    pub value: u64,
    pub ok: bool,
    pub run_href: String,
}

/// GET /customers/{c}/directory/syncs/{run}/progress
pub async fn progress(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path((c, run)): Path<(String, String)>,
) -> Result<Json<ProgressJson>, PageError> {
    let customer = scoped.customer;
    let (row, p) = run_state(&state, customer, &run).await?;
    let (text, value) = describe(&row, p.as_ref());
    Ok(Json(ProgressJson {
        status: row.status.as_str(),
        running: row.status == RunStatus::Running,
        phase: p.as_ref().map(|p| p.phase.as_str()),
        progress: p,
        text,
        max: 100,
        value,
        ok: matches!(row.status, RunStatus::Completed | RunStatus::Confirmed),
        run_href: format!("{}/runs/{}", view::customer_href(&c), row.run_id),
    }))
}

async fn run_state(
    state: &ConsoleState,
    customer: CustomerId,
    run: &str,
) -> Result<(RunRow, Option<RunProgress>), PageError> {
    let run = uuid::Uuid::parse_str(run.trim())
        .map_err(|_| PageError::NotFound)?
        .to_string();
    let row = roster_projections::directory::run(&state.app.store, customer, &run)
        .await?
        .ok_or(PageError::NotFound)?;
    let p = roster_projections::directory::run_progress(&state.app.store, customer, &run).await?;
    Ok((row, p))
}

async fn run_box(
    state: &ConsoleState,
    customer: CustomerId,
    c: &str,
    run: &str,
    tab: DirectoryKind,
) -> Result<Option<RunBox>, PageError> {
    let (row, p) = match run_state(state, customer, run).await {
        Ok(x) => x,
        Err(PageError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let (text, value) = describe(&row, p.as_ref());
    let failed = matches!(row.status, RunStatus::Failed);
    let code = row.code.clone().unwrap_or_default();
    Ok(Some(RunBox {
        step: if failed { help::step(&code) } else { "" },
        tips: if failed {
            help::tips_for(row.kind, &code)
        } else {
            Vec::new()
        },
        running: row.status == RunStatus::Running,
        ok: matches!(row.status, RunStatus::Completed | RunStatus::Confirmed),
        text,
        max: 100,
        value,
        progress_href: format!("{}/syncs/{}/progress", base(c), row.run_id),
        run_href: format!("{}/runs/{}", view::customer_href(c), row.run_id),
        refresh_href: format!(
            "{}?tab={}&run={}#sync-progress",
            base(c),
            tab.as_str(),
            row.run_id
        ),
    }))
}

/// What a count list says, leaving out what is zero.
fn counts_text(k: &roster_events::SyncCounts) -> String {
    let parts: Vec<String> = [
        ("added", k.added),
        ("came back", k.returned),
        ("updated", k.updated),
        ("renamed", k.renamed),
        ("aliases mapped", k.aliases_mapped),
        ("aliases removed", k.aliases_unmapped),
        ("flagged for deletion", k.flagged),
        ("flags lifted", k.unflagged),
        ("skipped", k.skipped),
        ("unchanged", k.unchanged),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(w, n)| format!("{n} {w}"))
    .collect();
    if parts.is_empty() {
        "no change".into()
    } else {
        parts.join(", ")
    }
}

/// A run's state in words and as a share of 100.
pub fn describe(row: &RunRow, p: Option<&RunProgress>) -> (String, u64) {
    match row.status {
        RunStatus::Running => match p {
            None => ("Starting: waiting for the directory…".into(), 2),
            Some(p) => match p.phase {
                RunPhase::Read => match p.read {
                    Some(n) => (
                        format!("Reading the directory: {n} entries received so far…"),
                        10,
                    ),
                    None => ("Reading the directory…".into(), 10),
                },
                RunPhase::Plan => (
                    format!(
                        "Read {} objects from the directory; planning the changes…",
                        p.read.unwrap_or(0)
                    ),
                    30,
                ),
                RunPhase::Apply => {
                    let share = (p.applied * 70).checked_div(p.steps).unwrap_or(70);
                    let planned = p.planned.as_ref().map(counts_text).unwrap_or_default();
                    (
                        format!(
                            "Read {} objects; applying the changes: {} of {} done ({planned}).",
                            p.read.unwrap_or(0),
                            p.applied,
                            p.steps
                        ),
                        30 + share.min(70),
                    )
                }
            },
        },
        RunStatus::Completed | RunStatus::Confirmed => {
            let read = row.counts.map(|k| k.read).unwrap_or(0);
            let counts = row.counts.as_ref().map(counts_text).unwrap_or_default();
            (
                format!("The sync completed: read {read} objects; {counts}."),
                100,
            )
        }
        RunStatus::Interrupted => (
            "The sync was interrupted (the server running it stopped); it starts again by itself, and nothing it had not finished was applied.".into(),
            100,
        ),
        RunStatus::Failed => (
            format!(
                "The sync failed and changed nothing: {}{}.",
                row.reason.clone().unwrap_or_default(),
                row.code
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            ),
            100,
        ),
        RunStatus::Held => (
            format!(
                "The mass-deletion guard held the sync: it would flag {} of {} directory users. Nothing changed; confirm or discard it on the run's page.",
                row.would_flag.unwrap_or(0),
                row.directory_users.unwrap_or(0)
            ),
            100,
        ),
        other => (
            format!("The sync ended: {}.", view::run_status_label(other)),
            100,
        ),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct FilterQuery {
    #[serde(default)]
    pub filter: String,
}

#[derive(Debug, Serialize)]
pub struct FilterCheck {
    pub ok: bool,
    /// 1-based position (in characters) of the error, in the text as typed.
    pub position: Option<usize>,
    pub message: String,
}

/// GET /customers/{c}/directory/filter-check?filter=...: the custom filter
/// checked by the parser the sync uses (RFC 4515), with the position of an
/// error; the form's script calls it as the filter is typed.
pub async fn filter_check(
    _scoped: CustomerPage,
    Query(q): Query<FilterQuery>,
) -> Json<FilterCheck> {
    Json(check_filter(&q.filter))
}

pub fn check_filter(filter: &str) -> FilterCheck {
    if filter.trim().is_empty() {
        return FilterCheck {
            ok: true,
            position: None,
            message: "No filter: every user and group the preset selects.".into(),
        };
    }
    match roster_sync::check_filter(filter) {
        Ok(()) => FilterCheck {
            ok: true,
            position: None,
            message: "A valid LDAP filter.".into(),
        },
        Err(e) => FilterCheck {
            ok: false,
            position: Some(e.position),
            message: format!("Position {}: {}.", e.position, e.message),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// D5: the filter check is the sync's parser, with a 1-based position
    /// in the text as typed.
    #[test]
    fn d5_filter_check_gives_the_position_of_an_error() {
        assert!(check_filter("").ok);
        assert!(check_filter("(&(objectClass=user)(mail=*))").ok);
        let c = check_filter("(cn=a)(sn=b)");
        assert!(!c.ok);
        assert_eq!(c.position, Some(7));
        assert!(c.message.starts_with("Position 7: "), "{}", c.message);
        assert_eq!(check_filter("   (cn=a)(sn=b)").position, Some(10));
    }

    fn running(p: Option<RunProgress>) -> (String, u64) {
        let row = RunRow {
            run_id: roster_events::RunId::parse("01a2384d-deb3-7201-8c72-96044e73280f").unwrap(),
            kind: DirectoryKind::Ldap,
            trigger: SyncTrigger::Manual,
            status: RunStatus::Running,
            started_at: 0,
            finished_at: None,
            code: None,
            reason: None,
            counts: None,
            would_flag: None,
            directory_users: None,
            over_seat_limit: None,
            decided_by_run: None,
        };
        describe(&row, p.as_ref())
    }

    /// Sync Now's progress in words: each phase, with its counts.
    #[test]
    fn d4_progress_says_the_phase_and_counts() {
        assert!(running(None).0.starts_with("Starting"));
        let mut p = RunProgress::new(RunPhase::Read);
        assert_eq!(
            running(Some(p.clone())),
            ("Reading the directory…".into(), 10)
        );
        p.phase = RunPhase::Plan;
        p.read = Some(120);
        assert!(running(Some(p.clone())).0.contains("Read 120 objects"));
        p.phase = RunPhase::Apply;
        p.steps = 10;
        p.applied = 5;
        p.planned = Some(roster_events::SyncCounts {
            added: 8,
            flagged: 2,
            ..Default::default()
        });
        let (text, value) = running(Some(p));
        assert!(text.contains("5 of 10 done"), "{text}");
        assert!(text.contains("8 added, 2 flagged for deletion"), "{text}");
        assert_eq!(value, 65);
    }
}
