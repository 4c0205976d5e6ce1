//! Where directory connections may go: an operator's decision, not a
//! customer's (issue 10). A customer administrator names the LDAP host and
//! the Entra ID endpoints; without the operator's allowance Roster refuses
//! plain http, loopback, private, link-local and cloud-metadata addresses
//! (169.254.169.254, fd00:ec2::254), and Entra endpoints on hosts other
//! than the national clouds' documented ones. Host names are resolved and
//! every address is checked, when settings are saved or tested and again
//! when a connection is made (so a name that changes its answer later is
//! caught too).
//!
//! The operator sets `ROSTER_ALLOW_OUTBOUND`, a comma-separated list of:
//! `http` (plain http for Entra endpoints), `loopback`, `private`,
//! `link-local`, `metadata`, and host names (`graph.example.test`, or
//! `*.example.test` for its subdomains) that Entra endpoints may use besides
//! the national clouds'.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use roster_domain::snapshot::ReadError;

/// The documented identity-platform hosts of Microsoft's clouds (global,
/// US Government, China operated by 21Vianet).
pub const LOGIN_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
];

/// The documented Microsoft Graph hosts of the same clouds (global, US
/// Government L4 and L5 (DoD), China).
pub const GRAPH_HOSTS: &[&str] = &[
    "graph.microsoft.com",
    "graph.microsoft.us",
    "dod-graph.microsoft.us",
    "microsoftgraph.chinacloudapi.cn",
];

/// Whether `host` is one of the documented Microsoft cloud hosts.
pub fn is_microsoft_host(host: &str) -> bool {
    let h = host.to_ascii_lowercase();
    LOGIN_HOSTS.contains(&h.as_str()) || GRAPH_HOSTS.contains(&h.as_str())
}

/// The host (without brackets) and port (or the scheme's default) of a URL.
pub fn url_host_port(url: &str) -> Option<(String, u16)> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?.trim_matches(['[', ']']).to_string();
    Some((host, u.port_or_known_default()?))
}

/// What kind of address a connection would reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Reachable on the internet.
    Public,
    /// This host: 127.0.0.0/8, ::1, 0.0.0.0/8, ::.
    Loopback,
    /// RFC 1918, carrier-grade NAT (100.64/10) and IPv6 unique-local.
    Private,
    /// 169.254/16 and fe80::/10.
    LinkLocal,
    /// Cloud instance metadata services.
    Metadata,
    /// Unspecified, multicast, broadcast or reserved: never a server.
    Unusable,
}

impl AddressClass {
    fn describe(self) -> &'static str {
        match self {
            AddressClass::Public => "a public address",
            AddressClass::Loopback => "a loopback address (this server itself)",
            AddressClass::Private => "a private-network address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::Metadata => "a cloud metadata address",
            AddressClass::Unusable => "not a server's address (unspecified, multicast or reserved)",
        }
    }

    fn allowance(self) -> &'static str {
        match self {
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Metadata => "metadata",
            AddressClass::Public | AddressClass::Unusable => "",
        }
    }
}

/// Classifies an address (IPv4-mapped IPv6 addresses as their IPv4 one).
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        AddressClass::Metadata
    } else if ip.is_loopback() || o[0] == 0 {
        // 0.0.0.0/8 reaches this host on Linux.
        AddressClass::Loopback
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        // RFC 1918 and the shared address space of carrier-grade NAT.
        AddressClass::Private
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        AddressClass::Unusable
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        AddressClass::Metadata
    } else if ip.is_loopback() || ip.is_unspecified() {
        AddressClass::Loopback
    } else if (s[0] & 0xffc0) == 0xfe80 {
        AddressClass::LinkLocal
    } else if (s[0] & 0xfe00) == 0xfc00 {
        AddressClass::Private
    } else if ip.is_multicast() {
        AddressClass::Unusable
    } else {
        AddressClass::Public
    }
}

/// The operator's outbound allowance. The default allows only public
/// addresses and, for Entra ID, https to the national clouds' hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Plain http for Entra ID endpoints.
    pub allow_http: bool,
    /// Loopback addresses.
    pub allow_loopback: bool,
    /// Private-network addresses.
    pub allow_private: bool,
    /// Link-local addresses.
    pub allow_link_local: bool,
    /// Cloud metadata addresses.
    pub allow_metadata: bool,
    /// Hosts Entra endpoints may name besides the national clouds' (exact,
    /// or `*.suffix` for subdomains), lower case.
    pub entra_hosts: Vec<String>,
}

impl OutboundPolicy {
    /// Allows everything: for a reader used outside the service (the
    /// library's own tests and benchmarks). The service always passes the
    /// operator's policy.
    pub fn unrestricted() -> Self {
        OutboundPolicy {
            allow_http: true,
            allow_loopback: true,
            allow_private: true,
            allow_link_local: true,
            allow_metadata: true,
            entra_hosts: vec!["*".into()],
        }
    }

    /// Parses `ROSTER_ALLOW_OUTBOUND` (see the module documentation).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut p = OutboundPolicy::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let lower = item.to_ascii_lowercase();
            match lower.as_str() {
                "http" => p.allow_http = true,
                "loopback" => p.allow_loopback = true,
                "private" => p.allow_private = true,
                "link-local" => p.allow_link_local = true,
                "metadata" => p.allow_metadata = true,
                host => {
                    let bare = host.strip_prefix("*.").unwrap_or(host);
                    let ok = !bare.is_empty()
                        && bare
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
                        && host != "*";
                    if !ok {
                        return Err(format!(
                            "ROSTER_ALLOW_OUTBOUND: '{item}' is not http, loopback, private, link-local, metadata or a host name (example.test, *.example.test)"
                        ));
                    }
                    p.entra_hosts.push(host.to_string());
                }
            }
        }
        Ok(p)
    }

    fn allows_class(&self, class: AddressClass) -> bool {
        match class {
            AddressClass::Public => true,
            AddressClass::Loopback => self.allow_loopback,
            AddressClass::Private => self.allow_private,
            AddressClass::LinkLocal => self.allow_link_local,
            AddressClass::Metadata => self.allow_metadata,
            AddressClass::Unusable => false,
        }
    }

    /// Whether a connection may go to `ip`; the refusal names `field`.
    pub fn check_ip(&self, field: &str, ip: IpAddr) -> Result<(), String> {
        let class = classify(ip);
        if self.allows_class(class) {
            return Ok(());
        }
        let how = match class.allowance() {
            "" => String::new(),
            a => format!(" (an operator can allow it with ROSTER_ALLOW_OUTBOUND={a})"),
        };
        Err(format!(
            "{field} leads to {ip}, {}: this server does not connect there{how}",
            class.describe()
        ))
    }

    fn entra_host_allowed(&self, host: &str) -> bool {
        self.entra_hosts.iter().any(|h| {
            h == "*"
                || h == host
                || h.strip_prefix("*.")
                    .is_some_and(|s| host.len() > s.len() && host.ends_with(&format!(".{s}")))
        })
    }

    /// Checks an Entra ID endpoint URL without resolving it: https (unless
    /// `http` is allowed), a national cloud's host for `hosts` (unless the
    /// operator allows the host), and a literal IP address's class.
    pub fn check_entra_endpoint(
        &self,
        field: &str,
        url: &str,
        hosts: &[&str],
    ) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| format!("{field} must be an absolute URL such as https://...: {e}"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => {
                return Err(format!(
                    "{field} must use https (the client secret and tokens cross it)"
                ))
            }
        }
        let host = match parsed.host_str() {
            None | Some("") => return Err(format!("{field} must name a host")),
            Some(h) => h.trim_matches(['[', ']']).to_ascii_lowercase(),
        };
        if !hosts.contains(&host.as_str()) && !self.entra_host_allowed(&host) {
            return Err(format!(
                "{field} must be on one of Microsoft's documented hosts ({}); {host} is not (an operator can allow other hosts with ROSTER_ALLOW_OUTBOUND)",
                hosts.join(", ")
            ));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check_ip(field, ip)?;
        }
        if host == "localhost" || host.ends_with(".localhost") {
            self.check_ip(field, IpAddr::V4(Ipv4Addr::LOCALHOST))?;
        }
        Ok(())
    }

    /// Checks a host given by name or address without resolving it (the
    /// LDAP host): a literal address's class, and `localhost`.
    pub fn check_host_literal(&self, field: &str, host: &str) -> Result<(), String> {
        let h = host.trim().trim_matches(['[', ']']);
        if let Ok(ip) = h.parse::<IpAddr>() {
            return self.check_ip(field, ip);
        }
        let lower = h.to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return self.check_ip(field, IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        Ok(())
    }

    /// Resolves `host` and checks every address: an error naming `field`
    /// when any address is refused. A name that does not resolve passes (a
    /// test reports that itself; a connection cannot be made).
    pub async fn check_resolved(&self, field: &str, host: &str, port: u16) -> Result<(), String> {
        let h = host.trim().trim_matches(['[', ']']);
        if h.parse::<IpAddr>().is_ok() {
            return self.check_host_literal(field, h);
        }
        let lookup = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::lookup_host((h, port)),
        )
        .await;
        if let Ok(Ok(addrs)) = lookup {
            for a in addrs {
                self.check_ip(field, a.ip())?;
            }
        }
        Ok(())
    }

    /// The allowed addresses among `addrs` (connect time); an error naming
    /// the refused ones when none is left.
    pub fn filter(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, ReadError> {
        let mut refused = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.check_ip(host, a.ip()) {
                Ok(()) => true,
                Err(e) => {
                    refused.get_or_insert(e);
                    false
                }
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (true, Some(e)) => Err(ReadError::Settings(e)),
            _ => Ok(allowed),
        }
    }
}

/// A DNS resolver for the Entra ID HTTP client that drops addresses the
/// policy refuses (a name that resolved to a public address when saved
/// cannot later lead the client to a refused one).
pub(crate) struct PolicyResolver(pub Arc<OutboundPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = policy
                .filter(&host, addrs)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let it: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(it)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_addresses_are_classified() {
        let c = |s: &str| classify(s.parse().unwrap());
        assert_eq!(c("127.0.0.1"), AddressClass::Loopback);
        assert_eq!(c("0.0.0.0"), AddressClass::Loopback);
        assert_eq!(c("::1"), AddressClass::Loopback);
        assert_eq!(c("::ffff:127.0.0.1"), AddressClass::Loopback);
        assert_eq!(c("169.254.169.254"), AddressClass::Metadata);
        assert_eq!(c("fd00:ec2::254"), AddressClass::Metadata);
        assert_eq!(c("169.254.10.1"), AddressClass::LinkLocal);
        assert_eq!(c("fe80::1"), AddressClass::LinkLocal);
        assert_eq!(c("10.1.2.3"), AddressClass::Private);
        assert_eq!(c("172.16.0.1"), AddressClass::Private);
        assert_eq!(c("192.168.1.1"), AddressClass::Private);
        assert_eq!(c("100.64.0.1"), AddressClass::Private);
        assert_eq!(c("fd12::1"), AddressClass::Private);
        assert_eq!(c("224.0.0.1"), AddressClass::Unusable);
        assert_eq!(c("255.255.255.255"), AddressClass::Unusable);
        assert_eq!(c("20.190.160.1"), AddressClass::Public);
        assert_eq!(c("2603:1026::1"), AddressClass::Public);
    }

    #[test]
    fn outbound_policy_parses_and_refuses_by_default() {
        let strict = OutboundPolicy::default();
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "fd00:ec2::254",
            "10.0.0.1",
            "[::1]",
        ] {
            assert!(strict.check_host_literal("host", ip).is_err(), "{ip}");
        }
        let e = strict.check_host_literal("host", "localhost").unwrap_err();
        assert!(e.contains("ROSTER_ALLOW_OUTBOUND=loopback"), "{e}");
        assert!(strict.check_host_literal("host", "dc1.example.com").is_ok());
        assert!(strict
            .check_entra_endpoint(
                "login_endpoint",
                "https://login.microsoftonline.us",
                LOGIN_HOSTS
            )
            .is_ok());
        assert!(strict
            .check_entra_endpoint(
                "graph_endpoint",
                "https://microsoftgraph.chinacloudapi.cn/v1.0",
                GRAPH_HOSTS
            )
            .is_ok());
        let e = strict
            .check_entra_endpoint("login_endpoint", "https://evil.example.com", LOGIN_HOSTS)
            .unwrap_err();
        assert!(
            e.contains("login_endpoint") && e.contains("documented"),
            "{e}"
        );
        assert!(strict
            .check_entra_endpoint(
                "login_endpoint",
                "http://login.microsoftonline.com",
                LOGIN_HOSTS
            )
            .unwrap_err()
            .contains("https"));
        let tests = OutboundPolicy::parse("http, loopback, 127.0.0.1, *.corp.test").unwrap();
        assert!(tests
            .check_entra_endpoint("login_endpoint", "http://127.0.0.1:8080", LOGIN_HOSTS)
            .is_ok());
        assert!(tests
            .check_entra_endpoint("graph_endpoint", "https://g.corp.test/v1.0", GRAPH_HOSTS)
            .is_ok());
        assert!(tests
            .check_entra_endpoint("graph_endpoint", "https://corp.test/v1.0", GRAPH_HOSTS)
            .is_err());
        assert!(tests.check_host_literal("host", "169.254.169.254").is_err());
        assert!(OutboundPolicy::parse("loopback,*").is_err());
        assert!(OutboundPolicy::parse("http://x").is_err());
    }

    #[tokio::test]
    async fn outbound_host_names_are_resolved_and_every_address_checked() {
        let strict = OutboundPolicy::default();
        let e = strict
            .check_resolved("host", "localhost", 389)
            .await
            .unwrap_err();
        assert!(
            e.starts_with("host leads to") && e.contains("loopback"),
            "{e}"
        );
        assert!(
            strict
                .check_resolved("host", "no-such-host.invalid", 389)
                .await
                .is_ok(),
            "an unresolvable name is for the test to report"
        );
        let addrs = vec!["127.0.0.1:389".parse().unwrap()];
        assert!(strict.filter("host", addrs.clone()).is_err());
        let loopback = OutboundPolicy::parse("loopback").unwrap();
        assert_eq!(loopback.filter("host", addrs.clone()).unwrap(), addrs);
    }
}
