//! What a connection test tells the administrator (docs/directory-sync.md):
//! the step that failed, what to check, and the guide's troubleshooting in
//! place (firewall and port, credentials, base DN, users not populating,
//! managed domains, with a link to the Domains page where it applies).

use roster_events::DirectoryKind;
use roster_sync::TestOutcome;

/// One troubleshooting item.
pub struct Tip {
    pub title: &'static str,
    pub text: String,
    /// A link where the fix is made (the Domains page), or empty.
    pub href: String,
    pub link: &'static str,
}

/// The result box of Test.
pub struct TestBox {
    pub ok: bool,
    /// The guide's green or red message.
    pub title: String,
    /// Which step failed ("Signing in (bind)", ...), or empty.
    pub step: &'static str,
    pub message: String,
    pub code: String,
    /// What the test found (users and groups), when it passed.
    pub found: String,
    /// The items that apply to this result first.
    pub tips: Vec<Tip>,
    /// The rest of the guide's troubleshooting.
    pub more: Vec<Tip>,
}

/// The step of a test a failure code names.
pub fn step(code: &str) -> &'static str {
    match code {
        "name_resolution" => "Finding the server (DNS)",
        "refused" | "timeout" => "Connecting to the server",
        "tls" => "Securing the connection (SSL / StartTLS)",
        "bind_rejected" => "Signing in (bind)",
        "base_dn_not_found" | "permission" => "Searching the base DN",
        "invalid_filter" => "Checking the filter",
        "tenant_not_found" => "Finding the tenant",
        "client_id_not_found" | "secret_rejected" | "secret_expired" => {
            "Signing in (client ID and secret)"
        }
        "throttled" => "Reading the directory",
        "incomplete" | "settings" => "Reading the directory",
        _ => "Testing the connection",
    }
}

fn firewall(kind: DirectoryKind) -> Tip {
    Tip {
        title: "Firewall and port",
        text: match kind {
            DirectoryKind::Ldap => "Verify that Roster's addresses are allowed through the network and domain controller firewall, and that the directory is reachable through it: port 636 for SSL (recommended), 389 without, or the port under advanced options. Check the host name or IP address.".into(),
            DirectoryKind::Entra => "Verify that Roster can reach login.microsoftonline.com and graph.microsoft.com (or your national cloud's endpoints) through your firewall.".into(),
        },
        href: String::new(),
        link: "",
    }
}

fn credentials(kind: DirectoryKind) -> Tip {
    Tip {
        title: "Account credentials",
        text: match kind {
            DirectoryKind::Ldap => "Confirm that the Username and Password of the account used for the sync are correct. Active Directory takes user@domain or the account's full DN.".into(),
            DirectoryKind::Entra => "Verify that the Tenant, Client ID and Client Secret were copied correctly from the Azure portal: the secret's value, not its ID, and not expired.".into(),
        },
        href: String::new(),
        link: "",
    }
}

fn base_dn() -> Tip {
    Tip {
        title: "Base DN",
        text: "Check the Base DN for typos (standard LDAP notation, such as ou=myOU,dc=example,dc=com) and that the sync account may read it.".into(),
        href: String::new(),
        link: "",
    }
}

fn certificate() -> Tip {
    Tip {
        title: "Certificate",
        text: "Check the server's certificate: its issuer (a private CA goes under advanced options, CA certificate), its host name and its dates; and that SSL or StartTLS matches what the port speaks.".into(),
        href: String::new(),
        link: "",
    }
}

fn filter() -> Tip {
    Tip {
        title: "Custom filter",
        text: "Check the custom filter (and the user and group filters under advanced options): an LDAP filter such as (department=Sales). As you type it, the form shows where an error is.".into(),
        href: String::new(),
        link: "",
    }
}

fn not_populating() -> Tip {
    Tip {
        title: "Connection successful but users not populating",
        text: "When a sync runs, users appear in the Users page as it completes. Click Sync Now below: a message says the sync started and its progress follows until it ends; the run's page lists every user it skipped and why.".into(),
        href: String::new(),
        link: "",
    }
}

fn managed_domain(domains_href: &str) -> Tip {
    Tip {
        title: "Managed domain",
        text: "Verify that the domain of the directory users' primary email addresses is a managed domain of this customer: users of other domains are skipped.".into(),
        href: domains_href.to_string(),
        link: "Open the Domains page",
    }
}

/// What to check for a failure code (of a test or of a failed run).
pub fn tips_for(kind: DirectoryKind, code: &str) -> Vec<Tip> {
    match code {
        "name_resolution" | "refused" | "timeout" => vec![firewall(kind)],
        "bind_rejected" | "client_id_not_found" | "secret_rejected" | "secret_expired"
        | "tenant_not_found" => vec![credentials(kind)],
        "base_dn_not_found" | "permission" if kind == DirectoryKind::Ldap => vec![base_dn()],
        "permission" => vec![Tip {
            title: "API permissions",
            text: "Grant the application the Microsoft Graph application permissions User.Read.All and GroupMember.Read.All, with admin consent.".into(),
            href: String::new(),
            link: "",
        }],
        "tls" => vec![certificate()],
        "invalid_filter" => vec![filter()],
        _ => Vec::new(),
    }
}

/// The result of a test as the page shows it.
pub fn test_box(kind: DirectoryKind, o: &TestOutcome, domains_href: &str) -> TestBox {
    let code = o.code.clone().unwrap_or_default();
    let mut tips = tips_for(kind, &code);
    let found_none = o.ok && o.users == Some(0);
    if found_none {
        if kind == DirectoryKind::Ldap {
            tips.push(base_dn());
            tips.push(filter());
        }
        tips.push(managed_domain(domains_href));
    }
    let mut more: Vec<Tip> = vec![
        firewall(kind),
        credentials(kind),
        not_populating(),
        managed_domain(domains_href),
    ];
    if kind == DirectoryKind::Ldap {
        more.insert(2, base_dn());
    }
    more.retain(|m| !tips.iter().any(|t| t.title == m.title));
    let title = match (kind, o.ok) {
        (DirectoryKind::Entra, true) => "Azure Connection test was passed".to_string(),
        (DirectoryKind::Entra, false) => "Azure Connection test failed".to_string(),
        (DirectoryKind::Ldap, true) => "LDAP connection test passed".to_string(),
        (DirectoryKind::Ldap, false) => "LDAP connection test failed".to_string(),
    };
    let found = match (o.users, o.groups) {
        (Some(u), Some(g)) => format!("The settings select {u} user(s) and {g} group(s)."),
        (Some(u), None) => format!("The settings select {u} user(s)."),
        _ => String::new(),
    };
    TestBox {
        ok: o.ok,
        title,
        step: if o.ok { "" } else { step(&code) },
        message: sentence(&o.message),
        code,
        found,
        tips,
        more: if o.ok && !found_none {
            Vec::new()
        } else {
            more
        },
    }
}

/// A message as a sentence: a capital first letter and a full stop.
pub fn sentence(m: &str) -> String {
    let m = m.trim();
    let mut c = m.chars();
    let mut out: String = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}
