//! Test Connection: the given or the stored settings, recorded in the audit
//! trail.

use super::settings::require_same_target;
use super::*;

impl SyncService {
    /// Test connection: the given settings (before saving them) or the
    /// stored ones. A secret left out is taken from the store only when
    /// every connection field is as saved (D7); otherwise the test is
    /// refused with [`SyncError::SecretRequired`] and connects nowhere.
    /// Every test made is recorded in the audit trail.
    pub async fn test(
        &self,
        meta: &EventMeta,
        candidate: Option<(DirectoryConfig, Option<Secret>)>,
    ) -> Result<TestOutcome, SyncError> {
        let customer = meta.customer_id;
        let saved = candidate.is_none();
        let (connection, secret, secret_given) = match candidate {
            Some((config, secret)) => {
                match validate(&config) {
                    // Test Connection answers a bad filter like a server
                    // would (docs/directory-sync.md).
                    Err(SyncError::InvalidFilter(message)) => {
                        return Ok(TestOutcome {
                            ok: false,
                            code: Some(crate::codes::INVALID_FILTER.to_string()),
                            message,
                            users: None,
                            groups: None,
                            // Refused before connecting anywhere: nothing
                            // was tested, nothing is recorded.
                            position: 0,
                        });
                    }
                    other => other?,
                }
                self.check_outbound(&config.connection).await?;
                match secret {
                    Some(s) => (config.connection, Some(s), true),
                    None => {
                        let dir = self.directory(customer).await?;
                        require_same_target(&dir, &config.connection)?;
                        let secret = self.secret_for(customer, &config.connection).await?;
                        (config.connection, secret, false)
                    }
                }
            }
            None => {
                let dir = self.directory(customer).await?;
                let kind = dir
                    .enabled
                    .or_else(|| dir.configs.keys().next().copied())
                    .ok_or_else(|| {
                        SyncError::Invalid(
                            "no directory is configured: send settings to test, or save them first"
                                .into(),
                        )
                    })?;
                let config = dir
                    .configs
                    .get(&kind)
                    .cloned()
                    .ok_or(DirectoryError::NotConfigured(kind))?;
                self.check_outbound(&config.connection).await?;
                let secret = self.secret_for(customer, &config.connection).await?;
                (config.connection, secret, false)
            }
        };
        let outcome = match self.readers.reader(&connection, secret.as_ref()) {
            Err(e) => Err(e),
            Ok(reader) => reader.test().await,
        };
        let mut outcome = match outcome {
            Ok(r) => TestOutcome {
                ok: true,
                code: None,
                message: match connection.kind() {
                    DirectoryKind::Ldap => format!("LDAP connection test passed: {}", r.details),
                    DirectoryKind::Entra => "Azure connection test passed".to_string(),
                },
                users: Some(r.users),
                groups: Some(r.groups),
                position: 0,
            },
            Err(e) => {
                // The detail can quote the server's own answer: it goes to
                // the operator's log, the caller gets the code and our text.
                tracing::info!(customer = %customer, code = e.code(), error = %e, "test connection failed");
                TestOutcome {
                    ok: false,
                    code: Some(e.code().to_string()),
                    message: test_failure_message(&e).to_string(),
                    users: None,
                    groups: None,
                    position: 0,
                }
            }
        };
        let appended = self
            .directory_commands(
                meta,
                &[DirectoryCommand::RecordTest(DirectoryTested {
                    kind: connection.kind(),
                    saved,
                    secret_given,
                    target: target_description(&connection),
                    ok: outcome.ok,
                    code: outcome.code.clone(),
                })],
            )
            .await?;
        outcome.position = appended.last;
        Ok(outcome)
    }
}

/// Where a connection goes, for the audit trail (never a secret).
fn target_description(c: &Connection) -> String {
    match c {
        Connection::Ldap(s) => {
            let scheme = if s.ssl { "ldaps" } else { "ldap" };
            let host = s.host.trim();
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            let starttls = if !s.ssl && s.starttls {
                " (StartTLS)"
            } else {
                ""
            };
            format!(
                "{scheme}://{host}:{}{starttls} as {}",
                s.port,
                s.bind_user.trim()
            )
        }
        Connection::Entra(s) => format!(
            "tenant {} client {} at {}",
            s.tenant.trim(),
            s.client_id.trim(),
            s.login_endpoint
                .as_deref()
                .unwrap_or(roster_directory::entra::DEFAULT_LOGIN_ENDPOINT)
                .trim()
        ),
    }
}

/// What a failed test tells the caller: Roster's own words for the code,
/// never the other server's answer (a test must not read out a server that
/// the settings point at).
fn test_failure_message(e: &ReadError) -> &'static str {
    match e {
        ReadError::NameResolution(_) => "the host name could not be resolved: check the host (DNS)",
        ReadError::Refused(_) => "the connection was refused: check the port, the firewall and whether the server listens (636 for LDAPS)",
        ReadError::Timeout(_) => "the server did not answer in time: check the network path, or raise timeout_secs",
        ReadError::Tls(_) => "the TLS connection failed: check the certificate (its issuer, given as ca_pem for a private CA; its host name; its dates) and SSL / StartTLS against the port",
        ReadError::BindRejected(_) => "the server refused the credentials: check the bind user and the password",
        ReadError::BaseDnNotFound(_) => "the base DN was not found: check it for typos, and that the bind user can see it",
        ReadError::Permission(_) => "the account may not read the directory: grant the permissions the documentation lists",
        ReadError::InvalidFilter(_) => "the directory rejected the filter: check the custom filter",
        ReadError::Throttled(_) => "the directory is throttling or unavailable: try again later",
        ReadError::Incomplete(_) => "the directory's answer was cut off or not understood",
        ReadError::Settings(_) => "the settings cannot be used: check them",
        ReadError::TenantNotFound(_) => "the tenant was not found: check the directory (tenant) id or the verified domain",
        ReadError::ClientIdNotFound(_) => "the application was not found: check the application (client) id and that it is registered in this tenant",
        ReadError::SecretRejected(_) => "the client secret was rejected: use the secret's value (not its id), and check that it was not removed",
        ReadError::SecretExpired(_) => "the client secret has expired: create a new one in the app registration and save it here",
        ReadError::Other(_) => "the connection test failed",
    }
}
