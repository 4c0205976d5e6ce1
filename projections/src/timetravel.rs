//! Time travel (B7): the user list as it was at a past instant, computed
//! from the log with the same fold the live projection uses.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use roster_events::{CustomerId, Status};
use roster_store::Store;

use crate::queries::{Page, UserFilter, MAX_PAGE};
use crate::users::UserRow;
use crate::{decode, AnyEvent, Cursor, MetaCache, ProjectionError};

/// Every user of the customer as it was at `at` (events recorded up to and
/// including that instant), keyed by user id.
pub async fn users_at(
    store: &Store,
    customer: CustomerId,
    at: DateTime<Utc>,
) -> Result<HashMap<String, UserRow>, ProjectionError> {
    let upcasters = roster_events::upcasters();
    let mut metas = MetaCache::default();
    let until = at.timestamp_micros();
    let mut rows: HashMap<String, UserRow> = HashMap::new();
    let mut after = 0;
    loop {
        let batch = store
            .read_customer(customer, after, Some(until), 10_000)
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for e in batch {
            let d = decode(e, &upcasters, &mut metas).map_err(ProjectionError::Invalid)?;
            if let AnyEvent::User(ev) = &d.event {
                let id = UserRow::id_of(&d)?;
                let row = rows.remove(&d.aggregate_id);
                rows.insert(d.aggregate_id.clone(), UserRow::fold(row, id, &d, ev));
            }
        }
    }
    Ok(rows)
}

/// One page of the user list as it was at `at`, filtered and ordered like
/// the live list.
pub async fn users_as_of(
    store: &Store,
    customer: CustomerId,
    at: DateTime<Utc>,
    filter: &UserFilter,
    page: Option<&str>,
    limit: i64,
) -> Result<Page<UserRow>, ProjectionError> {
    let limit = limit.clamp(1, MAX_PAGE) as usize;
    let q = filter
        .q
        .as_deref()
        .map(|q| q.trim().to_lowercase())
        .filter(|q| !q.is_empty());
    let mut rows: Vec<UserRow> = users_at(store, customer, at)
        .await?
        .into_values()
        .filter(|r| match filter.status {
            Some(s) => r.status == s,
            None => r.status != Status::Deleted,
        })
        .filter(|r| filter.source.is_none_or(|s| r.source == s))
        .filter(|r| {
            q.as_ref()
                .is_none_or(|q| r.search_text().contains(q.as_str()))
        })
        .collect();
    // The live list's order: by address, then the user id as text.
    rows.sort_by_cached_key(|r| (r.address.clone(), r.user_id.to_string()));
    if let Some(token) = page {
        let [address, user] = Cursor::read(token)?;
        let key = (address, user);
        rows.retain(|r| (r.address.clone(), r.user_id.to_string()) > key);
    }
    let next_page = if rows.len() > limit {
        rows.truncate(limit);
        rows.last()
            .map(|r| Cursor::after(&[r.address.as_str(), &r.user_id.to_string()]))
    } else {
        None
    };
    for r in &mut rows {
        r.aliases.sort();
    }
    Ok(Page {
        items: rows,
        next_page,
    })
}
