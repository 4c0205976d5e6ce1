//! The commit of a review: the checks before anything is applied, the
//! chunks in order ([`super::chunk`]), and the result.

use std::collections::{BTreeSet, HashMap, HashSet};

use roster_domain::{Import, ImportCommand};
use roster_events::*;
use roster_store::{from_micros, micros, Batch, ImportRecord, Loaded};

use super::chunk::Chunk;
use super::{
    corrupt, enabled_directory, header_of, load_header, parse_plans, stale, CommitResult,
    Committed, ImportSettings, Outcome, PlanRow, ReviewInfo, SkippedView, LOAD_CHUNK,
};
use crate::error::{AppError, AppResult};
use crate::retry::retrying;
use crate::seats::Seats;
use crate::App;

/// Commits a review: applies exactly its plan, or refuses when what it was
/// planned on changed; continues an interrupted commit; answers a repeated
/// commit of a completed import with its first result.
pub async fn commit(
    app: &App,
    actor: &Actor,
    customer: CustomerId,
    import_id: ImportId,
    settings: &ImportSettings,
) -> AppResult<Committed> {
    let started = std::time::Instant::now();
    let header = load_header(app, customer, import_id).await?;
    let review = header_of(&header)?;
    let id = import_id.to_string();
    let import: Loaded<Import> = app.store.load(&id).await?;
    if import.state.completed.is_some() {
        let result = finished(app, &header, &import.state).await?;
        return Ok(Committed {
            result,
            position: 0,
            replayed: true,
        });
    }
    let chunks = u32::try_from(header.chunks).map_err(corrupt)?;
    let mut next = import.state.committed_chunks;
    // Each chunk is read and prepared while the one before it is appended
    // (the first beside the check that the review is not stale): the
    // appends, one after another, are what a commit waits for (issue 17).
    let prepared_chunk = |n: u32, ahead: bool| {
        let review = &review;
        async move {
            if n >= chunks {
                return Ok(None);
            }
            let mut chunk =
                Chunk::read(app, actor, customer, import_id, (n, chunks), review).await?;
            let prep = chunk.prepare(ahead).await;
            AppResult::Ok(Some((chunk, prep)))
        }
    };
    let mut prepared = None;
    if import.state.committed_chunks == 0 {
        let now = app.clock.now();
        // Rows gone means an old review was purged; a header-only file
        // never had any, and commits to an import that applied nothing.
        let purged = review.totals.rows > 0 && !app.store.db().import_has_rows(&id).await?;
        if micros(now) > header.expires_at || purged {
            return Err(AppError::Gone {
                code: "review_expired",
                message: format!(
                    "the review expired at {}: upload the file again for a new review",
                    from_micros(header.expires_at).to_rfc3339()
                ),
            });
        }
        let (stale, first) = tokio::join!(
            check_stale(app, customer, &header, &review),
            prepared_chunk(next, false)
        );
        // The check's verdict names every change; the first chunk's
        // preparation is used only when the review is not stale.
        stale?;
        prepared = first?;
    }
    let checked_s = started.elapsed().as_secs_f64();
    let mut position = 0;
    while next < chunks {
        let (chunk, prep) = match prepared.take() {
            Some((chunk, prep)) => (chunk, Some(prep)),
            None => (
                Chunk::read(app, actor, customer, import_id, (next, chunks), &review).await?,
                None,
            ),
        };
        let (committed, following) =
            tokio::join!(chunk.commit(prep), prepared_chunk(next + 1, true));
        if let Some(p) = committed? {
            position = p;
            if settings.fail_after_chunk == Some(next) {
                return Err(AppError::internal(format!(
                    "injected failure after chunk {next} of import {import_id}"
                )));
            }
        }
        prepared = following?;
        next += 1;
    }
    if chunks == 0 {
        position = complete_empty(app, actor, customer, import_id, &review).await?;
    }
    let import: Loaded<Import> = app.store.load(&id).await?;
    if import.state.completed.is_none() {
        return Err(AppError::internal(format!(
            "import {import_id}: every chunk is committed but the import is not complete"
        )));
    }
    let result = finished(app, &header, &import.state).await?;
    tracing::info!(
        import_id = %import_id,
        chunks,
        added = result.added,
        updated = result.updated,
        check_s = checked_s,
        apply_s = started.elapsed().as_secs_f64() - checked_s,
        "import committed"
    );
    metrics::counter!("roster_import_commits_total").increment(1);
    Ok(Committed {
        result,
        position,
        replayed: false,
    })
}

/// The result of a completed import, from the log; stored with the review
/// the first time, and answered from there afterwards.
async fn finished(app: &App, header: &ImportRecord, import: &Import) -> AppResult<CommitResult> {
    if let Some(r) = &header.result {
        return serde_json::from_str(r).map_err(corrupt);
    }
    let fresh = app.store.db().import(&header.import_id).await?;
    if let Some(r) = fresh.and_then(|h| h.result) {
        return serde_json::from_str(&r).map_err(corrupt);
    }
    let done = import
        .completed
        .as_ref()
        .ok_or_else(|| AppError::internal("the import is not complete"))?;
    // Who committed, and when: the completing event's metadata (E2).
    let history = roster_store::history::<Import>(&app.store, &header.import_id).await?;
    let meta = history
        .iter()
        .rev()
        .find(|(_, e)| matches!(e, ImportEvent::ImportCommitted(_)))
        .map(|(stored, _)| EventMeta::from_text(stored.metadata.get()))
        .ok_or_else(|| AppError::internal("the import has no ImportCommitted event"))?
        .map_err(corrupt)?;
    let result = CommitResult {
        import_id: header.import_id.clone(),
        status: "committed".into(),
        chunks: done.chunks,
        added: done.added,
        updated: done.updated,
        unchanged: done.unchanged,
        rejected: done.rejected,
        skipped: done.skipped,
        skipped_rows: import
            .skipped
            .iter()
            .map(|s| SkippedView {
                line: s.line,
                address: s.address.to_string(),
                code: s.code.clone(),
                reason: s.reason.clone(),
            })
            .collect(),
        committed_by: meta.actor.to_string(),
        committed_at: meta.time,
    };
    let text = serde_json::to_string(&result).map_err(AppError::internal)?;
    app.store
        .db()
        .finish_import(
            &header.import_id,
            &result.committed_by,
            micros(result.committed_at),
            &text,
        )
        .await?;
    Ok(result)
}

/// The checks before anything is applied: every user the plan names is at
/// the version it was reviewed at, every address it claims is still free
/// (or released by the plan), no tombstone appeared for a new address (U6),
/// the additions fit the free seats (T3), and directory sync and the
/// managed domains are as they were.
async fn check_stale(
    app: &App,
    customer: CustomerId,
    header: &ImportRecord,
    review: &ReviewInfo,
) -> AppResult<()> {
    let db = app.store.db();
    let mut reasons = Reasons::default();
    let directory = enabled_directory(app, customer).await?;
    if directory != review.directory_sync {
        reasons.note("directory sync was enabled, disabled or switched".into());
    }
    if review.totals.add > 0 {
        let seats = Seats::of(&app.store, customer).await?;
        if !seats.fits(review.totals.add) {
            reasons.note(format!(
                "{} of the customer's {} seats are in use now, so the {} additions no longer fit",
                seats.used, seats.limit, review.totals.add
            ));
        }
    }
    let domains: HashSet<Domain> = db.managed_domains(customer).await?.into_iter().collect();
    let mut unmanaged: BTreeSet<Domain> = BTreeSet::new();
    // The plan's chunks, then its unchanged rows: each piece is read while
    // the one before it is checked (issue 17: the check is on the commit's
    // path before anything is applied).
    let mut at = PlanCursor {
        chunk: 0,
        after: -1,
    };
    let mut piece = read_piece(app, header, &mut at).await?;
    while let Some(plans) = piece {
        let (checked, next) = tokio::join!(
            check_piece(
                app,
                customer,
                &plans,
                &domains,
                &mut reasons,
                &mut unmanaged
            ),
            read_piece(app, header, &mut at)
        );
        checked?;
        piece = next?;
    }
    for d in unmanaged {
        reasons.note(format!("{d} is no longer a managed domain"));
    }
    if reasons.total > 0 {
        return Err(stale(&reasons.shown, reasons.total));
    }
    Ok(())
}

/// Where [`check_stale`] is in the plan: the chunks, then the unchanged rows.
struct PlanCursor {
    chunk: i64,
    after: i64,
}

/// The next piece of the plan (a chunk, then a page of its unchanged rows),
/// or `None` after the last.
async fn read_piece(
    app: &App,
    header: &ImportRecord,
    at: &mut PlanCursor,
) -> AppResult<Option<Vec<(i64, PlanRow)>>> {
    let db = app.store.db();
    if at.chunk < header.chunks {
        at.chunk += 1;
        let records = db.import_chunk(&header.import_id, at.chunk - 1).await?;
        return Ok(Some(parse_plans(records)?));
    }
    let records = db
        .import_rows(
            &header.import_id,
            at.after,
            Some("unchanged"),
            LOAD_CHUNK as i64,
        )
        .await?;
    let Some(last) = records.last() else {
        return Ok(None);
    };
    at.after = last.row_no;
    Ok(Some(parse_plans(records)?))
}

/// Checks one piece of the plan against the users, tombstones and claims
/// as they are now (see [`check_stale`]).
async fn check_piece(
    app: &App,
    customer: CustomerId,
    plans: &[(i64, PlanRow)],
    domains: &HashSet<Domain>,
    reasons: &mut Reasons,
    unmanaged: &mut BTreeSet<Domain>,
) -> AppResult<()> {
    let db = app.store.db();
    let ids: Vec<String> = plans
        .iter()
        .filter(|(_, p)| p.has_version())
        .filter_map(|(_, p)| p.user_id.map(|u| u.to_string()))
        .collect();
    let fresh: Vec<Address> = plans
        .iter()
        .filter(|(_, p)| p.outcome == Outcome::Add && !p.returning)
        .filter_map(|(_, p)| Address::parse(&p.address).ok())
        .collect();
    let claimed: Vec<Address> = plans.iter().flat_map(|(_, p)| p.claims()).collect();
    // Three lookups of one piece, at once.
    let (versions, tombstones, owners) = tokio::try_join!(
        db.aggregate_versions(USER_AGGREGATE, &ids),
        db.tombstones_bulk(customer, &fresh),
        db.address_owners_bulk(&claimed)
    )?;
    let by_row: HashMap<u64, &PlanRow> = plans.iter().map(|(n, p)| (*n as u64, p)).collect();
    for (_, p) in plans {
        if p.has_version() {
            let now = p
                .user_id
                .and_then(|u| versions.get(&u.to_string()).copied())
                .unwrap_or(0);
            if now != p.version {
                reasons.note(format!("{} (line {}) changed", p.address, p.line));
                continue;
            }
        }
        if p.outcome == Outcome::Add && !p.returning {
            if let Ok(a) = Address::parse(&p.address) {
                if tombstones.contains_key(&a) {
                    reasons.note(format!(
                        "{} (line {}) was added and deleted",
                        p.address, p.line
                    ));
                    continue;
                }
            }
        }
        for x in p.claims() {
            if !domains.contains(&x.domain()) {
                unmanaged.insert(x.domain());
            }
            if let Some(o) = owners.get(&x) {
                let released = p
                    .after
                    .iter()
                    .filter_map(|g| by_row.get(g))
                    .any(|g| g.user_id == Some(o.owner));
                if Some(o.owner) != p.user_id && !released {
                    reasons.note(format!("{x} (line {}) is now used by another user", p.line));
                }
            }
        }
    }
    Ok(())
}

/// Why a review is stale: the first few reasons, and how many there are.
#[derive(Default)]
struct Reasons {
    shown: Vec<String>,
    total: usize,
}

impl Reasons {
    fn note(&mut self, reason: String) {
        self.total += 1;
        if self.shown.len() < 10 {
            self.shown.push(reason);
        }
    }
}

/// A plan without additions or updates: the commit only records the import.
async fn complete_empty(
    app: &App,
    actor: &Actor,
    customer: CustomerId,
    import_id: ImportId,
    review: &ReviewInfo,
) -> AppResult<i64> {
    let id = import_id.to_string();
    retrying(|| async {
        let mut import: Loaded<Import> = app.store.load(&id).await?;
        if import.state.completed.is_some() {
            return Ok(0);
        }
        let meta = EventMeta {
            customer_id: customer,
            actor: actor.clone(),
            correlation_id: import_id.into(),
            time: app.clock.now(),
        };
        let mut batch = Batch::new();
        let complete = ImportCommand::Complete {
            import_id,
            chunks: 0,
            unchanged: review.totals.unchanged,
            rejected: review.totals.error,
        };
        batch
            .execute(&mut import, complete, &(), &meta)
            .await
            .map_err(AppError::internal)?;
        Ok(app.store.commit(batch).await?.last)
    })
    .await
}
