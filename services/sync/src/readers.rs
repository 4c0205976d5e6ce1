//! Which reader reads which directory: a capability, so the service does not
//! know the protocols.

use roster_domain::snapshot::{DirectoryReader, ReadError};
use roster_events::Connection;
use roster_store::Secret;

pub trait ReaderFactory: Send + Sync {
    /// A reader for these settings and secret.
    fn reader(
        &self,
        connection: &Connection,
        secret: Option<&Secret>,
    ) -> Result<Box<dyn DirectoryReader>, ReadError>;
}

/// The production readers: LDAP / Active Directory and Microsoft Entra ID.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultReaders;

impl ReaderFactory for DefaultReaders {
    fn reader(
        &self,
        connection: &Connection,
        secret: Option<&Secret>,
    ) -> Result<Box<dyn DirectoryReader>, ReadError> {
        match connection {
            Connection::Ldap(settings) => Ok(Box::new(roster_directory::LdapReader::new(
                settings.clone(),
                secret.map(|s| s.expose().to_string()).unwrap_or_default(),
            ))),
            Connection::Entra(settings) => Ok(Box::new(roster_directory::EntraReader::new(
                settings.clone(),
                secret.map(|s| s.expose().to_string()).unwrap_or_default(),
            ))),
        }
    }
}
