//! Throwaway certificate authorities and server certificates, and rustls
//! client configurations that trust exactly one of them.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::error::{Error, Result};

fn tls_err(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |e| Error::Tls(format!("{what}: {e}"))
}

/// A certificate authority made for one test server. Its key lives only in
/// memory; nothing trusts it but the clients a test configures with
/// [`TestCa::cert_pem`].
pub struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A server certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct ServerCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl TestCa {
    /// A new CA (ECDSA P-256) named `common_name`.
    pub fn new(common_name: &str) -> Result<TestCa> {
        let key = KeyPair::generate().map_err(tls_err("generating a CA key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "roster-testkit");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        let cert = params
            .self_signed(&key)
            .map_err(tls_err("self-signing the CA"))?;
        Ok(TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for the given IP addresses and DNS names (all in
    /// its subject alternative names; the first DNS name, or the first IP,
    /// is also its common name).
    pub fn server_cert(&self, ips: &[IpAddr], dns_names: &[&str]) -> Result<ServerCert> {
        let key = KeyPair::generate().map_err(tls_err("generating a server key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let cn = dns_names
            .first()
            .map(|s| s.to_string())
            .or_else(|| ips.first().map(|ip| ip.to_string()))
            .unwrap_or_else(|| "test server".to_string());
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        for name in dns_names {
            let ia5 = (*name)
                .to_string()
                .try_into()
                .map_err(tls_err("a DNS name for the certificate"))?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(tls_err("signing the server certificate"))?;
        Ok(ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A rustls client configuration that trusts this CA only.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        client_config(&self.cert_pem)
    }
}

/// A rustls client configuration (ring provider, TLS 1.2 and 1.3) that
/// trusts exactly the CA certificates in `ca_pem` and verifies server names
/// and IP addresses against the certificate's alternative names.
pub fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| Error::Tls(format!("reading a CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("adding a CA certificate: {e}")))?;
        n += 1;
    }
    if n == 0 {
        return Err(Error::Tls("no certificate in the CA PEM".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
