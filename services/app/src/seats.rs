//! T3, the seat limit: one policy for every place that adds or brings back
//! a user, plans additions, or reports on the seats.
//!
//! A user is one primary address; a customer has a seat limit. An
//! addition or reactivation an administrator makes (by hand, by file, or
//! on the directory's additions list) needs a free seat; users a directory
//! run brings do not wait for one (the directory is the system of truth),
//! and the run reports when they go beyond the limit. Every append that
//! takes seats is guarded, so two concurrent additions cannot both take
//! the last seat.

use roster_domain::{SeatUsage, UserError, UserServices};
use roster_events::{CustomerId, Guard, Kind};
use roster_store::{Batch, Store, StoreError};

/// A customer's seats, as counted when they were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seats {
    pub used: u64,
    pub limit: u64,
}

impl Seats {
    /// The seats of a customer now.
    pub async fn of(store: &Store, customer: CustomerId) -> Result<Seats, StoreError> {
        let s = store.db().seats(customer).await?;
        Ok(Seats {
            used: s.used,
            limit: s.limit,
        })
    }

    /// How many users can still be added.
    pub fn free(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// Whether `more` additions fit.
    pub fn fits(&self, more: u64) -> bool {
        self.used.saturating_add(more) <= self.limit
    }

    /// What the user aggregate needs to decide an addition or reactivation.
    pub fn services(&self) -> UserServices {
        UserServices {
            seats: Some(SeatUsage {
                used: self.used,
                limit: self.limit,
            }),
        }
    }

    /// Takes a seat for an administrator's addition of a user of `kind`:
    /// refused when none is free.
    pub fn take(&mut self, kind: Kind) -> Result<(), UserError> {
        if !kind.counts_against_licence() {
            return Ok(());
        }
        if self.used >= self.limit {
            return Err(UserError::OverSeatLimit {
                used: self.used,
                limit: self.limit,
            });
        }
        self.used += 1;
        Ok(())
    }

    /// Makes the append check the limit again, in its transaction.
    pub fn guard(batch: &mut Batch, customer: CustomerId) {
        batch.guard(customer, Guard::SeatLimit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t3_an_addition_takes_a_free_seat_and_none_beyond() {
        let mut s = Seats { used: 1, limit: 2 };
        assert_eq!(s.free(), 1);
        assert!(s.fits(1) && !s.fits(2));
        s.take(Kind::User).unwrap();
        assert_eq!(s.used, 2);
        assert_eq!(
            s.take(Kind::User),
            Err(UserError::OverSeatLimit { used: 2, limit: 2 })
        );
    }

    #[test]
    fn t3_a_list_takes_no_seat() {
        let mut s = Seats { used: 2, limit: 2 };
        s.take(Kind::DistributionList).unwrap();
        assert_eq!(s.used, 2);
    }
}
