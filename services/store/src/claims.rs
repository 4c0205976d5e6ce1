//! Applying claim changes inside the append transaction, and reading claims.
//!
//! Runs of address claims and of address releases are applied set-wise
//! (one statement per run of the same kind, or per 10,000 claims of a
//! longer run: `UNNEST` arrays on PostgreSQL, one `json_each` parameter on
//! SQLite), so a 100k-user sync does not pay a round trip per address
//! (issue 17). The other claims are few and taken
//! one by one.

use roster_events::{Address, ClaimChange, CustomerId, Domain, Guard, PartnerId, UserId};
use sqlx::Row;

use crate::{with_db, with_tx, Db, StoreError, Tx};

/// One claim change with the customer it belongs to and the time of its event.
#[derive(Debug, Clone)]
pub(crate) struct ClaimItem {
    pub customer: CustomerId,
    pub change: ClaimChange,
    pub at: i64,
}

/// At most this many address claims (or releases) go in one statement.
const RUN_CHUNK: usize = 10_000;

fn kind_of(c: &ClaimChange) -> u8 {
    match c {
        ClaimChange::ClaimAddress { .. } => 1,
        ClaimChange::ReleaseAddress { .. } => 2,
        _ => 0,
    }
}

/// Applies the claims in order and then checks the deferred conditions
/// (released domains are empty) and the guards.
pub(crate) async fn apply(
    tx: &mut Tx,
    items: &[ClaimItem],
    guards: &[(CustomerId, Guard)],
) -> Result<(), StoreError> {
    let mut released_domains: Vec<(CustomerId, Domain)> = Vec::new();
    apply_changes(tx, items, &mut released_domains).await?;
    check(tx, &released_domains, guards).await
}

/// Applies the claims in order; the domains they release are checked by
/// [`check`] once the append has applied all its claims.
pub(crate) async fn apply_changes(
    tx: &mut Tx,
    items: &[ClaimItem],
    released_domains: &mut Vec<(CustomerId, Domain)>,
) -> Result<(), StoreError> {
    let mut i = 0;
    while i < items.len() {
        let kind = kind_of(&items[i].change);
        let mut j = i + 1;
        while j < items.len() && kind != 0 && kind_of(&items[j].change) == kind {
            j += 1;
        }
        let run = &items[i..j];
        if kind != 0 && run.len() > 1 {
            // In statements of at most RUN_CHUNK claims: the same order and
            // outcome as one statement, without a copy of every address of
            // a 100,000-user sync in one set of arrays (issue 17).
            for (k, chunk) in run.chunks(RUN_CHUNK).enumerate() {
                let earlier = &run[..k * RUN_CHUNK];
                match (&mut *tx, kind) {
                    (Tx::Pg(t), 1) => pg_claim_addresses(t, earlier, chunk).await?,
                    (Tx::Pg(t), _) => pg_release_addresses(t, chunk).await?,
                    (Tx::Sqlite(t), 1) => sqlite_claim_addresses(t, chunk).await?,
                    (Tx::Sqlite(t), _) => sqlite_release_addresses(t, chunk).await?,
                }
            }
        } else {
            for item in run {
                apply_one(tx, item, released_domains).await?;
            }
        }
        i = j;
    }
    Ok(())
}

/// The deferred conditions of an append: the domains it released are
/// empty, and its guards hold.
pub(crate) async fn check(
    tx: &mut Tx,
    released_domains: &[(CustomerId, Domain)],
    guards: &[(CustomerId, Guard)],
) -> Result<(), StoreError> {
    for (customer, domain) in released_domains.iter().cloned() {
        let left: Option<String> = with_tx!(tx, |c| sqlx::query_scalar(
            "SELECT address FROM address_claims WHERE customer_id = $1 AND domain = $2 LIMIT 1"
        )
        .bind(customer.to_string())
        .bind(domain.as_str())
        .fetch_optional(c)
        .await?);
        if let Some(address) = left {
            return Err(StoreError::DomainInUse {
                domain,
                address: Address::parse(&address)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            });
        }
    }
    for (customer, guard) in guards {
        match guard {
            Guard::SeatLimit => {
                let usage = seat_usage_tx(tx, *customer).await?;
                if usage.0 > usage.1 {
                    return Err(StoreError::OverSeatLimit {
                        used: usage.0,
                        limit: usage.1,
                    });
                }
            }
        }
    }
    Ok(())
}

/// A customer's seat limit and the seats its addresses take (a counter
/// kept by triggers on `address_claims`, migration 0800), in one query.
const SEAT_USAGE: &str =
    "SELECT seat_limit, seats_used FROM customer_claims WHERE customer_id = $1";

async fn seat_usage_tx(tx: &mut Tx, customer: CustomerId) -> Result<(u64, u64), StoreError> {
    let row: Option<(i64, i64)> = with_tx!(tx, |c| sqlx::query_as(SEAT_USAGE)
        .bind(customer.to_string())
        .fetch_optional(&mut *c)
        .await?);
    let (limit, used) = row.ok_or(StoreError::UnknownCustomer)?;
    Ok((used as u64, limit as u64))
}

async fn apply_one(
    tx: &mut Tx,
    item: &ClaimItem,
    released_domains: &mut Vec<(CustomerId, Domain)>,
) -> Result<(), StoreError> {
    let customer = item.customer.to_string();
    match &item.change {
        ClaimChange::RegisterCustomer {
            partner_id,
            seat_limit,
        } => {
            let n = with_tx!(tx, |c| {
                sqlx::query(
                "INSERT INTO customer_claims (customer_id, partner_id, seat_limit) VALUES ($1, $2, $3)
                 ON CONFLICT (customer_id) DO NOTHING"
            )
            .bind(&customer)
            .bind(partner_id.to_string())
            .bind(*seat_limit as i64)
            .execute(c)
            .await?
            .rows_affected()
            });
            if n == 0 {
                return Err(StoreError::Inconsistent(format!(
                    "customer {customer} registered twice"
                )));
            }
        }
        ClaimChange::SetSeatLimit { seat_limit } => {
            let n = with_tx!(tx, |c| sqlx::query(
                "UPDATE customer_claims SET seat_limit = $2 WHERE customer_id = $1"
            )
            .bind(&customer)
            .bind(*seat_limit as i64)
            .execute(c)
            .await?
            .rows_affected());
            if n == 0 {
                return Err(StoreError::UnknownCustomer);
            }
        }
        ClaimChange::ClaimDomain { domain } => {
            let n = with_tx!(tx, |c| sqlx::query(
                "INSERT INTO domain_claims (domain, customer_id) VALUES ($1, $2)
                 ON CONFLICT (domain) DO NOTHING"
            )
            .bind(domain.as_str())
            .bind(&customer)
            .execute(c)
            .await?
            .rows_affected());
            if n == 0 {
                return Err(StoreError::DomainTaken {
                    domain: domain.clone(),
                });
            }
        }
        ClaimChange::ReleaseDomain { domain } => {
            let n = with_tx!(tx, |c| sqlx::query(
                "DELETE FROM domain_claims WHERE domain = $1 AND customer_id = $2"
            )
            .bind(domain.as_str())
            .bind(&customer)
            .execute(c)
            .await?
            .rows_affected());
            if n == 0 {
                return Err(StoreError::Inconsistent(format!(
                    "{domain} released but not claimed by {customer}"
                )));
            }
            released_domains.push((item.customer, domain.clone()));
        }
        ClaimChange::ClaimAddress {
            address,
            owner,
            primary,
            seat,
        } => claim_address(tx, &customer, address, *owner, *primary, *seat).await?,
        ClaimChange::ReleaseAddress {
            address,
            owner,
            tombstone,
        } => release_address(tx, &customer, address, *owner, *tombstone, item.at).await?,
        ClaimChange::SetSeat {
            address,
            owner,
            seat,
        } => {
            let n = with_tx!(tx, |c| sqlx::query(
                "UPDATE address_claims SET seat = $3 WHERE address = $1 AND owner_id = $2"
            )
            .bind(address.as_str())
            .bind(owner.to_string())
            .bind(*seat)
            .execute(c)
            .await?
            .rows_affected());
            if n == 0 {
                return Err(StoreError::Inconsistent(format!(
                    "seat of {address} changed but it is not claimed by {owner}"
                )));
            }
        }
    }
    Ok(())
}

/// U1: an address is claimed once in the whole system, and only in a
/// domain its customer manages (T2).
async fn claim_address(
    tx: &mut Tx,
    customer: &str,
    address: &Address,
    owner: UserId,
    primary: bool,
    seat: bool,
) -> Result<(), StoreError> {
    let managed_by: Option<String> = with_tx!(tx, |c| sqlx::query_scalar(
        "SELECT customer_id FROM domain_claims WHERE domain = $1"
    )
    .bind(address.domain_str())
    .fetch_optional(c)
    .await?);
    if managed_by.as_deref() != Some(customer) {
        return Err(StoreError::UnmanagedDomain {
            domain: address.domain(),
        });
    }
    let n = with_tx!(tx, |c| {
        sqlx::query(
            "INSERT INTO address_claims (address, domain, customer_id, owner_id, is_primary, seat)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (address) DO NOTHING",
        )
        .bind(address.as_str())
        .bind(address.domain_str())
        .bind(customer)
        .bind(owner.to_string())
        .bind(primary)
        .bind(seat)
        .execute(c)
        .await?
        .rows_affected()
    });
    if n == 0 {
        return Err(StoreError::AddressTaken {
            address: address.clone(),
        });
    }
    Ok(())
}

/// U1: only the owner releases its address; with `tombstone` a later
/// return of the address finds its earlier owner (U6).
async fn release_address(
    tx: &mut Tx,
    customer: &str,
    address: &Address,
    owner: UserId,
    tombstone: bool,
    at: i64,
) -> Result<(), StoreError> {
    let n = with_tx!(tx, |c| sqlx::query(
        "DELETE FROM address_claims WHERE address = $1 AND owner_id = $2"
    )
    .bind(address.as_str())
    .bind(owner.to_string())
    .execute(c)
    .await?
    .rows_affected());
    if n == 0 {
        return Err(StoreError::Inconsistent(format!(
            "{address} released but not claimed by {owner}"
        )));
    }
    if tombstone {
        with_tx!(tx, |c| {
            sqlx::query(
                "INSERT INTO address_tombstones (customer_id, address, owner_id, released_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (customer_id, address)
                 DO UPDATE SET owner_id = excluded.owner_id, released_at = excluded.released_at",
            )
            .bind(customer)
            .bind(address.as_str())
            .bind(owner.to_string())
            .bind(at)
            .execute(c)
            .await
            .map(|_| ())?
        });
    }
    Ok(())
}

async fn pg_claim_addresses(
    t: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    earlier: &[ClaimItem],
    run: &[ClaimItem],
) -> Result<(), StoreError> {
    let n = run.len();
    let (mut addresses, mut domains, mut customers, mut owners, mut primaries, mut seats) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut pairs: Vec<(String, String)> = Vec::new();
    for item in run {
        if let ClaimChange::ClaimAddress {
            address,
            owner,
            primary,
            seat,
        } = &item.change
        {
            addresses.push(address.as_str().to_string());
            domains.push(address.domain_str().to_string());
            customers.push(item.customer.to_string());
            owners.push(owner.to_string());
            primaries.push(*primary);
            seats.push(*seat);
            pairs.push((address.domain_str().to_string(), item.customer.to_string()));
        }
    }
    pairs.sort();
    pairs.dedup();
    let (pd, pc): (Vec<String>, Vec<String>) = pairs.into_iter().unzip();
    let unmanaged: Option<String> = sqlx::query_scalar(
        "SELECT t.domain FROM UNNEST($1::text[], $2::text[]) AS t(domain, customer_id)
         WHERE NOT EXISTS (SELECT 1 FROM domain_claims d
                           WHERE d.domain = t.domain AND d.customer_id = t.customer_id)
         LIMIT 1",
    )
    .bind(&pd)
    .bind(&pc)
    .fetch_optional(&mut **t)
    .await?;
    if let Some(domain) = unmanaged {
        return Err(StoreError::UnmanagedDomain {
            domain: Domain::parse(&domain).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        });
    }
    // Appends hold the log's lock (`log::APPEND_LOCK`) and every write to
    // the claims happens in one, so the addresses held now are held until
    // the insert: they are looked up first and the insert is a plain one.
    // `ON CONFLICT DO NOTHING` checked each address twice and confirmed
    // each row in a WAL record of its own: 0.99-1.25 s for 110,000 claims
    // in psql on this machine, against 0.15-0.16 s for the lookup and
    // 0.63-0.75 s for the plain insert (issue 17).
    let held: std::collections::HashMap<String, String> =
        sqlx::query("SELECT address, owner_id FROM address_claims WHERE address = ANY($1::text[])")
            .bind(&addresses)
            .fetch_all(&mut **t)
            .await?
            .into_iter()
            .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
            .collect();
    // The first address claimed twice in the run or held by another user
    // is refused. An address the run's earlier statements claimed is held
    // now (by this transaction), so they are searched only for an address
    // held by its own claimant.
    let claimed_earlier = |address: &str| {
        earlier.iter().any(|i| {
            matches!(&i.change, ClaimChange::ClaimAddress { address: a, .. } if a.as_str() == address)
        })
    };
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::with_capacity(n);
    let mut held_by_claimant = false;
    for (address, owner) in addresses.iter().zip(&owners) {
        let holder = held.get(address);
        if !seen.insert(address.as_str())
            || holder.is_some_and(|h| h != owner || claimed_earlier(address))
        {
            return Err(StoreError::AddressTaken {
                address: Address::parse(address).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            });
        }
        held_by_claimant |= holder.is_some();
    }
    if held_by_claimant {
        return Err(StoreError::Inconsistent(
            "an address was claimed again by the user that holds it".into(),
        ));
    }
    sqlx::query(
        "INSERT INTO address_claims (address, domain, customer_id, owner_id, is_primary, seat)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::bool[])",
    )
    .bind(&addresses)
    .bind(&domains)
    .bind(&customers)
    .bind(&owners)
    .bind(&primaries)
    .bind(&seats)
    .execute(&mut **t)
    .await?;
    Ok(())
}

async fn pg_release_addresses(
    t: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    run: &[ClaimItem],
) -> Result<(), StoreError> {
    let mut addresses = Vec::with_capacity(run.len());
    let mut owners = Vec::with_capacity(run.len());
    let mut tombstones: std::collections::BTreeMap<(String, String), (String, i64)> =
        Default::default();
    for item in run {
        if let ClaimChange::ReleaseAddress {
            address,
            owner,
            tombstone,
        } = &item.change
        {
            addresses.push(address.as_str().to_string());
            owners.push(owner.to_string());
            if *tombstone {
                tombstones.insert(
                    (item.customer.to_string(), address.as_str().to_string()),
                    (owner.to_string(), item.at),
                );
            }
        }
    }
    let deleted = sqlx::query(
        "DELETE FROM address_claims c USING UNNEST($1::text[], $2::text[]) AS t(address, owner_id)
         WHERE c.address = t.address AND c.owner_id = t.owner_id",
    )
    .bind(&addresses)
    .bind(&owners)
    .execute(&mut **t)
    .await?
    .rows_affected();
    if deleted as usize != addresses.len() {
        return Err(StoreError::Inconsistent(format!(
            "{} addresses released but only {deleted} were claimed by their owners",
            addresses.len()
        )));
    }
    if !tombstones.is_empty() {
        let mut cs = Vec::new();
        let mut ads = Vec::new();
        let mut os = Vec::new();
        let mut ats = Vec::new();
        for ((c, a), (o, at)) in tombstones {
            cs.push(c);
            ads.push(a);
            os.push(o);
            ats.push(at);
        }
        sqlx::query(
            "INSERT INTO address_tombstones (customer_id, address, owner_id, released_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[])
             ON CONFLICT (customer_id, address)
             DO UPDATE SET owner_id = excluded.owner_id, released_at = excluded.released_at",
        )
        .bind(&cs)
        .bind(&ads)
        .bind(&os)
        .bind(&ats)
        .execute(&mut **t)
        .await?;
    }
    Ok(())
}

/// Runs SQL without parameters (savepoints) in a SQLite transaction.
async fn sqlite_exec(
    t: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    sql: &'static str,
) -> Result<(), StoreError> {
    sqlx::Executor::execute(&mut **t, sqlx::raw_sql(sql)).await?;
    Ok(())
}

/// A run of address claims on SQLite in one INSERT (U1, T2). When the
/// INSERT leaves an address out, it is undone and the run is read again
/// as it stood before, to refuse it with the error taking the claims one
/// by one gives: that of the first claim in order whose domain is not
/// managed by its customer or whose address is held (before the run, or
/// by an earlier claim of the run).
async fn sqlite_claim_addresses(
    t: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    run: &[ClaimItem],
) -> Result<(), StoreError> {
    let mut claims = Vec::with_capacity(run.len());
    for item in run {
        if let ClaimChange::ClaimAddress {
            address,
            owner,
            primary,
            seat,
        } = &item.change
        {
            let row = (
                address.as_str(),
                address.domain_str(),
                item.customer.to_string(),
                owner.to_string(),
                *primary,
                *seat,
            );
            claims.push((address, row));
        }
    }
    let rows = crate::sqlite_bulk::rows_json(claims.iter().map(|(_, row)| row));
    sqlite_exec(t, "SAVEPOINT roster_claims").await?;
    let inserted = sqlx::query(
        "INSERT INTO address_claims (address, domain, customer_id, owner_id, is_primary, seat)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5
         FROM json_each($1) WHERE EXISTS (SELECT 1 FROM domain_claims d
             WHERE d.domain = value ->> 1 AND d.customer_id = value ->> 2)
         ON CONFLICT (address) DO NOTHING",
    )
    .bind(&rows)
    .execute(&mut **t)
    .await?
    .rows_affected();
    if inserted as usize == claims.len() {
        return sqlite_exec(t, "RELEASE SAVEPOINT roster_claims").await;
    }
    sqlite_exec(
        t,
        "ROLLBACK TO SAVEPOINT roster_claims; RELEASE SAVEPOINT roster_claims",
    )
    .await?;
    // The claims that cannot be taken whatever comes before them in the
    // run: (index, whether the domain is managed by the claim's customer).
    let refused: std::collections::HashMap<i64, bool> = sqlx::query_as(
        "SELECT r.key, EXISTS (SELECT 1 FROM domain_claims d
             WHERE d.domain = r.value ->> 1 AND d.customer_id = r.value ->> 2)
         FROM json_each($1) AS r
         WHERE NOT EXISTS (SELECT 1 FROM domain_claims d
                 WHERE d.domain = r.value ->> 1 AND d.customer_id = r.value ->> 2)
            OR EXISTS (SELECT 1 FROM address_claims a WHERE a.address = r.value ->> 0)",
    )
    .bind(&rows)
    .fetch_all(&mut **t)
    .await?
    .into_iter()
    .collect();
    let mut seen = std::collections::HashSet::new();
    for (i, (address, _)) in claims.iter().enumerate() {
        match refused.get(&(i as i64)) {
            Some(false) => {
                return Err(StoreError::UnmanagedDomain {
                    domain: address.domain(),
                })
            }
            Some(true) => {
                return Err(StoreError::AddressTaken {
                    address: (*address).clone(),
                })
            }
            None if !seen.insert(address.as_str()) => {
                return Err(StoreError::AddressTaken {
                    address: (*address).clone(),
                })
            }
            None => {}
        }
    }
    Err(StoreError::Inconsistent(
        "an address claim was refused but every address was free in a managed domain".into(),
    ))
}

/// A run of address releases on SQLite: one DELETE, then one upsert of the
/// tombstones (U1, U6). When the DELETE misses an address, it is undone
/// and the run refused with the error of the first release in order whose
/// address its owner does not hold (before the run, or any more after an
/// earlier release of the run), as one by one.
async fn sqlite_release_addresses(
    t: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    run: &[ClaimItem],
) -> Result<(), StoreError> {
    let mut releases = Vec::with_capacity(run.len());
    let mut tombstones = Vec::new();
    for item in run {
        if let ClaimChange::ReleaseAddress {
            address,
            owner,
            tombstone,
        } = &item.change
        {
            releases.push((address, owner));
            if *tombstone {
                let customer = item.customer.to_string();
                tombstones.push((customer, address.as_str(), owner.to_string(), item.at));
            }
        }
    }
    let rows = crate::sqlite_bulk::rows_json(
        releases
            .iter()
            .map(|(address, owner)| (address.as_str(), owner.to_string())),
    );
    sqlite_exec(t, "SAVEPOINT roster_claims").await?;
    let deleted = sqlx::query(
        "DELETE FROM address_claims WHERE rowid IN (SELECT a.rowid FROM json_each($1) AS r
             JOIN address_claims a ON a.address = r.value ->> 0 AND a.owner_id = r.value ->> 1)",
    )
    .bind(&rows)
    .execute(&mut **t)
    .await?
    .rows_affected();
    if deleted as usize != releases.len() {
        sqlite_exec(
            t,
            "ROLLBACK TO SAVEPOINT roster_claims; RELEASE SAVEPOINT roster_claims",
        )
        .await?;
        return Err(sqlite_first_refused_release(t, &releases, &rows).await);
    }
    sqlite_exec(t, "RELEASE SAVEPOINT roster_claims").await?;
    let tombstones = crate::sqlite_bulk::rows_json(tombstones);
    crate::sqlite_bulk::insert(
        t,
        "INSERT INTO address_tombstones (customer_id, address, owner_id, released_at)",
        4,
        &tombstones,
        "ON CONFLICT (customer_id, address)
         DO UPDATE SET owner_id = excluded.owner_id, released_at = excluded.released_at",
    )
    .await?;
    Ok(())
}

/// The error of the first release in order that one by one would refuse:
/// its owner did not hold the address before the run, or an earlier
/// release of the run let it go already.
async fn sqlite_first_refused_release(
    t: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    releases: &[(&Address, &UserId)],
    rows: &str,
) -> StoreError {
    let unheld: Vec<i64> = match sqlx::query_scalar(
        "SELECT r.key FROM json_each($1) AS r WHERE NOT EXISTS (SELECT 1 FROM address_claims a
             WHERE a.address = r.value ->> 0 AND a.owner_id = r.value ->> 1)",
    )
    .bind(rows)
    .fetch_all(&mut **t)
    .await
    {
        Ok(keys) => keys,
        Err(e) => return e.into(),
    };
    let unheld: std::collections::HashSet<i64> = unheld.into_iter().collect();
    let mut seen = std::collections::HashSet::new();
    for (i, (address, owner)) in releases.iter().enumerate() {
        if unheld.contains(&(i as i64)) || !seen.insert(address.as_str()) {
            return StoreError::Inconsistent(format!(
                "{address} released but not claimed by {owner}"
            ));
        }
    }
    StoreError::Inconsistent(
        "an address release was refused but every address was held by its owner".into(),
    )
}

/// Who holds an address now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressOwner {
    pub customer_id: CustomerId,
    pub owner: UserId,
    pub primary: bool,
}

/// Seats of a customer (T3): users that take a seat, and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seats {
    pub used: u64,
    pub limit: u64,
}

/// What an addition checks before it is staged (M1), read together: who
/// manages the domains, who holds the addresses, the tombstone of the
/// primary address (U6) and the customer's seats (T3). Only a pre-check:
/// the append checks the claims again in its transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdditionFacts {
    /// The customer managing each domain that is managed (by its text).
    pub domain_owners: std::collections::HashMap<String, CustomerId>,
    /// The user holding each address that is held (by its text).
    pub address_owners: std::collections::HashMap<String, UserId>,
    /// The deleted user that last held the primary address in this customer.
    pub tombstone: Option<UserId>,
    /// `None` for an unknown customer.
    pub seats: Option<Seats>,
}

fn parse_count(s: &str) -> Result<u64, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("{s} is not a count")))
}

fn parse_customer(s: &str) -> Result<CustomerId, StoreError> {
    CustomerId::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}
fn parse_user(s: &str) -> Result<UserId, StoreError> {
    UserId::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Db {
    pub async fn address_owner(
        &self,
        address: &Address,
    ) -> Result<Option<AddressOwner>, StoreError> {
        let row: Option<(String, String, bool)> = with_db!(self, |p| sqlx::query_as(
            "SELECT customer_id, owner_id, is_primary FROM address_claims WHERE address = $1"
        )
        .bind(address.as_str())
        .fetch_optional(p)
        .await?);
        row.map(|(c, o, primary)| {
            Ok(AddressOwner {
                customer_id: parse_customer(&c)?,
                owner: parse_user(&o)?,
                primary,
            })
        })
        .transpose()
    }

    /// The owners of many addresses at once (bulk paths).
    pub async fn address_owners(
        &self,
        addresses: &[Address],
    ) -> Result<std::collections::HashMap<Address, AddressOwner>, StoreError> {
        let mut out = std::collections::HashMap::new();
        for chunk in addresses.chunks(500) {
            let rows: Vec<(String, String, String, bool)> = match self {
                Db::Pg(p) => {
                    let list: Vec<&str> = chunk.iter().map(|a| a.as_str()).collect();
                    sqlx::query_as(
                        "SELECT address, customer_id, owner_id, is_primary FROM address_claims
                         WHERE address = ANY($1::text[])",
                    )
                    .bind(list)
                    .fetch_all(p)
                    .await?
                }
                Db::Sqlite(p) => {
                    let marks = vec!["?"; chunk.len()].join(",");
                    let sql = format!(
                        "SELECT address, customer_id, owner_id, is_primary FROM address_claims
                         WHERE address IN ({marks})"
                    );
                    let mut q = sqlx::query_as(&sql);
                    for a in chunk {
                        q = q.bind(a.as_str());
                    }
                    q.fetch_all(p).await?
                }
            };
            for (a, c, o, primary) in rows {
                out.insert(
                    Address::parse(&a).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    AddressOwner {
                        customer_id: parse_customer(&c)?,
                        owner: parse_user(&o)?,
                        primary,
                    },
                );
            }
        }
        Ok(out)
    }

    /// The user that last held this primary address in this customer and
    /// was deleted, if any (U6).
    pub async fn tombstone(
        &self,
        customer: CustomerId,
        address: &Address,
    ) -> Result<Option<UserId>, StoreError> {
        let owner: Option<String> = with_db!(self, |p| sqlx::query_scalar(
            "SELECT owner_id FROM address_tombstones WHERE customer_id = $1 AND address = $2"
        )
        .bind(customer.to_string())
        .bind(address.as_str())
        .fetch_optional(p)
        .await?);
        owner.map(|o| parse_user(&o)).transpose()
    }

    pub async fn domain_owner(&self, domain: &Domain) -> Result<Option<CustomerId>, StoreError> {
        let c: Option<String> = with_db!(self, |p| sqlx::query_scalar(
            "SELECT customer_id FROM domain_claims WHERE domain = $1"
        )
        .bind(domain.as_str())
        .fetch_optional(p)
        .await?);
        c.map(|c| parse_customer(&c)).transpose()
    }

    /// The partner a customer belongs to; `None` for an unknown customer.
    pub async fn customer_partner(
        &self,
        customer: CustomerId,
    ) -> Result<Option<PartnerId>, StoreError> {
        let p: Option<String> = with_db!(self, |pool| sqlx::query_scalar(
            "SELECT partner_id FROM customer_claims WHERE customer_id = $1"
        )
        .bind(customer.to_string())
        .fetch_optional(pool)
        .await?);
        p.map(|p| PartnerId::parse(&p).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    pub async fn seats(&self, customer: CustomerId) -> Result<Seats, StoreError> {
        let row: Option<(i64, i64)> = with_db!(self, |p| sqlx::query_as(SEAT_USAGE)
            .bind(customer.to_string())
            .fetch_optional(p)
            .await?);
        let (limit, used) = row.ok_or(StoreError::UnknownCustomer)?;
        Ok(Seats {
            used: used as u64,
            limit: limit as u64,
        })
    }

    /// The facts an addition of `primary` (with `addresses`, the primary
    /// among them) checks: one query on PostgreSQL.
    pub async fn addition_facts(
        &self,
        customer: CustomerId,
        primary: &Address,
        addresses: &[&Address],
    ) -> Result<AdditionFacts, StoreError> {
        let mut domains: Vec<String> = addresses
            .iter()
            .map(|a| a.domain_str().to_string())
            .collect();
        domains.sort();
        domains.dedup();
        let Db::Pg(pool) = self else {
            let mut facts = AdditionFacts::default();
            for a in addresses {
                let d = a.domain();
                if let Some(c) = self.domain_owner(&d).await? {
                    facts.domain_owners.insert(d.as_str().to_string(), c);
                }
            }
            let list: Vec<Address> = addresses.iter().map(|a| (*a).clone()).collect();
            for (a, o) in self.address_owners(&list).await? {
                facts.address_owners.insert(a.as_str().to_string(), o.owner);
            }
            facts.tombstone = self.tombstone(customer, primary).await?;
            facts.seats = match self.seats(customer).await {
                Ok(s) => Some(s),
                Err(StoreError::UnknownCustomer) => None,
                Err(e) => return Err(e),
            };
            return Ok(facts);
        };
        let list: Vec<&str> = addresses.iter().map(|a| a.as_str()).collect();
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT 'd', domain, customer_id FROM domain_claims WHERE domain = ANY($2::text[])
             UNION ALL SELECT 'a', address, owner_id FROM address_claims
               WHERE address = ANY($3::text[])
             UNION ALL SELECT 't', address, owner_id FROM address_tombstones
               WHERE customer_id = $1 AND address = $4
             UNION ALL SELECT 's', seat_limit::text, seats_used::text
               FROM customer_claims WHERE customer_id = $1",
        )
        .bind(customer.to_string())
        .bind(&domains)
        .bind(&list)
        .bind(primary.as_str())
        .fetch_all(pool)
        .await?;
        let mut facts = AdditionFacts::default();
        for (kind, a, b) in rows {
            match kind.as_str() {
                "d" => {
                    facts.domain_owners.insert(a, parse_customer(&b)?);
                }
                "a" => {
                    facts.address_owners.insert(a, parse_user(&b)?);
                }
                "t" => facts.tombstone = Some(parse_user(&b)?),
                _ => {
                    facts.seats = Some(Seats {
                        limit: parse_count(&a)?,
                        used: parse_count(&b)?,
                    })
                }
            }
        }
        Ok(facts)
    }

    /// Every address of a customer in a domain: (address, owner, primary).
    pub async fn addresses_in_domain(
        &self,
        customer: CustomerId,
        domain: &Domain,
    ) -> Result<Vec<(Address, UserId, bool)>, StoreError> {
        let rows: Vec<(String, String, bool)> = with_db!(self, |p| sqlx::query_as(
            "SELECT address, owner_id, is_primary FROM address_claims
             WHERE customer_id = $1 AND domain = $2 ORDER BY address"
        )
        .bind(customer.to_string())
        .bind(domain.as_str())
        .fetch_all(p)
        .await?);
        rows.into_iter()
            .map(|(a, o, primary)| {
                Ok((
                    Address::parse(&a).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    parse_user(&o)?,
                    primary,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! The set-wise SQLite runs against the claims taken one by one: the
    //! same refusal, and on success the same claims and tombstones (U1, T2,
    //! U6; issue 17).
    use super::*;

    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn claim(customer: CustomerId, address: &str, owner: UserId, primary: bool) -> ClaimItem {
        ClaimItem {
            customer,
            change: ClaimChange::ClaimAddress {
                address: a(address),
                owner,
                primary,
                seat: primary,
            },
            at: 7,
        }
    }

    fn release(customer: CustomerId, address: &str, owner: UserId, tombstone: bool) -> ClaimItem {
        ClaimItem {
            customer,
            change: ClaimChange::ReleaseAddress {
                address: a(address),
                owner,
                tombstone,
            },
            at: 9,
        }
    }

    struct Fixture {
        db: Db,
        _dir: tempfile::TempDir,
        c1: CustomerId,
        c2: CustomerId,
        /// Holds held@one.example (primary) and alias@one.example in c1.
        holder: UserId,
        /// Holds other@two.example in c2.
        other: UserId,
    }

    fn setup(customer: CustomerId, change: ClaimChange) -> ClaimItem {
        ClaimItem {
            customer,
            change,
            at: 1,
        }
    }

    /// c1 manages one.example, c2 two.example; three addresses are held,
    /// and held@one.example has a tombstone of its earlier owner.
    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(dir.path()).await.unwrap();
        db.migrate().await.unwrap();
        let (c1, c2, holder, other) = (
            CustomerId::new(),
            CustomerId::new(),
            UserId::new(),
            UserId::new(),
        );
        let register = || ClaimChange::RegisterCustomer {
            partner_id: PartnerId::new(),
            seat_limit: 100,
        };
        let domain = |d: &str| ClaimChange::ClaimDomain {
            domain: Domain::parse(d).unwrap(),
        };
        let mut tx = db.begin_write().await.unwrap();
        for item in [
            setup(c1, register()),
            setup(c2, register()),
            setup(c1, domain("one.example")),
            setup(c2, domain("two.example")),
            claim(c1, "held@one.example", other, true),
            release(c1, "held@one.example", other, true),
            claim(c1, "held@one.example", holder, true),
            claim(c1, "alias@one.example", holder, false),
            claim(c2, "other@two.example", other, true),
        ] {
            apply_one(&mut tx, &item, &mut Vec::new()).await.unwrap();
        }
        tx.commit().await.unwrap();
        Fixture {
            db,
            _dir: dir,
            c1,
            c2,
            holder,
            other,
        }
    }

    /// The address claims and tombstones, as text.
    async fn dump(tx: &mut Tx) -> String {
        let Tx::Sqlite(t) = tx else {
            unreachable!("SQLite")
        };
        let claims: Vec<(String, String, String, String, bool, bool)> = sqlx::query_as(
            "SELECT address, domain, customer_id, owner_id, is_primary, seat
             FROM address_claims ORDER BY address",
        )
        .fetch_all(&mut **t)
        .await
        .unwrap();
        let tombstones: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT customer_id, address, owner_id, released_at
             FROM address_tombstones ORDER BY customer_id, address",
        )
        .fetch_all(&mut **t)
        .await
        .unwrap();
        format!("{claims:?}\n{tombstones:?}")
    }

    /// Applies `run` one by one and through [`apply`] (set-wise for a run
    /// of two or more), each in a transaction rolled back after; checks
    /// that both give the same answer, the same tables on success, and
    /// that a refused set-wise run leaves the tables as they were.
    async fn same_both_ways(f: &Fixture, run: &[ClaimItem]) -> Result<(), String> {
        let mut answers = Vec::new();
        let mut tables = Vec::new();
        let mut before = String::new();
        for set_wise in [false, true] {
            let mut tx = f.db.begin_write().await.unwrap();
            before = dump(&mut tx).await;
            let answer = if set_wise {
                apply(&mut tx, run, &[]).await
            } else {
                let mut released = Vec::new();
                let mut answer = Ok(());
                for item in run {
                    answer = apply_one(&mut tx, item, &mut released).await;
                    if answer.is_err() {
                        break;
                    }
                }
                answer
            };
            tables.push(dump(&mut tx).await);
            tx.rollback().await;
            answers.push(answer.map_err(|e| format!("{e:?}")));
        }
        assert_eq!(answers[0], answers[1], "one by one, then set-wise");
        if answers[1].is_ok() {
            assert_eq!(tables[0], tables[1], "the same claims and tombstones");
            assert_ne!(tables[1], before, "the run changed something");
        } else {
            assert_eq!(tables[1], before, "a refused run leaves nothing behind");
        }
        answers.pop().unwrap()
    }

    #[tokio::test]
    async fn u1_t2_a_claim_run_set_wise_refuses_as_one_by_one() {
        let f = fixture().await;
        let (c1, c2, holder) = (f.c1, f.c2, f.holder);
        let (u, v) = (UserId::new(), UserId::new());
        let taken = |s: &str| Err(format!("{:?}", StoreError::AddressTaken { address: a(s) }));
        let unmanaged = |d: &str| {
            Err(format!(
                "{:?}",
                StoreError::UnmanagedDomain {
                    domain: Domain::parse(d).unwrap()
                }
            ))
        };
        let run = [
            claim(c1, "n1@one.example", u, true),
            claim(c1, "n2@one.example", u, false),
            claim(c2, "n3@two.example", v, true),
        ];
        assert_eq!(same_both_ways(&f, &run).await, Ok(()));
        // U1: held before the run, in its middle.
        let run = [
            claim(c1, "n1@one.example", u, true),
            claim(c1, "held@one.example", u, false),
            claim(c1, "n2@one.example", u, false),
        ];
        assert_eq!(same_both_ways(&f, &run).await, taken("held@one.example"));
        // Claimed again by its holder, exactly as it is held.
        let run = [
            claim(c1, "n1@one.example", u, true),
            claim(c1, "held@one.example", holder, true),
        ];
        assert_eq!(same_both_ways(&f, &run).await, taken("held@one.example"));
        // Twice in the run: the second claim is refused.
        let run = [
            claim(c1, "n1@one.example", u, true),
            claim(c1, "n2@one.example", u, false),
            claim(c1, "n1@one.example", v, false),
        ];
        assert_eq!(same_both_ways(&f, &run).await, taken("n1@one.example"));
        // T2: a domain nobody manages, and one another customer manages.
        let run = [
            claim(c1, "n1@one.example", u, true),
            claim(c1, "x@three.example", u, false),
            claim(c1, "n2@one.example", u, false),
        ];
        assert_eq!(same_both_ways(&f, &run).await, unmanaged("three.example"));
        let run = [
            claim(c1, "n1@one.example", u, true),
            claim(c1, "n9@two.example", u, false),
        ];
        assert_eq!(same_both_ways(&f, &run).await, unmanaged("two.example"));
        // Several refusals: the first in order is the answer.
        let run = [
            claim(c1, "held@one.example", u, true),
            claim(c1, "x@three.example", u, false),
        ];
        assert_eq!(same_both_ways(&f, &run).await, taken("held@one.example"));
        let run = [
            claim(c1, "x@three.example", u, true),
            claim(c1, "held@one.example", u, false),
        ];
        assert_eq!(same_both_ways(&f, &run).await, unmanaged("three.example"));
        let run = [
            claim(c1, "n1@one.example", u, true),
            claim(c1, "n1@one.example", v, true),
            claim(c1, "x@three.example", u, false),
        ];
        assert_eq!(same_both_ways(&f, &run).await, taken("n1@one.example"));
    }

    #[tokio::test]
    async fn u1_u6_a_release_run_set_wise_refuses_as_one_by_one() {
        let f = fixture().await;
        let (c1, c2, holder, other) = (f.c1, f.c2, f.holder, f.other);
        let not_held = |s: &str, o: UserId| {
            Err(format!(
                "{:?}",
                StoreError::Inconsistent(format!("{s} released but not claimed by {o}"))
            ))
        };
        // Tombstones written, one over the earlier one of held@ (U6).
        let run = [
            release(c1, "held@one.example", holder, true),
            release(c1, "alias@one.example", holder, false),
            release(c2, "other@two.example", other, true),
        ];
        assert_eq!(same_both_ways(&f, &run).await, Ok(()));
        let run = [
            release(c1, "held@one.example", holder, true),
            release(c1, "free@one.example", other, true),
        ];
        assert_eq!(
            same_both_ways(&f, &run).await,
            not_held("free@one.example", other)
        );
        // U1: only the owner releases; an address released twice.
        let run = [
            release(c1, "held@one.example", holder, true),
            release(c2, "other@two.example", holder, false),
            release(c1, "alias@one.example", holder, false),
        ];
        assert_eq!(
            same_both_ways(&f, &run).await,
            not_held("other@two.example", holder)
        );
        let run = [
            release(c1, "held@one.example", holder, true),
            release(c1, "alias@one.example", holder, false),
            release(c1, "held@one.example", holder, false),
        ];
        assert_eq!(
            same_both_ways(&f, &run).await,
            not_held("held@one.example", holder)
        );
    }
}
