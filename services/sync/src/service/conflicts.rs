//! Conflict actions (D3.m) on flagged users.

use super::*;

impl SyncService {
    /// Applies a conflict action to flagged users; each address gets its own
    /// answer, and the successful ones are appended together.
    pub async fn conflict_action(
        &self,
        meta: &EventMeta,
        action: ConflictAction,
        addresses: &[Address],
    ) -> Result<(Vec<(Address, Result<(), String>)>, i64), SyncError> {
        let mut results = Vec::new();
        let mut targets: Vec<(Address, UserId)> = Vec::new();
        let owners = self.store.db().address_owners(addresses).await?;
        for a in addresses {
            match owners.get(a) {
                Some(o) if o.customer_id == meta.customer_id && o.primary => {
                    targets.push((a.clone(), o.owner))
                }
                _ => results.push((
                    a.clone(),
                    Err(format!("{a} is not a user of this customer")),
                )),
            }
        }
        let ids: Vec<String> = targets.iter().map(|(_, id)| id.to_string()).collect();
        let mut users = self.store.load_many::<User>(&ids).await?;
        let mut batch = Batch::new();
        for (a, id) in &targets {
            let Some(u) = users.get_mut(&id.to_string()) else {
                continue;
            };
            if u.state.flag.is_none() {
                results.push((
                    a.clone(),
                    Err(format!("{a} is not a conflict (not flagged for deletion)")),
                ));
                continue;
            }
            let cmd = match action {
                ConflictAction::Delete => UserCommand::Delete {
                    reason: DeletionReason::ConflictDeleted,
                    at: meta.time,
                },
                ConflictAction::Ignore => UserCommand::IgnoreConflict,
                ConflictAction::Deactivate => UserCommand::Deactivate,
            };
            match batch.execute(u, cmd, &UserServices::default(), meta).await {
                Ok(_) => results.push((a.clone(), Ok(()))),
                Err(e) => results.push((a.clone(), Err(e.to_string()))),
            }
        }
        let a = self.store.commit(batch).await?;
        Ok((results, a.last))
    }
}

/// A conflict action (D3.m).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictAction {
    Delete,
    Ignore,
    Deactivate,
}
