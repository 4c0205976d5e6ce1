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
        retrying(|| async {
            let mut dir: Loaded<Directory> = self.store.load(&customer.to_string()).await?;
            let kind = dir
                .state
                .enabled
                .or_else(|| dir.state.configs.keys().next().copied())
                .ok_or_else(|| {
                    SyncError::Invalid("configure a directory before adding additions".into())
                })?;
            check_managed(&self.store, customer, &[&address]).await?;
            let mut batch = Batch::new();
            let command = DirectoryCommand::AddAddition(address.clone());
            batch.execute(&mut dir, command, &(), meta).await?;
            match self.store.db().address_owner(&address).await? {
                Some(o) if o.customer_id == customer && o.primary => {} // already a user: kept from now on
                Some(_) => {
                    let address = address.clone();
                    return Err(StoreError::AddressTaken { address }.into());
                }
                // Additions are made by an administrator: they take a free seat (T3).
                None => {
                    let user = NewUser {
                        address: address.clone(),
                        kind: Kind::User,
                        profile: Profile::default(),
                        aliases: vec![],
                    };
                    stage_new(&self.store, &mut batch, meta, &user, kind.source()).await?;
                }
            }
            Ok(self.store.commit(batch).await?)
        })
        .await
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
