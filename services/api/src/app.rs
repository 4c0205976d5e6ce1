//! Application services: load, decide through the aggregates, append with
//! claims, retry on optimistic conflicts. Each returns the log position of
//! its last event so that the handler can wait for the read models.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use roster_domain::{
    AddUser, Customer, CustomerCommand, SeatUsage, User, UserCommand, UserError, UserServices,
};
use roster_events::*;
use roster_store::{Batch, Loaded, StoreError};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

const ATTEMPTS: u32 = 8;

/// Why one attempt failed: a conflict that a fresh attempt may avoid, or a final answer.
pub enum Attempt {
    Retry(StoreError),
    Fail(ApiError),
}

impl From<StoreError> for Attempt {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict | StoreError::DomainInUse { .. } => Attempt::Retry(e),
            other => Attempt::Fail(other.into()),
        }
    }
}
impl From<ApiError> for Attempt {
    fn from(e: ApiError) -> Self {
        Attempt::Fail(e)
    }
}
impl From<UserError> for Attempt {
    fn from(e: UserError) -> Self {
        Attempt::Fail(e.into())
    }
}
impl From<roster_domain::CustomerError> for Attempt {
    fn from(e: roster_domain::CustomerError) -> Self {
        Attempt::Fail(e.into())
    }
}
impl From<IdError> for Attempt {
    fn from(e: IdError) -> Self {
        Attempt::Fail(e.into())
    }
}

/// Runs `op` until it succeeds, fails for good, or conflicts too often.
pub async fn retrying<T, F, Fut>(mut op: F) -> ApiResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        match op().await {
            Ok(v) => return Ok(v),
            Err(Attempt::Fail(e)) => return Err(e),
            Err(Attempt::Retry(e)) => {
                metrics::counter!("roster_command_conflicts_total").increment(1);
                last = Some(e);
                let jitter = rand_jitter(attempt);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
        }
    }
    Err(last
        .map(ApiError::from)
        .unwrap_or_else(|| ApiError::internal("retries exhausted")))
}

fn rand_jitter(attempt: u32) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (1u64 << attempt.min(6)) + nanos % 7
}

/// The fields of a new user, validated.
pub struct NewUser {
    pub address: Address,
    pub kind: Kind,
    pub profile: Profile,
    pub aliases: Vec<Address>,
}

/// Checks that every address is in a domain this customer manages.
async fn check_managed(
    state: &AppState,
    customer: CustomerId,
    addresses: &[&Address],
) -> Result<(), Attempt> {
    let domains: BTreeSet<Domain> = addresses.iter().map(|a| a.domain()).collect();
    for d in domains {
        if state.store.db().domain_owner(&d).await? != Some(customer) {
            return Err(Attempt::Fail(
                StoreError::UnmanagedDomain { domain: d }.into(),
            ));
        }
    }
    Ok(())
}

/// Refuses addresses that belong to someone else, naming the first one.
async fn check_free(
    state: &AppState,
    addresses: &[&Address],
    except: Option<UserId>,
) -> Result<(), Attempt> {
    let list: Vec<Address> = addresses.iter().map(|a| (*a).clone()).collect();
    let owners = state.store.db().address_owners(&list).await?;
    for a in addresses {
        if let Some(o) = owners.get(*a) {
            if Some(o.owner) != except {
                return Err(Attempt::Fail(
                    StoreError::AddressTaken {
                        address: (*a).clone(),
                    }
                    .into(),
                ));
            }
        }
    }
    Ok(())
}

/// M1: adds one user by hand (or brings a deleted one back, U6).
pub async fn add_user(
    state: &AppState,
    meta: EventMeta,
    user: NewUser,
    source: Source,
) -> ApiResult<(UserId, i64)> {
    let customer = meta.customer_id;
    retrying(|| async {
        let mut all: Vec<&Address> = vec![&user.address];
        all.extend(user.aliases.iter());
        check_managed(state, customer, &all).await?;
        check_free(state, &all, None).await?;
        let id = state
            .store
            .db()
            .tombstone(customer, &user.address)
            .await?
            .unwrap_or_default();
        let mut target: Loaded<User> = state.store.load(&id.to_string()).await?;
        let seats = state.store.db().seats(customer).await?;
        let services = UserServices {
            seats: Some(SeatUsage {
                used: seats.used,
                limit: seats.limit,
            }),
        };
        let mut batch = Batch::new();
        batch
            .execute(
                &mut target,
                UserCommand::Add(AddUser {
                    user_id: id,
                    customer_id: customer,
                    address: user.address.clone(),
                    kind: user.kind,
                    source,
                    profile: user.profile.clone(),
                    aliases: user.aliases.clone(),
                    directory_id: None,
                    members: vec![],
                }),
                &services,
                &meta,
            )
            .await?;
        batch.guard(customer, Guard::SeatLimit);
        let appended = state.store.commit(batch).await?;
        Ok((id, appended.last))
    })
    .await
}

/// The user that holds this primary address in this customer.
pub async fn user_id_of(
    state: &AppState,
    customer: CustomerId,
    address: &Address,
) -> ApiResult<UserId> {
    match state.store.db().address_owner(address).await? {
        Some(o) if o.customer_id == customer && o.primary => Ok(o.owner),
        _ => Err(ApiError::not_found(format!(
            "{address} is not a user of this customer"
        ))),
    }
}

/// What an edit changes.
#[derive(Default)]
pub struct Edit {
    pub profile: [Option<Option<String>>; 7],
    pub aliases: Option<Vec<Address>>,
    pub status: Option<Status>,
}

/// M1: edits a user: profile fields, the set of aliases, deactivation.
pub async fn edit_user(
    state: &AppState,
    meta: EventMeta,
    address: Address,
    edit: Edit,
) -> ApiResult<i64> {
    let customer = meta.customer_id;
    retrying(|| async {
        let id = user_id_of(state, customer, &address).await?;
        let mut target: Loaded<User> = state.store.load(&id.to_string()).await?;
        let mut batch = Batch::new();
        let mut profile = target.state.profile.clone();
        for ((_, field), change) in profile.fields_mut().into_iter().zip(edit.profile.iter()) {
            if let Some(v) = change {
                *field = v.clone();
            }
        }
        batch
            .execute(
                &mut target,
                UserCommand::UpdateProfile { profile },
                &UserServices::default(),
                &meta,
            )
            .await?;
        if let Some(wanted) = &edit.aliases {
            let wanted: BTreeSet<Address> = wanted.iter().cloned().collect();
            let current = target.state.aliases.clone();
            let added: Vec<&Address> = wanted.difference(&current).collect();
            check_managed(state, customer, &added).await?;
            check_free(state, &added, Some(id)).await?;
            for alias in current.difference(&wanted) {
                batch
                    .execute(
                        &mut target,
                        UserCommand::UnmapAlias {
                            alias: alias.clone(),
                            reason: UnmapReason::Manual,
                        },
                        &UserServices::default(),
                        &meta,
                    )
                    .await?;
            }
            for alias in added {
                batch
                    .execute(
                        &mut target,
                        UserCommand::MapAlias {
                            alias: alias.clone(),
                        },
                        &UserServices::default(),
                        &meta,
                    )
                    .await?;
            }
        }
        match edit.status {
            Some(Status::Deactivated) if target.state.status != Status::Deactivated => {
                batch
                    .execute(
                        &mut target,
                        UserCommand::Deactivate,
                        &UserServices::default(),
                        &meta,
                    )
                    .await?;
            }
            Some(Status::Active) if target.state.status == Status::Deactivated => {
                let seats = state.store.db().seats(customer).await?;
                let services = UserServices {
                    seats: Some(SeatUsage {
                        used: seats.used,
                        limit: seats.limit,
                    }),
                };
                batch
                    .execute(&mut target, UserCommand::Reactivate, &services, &meta)
                    .await?;
                batch.guard(customer, Guard::SeatLimit);
            }
            _ => {}
        }
        Ok(state.store.commit(batch).await?.last)
    })
    .await
}

/// Runs one command on the user that holds `address`.
pub async fn user_command(
    state: &AppState,
    meta: EventMeta,
    address: &Address,
    command: impl Fn() -> UserCommand,
) -> ApiResult<i64> {
    let customer = meta.customer_id;
    retrying(|| async {
        let id = user_id_of(state, customer, address).await?;
        let mut target: Loaded<User> = state.store.load(&id.to_string()).await?;
        let mut batch = Batch::new();
        batch
            .execute(&mut target, command(), &UserServices::default(), &meta)
            .await?;
        Ok(state.store.commit(batch).await?.last)
    })
    .await
}

/// Creates a customer of a partner, with its first domains, atomically.
pub async fn create_customer(
    state: &AppState,
    meta: EventMeta,
    partner: PartnerId,
    name: String,
    seat_limit: u64,
    domains: Vec<Domain>,
) -> ApiResult<i64> {
    retrying(|| async {
        let mut target: Loaded<Customer> = state.store.load(&meta.customer_id.to_string()).await?;
        let mut batch = Batch::new();
        batch
            .execute(
                &mut target,
                CustomerCommand::Create {
                    partner_id: partner,
                    name: name.clone(),
                    seat_limit,
                },
                &(),
                &meta,
            )
            .await?;
        for d in &domains {
            batch
                .execute(
                    &mut target,
                    CustomerCommand::AddDomain { domain: d.clone() },
                    &(),
                    &meta,
                )
                .await?;
        }
        Ok(state.store.commit(batch).await?.last)
    })
    .await
}

/// Runs one command on a customer.
pub async fn customer_command(
    state: &AppState,
    meta: EventMeta,
    command: CustomerCommand,
) -> ApiResult<i64> {
    retrying(|| async {
        let mut target: Loaded<Customer> = state.store.load(&meta.customer_id.to_string()).await?;
        let mut batch = Batch::new();
        batch
            .execute(&mut target, command.clone(), &(), &meta)
            .await?;
        Ok(state.store.commit(batch).await?.last)
    })
    .await
}

/// What removing a domain did (D3.n).
pub struct Removal {
    pub users_deleted: Vec<Address>,
    pub aliases_removed: Vec<Address>,
    pub position: i64,
}

/// D3.n: removes a managed domain, deleting at once the users whose primary
/// address is in it and removing its aliases from the other users, in one
/// atomic append.
pub async fn remove_domain(
    state: &AppState,
    meta: EventMeta,
    domain: Domain,
) -> ApiResult<Removal> {
    let customer = meta.customer_id;
    retrying(|| async {
        let mut cust: Loaded<Customer> = state.store.load(&customer.to_string()).await?;
        let in_domain = state
            .store
            .db()
            .addresses_in_domain(customer, &domain)
            .await?;
        let deleted: BTreeSet<UserId> = in_domain
            .iter()
            .filter(|(_, _, primary)| *primary)
            .map(|(_, o, _)| *o)
            .collect();
        let mut ids: Vec<String> = in_domain.iter().map(|(_, o, _)| o.to_string()).collect();
        ids.sort();
        ids.dedup();
        let mut users = state.store.load_many::<User>(&ids).await?;
        let mut batch = Batch::new();
        batch
            .execute(
                &mut cust,
                CustomerCommand::RemoveDomain {
                    domain: domain.clone(),
                },
                &(),
                &meta,
            )
            .await?;
        let mut users_deleted = Vec::new();
        let mut aliases_removed = Vec::new();
        for (address, owner, primary) in &in_domain {
            let Some(target) = users.get_mut(&owner.to_string()) else {
                continue;
            };
            if *primary {
                batch
                    .execute(
                        target,
                        UserCommand::Delete {
                            reason: DeletionReason::DomainRemoved,
                            at: meta.time,
                        },
                        &UserServices::default(),
                        &meta,
                    )
                    .await?;
                users_deleted.push(address.clone());
            } else if !deleted.contains(owner) {
                batch
                    .execute(
                        target,
                        UserCommand::UnmapAlias {
                            alias: address.clone(),
                            reason: UnmapReason::DomainRemoved,
                        },
                        &UserServices::default(),
                        &meta,
                    )
                    .await?;
                aliases_removed.push(address.clone());
            }
        }
        let position = state.store.commit(batch).await?.last;
        Ok(Removal {
            users_deleted,
            aliases_removed,
            position,
        })
    })
    .await
}
