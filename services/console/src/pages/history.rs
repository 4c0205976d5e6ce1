//! Events in words: the history timeline of a user's page and the
//! dashboard's recent activity (E2: who, when, and the run or import that
//! made a change).

use std::collections::HashSet;

use roster_events::{Actor, CorrelationId};
use roster_projections::queries::AuditEntry;
use serde_json::Value;

use super::view::{self, when};

/// An event type as an administrator reads it.
pub fn event_label(event_type: &str) -> &'static str {
    match event_type {
        "UserAdded" => "Added",
        "UserReturned" => "Came back (earlier history restored)",
        "ProfileUpdated" => "Details changed",
        "AliasMapped" => "Alias added",
        "AliasUnmapped" => "Alias removed",
        "FlaggedForDeletion" => "Flagged for deletion",
        "DeletionCancelled" => "Flag lifted",
        "ConflictIgnored" => "Conflict ignored",
        "UserDeactivated" => "Deactivated",
        "UserReactivated" => "Reactivated",
        "UserDeleted" => "Deleted",
        "RuleAdded" => "Rule added",
        "RuleRemoved" => "Rule removed",
        "AddressChanged" => "Primary address changed",
        "AddressReleased" => "Primary address released",
        "DirectoryLinked" => "Linked to the directory",
        "AbsenceEnded" => "Back in the directory",
        "ListMembersChanged" => "Members changed",
        "CustomerCreated" => "Customer created",
        "DomainAdded" => "Domain added",
        "DomainRemoved" => "Domain removed",
        "SeatLimitChanged" => "Seat limit changed",
        "ImportCommitted" => "Import saved",
        "SyncStarted" => "Sync started",
        "SyncCompleted" | "SyncFinished" => "Sync finished",
        "SyncFailed" => "Sync failed",
        "SyncHeld" => "Sync held by the mass-deletion guard",
        "SyncConfirmed" => "Held sync confirmed",
        "SyncDiscarded" => "Held sync discarded",
        "SyncSuperseded" => "Held sync superseded",
        "SyncReported" => "Sync report",
        "SyncReportRepeated" => "Sync report, as an earlier run's",
        "DirectoryConfigured" => "Directory settings saved",
        "DirectoryEnabled" => "Directory sync enabled",
        "DirectoryDisabled" => "Directory sync disabled",
        "DirectoryTested" => "Directory connection tested",
        "DirectoryObjectsChanged" => "Directory read",
        "ExceptionAdded" => "Exception added",
        "ExceptionRemoved" => "Exception removed",
        "AdditionAdded" => "Addition added",
        "AdditionRemoved" => "Addition removed",
        _ => "Changed",
    }
}

/// Who made a change: a sync run, an API token, an administrator, Roster.
pub fn actor_label(actor: &Actor) -> String {
    match actor {
        Actor::Sync(run) => format!("sync run {}", short(run)),
        Actor::Token(id) => format!("API token {}", short(id)),
        Actor::System(name) => format!("Roster ({name})"),
        Actor::Admin(who) => format!("administrator {who}"),
    }
}

/// The first eight characters of an id.
fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
}

fn text(payload: &Value, key: &str) -> Option<String> {
    payload.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The detail of a user event worth a line in the timeline.
pub fn detail(e: &AuditEntry) -> String {
    let p = &e.payload;
    match e.event_type.as_str() {
        "AliasMapped" | "AliasUnmapped" => text(p, "alias").map(|a| view::address(&a)),
        "FlaggedForDeletion" => text(p, "reason").map(|r| {
            let delete_at = text(p, "delete_at")
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| format!(", deleted on {}", when(t.timestamp_micros())))
                .unwrap_or_else(|| ", kept until an administrator acts".into());
            format!("{}{delete_at}", view::flag_word(&r))
        }),
        "UserDeleted" => text(p, "reason").map(|r| r.replace('_', " ")),
        "RuleAdded" => match (text(p, "kind"), text(p, "value")) {
            (Some(k), Some(v)) => Some(format!("{k} {v}")),
            _ => None,
        },
        "AddressChanged" => text(p, "previous").map(|a| format!("was {}", view::address(&a))),
        "ProfileUpdated" => p.get("changed").and_then(Value::as_array).map(|c| {
            c.iter()
                .filter_map(Value::as_str)
                .map(|f| f.replace('_', " "))
                .collect::<Vec<_>>()
                .join(", ")
        }),
        _ => None,
    }
    .unwrap_or_default()
}

/// One line of the timeline.
pub struct HistoryItem {
    pub when: String,
    pub what: String,
    pub detail: String,
    pub actor: String,
    /// The sync run's or the import's page, when one made the change.
    pub actor_href: String,
}

/// The timeline of a user's events, newest first, linking each change to
/// the sync run or import that made it.
pub fn timeline(
    customer: &str,
    events: &[AuditEntry],
    imports: &HashSet<CorrelationId>,
) -> Vec<HistoryItem> {
    let c = view::encode(customer);
    events
        .iter()
        .rev()
        .map(|e| {
            let (actor, actor_href) = if let Actor::Sync(run) = &e.actor {
                (
                    actor_label(&e.actor),
                    format!("/customers/{c}/runs/{}", run.hyphenated()),
                )
            } else if imports.contains(&e.correlation_id) {
                (
                    format!("{} (import)", actor_label(&e.actor)),
                    format!("/customers/{c}/import/{}", e.correlation_id),
                )
            } else {
                (actor_label(&e.actor), String::new())
            };
            HistoryItem {
                when: when(e.recorded_at),
                what: event_label(&e.event_type).to_string(),
                detail: detail(e),
                actor,
                actor_href,
            }
        })
        .collect()
}
