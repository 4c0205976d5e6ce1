//! The additions list (D3.p).

use super::*;

impl SyncService {
    /// D3.p: the address is created at once with the directory as its
    /// source, and is not flagged while it stays on the list.
    pub async fn add_addition(
        &self,
        meta: &EventMeta,
        address: Address,
    ) -> Result<Appended, SyncError> {
        let customer = meta.customer_id;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let mut dir: Loaded<Directory> = self.store.load(&customer.to_string()).await?;
            let kind = dir
                .state
                .enabled
                .or_else(|| dir.state.configs.keys().next().copied())
                .ok_or_else(|| {
                    SyncError::Invalid("configure a directory before adding additions".into())
                })?;
            if self.store.db().domain_owner(&address.domain()).await? != Some(customer) {
                return Err(StoreError::UnmanagedDomain {
                    domain: address.domain(),
                }
                .into());
            }
            let mut batch = Batch::new();
            batch
                .execute(
                    &mut dir,
                    DirectoryCommand::AddAddition(address.clone()),
                    &(),
                    meta,
                )
                .await?;
            match self.store.db().address_owner(&address).await? {
                Some(o) if o.customer_id == customer && o.primary => {} // already a user: kept from now on
                Some(_) => return Err(StoreError::AddressTaken { address }.into()),
                None => {
                    let id = self
                        .store
                        .db()
                        .tombstone(customer, &address)
                        .await?
                        .unwrap_or_default();
                    let mut user: Loaded<User> = self.store.load(&id.to_string()).await?;
                    let seats = self.store.db().seats(customer).await?;
                    let services = UserServices {
                        seats: Some(SeatUsage {
                            used: seats.used,
                            limit: seats.limit,
                        }),
                    };
                    let add = AddUser {
                        user_id: id,
                        customer_id: customer,
                        address: address.clone(),
                        kind: Kind::User,
                        source: kind.source(),
                        profile: Profile::default(),
                        aliases: vec![],
                        directory_id: None,
                        members: vec![],
                    };
                    batch
                        .execute(&mut user, UserCommand::Add(add), &services, meta)
                        .await?;
                    // Additions are made by an administrator: they take a free seat (T3).
                    if seats.used >= seats.limit {
                        return Err(UserError::OverSeatLimit {
                            used: seats.used,
                            limit: seats.limit,
                        }
                        .into());
                    }
                    batch.guard(customer, Guard::SeatLimit);
                }
            }
            match self.store.commit(batch).await {
                Ok(a) => return Ok(a),
                Err(StoreError::Conflict) => last = Some(StoreError::Conflict),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.unwrap_or(StoreError::Conflict).into())
    }

    /// Removes an address from the additions list; the user stays, and the
    /// next sync decides about it like any other.
    pub async fn remove_addition(
        &self,
        meta: &EventMeta,
        address: Address,
    ) -> Result<Appended, SyncError> {
        self.directory_commands(meta, &[DirectoryCommand::RemoveAddition(address)])
            .await
    }
}
