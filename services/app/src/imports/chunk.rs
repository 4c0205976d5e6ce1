//! One chunk of a commit: its rows' events with the Import aggregate's
//! record of the chunk (and, with the last chunk, of the import's
//! completion) in one append.
//!
//! Before the first chunk is applied, any change since the review refuses
//! the whole commit (`review_stale`): nothing is applied yet, so a new
//! review is cheap and exact. In a later chunk, a row whose user or claims
//! changed meanwhile is skipped (with its reason), and the rest applied.

use std::collections::{BTreeMap, HashMap};

use roster_domain::{AddUser, Import, ImportCommand, User, UserCommand, UserServices};
use roster_events::*;
use roster_store::{Batch, Loaded, StoreError};

use super::{corrupt, parse_plans, stale, Outcome, PlanRow, ReviewInfo};
use crate::error::{AppError, AppResult};
use crate::retry::Backoff;
use crate::seats::Seats;
use crate::users::stage_add;
use crate::App;

/// Why a planned row was not applied in a later chunk.
struct Skip {
    code: &'static str,
    reason: String,
}

impl Skip {
    fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Skip {
            code,
            reason: reason.into(),
        }
    }
}

/// What one attempt staged.
pub(super) struct Staged {
    batch: Batch,
    added: u64,
    updated: u64,
}

/// An attempt at a chunk, prepared ([`Chunk::prepare`]).
pub(super) enum Prep {
    /// Another commit of the import appended the chunk (or all of them).
    Done,
    /// The rows' events, and the metadata they were staged with.
    Staged(Box<(Staged, EventMeta)>),
    /// A user's aggregate refused the row `n`'s change: the user is not as
    /// it was reviewed.
    Refused(i64, String),
}

/// A chunk being committed, with the rows skipped so far.
pub(super) struct Chunk<'a> {
    app: &'a App,
    actor: &'a Actor,
    customer: CustomerId,
    import_id: ImportId,
    chunk: u32,
    chunks: u32,
    review: &'a ReviewInfo,
    plans: Vec<(i64, PlanRow)>,
    skips: BTreeMap<i64, Skip>,
    /// Set by each attempt: whether no chunk is committed yet.
    first: bool,
    read_s: f64,
    /// Time spent preparing its attempts.
    stage_s: f64,
}

impl<'a> Chunk<'a> {
    /// Reads the plan of chunk `chunk` of `chunks`.
    pub(super) async fn read(
        app: &'a App,
        actor: &'a Actor,
        customer: CustomerId,
        import_id: ImportId,
        (chunk, chunks): (u32, u32),
        review: &'a ReviewInfo,
    ) -> AppResult<Chunk<'a>> {
        let started = std::time::Instant::now();
        let records = app
            .store
            .db()
            .import_chunk(&import_id.to_string(), i64::from(chunk))
            .await?;
        Ok(Chunk {
            app,
            actor,
            customer,
            import_id,
            chunk,
            chunks,
            review,
            plans: parse_plans(records)?,
            skips: BTreeMap::new(),
            first: true,
            read_s: started.elapsed().as_secs_f64(),
            stage_s: 0.0,
        })
    }

    /// Prepares an attempt: stages the chunk's rows against the users and
    /// seats as they are now. `ahead`: the chunk is prepared while the one
    /// before it is being appended, so it is not the import's first (a
    /// change found then skips the row; only the first chunk's makes the
    /// review stale). The staging is pure: nothing is written until
    /// [`Chunk::commit`] appends it, which checks the import again first.
    pub(super) async fn prepare(&mut self, ahead: bool) -> AppResult<Prep> {
        let started = std::time::Instant::now();
        let import: Loaded<Import> = self.app.store.load(&self.import_id.to_string()).await?;
        if import.state.completed.is_some() || import.state.committed_chunks > self.chunk {
            return Ok(Prep::Done);
        }
        self.first = !ahead && import.state.committed_chunks == 0;
        let mut users = self.check_versions().await?;
        let seats = self.check_seats().await?;
        propagate_skips(&self.plans, &mut self.skips);
        let meta = EventMeta {
            customer_id: self.customer,
            actor: self.actor.clone(),
            correlation_id: self.import_id.into(),
            time: self.app.clock.now(),
        };
        let prep = match self.stage_rows(&mut users, seats, &meta).await? {
            Ok(staged) => Prep::Staged(Box::new((staged, meta))),
            Err((n, reason)) => Prep::Refused(n, reason),
        };
        self.stage_s += started.elapsed().as_secs_f64();
        Ok(prep)
    }

    /// Commits the chunk from `prep` (an attempt prepared beforehand, or
    /// `None`); an attempt refused is prepared again. Returns the last
    /// position, or `None` when another commit of the same import appended
    /// this chunk first.
    pub(super) async fn commit(mut self, prep: Option<AppResult<Prep>>) -> AppResult<Option<i64>> {
        let id = self.import_id.to_string();
        let mut backoff = Backoff::new();
        let mut last_error: Option<StoreError> = None;
        let mut prep = prep;
        while backoff.may_attempt() {
            let prepared = match prep.take() {
                Some(p) => p?,
                None => self.prepare(false).await?,
            };
            let (staged, meta) = match prepared {
                Prep::Done => return Ok(None),
                Prep::Refused(n, reason) => {
                    self.refused_by_aggregate(n, reason)?;
                    backoff.conflicted().await;
                    continue;
                }
                Prep::Staged(staged) => *staged,
            };
            // The import as it is now: a chunk prepared ahead was staged
            // while the one before it was appended.
            let t = std::time::Instant::now();
            let mut import: Loaded<Import> = self.app.store.load(&id).await?;
            if import.state.completed.is_some() || import.state.committed_chunks > self.chunk {
                return Ok(None);
            }
            let (added, updated) = (staged.added, staged.updated);
            let batch = self.stage_import(staged, &mut import, &meta).await?;
            match self.app.store.commit(batch).await {
                Ok(appended) => {
                    tracing::debug!(
                        import_id = %self.import_id,
                        chunk = self.chunk,
                        rows = self.plans.len(),
                        read_s = self.read_s,
                        stage_s = self.stage_s,
                        append_s = t.elapsed().as_secs_f64(),
                        "import chunk committed"
                    );
                    metrics::counter!("roster_import_rows_committed_total")
                        .increment(added + updated);
                    return Ok(Some(appended.last));
                }
                Err(e) => {
                    if let Some(e) = self.refused_by_store(e)? {
                        last_error = Some(e);
                    }
                    backoff.conflicted().await;
                }
            }
        }
        Err(last_error
            .map(AppError::from)
            .unwrap_or_else(|| AppError::internal("the chunk could not be committed")))
    }

    /// The plan's users, loaded; a user not at the version it was reviewed
    /// at is skipped (or, before the first chunk, the review is stale).
    async fn check_versions(&mut self) -> AppResult<HashMap<String, Loaded<User>>> {
        let ids: Vec<String> = self
            .plans
            .iter()
            .filter(|(_, p)| p.has_version())
            .filter_map(|(_, p)| p.user_id.map(|u| u.to_string()))
            .collect();
        let users = self.app.store.load_many::<User>(&ids).await?;
        let mut changed = Vec::new();
        for (n, p) in &self.plans {
            if self.skips.contains_key(n) || !p.has_version() {
                continue;
            }
            let version = p
                .user_id
                .and_then(|u| users.get(&u.to_string()))
                .map_or(0, |u| u.version);
            if version != p.version {
                changed.push(format!("{} (line {}) changed", p.address, p.line));
                self.skips.insert(
                    *n,
                    Skip::new(
                        "changed_since_review",
                        "the user changed after the review, while the import was being committed",
                    ),
                );
            }
        }
        if self.first && !changed.is_empty() {
            let total = changed.len();
            return Err(stale(&changed, total));
        }
        Ok(users)
    }

    /// T3: additions beyond the free seats are skipped (or, before the
    /// first chunk, the review is stale).
    async fn check_seats(&mut self) -> AppResult<Seats> {
        let seats = Seats::of(&self.app.store, self.customer).await?;
        let mut free = seats.free();
        for (n, p) in &self.plans {
            if p.outcome != Outcome::Add || self.skips.contains_key(n) {
                continue;
            }
            if free > 0 {
                free -= 1;
                continue;
            }
            if self.first {
                return Err(stale(
                    &[format!(
                        "{} of the customer's {} seats are in use now, so the additions no longer fit",
                        seats.used, seats.limit
                    )],
                    1,
                ));
            }
            let reason = format!(
                "the customer's {} seats filled up while the import was being committed",
                seats.limit
            );
            self.skips.insert(*n, Skip::new("over_seat_limit", reason));
        }
        Ok(seats)
    }

    /// Stages the rows that are not skipped: releases first, so that an
    /// address handed from one row to another is free when it is claimed,
    /// then additions and updates. The inner error names the row the
    /// aggregate refused, and why.
    async fn stage_rows(
        &self,
        users: &mut HashMap<String, Loaded<User>>,
        mut seats: Seats,
        meta: &EventMeta,
    ) -> AppResult<Result<Staged, (i64, String)>> {
        let mut staged = Staged {
            batch: Batch::new(),
            added: 0,
            updated: 0,
        };
        let none = UserServices::default();
        for (n, p) in &self.plans {
            if p.outcome != Outcome::Update || self.skips.contains_key(n) {
                continue;
            }
            let Some(target) = p.user_id.and_then(|u| users.get_mut(&u.to_string())) else {
                continue;
            };
            for alias in &p.aliases_removed {
                let alias = alias.clone();
                let reason = UnmapReason::Manual;
                let command = UserCommand::UnmapAlias { alias, reason };
                if let Err(e) = staged.batch.execute(target, command, &none, meta).await {
                    return Ok(Err((*n, e.to_string())));
                }
            }
        }
        for (n, p) in &self.plans {
            if self.skips.contains_key(n) {
                continue;
            }
            let Some(uid) = p.user_id else { continue };
            let key = uid.to_string();
            let target = users.entry(key.clone()).or_insert_with(|| Loaded::new(key));
            let outcome = match p.outcome {
                Outcome::Add => {
                    staged.added += 1;
                    let add = AddUser {
                        user_id: uid,
                        customer_id: self.customer,
                        address: Address::parse(&p.address).map_err(corrupt)?,
                        kind: Kind::User,
                        source: Source::Csv,
                        profile: p.profile.clone().unwrap_or_default(),
                        aliases: p.aliases_added.clone(),
                        directory_id: None,
                        members: vec![],
                    };
                    stage_add(&mut staged.batch, target, add, &mut seats, meta).await
                }
                Outcome::Update => {
                    staged.updated += 1;
                    stage_update(&mut staged.batch, target, p, meta).await
                }
                Outcome::Unchanged | Outcome::Error => Ok(()),
            };
            if let Err(e) = outcome {
                return Ok(Err((*n, e.to_string())));
            }
        }
        Ok(Ok(staged))
    }

    /// Adds the Import aggregate's record of the chunk (and, with the last
    /// chunk, of the import's completion) to the rows' batch.
    async fn stage_import(
        &self,
        staged: Staged,
        import: &mut Loaded<Import>,
        meta: &EventMeta,
    ) -> AppResult<Batch> {
        let Staged {
            mut batch,
            added,
            updated,
        } = staged;
        let skipped: Vec<SkippedRow> = self
            .skips
            .iter()
            .filter_map(|(n, s)| {
                let p = &self.plans.iter().find(|(m, _)| m == n)?.1;
                Some(SkippedRow {
                    line: p.line,
                    address: Address::parse(&p.address).ok()?,
                    code: s.code.to_string(),
                    reason: s.reason.clone(),
                })
            })
            .collect();
        let (import_id, chunk, chunks) = (self.import_id, self.chunk, self.chunks);
        let record = ImportCommand::CommitChunk {
            import_id,
            chunk,
            chunks,
            added,
            updated,
            skipped,
        };
        batch
            .execute(import, record, &(), meta)
            .await
            .map_err(AppError::internal)?;
        if chunk + 1 == chunks {
            let complete = ImportCommand::Complete {
                import_id,
                chunks,
                unchanged: self.review.totals.unchanged,
                rejected: self.review.totals.error,
            };
            batch
                .execute(import, complete, &(), meta)
                .await
                .map_err(AppError::internal)?;
        }
        Ok(batch)
    }

    /// The aggregate refused what the checks let through: the user is not
    /// as it was reviewed. Stale before the first chunk; skipped after.
    fn refused_by_aggregate(&mut self, n: i64, reason: String) -> AppResult<()> {
        if self.first {
            let p = &self
                .plans
                .iter()
                .find(|(m, _)| *m == n)
                .ok_or_else(|| AppError::internal("a refused row is not in its chunk"))?
                .1;
            return Err(stale(
                &[format!("{} (line {}): {reason}", p.address, p.line)],
                1,
            ));
        }
        self.skips
            .insert(n, Skip::new("changed_since_review", reason));
        Ok(())
    }

    /// The append refused the chunk: a conflict is tried again; a claim or
    /// the seat limit taken meanwhile skips the rows it hits (or, before
    /// the first chunk, makes the review stale). Returns the error to
    /// answer if no attempt succeeds, unless rows were skipped instead.
    fn refused_by_store(&mut self, e: StoreError) -> AppResult<Option<StoreError>> {
        let (hit, code, reason, stale_reason): (Vec<i64>, _, String, String) = match &e {
            StoreError::Conflict => return Ok(Some(e)),
            StoreError::OverSeatLimit { used, limit } => {
                if self.first {
                    return Err(stale(
                        &[format!(
                            "{used} of the customer's {limit} seats would be in use"
                        )],
                        1,
                    ));
                }
                return Ok(Some(e));
            }
            StoreError::AddressTaken { address } => (
                self.hits(|p| p.claims().contains(address)),
                "address_taken",
                format!("{address} was taken by another user while the import was being committed"),
                format!("{address} is now used by another user"),
            ),
            StoreError::UnmanagedDomain { domain } => (
                self.hits(|p| p.claims().iter().any(|a| &a.domain() == domain)),
                "unmanaged_domain",
                format!(
                    "{domain} stopped being a managed domain while the import was being committed"
                ),
                format!("{domain} is no longer a managed domain"),
            ),
            _ => return Err(e.into()),
        };
        if self.first || hit.is_empty() {
            return Err(stale(&[stale_reason], 1));
        }
        for n in hit {
            self.skips.insert(n, Skip::new(code, reason.clone()));
        }
        Ok(None)
    }

    /// The rows not yet skipped that `hit` selects.
    fn hits(&self, hit: impl Fn(&PlanRow) -> bool) -> Vec<i64> {
        self.plans
            .iter()
            .filter(|(n, p)| !self.skips.contains_key(n) && hit(p))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// Stages an update row: its profile, then its new aliases.
async fn stage_update(
    batch: &mut Batch,
    target: &mut Loaded<User>,
    p: &PlanRow,
    meta: &EventMeta,
) -> Result<(), roster_domain::UserError> {
    let none = UserServices::default();
    if !p.changes.is_empty() {
        let profile = p.profile.clone().unwrap_or_default();
        let command = UserCommand::UpdateProfile { profile };
        batch.execute(target, command, &none, meta).await?;
    }
    for alias in &p.aliases_added {
        let command = UserCommand::MapAlias {
            alias: alias.clone(),
        };
        batch.execute(target, command, &none, meta).await?;
    }
    Ok(())
}

/// A row that needs an address released by a skipped row is skipped too.
fn propagate_skips(plans: &[(i64, PlanRow)], skips: &mut BTreeMap<i64, Skip>) {
    loop {
        let mut more = Vec::new();
        for (n, p) in plans {
            if skips.contains_key(n) {
                continue;
            }
            if let Some(g) = p.after.iter().find(|g| skips.contains_key(&(**g as i64))) {
                let line = plans
                    .iter()
                    .find(|(m, _)| *m == *g as i64)
                    .map_or(0, |(_, q)| q.line);
                more.push((
                    *n,
                    Skip::new(
                        "address_taken",
                        format!(
                            "an address this row takes over is released by the row on line {line}, which was not applied"
                        ),
                    ),
                ));
            }
        }
        if more.is_empty() {
            return;
        }
        for (n, s) in more {
            skips.insert(n, s);
        }
    }
}
