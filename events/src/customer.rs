//! Events of the customer aggregate: a tenant, its managed domains and its
//! seat limit (T1-T3).

use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{Domain, PartnerId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerCreated {
    pub partner_id: PartnerId,
    pub name: String,
    pub seat_limit: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DomainAdded {
    pub domain: Domain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DomainRemoved {
    pub domain: Domain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SeatLimitChanged {
    pub seat_limit: u64,
    pub previous: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CustomerEvent {
    CustomerCreated(CustomerCreated),
    DomainAdded(DomainAdded),
    DomainRemoved(DomainRemoved),
    SeatLimitChanged(SeatLimitChanged),
}

impl CustomerEvent {
    pub const TYPES: &'static [(&'static str, &'static str)] = &[
        ("CustomerCreated", "1.0"),
        ("DomainAdded", "1.0"),
        ("DomainRemoved", "1.0"),
        ("SeatLimitChanged", "1.0"),
    ];

    pub fn type_name(&self) -> &'static str {
        match self {
            CustomerEvent::CustomerCreated(_) => "CustomerCreated",
            CustomerEvent::DomainAdded(_) => "DomainAdded",
            CustomerEvent::DomainRemoved(_) => "DomainRemoved",
            CustomerEvent::SeatLimitChanged(_) => "SeatLimitChanged",
        }
    }
}

impl DomainEvent for CustomerEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }
    fn event_version(&self) -> String {
        crate::version_of(Self::TYPES, self.type_name()).to_string()
    }
}
