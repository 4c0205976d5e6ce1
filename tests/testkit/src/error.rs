//! The harness's one error type.

use std::time::Duration;

/// What can go wrong while starting, loading or stopping a test server.
///
/// Every message says what to do where there is something to do (for a
/// missing program: run `deploy/test-deps.sh`), and startup failures carry
/// the tail of the server's own log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program the harness needs is not installed.
    #[error("{program} not found: {hint}")]
    NotInstalled {
        /// The program looked for, e.g. `slapd`.
        program: String,
        /// What to run or set to get it.
        hint: String,
    },
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A helper command (slapadd, samba-tool, ip, ...) exited with an error.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line, shortened.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its standard error and output.
        output: String,
    },
    /// A server did not accept connections in time.
    #[error("{server} did not become ready within {waited:?}; the end of its log {log}:\n{tail}")]
    NotReady {
        /// Which server.
        server: String,
        /// How long the harness waited.
        waited: Duration,
        /// The log file.
        log: String,
        /// The end of the log.
        tail: String,
    },
    /// A server exited while the harness waited for it.
    #[error("{server} exited during startup ({status}); the end of its log {log}:\n{tail}")]
    Exited {
        /// Which server.
        server: String,
        /// Its exit status.
        status: String,
        /// The log file.
        log: String,
        /// The end of the log.
        tail: String,
    },
    /// PostgreSQL refused a connection or a statement.
    #[error("PostgreSQL ({context}): {source}")]
    Postgres {
        /// What the harness was doing, with the server's address.
        context: String,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// An LDAP operation failed (connection, bind, or a non-success result).
    #[error("LDAP {operation}: {source}")]
    Ldap {
        /// The operation, with its DN where there is one.
        operation: String,
        /// The underlying error (boxed: ldap3's error is large).
        #[source]
        source: Box<ldap3::LdapError>,
    },
    /// Generating certificates or building a TLS configuration failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// A caller asked for something the harness cannot do.
    #[error("{0}")]
    Invalid(String),
}

/// `Result` with the harness's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn ldap(operation: impl Into<String>, source: ldap3::LdapError) -> Self {
        Error::Ldap {
            operation: operation.into(),
            source: Box::new(source),
        }
    }
}
