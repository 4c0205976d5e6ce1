//! The import aggregate: how far the commit of one reviewed CSV import (M2)
//! has got. Its events are appended in the same transaction as the user
//! events of each chunk, so the log itself says which chunks are applied:
//! a commit that stopped half-way continues after the last committed chunk,
//! a chunk is never applied twice, and a completed import is never applied
//! again.

use cqrs_es::Aggregate;
use roster_events::{
    ClaimChange, ClaimsOf, ImportChunkCommitted, ImportCommitted, ImportEvent, ImportId, SkippedRow,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportCommand {
    /// Records that chunk `chunk` of `chunks` is applied; it must be the
    /// next one.
    CommitChunk {
        import_id: ImportId,
        chunk: u32,
        chunks: u32,
        added: u64,
        updated: u64,
        skipped: Vec<SkippedRow>,
    },
    /// Closes the import once every chunk is applied (at once for a plan
    /// without chunks: nothing to add or update).
    Complete {
        import_id: ImportId,
        chunks: u32,
        unchanged: u64,
        rejected: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the import has already been committed")]
    AlreadyCommitted,
    #[error("chunk {got} cannot be committed now: chunk {expected} is next")]
    OutOfOrder { expected: u32, got: u32 },
    #[error("the plan has {chunks} chunks, so there is no chunk {chunk}")]
    NoSuchChunk { chunk: u32, chunks: u32 },
    #[error("this aggregate records import {recorded}, not {given}")]
    OtherImport { recorded: ImportId, given: ImportId },
    #[error("{committed} of {chunks} chunks are committed; the import cannot be completed yet")]
    Incomplete { committed: u32, chunks: u32 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Import {
    pub import_id: Option<ImportId>,
    /// Chunks of the plan (known from the first committed chunk).
    pub chunks: u32,
    /// Chunks committed so far: the next chunk to commit.
    pub committed_chunks: u32,
    pub added: u64,
    pub updated: u64,
    pub skipped: Vec<SkippedRow>,
    /// Set once the import is complete.
    pub completed: Option<ImportCommitted>,
}

impl Import {
    fn check_id(&self, given: ImportId) -> Result<(), ImportError> {
        match self.import_id {
            Some(recorded) if recorded != given => {
                Err(ImportError::OtherImport { recorded, given })
            }
            _ => Ok(()),
        }
    }

    fn decide(&self, command: ImportCommand) -> Result<Vec<ImportEvent>, ImportError> {
        if self.completed.is_some() {
            return Err(ImportError::AlreadyCommitted);
        }
        Ok(match command {
            ImportCommand::CommitChunk {
                import_id,
                chunk,
                chunks,
                added,
                updated,
                skipped,
            } => {
                self.check_id(import_id)?;
                if chunk >= chunks {
                    return Err(ImportError::NoSuchChunk { chunk, chunks });
                }
                if chunk != self.committed_chunks {
                    return Err(ImportError::OutOfOrder {
                        expected: self.committed_chunks,
                        got: chunk,
                    });
                }
                vec![ImportEvent::ImportChunkCommitted(ImportChunkCommitted {
                    import_id,
                    chunk,
                    chunks,
                    added,
                    updated,
                    skipped,
                })]
            }
            ImportCommand::Complete {
                import_id,
                chunks,
                unchanged,
                rejected,
            } => {
                self.check_id(import_id)?;
                if self.committed_chunks != chunks {
                    return Err(ImportError::Incomplete {
                        committed: self.committed_chunks,
                        chunks,
                    });
                }
                vec![ImportEvent::ImportCommitted(ImportCommitted {
                    import_id,
                    chunks,
                    added: self.added,
                    updated: self.updated,
                    unchanged,
                    rejected,
                    skipped: self.skipped.len() as u64,
                })]
            }
        })
    }
}

impl Aggregate for Import {
    const TYPE: &'static str = roster_events::IMPORT_AGGREGATE;
    type Command = ImportCommand;
    type Event = ImportEvent;
    type Error = ImportError;
    type Services = ();

    handle_by_decide!();

    fn apply(&mut self, event: Self::Event) {
        match event {
            ImportEvent::ImportChunkCommitted(e) => {
                self.import_id = Some(e.import_id);
                self.chunks = e.chunks;
                self.committed_chunks = e.chunk + 1;
                self.added += e.added;
                self.updated += e.updated;
                self.skipped.extend(e.skipped);
            }
            ImportEvent::ImportCommitted(e) => {
                self.import_id = Some(e.import_id);
                self.chunks = e.chunks;
                self.completed = Some(e);
            }
        }
    }
}

/// An import claims nothing: the user events of its chunks carry the claims.
impl ClaimsOf for Import {
    fn claims(&self, _id: &str, _event: &ImportEvent) -> Vec<ClaimChange> {
        vec![]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use roster_events::Address;

    type Given = TestFramework<Import>;

    fn id() -> ImportId {
        ImportId(uuid::Uuid::from_u128(6))
    }

    fn chunk(chunk: u32, chunks: u32, added: u64) -> ImportEvent {
        ImportEvent::ImportChunkCommitted(ImportChunkCommitted {
            import_id: id(),
            chunk,
            chunks,
            added,
            updated: 1,
            skipped: vec![],
        })
    }

    fn commit(chunk: u32, chunks: u32, added: u64) -> ImportCommand {
        ImportCommand::CommitChunk {
            import_id: id(),
            chunk,
            chunks,
            added,
            updated: 1,
            skipped: vec![],
        }
    }

    #[tokio::test]
    async fn m2_chunks_are_committed_in_order() {
        Given::with(())
            .given_no_previous_events()
            .when_async(commit(0, 3, 10))
            .await
            .then_expect_events(vec![chunk(0, 3, 10)]);
        Given::with(())
            .given(vec![chunk(0, 3, 10)])
            .when_async(commit(1, 3, 5))
            .await
            .then_expect_events(vec![chunk(1, 3, 5)]);
    }

    #[tokio::test]
    async fn m2_a_committed_chunk_is_never_committed_again() {
        Given::with(())
            .given(vec![chunk(0, 3, 10), chunk(1, 3, 10)])
            .when_async(commit(1, 3, 10))
            .await
            .then_expect_error(ImportError::OutOfOrder {
                expected: 2,
                got: 1,
            });
    }

    #[tokio::test]
    async fn m2_a_chunk_cannot_be_skipped() {
        Given::with(())
            .given_no_previous_events()
            .when_async(commit(1, 3, 10))
            .await
            .then_expect_error(ImportError::OutOfOrder {
                expected: 0,
                got: 1,
            });
        Given::with(())
            .given_no_previous_events()
            .when_async(commit(3, 3, 10))
            .await
            .then_expect_error(ImportError::NoSuchChunk {
                chunk: 3,
                chunks: 3,
            });
    }

    #[tokio::test]
    async fn m2_completion_carries_the_totals_of_every_chunk() {
        let skipped = SkippedRow {
            line: 9,
            address: Address::parse("ann@acme.example").unwrap(),
            code: "changed_since_review".into(),
            reason: "changed".into(),
        };
        let with_skip = ImportEvent::ImportChunkCommitted(ImportChunkCommitted {
            import_id: id(),
            chunk: 1,
            chunks: 2,
            added: 3,
            updated: 1,
            skipped: vec![skipped],
        });
        Given::with(())
            .given(vec![chunk(0, 2, 10), with_skip])
            .when_async(ImportCommand::Complete {
                import_id: id(),
                chunks: 2,
                unchanged: 7,
                rejected: 2,
            })
            .await
            .then_expect_events(vec![ImportEvent::ImportCommitted(ImportCommitted {
                import_id: id(),
                chunks: 2,
                added: 13,
                updated: 2,
                unchanged: 7,
                rejected: 2,
                skipped: 1,
            })]);
    }

    #[tokio::test]
    async fn m2_an_import_without_changes_completes_at_once() {
        Given::with(())
            .given_no_previous_events()
            .when_async(ImportCommand::Complete {
                import_id: id(),
                chunks: 0,
                unchanged: 4,
                rejected: 1,
            })
            .await
            .then_expect_events(vec![ImportEvent::ImportCommitted(ImportCommitted {
                import_id: id(),
                chunks: 0,
                added: 0,
                updated: 0,
                unchanged: 4,
                rejected: 1,
                skipped: 0,
            })]);
    }

    #[tokio::test]
    async fn m2_an_import_is_not_completed_before_its_last_chunk() {
        Given::with(())
            .given(vec![chunk(0, 2, 10)])
            .when_async(ImportCommand::Complete {
                import_id: id(),
                chunks: 2,
                unchanged: 0,
                rejected: 0,
            })
            .await
            .then_expect_error(ImportError::Incomplete {
                committed: 1,
                chunks: 2,
            });
    }

    #[tokio::test]
    async fn m2_a_completed_import_applies_nothing_again() {
        let done = ImportEvent::ImportCommitted(ImportCommitted {
            import_id: id(),
            chunks: 1,
            added: 10,
            updated: 1,
            unchanged: 0,
            rejected: 0,
            skipped: 0,
        });
        Given::with(())
            .given(vec![chunk(0, 1, 10), done.clone()])
            .when_async(commit(0, 1, 10))
            .await
            .then_expect_error(ImportError::AlreadyCommitted);
        Given::with(())
            .given(vec![chunk(0, 1, 10), done])
            .when_async(ImportCommand::Complete {
                import_id: id(),
                chunks: 1,
                unchanged: 0,
                rejected: 0,
            })
            .await
            .then_expect_error(ImportError::AlreadyCommitted);
    }
}
