//! What the pages show, in words: times, sources, statuses and kinds as an
//! administrator reads them, and the links between pages. Every value is
//! plain text; the templates escape it (never `|safe` on data).

use roster_events::ids::display_address;
use roster_events::{DirectoryKind, FlagReason, Kind, Profile, Source, Status};
use roster_projections::directory::RunStatus;

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
pub fn source_label(source: Source) -> &'static str {
    match source {
        Source::Manual => "Manual",
        Source::Csv => "CSV",
        Source::Ldap => "LDAP",
        Source::Entra => "Entra ID (Azure)",
        Source::Smtp => "SMTP",
    }
}

/// U2: the Status column.
pub fn status_label(status: Status) -> &'static str {
    match status {
        Status::Active => "Active",
        Status::PendingDeletion => "Pending deletion",
        Status::Deactivated => "Deactivated",
        Status::Deleted => "Deleted",
    }
}

/// U4: users, distribution lists and public folders told apart.
pub fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::User => "User",
        Kind::DistributionList => "Distribution list",
        Kind::PublicFolder => "Public folder",
    }
}

/// D3.h: why a user was flagged.
pub fn flag_label(reason: FlagReason) -> &'static str {
    match reason {
        FlagReason::Missing => "no longer in the directory",
        FlagReason::Disabled => "disabled in the directory",
        FlagReason::UnmanagedDomain => "its address is in a domain the customer no longer manages",
        FlagReason::NoAddress => "it has no address any more",
    }
}

pub fn directory_label(kind: DirectoryKind) -> &'static str {
    match kind {
        DirectoryKind::Ldap => "LDAP",
        DirectoryKind::Entra => "Entra ID",
    }
}

/// A flag reason as an event's payload carries it, in words.
pub fn flag_word(reason: &str) -> &'static str {
    FlagReason::parse(reason).map_or("flagged", flag_label)
}

/// A sync run's status in words (B4).
pub fn run_status_label(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "Running",
        RunStatus::Completed => "Completed",
        RunStatus::Failed => "Failed",
        RunStatus::Interrupted => "Interrupted",
        RunStatus::Held => "Held: waiting for a decision",
        RunStatus::Confirmed => "Confirmed",
        RunStatus::Discarded => "Discarded",
        RunStatus::Superseded => "Superseded",
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

/// `base` with a query string of the pairs whose value is not blank (each
/// trimmed and encoded), in their order; `base` alone when none is.
pub fn href<'a>(base: &str, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let parts: Vec<String> = pairs
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v.trim())))
        .collect();
    if parts.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", parts.join("&"))
    }
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

pub fn customer_href(customer: &(impl std::fmt::Display + ?Sized)) -> String {
    let customer = customer.to_string();
    let customer = customer.as_str();
    format!("/customers/{}", encode(customer))
}

pub fn user_href(customer: &(impl std::fmt::Display + ?Sized), address: &str) -> String {
    format!(
        "/customers/{}/users/{}",
        encode(&customer.to_string()),
        encode(address)
    )
}

/// A domain as people read it (Unicode for an internationalised name).
pub fn domain(d: &str) -> String {
    roster_events::ids::display_address_or_domain(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_encode_every_reserved_character() {
        assert_eq!(
            user_href(&"c1", "a+b/../x@ex.com"),
            "/customers/c1/users/a%2Bb%2F..%2Fx%40ex.com"
        );
        assert_eq!(encode("é<"), "%C3%A9%3C");
    }

    #[test]
    fn u2_sources_and_statuses_in_words() {
        assert_eq!(source_label(Source::Entra), "Entra ID (Azure)");
        assert_eq!(status_label(Status::PendingDeletion), "Pending deletion");
        assert_eq!(kind_label(Kind::PublicFolder), "Public folder");
        assert_eq!(
            run_status_label(RunStatus::Held),
            "Held: waiting for a decision"
        );
        assert_eq!(directory_label(DirectoryKind::Entra), "Entra ID");
        assert_eq!(flag_word("disabled"), "disabled in the directory");
    }
}
