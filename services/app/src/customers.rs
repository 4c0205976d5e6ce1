//! Customers: creation with their first domains, customer commands, and
//! domain removal (D3.n, decided by [`roster_domain::removal`]).

use roster_domain::removal::{domain_removal, Held};
use roster_domain::{Customer, CustomerCommand, User, UserServices};
use roster_events::*;
use roster_store::{Batch, Loaded};

use crate::error::AppResult;
use crate::retry::retrying;
use crate::App;

/// Creates a customer of a partner, with its first domains, atomically.
pub async fn create_customer(
    app: &App,
    meta: EventMeta,
    partner: PartnerId,
    name: String,
    seat_limit: u64,
    domains: Vec<Domain>,
) -> AppResult<i64> {
    let mut commands = vec![CustomerCommand::Create {
        partner_id: partner,
        name,
        seat_limit,
    }];
    commands.extend(
        domains
            .into_iter()
            .map(|domain| CustomerCommand::AddDomain { domain }),
    );
    customer_commands(app, meta, &commands).await
}

/// Runs one command on a customer.
pub async fn customer_command(
    app: &App,
    meta: EventMeta,
    command: CustomerCommand,
) -> AppResult<i64> {
    customer_commands(app, meta, &[command]).await
}

/// Runs commands on a customer in one append.
async fn customer_commands(
    app: &App,
    meta: EventMeta,
    commands: &[CustomerCommand],
) -> AppResult<i64> {
    let store = &app.store;
    retrying(|| async {
        let mut target: Loaded<Customer> = store.load(&meta.customer_id.to_string()).await?;
        let mut batch = Batch::new();
        for command in commands {
            batch
                .execute(&mut target, command.clone(), &(), &meta)
                .await?;
        }
        Ok(store.commit(batch).await?.last)
    })
    .await
}

/// What removing a domain did (D3.n).
pub struct Removal {
    pub users_deleted: Vec<Address>,
    pub aliases_removed: Vec<Address>,
    pub position: i64,
}

/// What removing a domain would do (D3.n), shown before an administrator
/// confirms: the users deleted at once and the aliases removed from users
/// that stay. Decided by the same rule as [`remove_domain`]; changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalPreview {
    pub users_deleted: Vec<Address>,
    pub aliases_removed: Vec<Address>,
}

/// D3.n, dry: the consequences of removing `domain` from `customer` now.
pub async fn removal_preview(
    app: &App,
    customer: CustomerId,
    domain: &Domain,
) -> AppResult<RemovalPreview> {
    let held: Vec<Held> = app
        .store
        .db()
        .addresses_in_domain(customer, domain)
        .await?
        .into_iter()
        .map(|(address, owner, primary)| Held {
            address,
            owner,
            primary,
        })
        .collect();
    let mut preview = RemovalPreview {
        users_deleted: Vec::new(),
        aliases_removed: Vec::new(),
    };
    for step in domain_removal(&held, app.clock.now()) {
        if matches!(step.command, roster_domain::UserCommand::Delete { .. }) {
            preview.users_deleted.push(step.address);
        } else {
            preview.aliases_removed.push(step.address);
        }
    }
    Ok(preview)
}

/// D3.n: removes a managed domain, deleting at once the users whose primary
/// address is in it and removing its aliases from the other users, in one
/// atomic append.
pub async fn remove_domain(app: &App, meta: EventMeta, domain: Domain) -> AppResult<Removal> {
    let customer = meta.customer_id;
    let store = &app.store;
    retrying(|| async {
        let mut cust: Loaded<Customer> = store.load(&customer.to_string()).await?;
        let held: Vec<Held> = store
            .db()
            .addresses_in_domain(customer, &domain)
            .await?
            .into_iter()
            .map(|(address, owner, primary)| Held {
                address,
                owner,
                primary,
            })
            .collect();
        let mut ids: Vec<String> = held.iter().map(|h| h.owner.to_string()).collect();
        ids.sort();
        ids.dedup();
        let mut users = store.load_many::<User>(&ids).await?;
        let mut batch = Batch::new();
        let command = CustomerCommand::RemoveDomain {
            domain: domain.clone(),
        };
        batch.execute(&mut cust, command, &(), &meta).await?;
        let mut users_deleted = Vec::new();
        let mut aliases_removed = Vec::new();
        for step in domain_removal(&held, meta.time) {
            let Some(target) = users.get_mut(&step.user.to_string()) else {
                continue;
            };
            let deletes = matches!(step.command, roster_domain::UserCommand::Delete { .. });
            batch
                .execute(target, step.command, &UserServices::default(), &meta)
                .await?;
            if deletes {
                users_deleted.push(step.address);
            } else {
                aliases_removed.push(step.address);
            }
        }
        let position = store.commit(batch).await?.last;
        Ok(Removal {
            users_deleted,
            aliases_removed,
            position,
        })
    })
    .await
}
