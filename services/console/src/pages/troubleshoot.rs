//! The guide's troubleshooting (shared/seed/add-users.txt, "Troubleshooting"),
//! shown where it applies: next to a failed run, by its failure code
//! (docs/directory-sync.md, "Test connection" and "Failed runs"), and next
//! to a run that skipped users of a domain the customer does not manage.

/// One piece of advice: a heading of the guide and what to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub title: &'static str,
    pub text: String,
    /// A page that helps (the Domains page), with its label.
    pub link: Option<(String, &'static str)>,
}

const FIREWALL: &str = "Firewall settings";
const CREDENTIALS: &str = "Account credentials";
const NOT_POPULATING: &str = "Connection successful but users not populating";
const MANAGED_DOMAIN: &str = "Managed domain";

fn advice(title: &'static str, text: impl Into<String>) -> Advice {
    Advice {
        title,
        text: text.into(),
        link: None,
    }
}

/// What to check after a run failed with `code`; nothing for a code the
/// administrator cannot act on.
pub fn for_failure(code: &str) -> Option<Advice> {
    let firewall = |what: &str| {
        advice(
            FIREWALL,
            format!(
                "{what} Verify that Roster's IP addresses are allowed through the network and \
                 domain controller firewall, and that the directory service is reachable \
                 through your firewall."
            ),
        )
    };
    Some(match code {
        "name_resolution" => firewall("The directory's host name could not be resolved: check the Host (DNS)."),
        "refused" => firewall("The connection was refused: check the Port (636 for LDAPS) and that the server listens."),
        "timeout" => firewall("The directory did not answer in time: check the network path, or raise the timeout for a slow link."),
        "tls" => advice(
            "Certificate",
            "TLS failed: the certificate's issuer is not trusted (add its CA certificate), its host \
             name does not match, it expired, or SSL or StartTLS is used against a port that does \
             not speak it.",
        ),
        "bind_rejected" | "secret_rejected" | "secret_expired" | "client_id_not_found"
        | "tenant_not_found" => advice(
            CREDENTIALS,
            "Confirm that the correct account credentials were provided and are accurate: the \
             Username (Active Directory: user@domain or the full DN) and Password, or for Entra \
             ID the Tenant, Client ID and Client secret (a secret expires: create a new one).",
        ),
        "base_dn_not_found" => advice(
            NOT_POPULATING,
            "The Base DN was not found: check it for a typo, or an organisational unit the bind \
             user cannot see.",
        ),
        "permission" => advice(
            CREDENTIALS,
            "The account may not search the Base DN: give it read access, or use another account.",
        ),
        "invalid_filter" => advice(
            NOT_POPULATING,
            "The custom filter (or a filter of the attribute mapping) is not a valid LDAP filter: \
             correct it in the advanced options.",
        ),
        "incomplete" => advice(
            NOT_POPULATING,
            "A search did not complete (connection lost, page or size limit), so nothing was \
             concluded from it and nobody was flagged. Run Sync Now again; if it persists, check \
             the directory's size limits.",
        ),
        "settings" => advice(
            NOT_POPULATING,
            "The settings cannot be used as saved (for example no entry has the id attribute): \
             check the attribute mapping.",
        ),
        "throttled" => advice(
            "Throttled",
            "Microsoft Graph asked Roster to slow down: the next run tries again.",
        ),
        "interrupted" | "abandoned" => advice(
            "Interrupted",
            "The server running the sync stopped before it finished; the sync was started again. \
             Nothing was half-applied.",
        ),
        _ => return None,
    })
}

/// What to check after a run skipped `n` objects whose address is in a
/// domain the customer does not manage; `domains_href` is its Domains page.
pub fn for_unmanaged_domain(n: u64, domains_href: String) -> Advice {
    let objects = if n == 1 { "object was" } else { "objects were" };
    Advice {
        title: MANAGED_DOMAIN,
        text: format!(
            "{n} directory {objects} not synced because the address is in a domain this customer \
             does not manage. The domains on the Domains page must match the domain of the \
             directory users' primary email addresses."
        ),
        link: Some((domains_href, "Open the Domains page")),
    }
}

/// A run that completed but read nobody: the guide's "users not populating".
pub fn for_empty_read() -> Advice {
    advice(
        NOT_POPULATING,
        "The directory answered, but no user was read: check the Base DN and the custom filter, \
         then click Sync Now.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d5_failure_codes_get_the_guides_troubleshooting() {
        assert_eq!(for_failure("refused").unwrap().title, FIREWALL);
        assert_eq!(for_failure("timeout").unwrap().title, FIREWALL);
        assert_eq!(for_failure("bind_rejected").unwrap().title, CREDENTIALS);
        assert_eq!(for_failure("secret_expired").unwrap().title, CREDENTIALS);
        assert!(for_failure("base_dn_not_found")
            .unwrap()
            .text
            .contains("Base DN"));
        assert_eq!(for_failure("internal"), None);
        // Every connection code of the documentation has advice.
        for code in roster_sync::codes::CONNECTION
            .iter()
            .chain(roster_sync::codes::ENTRA_CONNECTION)
        {
            if *code != "other" {
                assert!(for_failure(code).is_some(), "{code}");
            }
        }
    }

    #[test]
    fn d3b_unmanaged_domain_skips_point_to_the_domains_page() {
        let a = for_unmanaged_domain(2, "/customers/c/domains".into());
        assert_eq!(a.title, MANAGED_DOMAIN);
        assert!(a.text.starts_with("2 directory objects were not synced"));
        assert_eq!(a.link.unwrap().0, "/customers/c/domains");
    }
}
