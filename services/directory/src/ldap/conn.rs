//! Reaching the directory (D5): name resolution, TCP, LDAPS / StartTLS /
//! plain, certificate verification, the bind; each failure mapped to the
//! specific [`ReadError`] a "Test connection" has to show.
//!
//! The TCP connection is made here rather than inside ldap3, so that an
//! unknown host, a refused port and a silent one are told apart; the socket
//! is then handed to ldap3 (`LdapConnSettings::set_std_stream`), which does
//! StartTLS and the TLS handshake with the rustls configuration built here
//! (ring provider only).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, StdStream};
use roster_domain::snapshot::ReadError;
use roster_events::{LdapSettings, TlsSettings};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Security {
    Ldaps,
    StartTls,
    Plain,
}

impl Security {
    pub(crate) fn of(s: &LdapSettings) -> Security {
        if s.ssl {
            Security::Ldaps
        } else if s.starttls {
            Security::StartTls
        } else {
            Security::Plain
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Security::Ldaps => "LDAPS",
            Security::StartTls => "StartTLS",
            Security::Plain => "plain LDAP (no TLS)",
        }
    }
}

/// A connected, bound LDAP session.
pub(crate) struct Session {
    pub ldap: Ldap,
    /// `ldaps://host:port` and so on, for messages.
    pub endpoint: String,
    pub security: Security,
}

/// The operating system's trust store, loaded once per process.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "a system trust store entry could not be loaded");
        }
        let (added, ignored) = store.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system trust store loaded");
        store
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration for `tls`: the system roots plus the custom CA,
/// or (only when `verify` is explicitly off) no verification at all.
pub(crate) fn client_config(tls: &TlsSettings) -> Result<Arc<ClientConfig>, ReadError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ReadError::Tls(format!("TLS protocol versions: {e}")))?;
    if !tls.verify {
        return Ok(Arc::new(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth(),
        ));
    }
    let mut roots = system_roots().clone();
    if let Some(pem) = tls.ca_pem.as_deref().filter(|p| !p.trim().is_empty()) {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| {
                ReadError::Settings(format!("the custom CA (PEM) is unreadable: {e}"))
            })?;
            roots.add(cert).map_err(|e| {
                ReadError::Settings(format!("the custom CA certificate is not usable: {e}"))
            })?;
            n += 1;
        }
        if n == 0 {
            return Err(ReadError::Settings(
                "the custom CA (PEM) holds no certificate (expected -----BEGIN CERTIFICATE-----)"
                    .into(),
            ));
        }
    }
    Ok(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

/// Checks a custom CA (D5): PEM holding at least one certificate, each one
/// a certificate a trust store accepts. Returns how many it holds.
pub fn check_ca_pem(pem: &str) -> Result<usize, String> {
    let mut roots = RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("the PEM is unreadable: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("certificate {} is not usable: {e}", n + 1))?;
        n += 1;
    }
    if n == 0 {
        return Err("it holds no certificate (expected -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(n)
}

/// Accepts any certificate (verification explicitly turned off) but still
/// checks the handshake signatures, so the session keys belong to whoever
/// holds the presented certificate's key.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Removes the password from a server's message, should one ever echo it.
pub(crate) fn scrub(text: &str, password: &str) -> String {
    if password.len() >= 3 && text.contains(password) {
        text.replace(password, "***")
    } else {
        text.to_string()
    }
}

/// Resolves, connects, secures and binds. Every step has `timeout`.
pub(crate) async fn open(
    s: &LdapSettings,
    password: &str,
    timeout: Duration,
    outbound: &crate::outbound::OutboundPolicy,
) -> Result<Session, ReadError> {
    let host = s.host.trim();
    if host.is_empty() {
        return Err(ReadError::Settings("the host is empty".into()));
    }
    if s.port == 0 {
        return Err(ReadError::Settings("the port is 0".into()));
    }
    let security = Security::of(s);
    let tls_config = match security {
        Security::Plain => None,
        _ => Some(client_config(&s.tls)?),
    };
    let port = s.port;
    let url_host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let scheme = if security == Security::Ldaps {
        "ldaps"
    } else {
        "ldap"
    };
    let endpoint = format!("{scheme}://{url_host}:{port}");

    let stream = tcp_connect(host, port, timeout, outbound).await?;
    let stream = stream
        .into_std()
        .map_err(|e| ReadError::Other(format!("{endpoint}: preparing the socket: {e}")))?;

    let mut conn_settings = LdapConnSettings::new()
        .set_conn_timeout(timeout)
        .set_std_stream(StdStream::Tcp(stream));
    if let Some(config) = tls_config {
        conn_settings = conn_settings
            .set_config(config)
            .set_starttls(security == Security::StartTls)
            .set_no_tls_verify(!s.tls.verify);
    }
    let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &endpoint)
        .await
        .map_err(|e| connect_error(e, security, host, port, timeout))?;
    let drive_endpoint = endpoint.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!(endpoint = %drive_endpoint, error = %e, "LDAP connection ended with an error");
        }
    });

    let user = s.bind_user.trim();
    if user.is_empty() && password.is_empty() {
        // No bind: an anonymous session, for directories that allow it.
        tracing::debug!(%endpoint, "no bind user: reading anonymously");
    } else {
        if password.is_empty() {
            return Err(ReadError::BindRejected(format!(
                "no password for {user}: a simple bind without a password is an unauthenticated (anonymous) bind, refused here"
            )));
        }
        let res = ldap
            .with_timeout(timeout)
            .simple_bind(user, password)
            .await
            .map_err(|e| match e {
                LdapError::Timeout { .. } => ReadError::Timeout(format!(
                    "{endpoint} did not answer the bind within {}s",
                    timeout.as_secs()
                )),
                other => ReadError::Other(format!(
                    "{endpoint}: the connection failed during the bind: {}",
                    scrub(&other.to_string(), password)
                )),
            })?;
        if res.rc != 0 {
            return Err(bind_error(
                res.rc,
                &scrub(&res.text, password),
                user,
                security,
            ));
        }
    }
    Ok(Session {
        ldap,
        endpoint,
        security,
    })
}

async fn tcp_connect(
    host: &str,
    port: u16,
    timeout: Duration,
    outbound: &crate::outbound::OutboundPolicy,
) -> Result<tokio::net::TcpStream, ReadError> {
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
            Err(_) => {
                return Err(ReadError::NameResolution(format!(
                    "{host}: no answer from the name service within {}s",
                    timeout.as_secs()
                )))
            }
            Ok(Err(e)) => return Err(ReadError::NameResolution(format!("{host}: {e}"))),
            Ok(Ok(a)) => a.collect(),
        };
    if addrs.is_empty() {
        return Err(ReadError::NameResolution(format!(
            "{host}: the name has no address"
        )));
    }
    // Only the addresses the operator lets Roster reach (issue 10).
    let addrs = outbound.filter("host", addrs)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<ReadError> = None;
    for addr in &addrs {
        match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => {
                use std::io::ErrorKind::*;
                last = Some(match e.kind() {
                    ConnectionRefused => ReadError::Refused(format!(
                        "{host}:{port} ({addr}) refused the connection: nothing listens on that port (check the port, and SSL 636 / plain 389)"
                    )),
                    TimedOut => ReadError::Timeout(format!(
                        "connecting to {host}:{port} ({addr}) timed out"
                    )),
                    _ => ReadError::Refused(format!(
                        "{host}:{port} ({addr}) cannot be reached: {e}"
                    )),
                });
            }
            Err(_) => {
                return Err(ReadError::Timeout(format!(
                    "{host}:{port} did not accept the connection within {}s (a firewall dropping packets?)",
                    timeout.as_secs()
                )))
            }
        }
    }
    Err(last
        .unwrap_or_else(|| ReadError::Refused(format!("{host}:{port}: no address to connect to"))))
}

/// The error of LDAPS / StartTLS / TLS set-up (the TCP connection is up).
fn connect_error(
    e: LdapError,
    security: Security,
    host: &str,
    port: u16,
    timeout: Duration,
) -> ReadError {
    let wrong_port_hint = match security {
        Security::Ldaps => format!(
            " (is {port} an LDAPS port? LDAPS is usually 636; on 389 use StartTLS or plain)"
        ),
        Security::StartTls => String::new(),
        Security::Plain => String::new(),
    };
    match e {
        LdapError::Timeout { .. } => ReadError::Timeout(match security {
            Security::Plain => format!("{host}:{port} did not answer within {}s", timeout.as_secs()),
            _ => format!(
                "{host}:{port} accepted the connection but did not complete the {} handshake within {}s{wrong_port_hint}",
                security.as_str(),
                timeout.as_secs()
            ),
        }),
        LdapError::Rustls { source } => ReadError::Tls(tls_reason(&source, host)),
        LdapError::DNSName { source } => ReadError::Tls(format!(
            "{host:?} cannot be checked against a certificate: {source}"
        )),
        LdapError::Io { source } => {
            let rustls_error = source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            match rustls_error {
                Some(r) => ReadError::Tls(tls_reason(r, host)),
                None if security == Security::Plain => {
                    ReadError::Other(format!("{host}:{port}: {source}"))
                }
                None => ReadError::Tls(format!(
                    "the {} handshake with {host}:{port} failed: {source}{wrong_port_hint}",
                    security.as_str()
                )),
            }
        }
        LdapError::LdapResult { result } if security == Security::StartTls => {
            ReadError::Tls(format!(
                "{host}:{port} refused StartTLS (result {}: {}); use LDAPS or check the server's TLS set-up",
                result.rc,
                result.text.trim()
            ))
        }
        other if security == Security::StartTls => ReadError::Tls(format!(
            "StartTLS with {host}:{port} failed: {other}"
        )),
        other => ReadError::Other(format!("{host}:{port}: {other}")),
    }
}

/// A readable reason for a rustls failure.
fn tls_reason(e: &rustls::Error, host: &str) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "the server's certificate is not issued by a trusted certificate authority: add your CA certificate (PEM) to the TLS settings".to_string(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                "the server's certificate is not valid for {host:?} (host name / IP mismatch): connect with a name the certificate lists"
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check the clocks)".to_string()
            }
            CertificateError::Revoked => "the server's certificate has been revoked".to_string(),
            CertificateError::BadSignature => "the server's certificate has a bad signature".to_string(),
            other => format!("the server's certificate was refused: {other:?}"),
        },
        rustls::Error::AlertReceived(a) => format!("the server aborted the TLS handshake (alert {a:?})"),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
            "the server does not speak TLS as expected ({e}): is this an LDAPS port, or should StartTLS be used?"
        ),
        other => format!("TLS handshake failed: {other}"),
    }
}

/// A bind answered with result code `rc`.
fn bind_error(rc: u32, text: &str, user: &str, security: Security) -> ReadError {
    let text = text.trim();
    match rc {
        49 => {
            let reason = ad_bind_reason(text).unwrap_or("invalid credentials (unknown user or wrong password)");
            ReadError::BindRejected(format!("{user}: {reason}"))
        }
        8 | 13 => ReadError::BindRejected(format!(
            "the directory refuses a simple bind over {}: turn on SSL (LDAPS) or StartTLS ({text})",
            security.as_str()
        )),
        34 => ReadError::BindRejected(format!(
            "{user:?} is not a valid bind name: use a DN (cn=reader,dc=example,dc=com) or user@domain ({text})"
        )),
        50 => ReadError::Permission(format!("{user} may not bind: {text}")),
        53 => ReadError::BindRejected(format!("the directory is unwilling to accept the bind of {user}: {text}")),
        _ => ReadError::BindRejected(format!("{user}: result {rc}: {text}")),
    }
}

/// Active Directory explains a failed bind in the `data` part of its
/// message (`80090308: LdapErr: DSID-0C09041C, comment:
/// AcceptSecurityContext error, data 52e, v4563`).
pub(crate) fn ad_bind_reason(text: &str) -> Option<&'static str> {
    let i = text.find("data ")?;
    let code: String = text[i + 5..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    Some(match code.to_ascii_lowercase().as_str() {
        "525" => "no such user (AD 525)",
        "52e" => "wrong password, or no such user (AD 52e: invalid credentials)",
        "530" => "the account may not log on at this time (AD 530)",
        "531" => "the account may not log on from this workstation (AD 531)",
        "532" => "the account's password has expired (AD 532)",
        "533" => "the account is disabled (AD 533)",
        "568" => "the account has too many security ids (AD 568)",
        "701" => "the account has expired (AD 701)",
        "773" => "the account's password must be changed before it can bind (AD 773)",
        "775" => "the account is locked out (AD 775)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d5_ad_bind_data_codes_are_readable() {
        let text = "80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 52e, v4563";
        assert!(ad_bind_reason(text).unwrap().contains("wrong password"));
        assert!(ad_bind_reason("..., data 775, v3839")
            .unwrap()
            .contains("locked"));
        assert!(ad_bind_reason("..., data 533, v3839")
            .unwrap()
            .contains("disabled"));
        assert_eq!(ad_bind_reason("invalid credentials"), None);
        let e = bind_error(49, text, "reader@corp.example.com", Security::Ldaps);
        assert!(
            matches!(e, ReadError::BindRejected(ref m) if m.contains("52e") && m.contains("reader@"))
        );
    }

    #[test]
    fn d7_password_is_scrubbed_from_server_text() {
        assert_eq!(scrub("bad pw S3cret! here", "S3cret!"), "bad pw *** here");
        assert_eq!(scrub("nothing", "S3cret!"), "nothing");
    }

    #[test]
    fn d5_custom_ca_pem_must_hold_a_certificate() {
        let tls = TlsSettings {
            verify: true,
            ca_pem: Some("not a pem".into()),
        };
        assert!(matches!(client_config(&tls), Err(ReadError::Settings(_))));
        let off = TlsSettings {
            verify: false,
            ca_pem: None,
        };
        assert!(client_config(&off).is_ok());
    }
}
