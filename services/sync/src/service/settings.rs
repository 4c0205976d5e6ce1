//! Directory settings (D5, D6, D7): save, enable, disable, where a
//! connection may go, and the secret bound to its connection fields.

use super::*;

impl SyncService {
    /// Validates and saves a directory's settings; the secret is sealed
    /// apart from the log (D7).
    pub async fn save_settings(
        &self,
        meta: &EventMeta,
        config: DirectoryConfig,
        change: SettingsChange,
    ) -> Result<Appended, SyncError> {
        validate(&config)?;
        self.check_outbound(&config.connection).await?;
        let kind = config.connection.kind();
        let current = self.directory(meta.customer_id).await?;
        if change.secret.is_none() && !current.secret_set.contains(&kind) {
            return Err(SyncError::Invalid(match kind {
                DirectoryKind::Ldap => {
                    "a bind password is required the first time LDAP settings are saved".into()
                }
                DirectoryKind::Entra => {
                    "a client secret is required the first time Entra ID settings are saved".into()
                }
            }));
        }
        match &change.secret {
            None => require_same_target(&current, &config.connection)?,
            Some(secret) => {
                if secret.expose().is_empty() {
                    return Err(SyncError::Invalid(
                        "the password / secret must not be empty".into(),
                    ));
                }
                self.store
                    .db()
                    .put_secret(
                        &self.key,
                        meta.customer_id,
                        kind.as_str(),
                        &secret_target(&config.connection),
                        secret,
                        self.clock.now(),
                    )
                    .await?;
            }
        }
        let mut commands = vec![DirectoryCommand::Configure {
            config,
            secret_changed: change.secret.is_some(),
        }];
        match change.enable {
            Some(true) => commands.push(DirectoryCommand::Enable {
                kind,
                confirm_switch: change.confirm_switch,
            }),
            Some(false) if current.enabled == Some(kind) => {
                commands.push(DirectoryCommand::Disable)
            }
            _ => {}
        }
        self.directory_commands(meta, &commands).await
    }

    pub async fn enable(
        &self,
        meta: &EventMeta,
        kind: DirectoryKind,
        confirm_switch: bool,
    ) -> Result<Appended, SyncError> {
        self.directory_commands(
            meta,
            &[DirectoryCommand::Enable {
                kind,
                confirm_switch,
            }],
        )
        .await
    }

    /// D3.q: disabling keeps every user; flags still expire; no new flags.
    pub async fn disable(&self, meta: &EventMeta) -> Result<Appended, SyncError> {
        self.directory_commands(meta, &[DirectoryCommand::Disable])
            .await
    }

    /// Issue 10: the connection goes only where the operator allows: the
    /// endpoints' scheme and hosts, and every address a host name resolves
    /// to now (the readers check the addresses again when they connect).
    pub async fn check_outbound(&self, connection: &Connection) -> Result<(), SyncError> {
        let p = &*self.outbound;
        let bad = SyncError::Invalid;
        match connection {
            Connection::Ldap(s) => {
                p.check_host_literal("host", &s.host).map_err(bad)?;
                p.check_resolved("host", &s.host, s.port)
                    .await
                    .map_err(bad)?;
            }
            Connection::Entra(s) => {
                roster_directory::check_entra_outbound(s, p).map_err(bad)?;
                for (field, url) in [
                    (
                        "login_endpoint",
                        s.login_endpoint
                            .as_deref()
                            .unwrap_or(roster_directory::entra::DEFAULT_LOGIN_ENDPOINT),
                    ),
                    (
                        "graph_endpoint",
                        s.graph_endpoint
                            .as_deref()
                            .unwrap_or(roster_directory::entra::DEFAULT_GRAPH_ENDPOINT),
                    ),
                ] {
                    // Microsoft's own hosts are not looked up here.
                    if let Some((host, port)) =
                        roster_directory::outbound::url_host_port(url.trim())
                            .filter(|(h, _)| !roster_directory::outbound::is_microsoft_host(h))
                    {
                        p.check_resolved(field, &host, port).await.map_err(bad)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The stored secret, released only for the connection it was entered
    /// for (D7).
    pub(super) async fn secret_for(
        &self,
        customer: CustomerId,
        connection: &Connection,
    ) -> Result<Option<Secret>, SyncError> {
        Ok(self
            .store
            .db()
            .get_secret(
                &self.key,
                customer,
                connection.kind().as_str(),
                &secret_target(connection),
            )
            .await?)
    }
}

/// D5: settings that cannot work are refused when saved, with what to fix.
pub fn validate(config: &DirectoryConfig) -> Result<(), SyncError> {
    let bad = |m: &str| Err(SyncError::Invalid(m.to_string()));
    match &config.connection {
        Connection::Ldap(s) => {
            if s.host.trim().is_empty() {
                return bad("host is required: the LDAP server's name or IP address");
            }
            if s.host.contains('/') || s.host.contains(' ') {
                return bad("host must be a name or an IP address, without ldap:// or a path");
            }
            if s.port == 0 {
                return bad("port must be between 1 and 65535");
            }
            if s.ssl && s.starttls {
                return bad("ssl and starttls: choose SSL (LDAPS) or StartTLS, not both");
            }
            if s.base_dn.trim().is_empty() {
                return bad("base_dn is required, e.g. ou=Staff,dc=example,dc=com");
            }
            roster_directory::validate_dn(s.base_dn.trim()).map_err(|e| {
                SyncError::Invalid(format!(
                    "base_dn is not a valid DN (RFC 4514): {e}; e.g. ou=Staff,dc=example,dc=com"
                ))
            })?;
            if s.timeout_secs == 0 || s.timeout_secs > 600 {
                return bad("timeout_secs must be between 1 and 600 seconds");
            }
            if s.full_sync_hours.is_some_and(|h| h > 720) {
                return bad(
                    "full_sync_hours must be between 0 (every run reads everything) and 720 (30 days)",
                );
            }
            if let Some(f) = s.filter.as_deref().filter(|f| !f.trim().is_empty()) {
                roster_directory::validate_filter(f).map_err(|e| {
                    SyncError::InvalidFilter(format!(
                        "filter: the custom filter is not a valid LDAP filter (RFC 4515): {e}"
                    ))
                })?;
            }
            // The preset, the attribute map and every filter combined must make sense.
            roster_directory::LdapReader::new(s.clone(), String::new())
                .mapping()
                .map_err(|e| match e {
                    ReadError::InvalidFilter(m) => SyncError::InvalidFilter(format!(
                        "attributes: not a valid LDAP filter (RFC 4515): {m}"
                    )),
                    other => SyncError::Invalid(format!(
                        "attributes: the attribute mapping is not usable: {other}"
                    )),
                })?;
            if let Some(pem) = &s.tls.ca_pem {
                roster_directory::check_ca_pem(pem).map_err(|e| {
                    SyncError::Invalid(format!("ca_pem: the CA certificate is not usable: {e}"))
                })?;
            }
            Ok(())
        }
        // D6: tenant (id or domain), client id (GUID), filter, endpoints.
        Connection::Entra(s) => roster_directory::validate_entra_settings(s)
            .map_err(|e| SyncError::Invalid(format!("Entra ID settings: {e}"))),
    }
}

/// The connection fields a directory secret is bound to (D7), by name:
/// where it is sent and as whom. Entra endpoints left out are the defaults.
fn connection_fields(c: &Connection) -> Vec<(&'static str, String)> {
    match c {
        Connection::Ldap(s) => vec![
            ("host", s.host.clone()),
            ("port", s.port.to_string()),
            ("ssl", s.ssl.to_string()),
            ("starttls", s.starttls.to_string()),
            ("verify_tls", s.tls.verify.to_string()),
            ("ca_pem", s.tls.ca_pem.clone().unwrap_or_default()),
            ("bind_user", s.bind_user.clone()),
        ],
        Connection::Entra(s) => vec![
            ("tenant", s.tenant.clone()),
            ("client_id", s.client_id.clone()),
            (
                "login_endpoint",
                s.login_endpoint
                    .clone()
                    .unwrap_or_else(|| roster_directory::entra::DEFAULT_LOGIN_ENDPOINT.into()),
            ),
            (
                "graph_endpoint",
                s.graph_endpoint
                    .clone()
                    .unwrap_or_else(|| roster_directory::entra::DEFAULT_GRAPH_ENDPOINT.into()),
            ),
        ],
    }
}

/// The digest a stored secret is bound to (D7): every connection field.
pub fn secret_target(c: &Connection) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(c.kind().as_str().as_bytes());
    for (name, value) in connection_fields(c) {
        h.update([0u8]);
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update(value.as_bytes());
    }
    format!("v1:{}", hex::encode(h.finalize()))
}

/// The first connection field that differs between two settings.
pub fn changed_connection_field(old: &Connection, new: &Connection) -> Option<&'static str> {
    connection_fields(old)
        .into_iter()
        .zip(connection_fields(new))
        .find(|(a, b)| a != b)
        .map(|(a, _)| a.0)
}

/// D7: without a new secret, the connection must be the one the stored
/// secret was entered for; otherwise the secret must be given again.
pub(super) fn require_same_target(dir: &Directory, new: &Connection) -> Result<(), SyncError> {
    let (what, verb) = match new.kind() {
        DirectoryKind::Ldap => ("password", "bind password"),
        DirectoryKind::Entra => ("client_secret", "client secret"),
    };
    let Some(old) = dir.configs.get(&new.kind()) else {
        return Ok(());
    };
    match changed_connection_field(&old.connection, new) {
        None => Ok(()),
        Some(field) => Err(SyncError::SecretRequired(format!(
            "{field} differs from the saved settings: the stored {verb} is sent only to the connection it was entered for, so give {what} again with the new {field}"
        ))),
    }
}
