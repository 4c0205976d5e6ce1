//! What a directory reader keeps between runs for delta sync (B1), kept
//! beside the log (see `migrations/*/0030_directory_read_state.sql`).

use roster_events::CustomerId;

use crate::{micros, with_db, Db, StoreError};

impl Db {
    /// The state the last successful read of this customer's directory
    /// left, if any.
    pub async fn get_read_state(
        &self,
        customer: CustomerId,
        kind: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> = with_db!(self, |p| {
            sqlx::query_as(
                "SELECT state FROM directory_read_state WHERE customer_id = $1 AND kind = $2",
            )
            .bind(customer.to_string())
            .bind(kind)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(|r| r.0))
    }

    /// Replaces the state (one row per customer and kind).
    pub async fn put_read_state(
        &self,
        customer: CustomerId,
        kind: &str,
        state: &[u8],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        with_db!(self, |p| {
            sqlx::query(
                "INSERT INTO directory_read_state (customer_id, kind, state, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (customer_id, kind) DO UPDATE SET state = excluded.state,
                   updated_at = excluded.updated_at",
            )
            .bind(customer.to_string())
            .bind(kind)
            .bind(state)
            .bind(micros(now))
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(())
    }
}
