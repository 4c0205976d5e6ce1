//! Every code the directory-sync API answers with, in one place (issue 11).
//! docs/directory-sync.md lists the same codes; a test checks both ways, so
//! that a code is never answered without being documented, nor documented
//! without being answered.

/// The custom filter (or a filter of the attribute map) is not a valid
/// LDAP filter: Test Connection answers `{"ok": false, "code": ...}`.
pub const INVALID_FILTER: &str = "invalid_filter";

/// `{"ok": false, "code"}` of Test Connection with LDAP settings, and the
/// `code` of a run that failed reading an LDAP directory (D3.r, D5).
/// Documented in the table of the "Test connection" section.
pub const CONNECTION: &[&str] = &[
    "name_resolution",
    "refused",
    "timeout",
    "tls",
    "bind_rejected",
    "base_dn_not_found",
    "permission",
    INVALID_FILTER,
    "incomplete",
    "settings",
    "other",
];

/// Failures only an Entra ID read gives (documented with Entra ID in
/// docs/operations.md).
pub const ENTRA_CONNECTION: &[&str] = &[
    "tenant_not_found",
    "client_id_not_found",
    "secret_rejected",
    "secret_expired",
    "throttled",
];

/// A run abandoned by a process that stopped before its lease ran out.
pub const ABANDONED: &str = "abandoned";
/// A run whose replica stopped renewing its lease (killed, crashed, shut
/// down while it ran): marked `interrupted` and started again (issue 18).
pub const INTERRUPTED: &str = "interrupted";
/// A run whose changes could not be appended.
pub const INTERNAL: &str = "internal";

/// The `code` of a failed run besides the [`CONNECTION`] codes.
/// Documented in the "Failed runs" table.
pub const RUN_FAILURE: &[&str] = &[ABANDONED, INTERRUPTED, INTERNAL];

/// Settings (or another request body) refused: the message names the field.
pub const INVALID_REQUEST: &str = "invalid_request";
pub const NOT_CONFIGURED: &str = "not_configured";
pub const SYNC_NOT_ENABLED: &str = "sync_not_enabled";
pub const CONFIRM_SWITCH: &str = "confirm_switch";
pub const SYNC_RUNNING: &str = "sync_running";
pub const RUN_SUPERSEDED: &str = "run_superseded";
pub const INVALID_STATE: &str = "invalid_state";
pub const ALREADY_LISTED: &str = "already_listed";
pub const DIRECTORY_READ_FAILED: &str = "directory_read_failed";

/// The error codes (`{"code", "message"}` with a 4xx status) of the
/// directory endpoints besides the API's common ones (`not_found`,
/// `unknown_customer`, `bad_token`, `forbidden`, ...). Documented in the
/// "Errors" table.
pub const ERRORS: &[&str] = &[
    INVALID_REQUEST,
    NOT_CONFIGURED,
    SYNC_NOT_ENABLED,
    CONFIRM_SWITCH,
    SYNC_RUNNING,
    RUN_SUPERSEDED,
    INVALID_STATE,
    ALREADY_LISTED,
    DIRECTORY_READ_FAILED,
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use roster_domain::snapshot::ReadError;

    use super::*;

    const DOC: &str = include_str!("../../../docs/directory-sync.md");

    /// The codes in the first column of the table under `heading`.
    fn table(heading: &str) -> BTreeSet<String> {
        let mut lines = DOC
            .lines()
            .skip_while(|l| l.trim() != heading)
            .skip(1)
            .skip_while(|l| !l.starts_with('|'));
        let mut out = BTreeSet::new();
        assert!(lines.next().is_some(), "no table under {heading:?}");
        for l in lines.skip(1).take_while(|l| l.starts_with('|')) {
            let cell = l.trim_start_matches('|').split('|').next().unwrap().trim();
            let code = cell.trim_matches('`');
            assert!(
                cell.starts_with('`') && !code.is_empty(),
                "under {heading:?}: {l:?} does not start with a `code`"
            );
            out.insert(code.to_string());
        }
        out
    }

    fn set(codes: &[&str]) -> BTreeSet<String> {
        codes.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn issue11_the_codes_and_docs_directory_sync_md_agree_both_ways() {
        for (heading, codes) in [
            ("## Test connection", CONNECTION),
            ("### Failed runs", RUN_FAILURE),
            ("### Errors", ERRORS),
        ] {
            let documented = table(heading);
            let answered = set(codes);
            assert_eq!(
                answered.difference(&documented).collect::<Vec<_>>(),
                Vec::<&String>::new(),
                "answered but not documented under {heading:?}"
            );
            assert_eq!(
                documented.difference(&answered).collect::<Vec<_>>(),
                Vec::<&String>::new(),
                "documented under {heading:?} but never answered"
            );
        }
    }

    #[test]
    fn issue11_every_read_failure_has_a_listed_code() {
        let s = || String::from("x");
        let all = [
            ReadError::NameResolution(s()),
            ReadError::Refused(s()),
            ReadError::Timeout(s()),
            ReadError::Tls(s()),
            ReadError::BindRejected(s()),
            ReadError::BaseDnNotFound(s()),
            ReadError::Permission(s()),
            ReadError::InvalidFilter(s()),
            ReadError::Throttled(s()),
            ReadError::Incomplete(s()),
            ReadError::Settings(s()),
            ReadError::TenantNotFound(s()),
            ReadError::ClientIdNotFound(s()),
            ReadError::SecretRejected(s()),
            ReadError::SecretExpired(s()),
            ReadError::Other(s()),
        ];
        let listed: BTreeSet<String> = set(CONNECTION)
            .union(&set(ENTRA_CONNECTION))
            .cloned()
            .collect();
        let produced: BTreeSet<String> = all.iter().map(|e| e.code().to_string()).collect();
        assert_eq!(listed, produced);
    }
}
