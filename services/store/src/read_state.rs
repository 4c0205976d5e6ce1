//! What a directory reader keeps between runs for delta sync (B1), kept
//! beside the log (see `migrations/*/0030_directory_read_state.sql`).

use roster_events::CustomerId;

use crate::{micros, with_db, Db, StoreError};

/// A stored state compressed with LZ4 (a block with its length before
/// it) starts with these bytes; a state stored before compression (issue
/// 17) has none and is read as it is. Neither reader's own format starts
/// with them (LDAP: `RLD1`, or `RLD2` compressed by the reader; Entra:
/// JSON).
const LZ4_MAGIC: &[u8; 4] = b"RLZ4";

/// Who compresses a read state ([`Db::put_read_state`]); either way the
/// reader gets its own bytes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// The store compresses the reader's bytes.
    ByStore,
    /// The reader compressed them as it wrote them: kept as they are.
    ByReader,
}

/// The bytes to store for `state`: LZ4, which keeps a 100,000-user
/// directory's state a fraction of its size at memory speed, where the
/// database's own compression (pglz) took half a second to store and to
/// load it (issue 17).
fn pack(state: &[u8]) -> Vec<u8> {
    // Compressed in place after the magic and the length, as
    // `compress_prepend_size` lays them out, without a second copy of the
    // block (issue 17: this runs beside the plan, at the run's memory peak).
    let head = LZ4_MAGIC.len() + 4;
    let mut out = vec![0; head + lz4_flex::block::get_maximum_output_size(state.len())];
    out[..LZ4_MAGIC.len()].copy_from_slice(LZ4_MAGIC);
    let len = u32::try_from(state.len()).expect("a read state is under 4 GiB");
    out[LZ4_MAGIC.len()..head].copy_from_slice(&len.to_le_bytes());
    let n = lz4_flex::block::compress_into(state, &mut out[head..])
        .expect("the output is sized for the worst case");
    // Not shrunk to fit: that would copy the block once more, and the
    // vector lives only until it is sent.
    out.truncate(head + n);
    out
}

/// The state as the reader gave it.
fn unpack(stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    match stored.strip_prefix(LZ4_MAGIC.as_slice()) {
        Some(block) => lz4_flex::block::decompress_size_prepended(block).map_err(|e| {
            StoreError::Corrupt(format!(
                "the stored directory read state does not decompress: {e}"
            ))
        }),
        None => Ok(stored),
    }
}

impl Db {
    /// The state the last successful read of this customer's directory
    /// left, if any.
    pub async fn get_read_state(
        &self,
        customer: CustomerId,
        kind: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> = with_db!(self, |p| {
            sqlx::query_as(
                "SELECT state FROM directory_read_state WHERE customer_id = $1 AND kind = $2",
            )
            .bind(customer.to_string())
            .bind(kind)
            .fetch_optional(p)
            .await?
        });
        row.map(|r| unpack(r.0)).transpose()
    }

    /// Replaces the state (one row per customer and kind). A state the
    /// store packs is dropped once compressed, before it is sent; one the
    /// reader compressed is kept as it is, and may not start with the
    /// store's own LZ4 marker (it would read back as one of the store's
    /// blocks).
    pub async fn put_read_state(
        &self,
        customer: CustomerId,
        kind: &str,
        state: Vec<u8>,
        packing: Packing,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let state = match packing {
            // The reader's bytes go as soon as they are packed, not at the
            // end of this function (a shadowing `let` would keep them
            // through the INSERT, beside the run's plan).
            Packing::ByStore => {
                let packed = pack(&state);
                drop(state);
                packed
            }
            Packing::ByReader if state.starts_with(LZ4_MAGIC) => {
                return Err(StoreError::Corrupt(
                    "a reader's compressed state starts with the store's LZ4 marker, so it could not be read back as it is".into(),
                ));
            }
            Packing::ByReader => state,
        };
        with_db!(self, |p| {
            sqlx::query(
                "INSERT INTO directory_read_state (customer_id, kind, state, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (customer_id, kind) DO UPDATE SET state = excluded.state,
                   updated_at = excluded.updated_at",
            )
            .bind(customer.to_string())
            .bind(kind)
            // By value: sqlx encodes it as it binds and drops it, rather
            // than this function holding a second copy through the INSERT.
            .bind(state)
            .bind(micros(now))
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b1_read_state_is_stored_compressed_and_earlier_states_still_read() {
        let state: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("RLD1 user{i}@example.org Zoë Müller {i}\n").into_bytes())
            .collect();
        let packed = pack(&state);
        assert!(packed.starts_with(LZ4_MAGIC));
        // The layout of lz4_flex's `compress_prepend_size`, which earlier
        // versions stored and `unpack` reads.
        assert_eq!(
            packed[LZ4_MAGIC.len()..],
            lz4_flex::block::compress_prepend_size(&state)[..]
        );
        assert!(
            packed.len() * 3 < state.len(),
            "{} of {}",
            packed.len(),
            state.len()
        );
        assert_eq!(unpack(packed.clone()).unwrap(), state);
        // A state stored before compression is read as it is.
        assert_eq!(unpack(state.clone()).unwrap(), state);
        assert_eq!(unpack(Vec::new()).unwrap(), Vec::<u8>::new());
        // A damaged block is an error, never a different state.
        let mut damaged = packed[..packed.len() / 2].to_vec();
        damaged.extend_from_slice(&[0xff; 16]);
        assert!(matches!(unpack(damaged), Err(StoreError::Corrupt(_))));
    }
}
