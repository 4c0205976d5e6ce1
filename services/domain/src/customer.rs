//! The customer aggregate: a tenant with its managed domains and seat limit.

use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roster_events::{
    ClaimChange, ClaimsOf, CustomerCreated, CustomerEvent, Domain, DomainAdded, DomainRemoved,
    PartnerId, SeatLimitChanged,
};
use serde::{Deserialize, Serialize};

pub const NAME_MAX: usize = 200;
/// The largest seat limit a customer can have (T3); larger numbers are typing
/// mistakes, and every store keeps it exactly.
pub const SEAT_LIMIT_MAX: u64 = 10_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerCommand {
    Create {
        partner_id: PartnerId,
        name: String,
        seat_limit: u64,
    },
    AddDomain {
        domain: Domain,
    },
    /// D3.n: the users of the domain are deleted in the same commit by the
    /// application service; the aggregate only records the removal.
    RemoveDomain {
        domain: Domain,
    },
    ChangeSeatLimit {
        seat_limit: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    #[error("the customer already exists")]
    AlreadyExists,
    #[error("no such customer")]
    Unknown,
    #[error("the customer name must not be empty")]
    EmptyName,
    #[error("the customer name is longer than {NAME_MAX} characters")]
    NameTooLong,
    #[error("the customer name holds a control character ({0}): remove it")]
    NameControlCharacter(String),
    #[error("seat_limit must be between 0 and {SEAT_LIMIT_MAX}, not {0}")]
    SeatLimitOutOfRange(u64),
    #[error("{0} is already managed by this customer")]
    DomainAlreadyManaged(Domain),
    #[error("{0} is not managed by this customer")]
    DomainNotManaged(Domain),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub exists: bool,
    pub partner_id: Option<PartnerId>,
    pub name: String,
    pub seat_limit: u64,
    pub domains: BTreeSet<Domain>,
}

impl Aggregate for Customer {
    const TYPE: &'static str = roster_events::CUSTOMER_AGGREGATE;
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = CustomerError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let CustomerCommand::Create {
            partner_id,
            name,
            seat_limit,
        } = command
        {
            if self.exists {
                return Err(CustomerError::AlreadyExists);
            }
            let name = name.trim().to_string();
            if name.is_empty() {
                return Err(CustomerError::EmptyName);
            }
            if name.chars().count() > NAME_MAX {
                return Err(CustomerError::NameTooLong);
            }
            if let Some(c) = name.chars().find(|c| c.is_control()) {
                return Err(CustomerError::NameControlCharacter(format!(
                    "U+{:04X}",
                    u32::from(c)
                )));
            }
            if seat_limit > SEAT_LIMIT_MAX {
                return Err(CustomerError::SeatLimitOutOfRange(seat_limit));
            }
            let event = CustomerEvent::CustomerCreated(CustomerCreated {
                partner_id,
                name,
                seat_limit,
            });
            sink.write(event, self).await;
            return Ok(());
        }
        if !self.exists {
            return Err(CustomerError::Unknown);
        }
        let event = match command {
            CustomerCommand::Create { .. } => unreachable!("handled above"),
            CustomerCommand::AddDomain { domain } => {
                if self.domains.contains(&domain) {
                    return Err(CustomerError::DomainAlreadyManaged(domain));
                }
                CustomerEvent::DomainAdded(DomainAdded { domain })
            }
            CustomerCommand::RemoveDomain { domain } => {
                if !self.domains.contains(&domain) {
                    return Err(CustomerError::DomainNotManaged(domain));
                }
                CustomerEvent::DomainRemoved(DomainRemoved { domain })
            }
            CustomerCommand::ChangeSeatLimit { seat_limit } => {
                if seat_limit > SEAT_LIMIT_MAX {
                    return Err(CustomerError::SeatLimitOutOfRange(seat_limit));
                }
                if seat_limit == self.seat_limit {
                    return Ok(());
                }
                CustomerEvent::SeatLimitChanged(SeatLimitChanged {
                    seat_limit,
                    previous: self.seat_limit,
                })
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CustomerEvent::CustomerCreated(e) => {
                self.exists = true;
                self.partner_id = Some(e.partner_id);
                self.name = e.name;
                self.seat_limit = e.seat_limit;
            }
            CustomerEvent::DomainAdded(e) => {
                self.domains.insert(e.domain);
            }
            CustomerEvent::DomainRemoved(e) => {
                self.domains.remove(&e.domain);
            }
            CustomerEvent::SeatLimitChanged(e) => self.seat_limit = e.seat_limit,
        }
    }
}

impl ClaimsOf for Customer {
    fn claims(&self, _id: &str, event: &CustomerEvent) -> Vec<ClaimChange> {
        match event {
            CustomerEvent::CustomerCreated(e) => vec![ClaimChange::RegisterCustomer {
                partner_id: e.partner_id,
                seat_limit: e.seat_limit,
            }],
            CustomerEvent::DomainAdded(e) => vec![ClaimChange::ClaimDomain {
                domain: e.domain.clone(),
            }],
            CustomerEvent::DomainRemoved(e) => vec![ClaimChange::ReleaseDomain {
                domain: e.domain.clone(),
            }],
            CustomerEvent::SeatLimitChanged(e) => vec![ClaimChange::SetSeatLimit {
                seat_limit: e.seat_limit,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Customer>;

    fn created() -> CustomerEvent {
        CustomerEvent::CustomerCreated(CustomerCreated {
            partner_id: PartnerId(uuid::Uuid::nil()),
            name: "Acme".into(),
            seat_limit: 10,
        })
    }

    fn domain(d: &str) -> Domain {
        Domain::parse(d).unwrap()
    }

    #[tokio::test]
    async fn t1_a_customer_belongs_to_its_partner() {
        Given::with(())
            .given_no_previous_events()
            .when_async(CustomerCommand::Create {
                partner_id: PartnerId(uuid::Uuid::nil()),
                name: "  Acme ".into(),
                seat_limit: 10,
            })
            .await
            .then_expect_events(vec![created()]);
    }

    #[tokio::test]
    async fn t1_a_customer_is_created_once() {
        Given::with(())
            .given(vec![created()])
            .when_async(CustomerCommand::Create {
                partner_id: PartnerId(uuid::Uuid::nil()),
                name: "Acme".into(),
                seat_limit: 10,
            })
            .await
            .then_expect_error(CustomerError::AlreadyExists);
    }

    #[tokio::test]
    async fn t1_an_empty_name_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when_async(CustomerCommand::Create {
                partner_id: PartnerId(uuid::Uuid::nil()),
                name: "   ".into(),
                seat_limit: 10,
            })
            .await
            .then_expect_error(CustomerError::EmptyName);
    }

    #[tokio::test]
    async fn t3_a_seat_limit_above_the_maximum_is_refused_on_create_and_change() {
        Given::with(())
            .given_no_previous_events()
            .when_async(CustomerCommand::Create {
                partner_id: PartnerId(uuid::Uuid::nil()),
                name: "Acme".into(),
                seat_limit: SEAT_LIMIT_MAX + 1,
            })
            .await
            .then_expect_error(CustomerError::SeatLimitOutOfRange(SEAT_LIMIT_MAX + 1));
        Given::with(())
            .given(vec![created()])
            .when_async(CustomerCommand::ChangeSeatLimit {
                seat_limit: u64::MAX,
            })
            .await
            .then_expect_error(CustomerError::SeatLimitOutOfRange(u64::MAX));
    }

    #[tokio::test]
    async fn t1_a_name_with_a_control_character_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when_async(CustomerCommand::Create {
                partner_id: PartnerId(uuid::Uuid::nil()),
                name: "Ac\0me".into(),
                seat_limit: 10,
            })
            .await
            .then_expect_error(CustomerError::NameControlCharacter("U+0000".into()));
    }

    #[tokio::test]
    async fn t2_a_customer_manages_domains() {
        Given::with(())
            .given(vec![created()])
            .when_async(CustomerCommand::AddDomain {
                domain: domain("Example.COM"),
            })
            .await
            .then_expect_events(vec![CustomerEvent::DomainAdded(DomainAdded {
                domain: domain("example.com"),
            })]);
    }

    #[tokio::test]
    async fn t2_a_domain_is_compared_case_insensitively_in_ascii_form() {
        Given::with(())
            .given(vec![
                created(),
                CustomerEvent::DomainAdded(DomainAdded {
                    domain: domain("xn--bcher-kva.example"),
                }),
            ])
            .when_async(CustomerCommand::AddDomain {
                domain: domain("BÜCHER.example"),
            })
            .await
            .then_expect_error(CustomerError::DomainAlreadyManaged(domain(
                "xn--bcher-kva.example",
            )));
    }

    #[tokio::test]
    async fn t2_a_domain_that_is_not_managed_cannot_be_removed() {
        Given::with(())
            .given(vec![created()])
            .when_async(CustomerCommand::RemoveDomain {
                domain: domain("example.com"),
            })
            .await
            .then_expect_error(CustomerError::DomainNotManaged(domain("example.com")));
    }

    #[tokio::test]
    async fn d3n_removing_a_domain_is_recorded_and_releases_its_claim() {
        let added = CustomerEvent::DomainAdded(DomainAdded {
            domain: domain("example.com"),
        });
        let events = Given::with(())
            .given(vec![created(), added])
            .when_async(CustomerCommand::RemoveDomain {
                domain: domain("example.com"),
            })
            .await
            .inspect_result()
            .unwrap();
        assert_eq!(
            events,
            vec![CustomerEvent::DomainRemoved(DomainRemoved {
                domain: domain("example.com")
            })]
        );
        assert_eq!(
            Customer::default().claims("c", &events[0]),
            vec![ClaimChange::ReleaseDomain {
                domain: domain("example.com")
            }]
        );
    }

    #[tokio::test]
    async fn t3_the_seat_limit_changes_and_an_unchanged_limit_emits_nothing() {
        Given::with(())
            .given(vec![created()])
            .when_async(CustomerCommand::ChangeSeatLimit { seat_limit: 25 })
            .await
            .then_expect_events(vec![CustomerEvent::SeatLimitChanged(SeatLimitChanged {
                seat_limit: 25,
                previous: 10,
            })]);
        Given::with(())
            .given(vec![created()])
            .when_async(CustomerCommand::ChangeSeatLimit { seat_limit: 10 })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn commands_on_an_unknown_customer_are_refused() {
        Given::with(())
            .given_no_previous_events()
            .when_async(CustomerCommand::AddDomain {
                domain: domain("example.com"),
            })
            .await
            .then_expect_error(CustomerError::Unknown);
    }
}
