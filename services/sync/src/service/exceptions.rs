//! The exceptions list (D3.o).

use super::*;

impl SyncService {
    pub async fn add_exception(
        &self,
        meta: &EventMeta,
        e: Exception,
    ) -> Result<Appended, SyncError> {
        self.directory_commands(meta, &[DirectoryCommand::AddException(e)])
            .await
    }

    pub async fn remove_exception(
        &self,
        meta: &EventMeta,
        e: Exception,
    ) -> Result<Appended, SyncError> {
        self.directory_commands(meta, &[DirectoryCommand::RemoveException(e)])
            .await
    }
}
