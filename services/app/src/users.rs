//! Users (M1): the one add-user path, edits, and single commands. Each
//! command returns the log position of its last event, for
//! [`crate::App::settle`].

use std::collections::BTreeSet;

pub use roster_csv::ProfilePatch;
use roster_domain::{AddUser, User, UserCommand, UserError, UserServices};
use roster_events::*;
use roster_store::{Batch, Loaded, Store, StoreError};

use crate::error::{AppError, AppResult};
use crate::retry::{retrying, Attempt};
use crate::seats::Seats;
use crate::App;

/// The fields of a new user, validated.
pub struct NewUser {
    pub address: Address,
    pub kind: Kind,
    pub profile: Profile,
    pub aliases: Vec<Address>,
}

/// Checks that every address is in a domain this customer manages.
pub async fn check_managed<E: From<StoreError>>(
    store: &Store,
    customer: CustomerId,
    addresses: &[&Address],
) -> Result<(), Attempt<E>> {
    let domains: BTreeSet<Domain> = addresses.iter().map(|a| a.domain()).collect();
    for d in domains {
        if store.db().domain_owner(&d).await? != Some(customer) {
            return Err(Attempt::fail(StoreError::UnmanagedDomain { domain: d }));
        }
    }
    Ok(())
}

/// Refuses addresses that belong to someone else, naming the first one.
async fn check_free(
    store: &Store,
    addresses: &[&Address],
    except: Option<UserId>,
) -> Result<(), Attempt> {
    let list: Vec<Address> = addresses.iter().map(|a| (*a).clone()).collect();
    let owners = store.db().address_owners(&list).await?;
    for a in addresses {
        if let Some(o) = owners.get(*a) {
            if Some(o.owner) != except {
                return Err(Attempt::fail(StoreError::AddressTaken {
                    address: (*a).clone(),
                }));
            }
        }
    }
    Ok(())
}

/// The one way an administrator's addition is staged (by hand, by file,
/// or on the directory's additions list): the user aggregate decides, the
/// addition takes a free seat (T3), and the append is guarded by the limit.
pub async fn stage_add(
    batch: &mut Batch,
    target: &mut Loaded<User>,
    add: AddUser,
    seats: &mut Seats,
    meta: &EventMeta,
) -> Result<(), UserError> {
    let (kind, customer) = (add.kind, add.customer_id);
    batch
        .execute(target, UserCommand::Add(add), &seats.services(), meta)
        .await?;
    seats.take(kind)?;
    Seats::guard(batch, customer);
    Ok(())
}

/// Stages the addition of a user whose address is known to be free: a new
/// user, or the deleted one that held the address, which comes back with
/// its history (U6). Returns the user's id.
pub async fn stage_new<E: From<StoreError> + From<UserError>>(
    store: &Store,
    batch: &mut Batch,
    meta: &EventMeta,
    user: &NewUser,
    source: Source,
) -> Result<UserId, Attempt<E>> {
    let customer = meta.customer_id;
    let tombstone = store.db().tombstone(customer, &user.address).await?;
    let mut seats = Seats::of(store, customer).await?;
    stage_with(store, batch, meta, user, source, tombstone, &mut seats).await
}

/// [`stage_new`] with the tombstone and the seats already read.
async fn stage_with<E: From<StoreError> + From<UserError>>(
    store: &Store,
    batch: &mut Batch,
    meta: &EventMeta,
    user: &NewUser,
    source: Source,
    tombstone: Option<UserId>,
    seats: &mut Seats,
) -> Result<UserId, Attempt<E>> {
    let customer = meta.customer_id;
    // A new user's id is fresh (UUIDv7): it has no events to load.
    let (id, mut target) = match tombstone {
        Some(id) => (id, store.load::<User>(&id.to_string()).await?),
        None => {
            let id = UserId::new();
            (id, Loaded::new(id.to_string()))
        }
    };
    let add = AddUser {
        user_id: id,
        customer_id: customer,
        address: user.address.clone(),
        kind: user.kind,
        source,
        profile: user.profile.clone(),
        aliases: user.aliases.clone(),
        directory_id: None,
        members: vec![],
    };
    stage_add(batch, &mut target, add, seats, meta).await?;
    Ok(id)
}

/// M1: adds one user by hand (or brings a deleted one back, U6). What it
/// checks first (managed domains, free addresses, the tombstone, the
/// seats) is read in one query on PostgreSQL.
pub async fn add_user(
    app: &App,
    meta: EventMeta,
    user: NewUser,
    source: Source,
) -> AppResult<(UserId, i64)> {
    let customer = meta.customer_id;
    let store = &app.store;
    retrying(|| async {
        let mut all: Vec<&Address> = vec![&user.address];
        all.extend(user.aliases.iter());
        let facts = store
            .db()
            .addition_facts(customer, &user.address, &all)
            .await?;
        let domains: BTreeSet<Domain> = all.iter().map(|a| a.domain()).collect();
        for d in domains {
            if facts.domain_owners.get(d.as_str()) != Some(&customer) {
                return Err(Attempt::fail(StoreError::UnmanagedDomain { domain: d }));
            }
        }
        if let Some(a) = all
            .iter()
            .find(|a| facts.address_owners.contains_key(a.as_str()))
        {
            return Err(Attempt::fail(StoreError::AddressTaken {
                address: (*a).clone(),
            }));
        }
        let seats = facts.seats.ok_or(StoreError::UnknownCustomer)?;
        let mut seats = Seats {
            used: seats.used,
            limit: seats.limit,
        };
        let mut batch = Batch::new();
        let id = stage_with(
            store,
            &mut batch,
            &meta,
            &user,
            source,
            facts.tombstone,
            &mut seats,
        )
        .await?;
        let appended = store.commit(batch).await?;
        Ok((id, appended.last))
    })
    .await
}

/// The user that holds this primary address in this customer.
pub async fn user_id_of(
    store: &Store,
    customer: CustomerId,
    address: &Address,
) -> AppResult<UserId> {
    match store.db().address_owner(address).await? {
        Some(o) if o.customer_id == customer && o.primary => Ok(o.owner),
        _ => Err(AppError::not_found(format!(
            "{address} is not a user of this customer"
        ))),
    }
}

/// What an edit changes.
#[derive(Default)]
pub struct Edit {
    /// The profile fields to set or clear: the same patch a CSV row is
    /// (an absent field unchanged, `Some(None)` cleared).
    pub profile: ProfilePatch,
    pub aliases: Option<Vec<Address>>,
    pub status: Option<Status>,
}

/// M1: edits a user: profile fields, the set of aliases, deactivation.
pub async fn edit_user(app: &App, meta: EventMeta, address: Address, edit: Edit) -> AppResult<i64> {
    let customer = meta.customer_id;
    let store = &app.store;
    retrying(|| async {
        let id = user_id_of(store, customer, &address).await?;
        let mut target: Loaded<User> = store.load(&id.to_string()).await?;
        let mut batch = Batch::new();
        let profile = edit.profile.applied_to(&target.state.profile);
        let none = UserServices::default();
        batch
            .execute(
                &mut target,
                UserCommand::UpdateProfile { profile },
                &none,
                &meta,
            )
            .await?;
        if let Some(wanted) = &edit.aliases {
            let wanted: BTreeSet<Address> = wanted.iter().cloned().collect();
            let current = target.state.aliases.clone();
            let added: Vec<&Address> = wanted.difference(&current).collect();
            check_managed(store, customer, &added).await?;
            check_free(store, &added, Some(id)).await?;
            for alias in current.difference(&wanted) {
                let reason = UnmapReason::Manual;
                let alias = alias.clone();
                let command = UserCommand::UnmapAlias { alias, reason };
                batch.execute(&mut target, command, &none, &meta).await?;
            }
            for alias in added {
                let command = UserCommand::MapAlias {
                    alias: alias.clone(),
                };
                batch.execute(&mut target, command, &none, &meta).await?;
            }
        }
        match edit.status {
            Some(Status::Deactivated) if target.state.status != Status::Deactivated => {
                batch
                    .execute(&mut target, UserCommand::Deactivate, &none, &meta)
                    .await?;
            }
            Some(Status::Active) if target.state.status == Status::Deactivated => {
                let seats = Seats::of(store, customer).await?;
                batch
                    .execute(
                        &mut target,
                        UserCommand::Reactivate,
                        &seats.services(),
                        &meta,
                    )
                    .await?;
                Seats::guard(&mut batch, customer);
            }
            _ => {}
        }
        Ok(store.commit(batch).await?.last)
    })
    .await
}

/// Runs one command on the user that holds `address`.
pub async fn user_command(
    app: &App,
    meta: EventMeta,
    address: &Address,
    command: impl Fn() -> UserCommand,
) -> AppResult<i64> {
    let customer = meta.customer_id;
    let store = &app.store;
    retrying(|| async {
        let id = user_id_of(store, customer, address).await?;
        let mut target: Loaded<User> = store.load(&id.to_string()).await?;
        let mut batch = Batch::new();
        batch
            .execute(&mut target, command(), &UserServices::default(), &meta)
            .await?;
        Ok(store.commit(batch).await?.last)
    })
    .await
}
