//! The plan of an import: what each row will do, as the review stores it
//! and the commit applies it.

use std::collections::BTreeSet;

use roster_csv::{Column, ImportFile, ProfilePatch};
use roster_domain::User;
use roster_events::*;
use roster_store::Loaded;
use serde::{Deserialize, Serialize};

use super::{ColumnInfo, FieldChange, FileInfo, FileNote, InputKind, Outcome, RowIssue};

/// The stored plan of one row: what the review shows, and what the commit
/// needs to apply it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PlanRow {
    pub(super) line: u64,
    /// The primary address, normalised; as written when it is invalid.
    pub(super) address: String,
    pub(super) outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) user_id: Option<UserId>,
    /// The user's version (aggregate sequence) the plan was made on; 0 for
    /// a new user.
    #[serde(default)]
    pub(super) version: i64,
    /// A deleted user with this address comes back (U6).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) returning: bool,
    /// The existing user's source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) source: Option<Source>,
    /// The whole profile after the row (additions and updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) profile: Option<Profile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) changes: Vec<FieldChange>,
    /// For an addition: all its aliases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) aliases_added: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) aliases_removed: Vec<Address>,
    /// Rows (by row number) that release an address this row claims; they
    /// are in the same chunk, and this row is applied only with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) after: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) errors: Vec<RowIssue>,
}

impl PlanRow {
    pub(super) fn error(&mut self, column: Option<&str>, code: &str, message: String) {
        self.outcome = Outcome::Error;
        self.errors.push(RowIssue {
            column: column.map(str::to_string),
            code: code.to_string(),
            message,
        });
    }

    /// Addresses this row claims when applied: an addition's primary and
    /// aliases, an update's new aliases.
    pub(super) fn claims(&self) -> Vec<Address> {
        let mut out = Vec::new();
        if self.outcome == Outcome::Add {
            if let Ok(a) = Address::parse(&self.address) {
                out.push(a);
            }
        }
        out.extend(self.aliases_added.iter().cloned());
        out
    }

    /// Whether the commit must compare the user's version (existing users
    /// and returning ones; a new user's id is the plan's own).
    pub(super) fn has_version(&self) -> bool {
        self.user_id.is_some() && self.version > 0
    }
}

pub(super) fn column_name(file: &ImportFile, column: Column) -> String {
    file.header
        .iter()
        .find(|h| h.column == Some(column))
        .map(|h| h.name.clone())
        .unwrap_or_else(|| column.name().to_string())
}

pub(super) fn file_info(
    file: &ImportFile,
    name: Option<String>,
    kind: InputKind,
    bytes: usize,
) -> FileInfo {
    FileInfo {
        name,
        input: kind,
        bytes: bytes as u64,
        encoding: file.encoding.as_str().to_string(),
        bom: file.bom,
        delimiter: file.delimiter.name().to_string(),
        header_line: file.header_line,
        blank_rows: file.blank_rows,
        columns: file
            .header
            .iter()
            .map(|h| ColumnInfo {
                name: h.name.clone(),
                column: h.column.map(|c| c.name().to_string()),
            })
            .collect(),
        warnings: file
            .warnings
            .iter()
            .map(|w| FileNote {
                code: serde_json::to_value(w)
                    .ok()
                    .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_string))
                    .unwrap_or_default(),
                message: w.to_string(),
            })
            .collect(),
    }
}

/// Union-find over row indexes: rows that hand an address to each other
/// are committed in one chunk.
pub(super) struct Groups(Vec<usize>);

impl Groups {
    pub(super) fn new(n: usize) -> Self {
        Groups((0..n).collect())
    }
    pub(super) fn root(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }
    pub(super) fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.root(a), self.root(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// A parsed row being planned.
pub(super) struct Work {
    pub(super) plan: PlanRow,
    pub(super) address: Option<Address>,
    pub(super) patch: Option<ProfilePatch>,
    pub(super) aliases: Option<Vec<Address>>,
    /// Set for a row whose primary address belongs to a user of this customer.
    pub(super) existing: Option<UserId>,
}

/// Plans a row for an existing user: the profile after the row, the alias
/// changes (a present aliases column is the user's whole new set), and
/// whether the enabled directory manages the user (D3.a: reported, not
/// applied).
pub(super) fn plan_update(
    w: &mut Work,
    uid: UserId,
    user: Loaded<User>,
    directory: Option<DirectoryKind>,
    email_col: &str,
) {
    let state = user.state;
    w.plan.user_id = Some(uid);
    w.plan.version = user.version;
    w.plan.source = state.source;
    if !state.exists() || state.status == Status::Deleted {
        w.plan.error(
            Some(email_col),
            "conflict",
            "the user changed while the file was being reviewed: review the file again".into(),
        );
        return;
    }
    let patch = w.patch.take().unwrap_or_default();
    // As the user would store it (trimmed, blank as absent), so that the
    // review shows exactly what the commit changes.
    let next = patch.applied_to(&state.profile).normalised();
    w.plan.changes = state
        .profile
        .fields()
        .iter()
        .zip(next.fields().iter())
        .filter(|((_, before), (_, after))| before != after)
        .map(|((field, before), (_, after))| FieldChange {
            field: field.to_string(),
            before: (*before).clone(),
            after: (*after).clone(),
        })
        .collect();
    if let Some(wanted) = w.aliases.take() {
        let wanted: BTreeSet<Address> = wanted.into_iter().collect();
        w.plan.aliases_added = wanted.difference(&state.aliases).cloned().collect();
        w.plan.aliases_removed = state.aliases.difference(&wanted).cloned().collect();
    }
    let changes = !w.plan.changes.is_empty()
        || !w.plan.aliases_added.is_empty()
        || !w.plan.aliases_removed.is_empty();
    if let Err((field, reason)) = next.check() {
        w.plan
            .error(None, "invalid_field", format!("{field} {reason}"));
    }
    w.plan.profile = Some(next);
    if w.plan.outcome == Outcome::Error {
        return;
    }
    if !changes {
        w.plan.outcome = Outcome::Unchanged;
        return;
    }
    let managed_by = match (directory, state.source) {
        (Some(kind), Some(source)) if source.is_directory() => Some((kind, source)),
        _ => None,
    };
    match managed_by {
        Some((kind, source)) => w.plan.error(
            Some(email_col),
            "directory_managed",
            format!(
                "{} comes from the directory ({}) and {} sync is on, so the directory decides its fields and aliases: change it in the directory (this row is reported, not applied)",
                w.plan.address,
                source.as_str(),
                kind.as_str()
            ),
        ),
        None => w.plan.outcome = Outcome::Update,
    }
}

/// Plans a row that adds a user (or brings a deleted one back, U6).
pub(super) fn plan_add(w: &mut Work) {
    let patch = w.patch.take().unwrap_or_default();
    let profile = patch.to_new_profile().normalised();
    // An addition's changes are its profile's fields: they are derived when
    // shown ([`addition_changes`]), not kept twice for every row of a large
    // file.
    w.plan.aliases_added = w.aliases.take().unwrap_or_default();
    if let Err((field, reason)) = profile.check() {
        w.plan
            .error(None, "invalid_field", format!("{field} {reason}"));
    }
    w.plan.profile = Some(profile);
    if w.plan.user_id.is_none() {
        w.plan.user_id = Some(UserId::new());
    }
    if w.plan.outcome != Outcome::Error {
        w.plan.outcome = Outcome::Add;
    }
}

/// The fields an addition sets: every field of its profile that has a value.
pub(super) fn addition_changes(profile: &Profile) -> Vec<FieldChange> {
    profile
        .fields()
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(field, v)| FieldChange {
            field: field.to_string(),
            before: None,
            after: (*v).clone(),
        })
        .collect()
}
