//! Events of the import aggregate: one CSV import (M2), identified by its
//! import id, which is also the correlation id of every user event the
//! import writes (E2).
//!
//! A large import is committed in chunks, each one atomic append. Every
//! chunk's user events are appended in the same transaction as an
//! [`ImportChunkCommitted`] of this aggregate, so the log itself records how
//! far a commit got: a commit that stopped half-way (a crash, a lost
//! connection) continues after the last committed chunk, and nothing is
//! applied twice. [`ImportCommitted`] closes the import; a later commit
//! answers with its totals and applies nothing.

use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{Address, ImportId};

/// A reviewed row that the commit did not apply, because the data it was
/// planned on changed while the commit ran (only possible after the first
/// chunk of a multi-chunk commit; before that, a change refuses the whole
/// commit and asks for a new review).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SkippedRow {
    /// The physical line of the row in the file.
    pub line: u64,
    /// The row's primary address.
    pub address: Address,
    /// A stable code: `changed_since_review`, `address_taken`,
    /// `over_seat_limit` or `unmanaged_domain`.
    pub code: String,
    /// What happened, for people.
    pub reason: String,
}

/// One chunk of an import's plan was applied, in the same append as its
/// user events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImportChunkCommitted {
    pub import_id: ImportId,
    /// The chunk, from 0.
    pub chunk: u32,
    /// How many chunks the plan has.
    pub chunks: u32,
    /// Users added (or returned, U6) by this chunk.
    pub added: u64,
    /// Users updated by this chunk.
    pub updated: u64,
    /// Rows of this chunk that were not applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedRow>,
}

/// The whole plan of an import has been applied. Totals over the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImportCommitted {
    pub import_id: ImportId,
    pub chunks: u32,
    /// Users added (or returned, U6).
    pub added: u64,
    pub updated: u64,
    /// Rows that matched their user already.
    pub unchanged: u64,
    /// Rows the review reported as errors (not applied).
    pub rejected: u64,
    /// Rows the commit skipped (see [`SkippedRow`]).
    pub skipped: u64,
}

/// Every event of the import aggregate. The variant name is the stable
/// event type; [`DomainEvent::event_version`] its schema version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ImportEvent {
    ImportChunkCommitted(ImportChunkCommitted),
    ImportCommitted(ImportCommitted),
}

impl ImportEvent {
    /// Every (event type, current version) of this aggregate.
    pub const TYPES: &'static [(&'static str, &'static str)] =
        &[("ImportChunkCommitted", "1.0"), ("ImportCommitted", "1.0")];

    pub fn type_name(&self) -> &'static str {
        match self {
            ImportEvent::ImportChunkCommitted(_) => "ImportChunkCommitted",
            ImportEvent::ImportCommitted(_) => "ImportCommitted",
        }
    }
}

impl DomainEvent for ImportEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }
    fn event_version(&self) -> String {
        crate::version_of(Self::TYPES, self.type_name()).to_string()
    }
}
