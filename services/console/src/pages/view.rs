//! What the pages show, in words: times, sources, statuses and kinds as an
//! administrator reads them, and the links between pages. Every value is
//! plain text; the templates escape it (never `|safe` on data).

use roster_events::ids::display_address;
use roster_events::Profile;

use crate::error::PageError;

/// A bad request whose message says what to fix.
pub fn bad(message: impl Into<String>) -> PageError {
    PageError::BadRequest(message.into())
}

/// What an error says to the administrator, shown on the form it came from.
pub fn message(e: &PageError) -> String {
    match e {
        PageError::NotFound => "Not found, or not something you manage.".into(),
        PageError::Forbidden(m)
        | PageError::BadRequest(m)
        | PageError::Conflict(m)
        | PageError::Gone(m) => m.clone(),
        PageError::Unavailable => {
            "The database cannot be reached right now. Try again in a moment.".into()
        }
        _ => "An internal error occurred and has been logged. Try again.".into(),
    }
}

/// A time of the read models (microseconds since the epoch), in UTC.
pub fn when(us: i64) -> String {
    roster_store::from_micros(us)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

pub fn when_opt(us: Option<i64>) -> String {
    us.map(when).unwrap_or_default()
}

/// U2: the Source column.
pub fn source_label(source: &str) -> &'static str {
    match source {
        "manual" => "Manual",
        "csv" => "CSV",
        "ldap" => "LDAP",
        "entra" => "Entra ID (Azure)",
        "smtp" => "SMTP",
        _ => "Other",
    }
}

/// U2: the Status column.
pub fn status_label(status: &str) -> &'static str {
    match status {
        "active" => "Active",
        "pending_deletion" => "Pending deletion",
        "deactivated" => "Deactivated",
        "deleted" => "Deleted",
        _ => "Unknown",
    }
}

/// U4: users, distribution lists and public folders told apart.
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "user" => "User",
        "distribution_list" => "Distribution list",
        "public_folder" => "Public folder",
        _ => "Other",
    }
}

/// D3.h: why a user was flagged.
pub fn flag_label(reason: &str) -> &'static str {
    match reason {
        "missing" => "no longer in the directory",
        "disabled" => "disabled in the directory",
        _ => "flagged",
    }
}

pub fn directory_label(kind: &str) -> &'static str {
    match kind {
        "ldap" => "LDAP",
        "entra" => "Entra ID",
        _ => "Directory",
    }
}

/// A sync run's status in words (B4).
pub fn run_status_label(status: &str) -> &'static str {
    match status {
        "running" => "Running",
        "completed" => "Completed",
        "failed" => "Failed",
        "interrupted" => "Interrupted",
        "held" => "Held: waiting for a decision",
        "confirmed" => "Confirmed",
        "discarded" => "Discarded",
        "superseded" => "Superseded",
        _ => "Unknown",
    }
}

/// A person's name as the list shows it: first and last name, or empty.
pub fn full_name(p: &Profile) -> String {
    [p.first_name.as_deref(), p.last_name.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An address as people read it (internationalised domains in Unicode).
pub fn address(a: &str) -> String {
    display_address(a)
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved
/// characters stay as they are).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn customer_href(customer: &str) -> String {
    format!("/customers/{}", encode(customer))
}

pub fn user_href(customer: &str, address: &str) -> String {
    format!("/customers/{}/users/{}", encode(customer), encode(address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_encode_every_reserved_character() {
        assert_eq!(
            user_href("c1", "a+b/../x@ex.com"),
            "/customers/c1/users/a%2Bb%2F..%2Fx%40ex.com"
        );
        assert_eq!(encode("é<"), "%C3%A9%3C");
    }

    #[test]
    fn u2_sources_and_statuses_in_words() {
        assert_eq!(source_label("entra"), "Entra ID (Azure)");
        assert_eq!(status_label("pending_deletion"), "Pending deletion");
        assert_eq!(kind_label("public_folder"), "Public folder");
    }
}

/// A domain as people read it (Unicode for an internationalised name).
pub fn domain(d: &str) -> String {
    roster_events::ids::display_address_or_domain(d)
}
