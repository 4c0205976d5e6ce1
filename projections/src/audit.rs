//! The audit trail (E4): one row per event with who, when, what and about
//! which address; the payload stays in the log and is joined by position.
//! Every address an event touches (primaries, aliases, previous and next
//! addresses, released ones) is indexed in `audit_addresses`, so that
//! "who owned x@ on that date" finds an alias that arrived inside a
//! `UserAdded` or left inside a `UserDeleted` (issue 9).

use std::collections::BTreeSet;

use async_trait::async_trait;
use roster_events::{
    Actor, AggregateId, CorrelationId, CustomerEvent, CustomerId, DirectoryEvent, Exception,
    SyncReportEvent, UserEvent, UserReturned,
};
use roster_store::Tx;

use crate::{AnyEvent, Decoded, Projection, ProjectionError};

pub struct AuditProjection;

pub const AUDIT: &str = "audit_v2";
/// (customer, address, position): every address an audit row touches.
pub const AUDIT_ADDRESSES: &str = "audit_addresses_v2";

/// The columns of one audit row, derived from an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub position: i64,
    pub customer_id: CustomerId,
    pub recorded_at: i64,
    pub event_type: String,
    pub aggregate_type: String,
    pub aggregate_id: AggregateId,
    pub address: Option<String>,
    pub subject: Option<String>,
    pub actor: Actor,
    pub correlation_id: CorrelationId,
    /// Every address the event touches, lower case, without repeats.
    pub addresses: Vec<String>,
}

impl AuditRow {
    /// The row of an event; an aggregate id that is not one (every
    /// aggregate the audit trail covers has a UUID) is an error that names it.
    pub fn of(d: &Decoded) -> Result<AuditRow, ProjectionError> {
        let (address, subject) = match &d.event {
            AnyEvent::User(e) => (
                Some(e.address().to_string()),
                e.subject_address().map(|a| a.to_string()),
            ),
            AnyEvent::Customer(CustomerEvent::DomainAdded(e)) => (None, Some(e.domain.to_string())),
            AnyEvent::Customer(CustomerEvent::DomainRemoved(e)) => {
                (None, Some(e.domain.to_string()))
            }
            AnyEvent::Directory(DirectoryEvent::AdditionAdded(e)) => {
                (Some(e.address.to_string()), None)
            }
            AnyEvent::Directory(DirectoryEvent::AdditionRemoved(e)) => {
                (Some(e.address.to_string()), None)
            }
            AnyEvent::Directory(DirectoryEvent::ExceptionAdded(e)) => {
                (None, exception_subject(&e.exception))
            }
            AnyEvent::Directory(DirectoryEvent::ExceptionRemoved(e)) => {
                (None, exception_subject(&e.exception))
            }
            _ => (None, None),
        };
        let addresses = touched(&d.event)
            .into_iter()
            .map(|a| a.trim().to_lowercase())
            .filter(|a| !a.is_empty())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let aggregate_id = AggregateId::parse(&d.aggregate_id).map_err(|e| {
            ProjectionError::Invalid(format!("{} aggregate: {e}", d.aggregate_type))
        })?;
        Ok(AuditRow {
            addresses,
            position: d.position,
            customer_id: d.meta.customer_id,
            recorded_at: d.recorded_at,
            event_type: d.event_type.clone(),
            aggregate_type: d.aggregate_type.clone(),
            aggregate_id,
            address,
            subject,
            actor: d.meta.actor.clone(),
            correlation_id: d.meta.correlation_id,
        })
    }
}

/// Every address an event touches: for user events the primary, the
/// aliases it carries (added, returned or released with the user), the
/// alias mapped or unmapped, the previous and next primary of a rename or a
/// release, the earlier address of a returning user; the addresses of
/// directory additions and alias exceptions; the addresses a sync run
/// skipped or found contested. Not indexed: list members (the list's
/// events are found by the list's address) and the directory mirror
/// (`DirectoryObjectsChanged`, what the directory held, not who owned what).
fn touched(event: &AnyEvent) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    macro_rules! push {
        ($a:expr) => {
            out.push($a.to_string())
        };
    }
    match event {
        AnyEvent::User(e) => {
            push!(e.address());
            if let Some(a) = e.subject_address() {
                push!(a);
            }
            match e {
                UserEvent::UserAdded(u) | UserEvent::UserReturned(UserReturned { user: u, .. }) => {
                    for a in &u.aliases {
                        push!(a);
                    }
                    if let UserEvent::UserReturned(r) = e {
                        push!(r.earlier.address);
                    }
                }
                UserEvent::UserDeleted(u) => {
                    for a in &u.aliases {
                        push!(a);
                    }
                }
                UserEvent::AliasMapped(u) => push!(u.alias),
                UserEvent::AliasUnmapped(u) => push!(u.alias),
                UserEvent::AddressChanged(u) => push!(u.previous),
                UserEvent::AddressReleased(u) => push!(u.next),
                _ => {}
            }
        }
        AnyEvent::Directory(DirectoryEvent::AdditionAdded(e)) => push!(e.address),
        AnyEvent::Directory(DirectoryEvent::AdditionRemoved(e)) => push!(e.address),
        AnyEvent::Directory(DirectoryEvent::ExceptionAdded(e)) => {
            if let Exception::Alias { address } = &e.exception {
                push!(address);
            }
        }
        AnyEvent::Directory(DirectoryEvent::ExceptionRemoved(e)) => {
            if let Exception::Alias { address } = &e.exception {
                push!(address);
            }
        }
        AnyEvent::SyncReport(SyncReportEvent::SyncReported(r)) => {
            for s in &r.skipped {
                if let Some(a) = &s.address {
                    push!(a);
                }
            }
            for c in &r.contested {
                push!(c.address);
            }
        }
        _ => {}
    }
    out
}

fn exception_subject(e: &Exception) -> Option<String> {
    Some(match e {
        Exception::User { object_id } | Exception::Group { object_id } => object_id.clone(),
        Exception::Alias { address } => address.to_string(),
    })
}

#[async_trait]
impl Projection for AuditProjection {
    fn name(&self) -> &'static str {
        AUDIT
    }

    fn tables(&self) -> &'static [&'static str] {
        &[AUDIT, AUDIT_ADDRESSES]
    }

    fn ddl(&self, p: &str) -> Vec<String> {
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {p}{AUDIT} (
                    position BIGINT PRIMARY KEY, customer_id TEXT NOT NULL, recorded_at BIGINT NOT NULL,
                    event_type TEXT NOT NULL, aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL,
                    address TEXT, subject TEXT, actor TEXT NOT NULL, correlation_id TEXT NOT NULL)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {p}{AUDIT_ADDRESSES} (
                    customer_id TEXT NOT NULL, address TEXT NOT NULL, position BIGINT NOT NULL,
                    PRIMARY KEY (customer_id, address, position))"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {p}{AUDIT}_customer ON {p}{AUDIT} (customer_id, position)"
            ),
            // Every address an event touches is in AUDIT_ADDRESSES, which
            // `history` and the address filter read; the index of the
            // primary address alone cost a sixth of the audit trail's
            // writes in a bulk (issue 17) and is dropped. (An index is not
            // data: no replay needed.)
            format!("DROP INDEX IF EXISTS {p}{AUDIT}_address"),
            // A user's history finds its events by the log's key (aggregate
            // type and id) and their rows here by position: the index of
            // aggregate ids, random keys, cost about a quarter of the audit
            // trail's writes in a bulk (issue 17) and is dropped.
            format!("DROP INDEX IF EXISTS {p}{AUDIT}_aggregate"),
            format!(
                "CREATE INDEX IF NOT EXISTS {p}{AUDIT}_time ON {p}{AUDIT} (customer_id, recorded_at)"
            ),
            // A run's changes (`GET .../directory/syncs/{run}`: its user
            // events, newest first) are one walk of this index from the end:
            // every condition of that query is an equality on its leading
            // columns and the order is its last, so no statistics make
            // another plan look cheaper. With `(correlation_id, position)`
            // PostgreSQL intersected the correlation and customer indexes
            // and sorted every event of the run (on the statistics of a
            // table still being filled by the run's own bulk), or walked the
            // trail backwards by position for a run without user changes:
            // 20-160 ms a poll at 90,000 events, 5.9 s of the database's
            // time over the sync bench (issue 17).
            format!(
                "CREATE INDEX IF NOT EXISTS {p}{AUDIT}_run_changes ON {p}{AUDIT} \
                 (correlation_id, aggregate_type, customer_id, position)"
            ),
            format!("DROP INDEX IF EXISTS {p}{AUDIT}_correlation"),
        ]
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        p: &str,
        events: &[&Decoded],
    ) -> Result<(), ProjectionError> {
        let rows: Vec<AuditRow> = events
            .iter()
            .filter(|d| !matches!(d.event, AnyEvent::Other))
            .map(|d| AuditRow::of(d))
            .collect::<Result<_, _>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        let cols = "position, customer_id, recorded_at, event_type, aggregate_type, aggregate_id, \
                    address, subject, actor, correlation_id";
        match tx {
            Tx::Pg(t) => {
                macro_rules! col {
                    ($f:expr) => {
                        rows.iter().map($f).collect::<Vec<_>>()
                    };
                }
                sqlx::query(&format!(
                    "INSERT INTO {p}{AUDIT} ({cols}) SELECT * FROM UNNEST($1::int8[], $2::text[], \
                     $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
                     $9::text[], $10::text[])"
                ))
                .bind(col!(|r| r.position))
                .bind(col!(|r| r.customer_id.to_string()))
                .bind(col!(|r| r.recorded_at))
                .bind(col!(|r| r.event_type.clone()))
                .bind(col!(|r| r.aggregate_type.clone()))
                .bind(col!(|r| r.aggregate_id.to_string()))
                .bind(col!(|r| r.address.clone()))
                .bind(col!(|r| r.subject.clone()))
                .bind(col!(|r| r.actor.to_string()))
                .bind(col!(|r| r.correlation_id.to_string()))
                .execute(&mut **t)
                .await?;
                let (mut cs, mut addrs, mut ps) = (Vec::new(), Vec::new(), Vec::new());
                for r in &rows {
                    for a in &r.addresses {
                        cs.push(r.customer_id.to_string());
                        addrs.push(a.clone());
                        ps.push(r.position);
                    }
                }
                if !ps.is_empty() {
                    sqlx::query(&format!(
                        "INSERT INTO {p}{AUDIT_ADDRESSES} (customer_id, address, position) \
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[])"
                    ))
                    .bind(&cs)
                    .bind(&addrs)
                    .bind(&ps)
                    .execute(&mut **t)
                    .await?;
                }
            }
            Tx::Sqlite(t) => {
                use roster_store::sqlite_bulk::{insert, rows_json};
                use serde_json::json;
                let audit = rows_json(rows.iter().map(|r| {
                    json!([
                        r.position,
                        r.customer_id.to_string(),
                        r.recorded_at,
                        r.event_type,
                        r.aggregate_type,
                        r.aggregate_id.to_string(),
                        r.address,
                        r.subject,
                        r.actor.to_string(),
                        r.correlation_id.to_string()
                    ])
                }));
                insert(
                    t,
                    &format!("INSERT INTO {p}{AUDIT} ({cols})"),
                    10,
                    &audit,
                    "",
                )
                .await?;
                let addresses = rows_json(rows.iter().flat_map(|r| {
                    let customer = r.customer_id.to_string();
                    r.addresses
                        .iter()
                        .map(move |a| json!([customer, a, r.position]))
                }));
                insert(
                    t,
                    &format!("INSERT INTO {p}{AUDIT_ADDRESSES} (customer_id, address, position)"),
                    3,
                    &addresses,
                    "",
                )
                .await?;
            }
        }
        Ok(())
    }
}
