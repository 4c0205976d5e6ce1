//! Which reader reads which directory: a capability, so the service does not
//! know the protocols.

use std::sync::Arc;

use roster_directory::OutboundPolicy;
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

/// The production readers: LDAP / Active Directory and Microsoft Entra ID,
/// connecting only where the operator's outbound policy allows.
#[derive(Debug, Clone, Default)]
pub struct DefaultReaders {
    pub outbound: Arc<OutboundPolicy>,
}

impl DefaultReaders {
    pub fn new(outbound: Arc<OutboundPolicy>) -> Self {
        DefaultReaders { outbound }
    }
}

impl ReaderFactory for DefaultReaders {
    fn reader(
        &self,
        connection: &Connection,
        secret: Option<&Secret>,
    ) -> Result<Box<dyn DirectoryReader>, ReadError> {
        match connection {
            Connection::Ldap(settings) => Ok(Box::new(roster_directory::LdapReader::with_options(
                settings.clone(),
                secret.map(|s| s.expose().to_string()).unwrap_or_default(),
                roster_directory::ReaderOptions {
                    outbound: self.outbound.clone(),
                    ..Default::default()
                },
            ))),
            Connection::Entra(settings) => {
                Ok(Box::new(roster_directory::EntraReader::with_options(
                    settings.clone(),
                    secret.map(|s| s.expose().to_string()).unwrap_or_default(),
                    roster_directory::EntraOptions {
                        outbound: self.outbound.clone(),
                        ..Default::default()
                    },
                )))
            }
        }
    }
}
