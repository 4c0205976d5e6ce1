//! Which reader reads which directory: a capability, so the service does not
//! know the protocols.

use std::sync::Arc;

use roster_directory::OutboundPolicy;
use roster_domain::snapshot::{DirectoryReader, ReadError};
use roster_events::Connection;
use roster_store::Secret;

/// What a read tells as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadNews {
    /// This many more objects received (issue 15: Sync Now's live progress
    /// while the directory is being read).
    Entries(u64),
    /// A delta read (B1) has applied what it found, before it builds the
    /// snapshot: this many objects differ from the previous read (0: the
    /// read is the previous one; issue 17).
    DeltaApplied(usize),
}

/// Told what a read receives ([`ReadNews`]).
pub type EntriesHook = Arc<dyn Fn(ReadNews) + Send + Sync>;

pub trait ReaderFactory: Send + Sync {
    /// A reader for these settings and secret.
    fn reader(
        &self,
        connection: &Connection,
        secret: Option<&Secret>,
    ) -> Result<Box<dyn DirectoryReader>, ReadError>;

    /// A reader that also reports the objects it receives as it reads, when
    /// its protocol can (LDAP: page by page); by default a plain
    /// [`ReaderFactory::reader`] that reports nothing.
    fn reader_watched(
        &self,
        connection: &Connection,
        secret: Option<&Secret>,
        on_entries: EntriesHook,
    ) -> Result<Box<dyn DirectoryReader>, ReadError> {
        let _ = on_entries;
        self.reader(connection, secret)
    }
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

impl DefaultReaders {
    fn build(
        &self,
        connection: &Connection,
        secret: Option<&Secret>,
        on_entries: Option<EntriesHook>,
    ) -> Result<Box<dyn DirectoryReader>, ReadError> {
        match connection {
            Connection::Ldap(settings) => Ok(Box::new(roster_directory::LdapReader::with_options(
                settings.clone(),
                secret.map(|s| s.expose().to_string()).unwrap_or_default(),
                roster_directory::ReaderOptions {
                    outbound: self.outbound.clone(),
                    on_page: on_entries.clone().map(|f| -> roster_directory::PageHook {
                        Arc::new(move |e: &roster_directory::PageEvent| {
                            use roster_directory::SearchKind as K;
                            if matches!(e.search, K::Users | K::Groups | K::PublicFolders) {
                                f(ReadNews::Entries(e.entries))
                            }
                        })
                    }),
                    on_delta: on_entries.map(|f| -> roster_directory::DeltaHook {
                        Arc::new(move |n| f(ReadNews::DeltaApplied(n)))
                    }),
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

impl ReaderFactory for DefaultReaders {
    fn reader(
        &self,
        connection: &Connection,
        secret: Option<&Secret>,
    ) -> Result<Box<dyn DirectoryReader>, ReadError> {
        self.build(connection, secret, None)
    }

    fn reader_watched(
        &self,
        connection: &Connection,
        secret: Option<&Secret>,
        on_entries: EntriesHook,
    ) -> Result<Box<dyn DirectoryReader>, ReadError> {
        self.build(connection, secret, Some(on_entries))
    }
}
