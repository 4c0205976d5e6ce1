//! D3.n, removing a managed domain: a domain service over the customer and
//! its users. The customer aggregate records the removal; this decides
//! what it does to every address in the domain, and the application
//! appends both in one commit.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use roster_events::{Address, DeletionReason, UnmapReason, UserId};

use crate::user::UserCommand;

/// An address in the domain being removed, and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub address: Address,
    pub owner: UserId,
    /// The owner's primary address (otherwise an alias).
    pub primary: bool,
}

/// What removing the domain does to one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub user: UserId,
    pub address: Address,
    pub command: UserCommand,
}

/// D3.n: the users whose primary address is in the domain are deleted at
/// once; the other users lose their aliases in it. A user deleted here
/// keeps its aliases (the deletion releases them), so they are not unmapped
/// one by one.
pub fn domain_removal(held: &[Held], at: DateTime<Utc>) -> Vec<Step> {
    let deleted: BTreeSet<UserId> = held.iter().filter(|h| h.primary).map(|h| h.owner).collect();
    held.iter()
        .filter_map(|h| {
            let command = if h.primary {
                UserCommand::Delete {
                    reason: DeletionReason::DomainRemoved,
                    at,
                }
            } else if !deleted.contains(&h.owner) {
                UserCommand::UnmapAlias {
                    alias: h.address.clone(),
                    reason: UnmapReason::DomainRemoved,
                }
            } else {
                return None;
            };
            Some(Step {
                user: h.owner,
                address: h.address.clone(),
                command,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(address: &str, owner: UserId, primary: bool) -> Held {
        Held {
            address: Address::parse(address).unwrap(),
            owner,
            primary,
        }
    }

    #[test]
    fn d3n_users_of_the_domain_are_deleted_and_others_lose_its_aliases() {
        let (gone, stays) = (UserId::new(), UserId::new());
        let at = Utc::now();
        let steps = domain_removal(
            &[
                held("a@old.example", gone, true),
                held("a2@old.example", gone, false),
                held("b@old.example", stays, false),
            ],
            at,
        );
        assert_eq!(
            steps,
            vec![
                Step {
                    user: gone,
                    address: Address::parse("a@old.example").unwrap(),
                    command: UserCommand::Delete {
                        reason: DeletionReason::DomainRemoved,
                        at
                    },
                },
                Step {
                    user: stays,
                    address: Address::parse("b@old.example").unwrap(),
                    command: UserCommand::UnmapAlias {
                        alias: Address::parse("b@old.example").unwrap(),
                        reason: UnmapReason::DomainRemoved,
                    },
                },
            ]
        );
    }
}
