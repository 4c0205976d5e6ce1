//! Customers and their managed domains (T1, T2).

use async_trait::async_trait;
use roster_events::CustomerEvent;
use roster_store::{with_tx, Tx};

use crate::{AnyEvent, Decoded, Projection, ProjectionError};

pub struct CustomersProjection;

pub const CUSTOMERS: &str = "customers_v1";
pub const DOMAINS: &str = "domains_v1";

#[async_trait]
impl Projection for CustomersProjection {
    fn name(&self) -> &'static str {
        CUSTOMERS
    }

    fn reads(&self) -> Option<&'static [&'static str]> {
        Some(&[roster_events::CUSTOMER_AGGREGATE])
    }

    fn tables(&self) -> &'static [&'static str] {
        &[CUSTOMERS, DOMAINS]
    }

    fn ddl(&self, p: &str) -> Vec<String> {
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {p}{CUSTOMERS} (
                    customer_id TEXT PRIMARY KEY, partner_id TEXT NOT NULL, name TEXT NOT NULL,
                    seat_limit BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {p}{CUSTOMERS}_partner ON {p}{CUSTOMERS} (partner_id, name)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {p}{DOMAINS} (
                    domain TEXT PRIMARY KEY, customer_id TEXT NOT NULL, added_at BIGINT NOT NULL)"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {p}{DOMAINS}_customer ON {p}{DOMAINS} (customer_id, domain)"
            ),
        ]
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        p: &str,
        events: &[&Decoded],
    ) -> Result<(), ProjectionError> {
        for d in events {
            let AnyEvent::Customer(e) = &d.event else {
                continue;
            };
            let id = d.aggregate_id.as_str();
            let at = d.recorded_at;
            match e {
                CustomerEvent::CustomerCreated(e) => {
                    let sql = format!(
                        "INSERT INTO {p}{CUSTOMERS} (customer_id, partner_id, name, seat_limit, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $5)"
                    );
                    with_tx!(tx, |c| sqlx::query(&sql)
                        .bind(id)
                        .bind(e.partner_id.to_string())
                        .bind(&e.name)
                        .bind(e.seat_limit as i64)
                        .bind(at)
                        .execute(c)
                        .await
                        .map(|_| ())?);
                }
                CustomerEvent::SeatLimitChanged(e) => {
                    let sql = format!(
                        "UPDATE {p}{CUSTOMERS} SET seat_limit = $2, updated_at = $3 WHERE customer_id = $1"
                    );
                    with_tx!(tx, |c| sqlx::query(&sql)
                        .bind(id)
                        .bind(e.seat_limit as i64)
                        .bind(at)
                        .execute(c)
                        .await
                        .map(|_| ())?);
                }
                CustomerEvent::DomainAdded(e) => {
                    let sql = format!(
                        "INSERT INTO {p}{DOMAINS} (domain, customer_id, added_at) VALUES ($1, $2, $3)
                         ON CONFLICT (domain) DO UPDATE SET customer_id = excluded.customer_id, added_at = excluded.added_at"
                    );
                    with_tx!(tx, |c| sqlx::query(&sql)
                        .bind(e.domain.as_str())
                        .bind(id)
                        .bind(at)
                        .execute(c)
                        .await
                        .map(|_| ())?);
                }
                CustomerEvent::DomainRemoved(e) => {
                    let sql =
                        format!("DELETE FROM {p}{DOMAINS} WHERE domain = $1 AND customer_id = $2");
                    with_tx!(tx, |c| sqlx::query(&sql)
                        .bind(e.domain.as_str())
                        .bind(id)
                        .execute(c)
                        .await
                        .map(|_| ())?);
                }
            }
        }
        Ok(())
    }
}
