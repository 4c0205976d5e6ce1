//! The review of a file: read it, check every row against the store in
//! bulk, in passes, and store the plan. Changes no user.

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;
use roster_csv::{Column, ImportFile, RowOutcome};
use roster_domain::User;
use roster_events::*;
use roster_store::{micros, AddressOwner, Db, ImportRecord, ImportRowRecord};

use super::plan::{
    addition_changes, column_name, file_info, plan_add, plan_update, Groups, PlanRow, Work,
};
use super::{
    enabled_directory, ImportSettings, Outcome, ReviewInfo, ReviewInput, RowIssue, SeatInfo,
    Totals, LOAD_CHUNK,
};
use crate::error::{AppError, AppResult};
use crate::seats::Seats;
use crate::App;

/// What every row is checked against, read once per review.
struct Facts {
    customer: CustomerId,
    domains: BTreeSet<Domain>,
    /// The owner of every address the file names.
    owners: HashMap<Address, AddressOwner>,
    directory: Option<DirectoryKind>,
    email_col: String,
    alias_col: String,
}

impl Facts {
    /// The header of the column an address of row `w` was read from.
    fn column_of<'a>(&'a self, w: &Work, address: &Address) -> &'a str {
        if w.address.as_ref() == Some(address) {
            &self.email_col
        } else {
            &self.alias_col
        }
    }
}

/// An address a row claims that a row of the same file releases:
/// `(taker, giver, address)`.
type Dep = (usize, usize, Address);

/// Reviews a file: reads it, checks every row against the store, stores
/// the plan. Changes no user. Returns the new import's id.
pub async fn review(
    app: &App,
    actor: &Actor,
    customer: CustomerId,
    input: ReviewInput,
    settings: &ImportSettings,
) -> AppResult<ImportId> {
    let db = app.store.db();
    let now = app.clock.now();
    if let Err(e) = db.purge_expired_imports(micros(now)).await {
        tracing::warn!(error = %e, "could not delete expired import reviews");
    }
    let ReviewInput {
        bytes,
        kind,
        file_name,
        mut options,
    } = input;
    options.max_bytes = settings.max_bytes;
    let size = bytes.len();
    let started = std::time::Instant::now();
    let file = tokio::task::spawn_blocking(move || roster_csv::parse_import(&bytes, &options))
        .await
        .map_err(AppError::internal)??;

    let seats = Seats::of(&app.store, customer).await?;
    let facts = facts(app, customer, &file).await?;
    let parsed_s = started.elapsed().as_secs_f64();
    let info = file_info(&file, file_name, kind, size);

    let mut work: Vec<Work> = file.rows.into_iter().map(|r| read_row(r, &facts)).collect();
    plan_targets(app, &facts, &mut work).await?;
    let deps = check_claims(db, &facts, &mut work).await?;
    check_seats(&seats, &facts, &mut work);
    let checked_s = started.elapsed().as_secs_f64();
    let (chunk_of_row, chunks) = chunks(&mut work, &deps, settings.chunk_rows);

    let review = ReviewInfo {
        file: info,
        totals: totals(&work),
        seats: SeatInfo {
            limit: seats.limit,
            used: seats.used,
            free: seats.free(),
        },
        directory_sync: facts.directory,
    };
    let import_id = ImportId::new();
    let header = ImportRecord {
        import_id: import_id.to_string(),
        customer_id: customer,
        reviewed_by: actor.to_string(),
        reviewed_at: micros(now),
        expires_at: micros(now + settings.review_ttl),
        status: "reviewed".into(),
        chunks,
        review: serde_json::to_string(&review).map_err(AppError::internal)?,
        committed_by: None,
        committed_at: None,
        result: None,
    };
    store(db, &header, work, &chunk_of_row).await?;
    let total_s = started.elapsed().as_secs_f64();
    tracing::info!(
        import_id = %import_id,
        rows = review.totals.rows,
        parse_s = parsed_s,
        checks_s = checked_s - parsed_s,
        store_s = total_s - checked_s,
        total_s,
        "import reviewed"
    );
    metrics::counter!("roster_import_reviews_total").increment(1);
    metrics::counter!("roster_import_rows_reviewed_total").increment(review.totals.rows);
    Ok(import_id)
}

/// The customer's domains and directory, and the owner of every address
/// the file names, in bulk.
async fn facts(app: &App, customer: CustomerId, file: &ImportFile) -> AppResult<Facts> {
    let db = app.store.db();
    let domains: BTreeSet<Domain> = db.managed_domains(customer).await?.into_iter().collect();
    let directory = enabled_directory(app, customer).await?;
    let addresses: Vec<Address> = file.addresses().map(|(_, _, a)| a.clone()).collect();
    let owners = db.address_owners_bulk(&addresses).await?;
    Ok(Facts {
        customer,
        domains,
        owners,
        directory,
        email_col: column_name(file, Column::Email),
        alias_col: column_name(file, Column::Aliases),
    })
}

/// An empty plan of a row at `line`.
fn blank(line: u64, address: String, outcome: Outcome) -> PlanRow {
    PlanRow {
        line,
        address,
        outcome,
        user_id: None,
        version: 0,
        returning: false,
        source: None,
        profile: None,
        changes: vec![],
        aliases_added: vec![],
        aliases_removed: vec![],
        after: vec![],
        errors: vec![],
    }
}

/// Pass 1: a row as read, its target, and the checks of the row alone.
fn read_row(row: RowOutcome, facts: &Facts) -> Work {
    let p = match row {
        RowOutcome::Rejected(r) => {
            let mut plan = blank(r.line, r.address_text, Outcome::Error);
            plan.errors = r
                .errors
                .into_iter()
                .map(|e| RowIssue {
                    column: e.column,
                    code: e.kind.code().to_string(),
                    message: e.kind.to_string(),
                })
                .collect();
            return Work {
                plan,
                address: None,
                patch: None,
                aliases: None,
                existing: None,
            };
        }
        RowOutcome::Parsed(p) => p,
    };
    let mut plan = blank(p.line, p.address.to_string(), Outcome::Add);
    if !facts.domains.contains(&p.address.domain()) {
        plan.error(
            Some(&facts.email_col),
            "unmanaged_domain",
            format!(
                "{} is not a managed domain of this customer: add the domain first, or correct the address",
                p.address.domain()
            ),
        );
    }
    for a in p.aliases.iter().flatten() {
        if !facts.domains.contains(&a.domain()) {
            plan.error(
                Some(&facts.alias_col),
                "unmanaged_domain",
                format!(
                    "alias {a}: {} is not a managed domain of this customer: add the domain first, or remove the alias",
                    a.domain()
                ),
            );
        }
    }
    let mut existing = None;
    match facts.owners.get(&p.address) {
        Some(o) if o.customer_id != facts.customer => plan.error(
            Some(&facts.email_col),
            "address_taken",
            format!(
                "{} already belongs to a user, alias or list outside this customer",
                p.address
            ),
        ),
        Some(o) if o.primary => existing = Some(o.owner),
        _ => {}
    }
    Work {
        plan,
        address: Some(p.address),
        patch: Some(p.profile),
        aliases: p.aliases,
        existing,
    }
}

/// Pass 2: the users the file names (existing, and deleted ones whose
/// address returns, U6), loaded in slices; each row's plan.
async fn plan_targets(app: &App, facts: &Facts, work: &mut [Work]) -> AppResult<()> {
    let to_add: Vec<Address> = work
        .iter()
        .filter(|w| w.existing.is_none())
        .filter_map(|w| w.address.clone())
        .collect();
    let tombstones = app
        .store
        .db()
        .tombstones_bulk(facts.customer, &to_add)
        .await?;
    drop(to_add);
    let mut wanted: HashMap<UserId, usize> = HashMap::new();
    for (i, w) in work.iter().enumerate() {
        if let Some(id) = w.existing {
            wanted.insert(id, i);
        } else if let Some(id) = w.address.as_ref().and_then(|a| tombstones.get(a)) {
            wanted.insert(*id, i);
        }
    }
    let ids: Vec<String> = wanted.keys().map(|u| u.to_string()).collect();
    // Two slices in flight: one is decoded while the next is read.
    let slices: Vec<Vec<String>> = ids.chunks(LOAD_CHUNK).map(<[String]>::to_vec).collect();
    let mut slices = futures::stream::iter(slices)
        .map(|slice| {
            let store = app.store.clone();
            async move { store.load_many::<User>(&slice).await }
        })
        .buffered(2);
    while let Some(loaded) = slices.next().await {
        for (id, user) in loaded? {
            let Ok(uid) = UserId::parse(&id) else {
                continue;
            };
            let Some(&i) = wanted.get(&uid) else { continue };
            let w = &mut work[i];
            if w.existing.is_some() {
                plan_update(w, uid, user, facts.directory, &facts.email_col);
            } else if user.state.exists() && user.state.status == Status::Deleted {
                w.plan.user_id = Some(uid);
                w.plan.version = user.version;
                w.plan.returning = true;
            }
        }
    }
    for w in work.iter_mut() {
        if w.existing.is_none() && w.address.is_some() {
            plan_add(w);
        }
    }
    Ok(())
}

/// Pass 3: addresses the rows claim. One held by another user of this
/// customer is allowed only when that user's row in this file releases it.
/// Returns those hand-overs.
async fn check_claims(db: &Db, facts: &Facts, work: &mut [Work]) -> AppResult<Vec<Dep>> {
    let row_of_user: HashMap<UserId, usize> = work
        .iter()
        .enumerate()
        .filter_map(|(i, w)| w.existing.map(|u| (u, i)))
        .collect();
    let mut deps: Vec<Dep> = Vec::new();
    let mut unknown_owner: Vec<(usize, Address, UserId, bool)> = Vec::new();
    for i in 0..work.len() {
        if !matches!(work[i].plan.outcome, Outcome::Add | Outcome::Update) {
            continue;
        }
        let own = work[i].plan.user_id;
        for x in work[i].plan.claims() {
            let Some(o) = facts.owners.get(&x) else {
                continue;
            };
            if o.customer_id != facts.customer {
                let column = facts.column_of(&work[i], &x).to_string();
                work[i].plan.error(
                    Some(&column),
                    "address_taken",
                    format!("{x} already belongs to a user, alias or list outside this customer"),
                );
            } else if Some(o.owner) == own {
                continue;
            } else if o.primary {
                unknown_owner.push((i, x, o.owner, true));
            } else {
                match row_of_user.get(&o.owner) {
                    Some(&g)
                        if work[g].plan.outcome == Outcome::Update
                            && work[g].plan.aliases_removed.contains(&x) =>
                    {
                        deps.push((i, g, x));
                    }
                    _ => unknown_owner.push((i, x, o.owner, false)),
                }
            }
        }
    }
    // The holders of aliases outside this file, named in the messages, in
    // one lookup (a taken primary address names its holder itself).
    let mut outside: Vec<UserId> = unknown_owner
        .iter()
        .filter(|u| !u.3 && !row_of_user.contains_key(&u.2))
        .map(|u| u.2)
        .collect();
    outside.sort_unstable();
    outside.dedup();
    let primaries = db.primaries_bulk(facts.customer, &outside).await?;
    for (i, x, owner, primary) in unknown_owner {
        let holder = match row_of_user.get(&owner) {
            Some(&g) => work[g].address.clone(),
            None if primary => Some(x.clone()),
            None => primaries.get(&owner).cloned(),
        };
        let holder = holder
            .map(|a| a.to_string())
            .unwrap_or_else(|| "another user".into());
        let message = if primary {
            format!(
                "{x} is the address of another user ({holder}): it cannot also be an alias here"
            )
        } else {
            format!(
                "{x} is an alias of {holder}: remove it from that user first (in this file, with an aliases cell without it, or in the user list)"
            )
        };
        let column = facts.column_of(&work[i], &x).to_string();
        work[i].plan.error(Some(&column), "address_taken", message);
    }
    stop_unreleased(facts, work, &deps);
    Ok(deps)
}

/// A row that needs an address released by a row that is not applied is
/// not applied either (repeat: that may stop further rows).
fn stop_unreleased(facts: &Facts, work: &mut [Work], deps: &[Dep]) {
    loop {
        let mut changed = false;
        for (taker, giver, x) in deps {
            if work[*giver].plan.outcome != Outcome::Update
                && work[*taker].plan.outcome != Outcome::Error
            {
                let line = work[*giver].plan.line;
                let column = facts.column_of(&work[*taker], x).to_string();
                work[*taker].plan.error(
                    Some(&column),
                    "address_taken",
                    format!("{x} is released by the row on line {line}, which is not applied: fix that row first"),
                );
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// Pass 4: T3, additions beyond the free seats, in file order.
fn check_seats(seats: &Seats, facts: &Facts, work: &mut [Work]) {
    let free = seats.free();
    let mut adds = 0u64;
    for w in work.iter_mut() {
        if w.plan.outcome != Outcome::Add {
            continue;
        }
        adds += 1;
        if !seats.fits(adds) {
            w.plan.error(
                Some(&facts.email_col),
                "over_seat_limit",
                format!(
                    "the customer has {} seats and {} are in use, so this file can add {free} users and this row would be addition {adds}: raise the seat limit, or remove users or rows",
                    seats.limit, seats.used
                ),
            );
        }
    }
}

/// Pass 5: chunks of at most `chunk_rows` additions and updates. Rows that
/// hand addresses to each other share one. Returns each row's chunk and
/// how many there are.
fn chunks(work: &mut [Work], deps: &[Dep], chunk_rows: usize) -> (Vec<Option<i64>>, i64) {
    let mut groups = Groups::new(work.len());
    for (taker, giver, _) in deps {
        if work[*taker].plan.outcome != Outcome::Error {
            groups.join(*taker, *giver);
            let g = *giver as u64;
            if !work[*taker].plan.after.contains(&g) {
                work[*taker].plan.after.push(g);
            }
        }
    }
    let chunk_rows = chunk_rows.max(1);
    let mut chunk_of_group: HashMap<usize, i64> = HashMap::new();
    let mut chunk_of_row: Vec<Option<i64>> = vec![None; work.len()];
    let (mut current, mut filled) = (0i64, 0usize);
    let mut chunks = 0i64;
    for (i, w) in work.iter().enumerate() {
        if !matches!(w.plan.outcome, Outcome::Add | Outcome::Update) {
            continue;
        }
        let root = groups.root(i);
        let chunk = match chunk_of_group.get(&root) {
            Some(c) => *c,
            None => {
                if filled >= chunk_rows {
                    current += 1;
                    filled = 0;
                }
                chunk_of_group.insert(root, current);
                current
            }
        };
        filled += 1;
        chunk_of_row[i] = Some(chunk);
        chunks = chunks.max(chunk + 1);
    }
    (chunk_of_row, chunks)
}

/// Rows by outcome.
fn totals(work: &[Work]) -> Totals {
    let mut totals = Totals {
        rows: work.len() as u64,
        ..Totals::default()
    };
    for w in work {
        match w.plan.outcome {
            Outcome::Add => totals.add += 1,
            Outcome::Update => totals.update += 1,
            Outcome::Unchanged => totals.unchanged += 1,
            Outcome::Error => totals.error += 1,
        }
    }
    totals
}

/// Stores the review and its rows, in slices.
async fn store(
    db: &Db,
    header: &ImportRecord,
    work: Vec<Work>,
    chunk_of_row: &[Option<i64>],
) -> AppResult<()> {
    let mut writer = db.begin_import(header).await?;
    let mut records = Vec::with_capacity(LOAD_CHUNK.min(work.len()));
    for (i, w) in work.into_iter().enumerate() {
        let mut plan = w.plan;
        if plan.outcome == Outcome::Error {
            // An error row keeps what it would have set, not its profile.
            if w.existing.is_none() && plan.changes.is_empty() {
                if let Some(profile) = &plan.profile {
                    plan.changes = addition_changes(profile);
                }
            }
            plan.profile = None;
            plan.after.clear();
        }
        records.push(ImportRowRecord {
            row_no: i as i64,
            line: plan.line as i64,
            outcome: plan.outcome.as_str().to_string(),
            chunk: chunk_of_row[i],
            plan: serde_json::to_string(&plan).map_err(AppError::internal)?,
        });
        if records.len() == LOAD_CHUNK {
            writer.rows(&records).await?;
            records.clear();
        }
    }
    writer.rows(&records).await?;
    writer.finish().await?;
    Ok(())
}
