//! The events this process committed last, kept for the readers of the
//! whole log in the same process (the projector, the relay).
//!
//! Issue 17: every append was written to the database and then read back
//! from it by the projector, whose read of a CSV commit's 100,000 events
//! (about 50 MB of payload text) cost the database a read of every row and
//! the server a decode of each. An append's events are known exactly once
//! it has committed: the same texts, positions and stamps a read gives.
//! They are kept here, up to [`RECENT_BYTES`] of payload text, and a read
//! of the log takes from here what follows its position and reads the rest
//! from the database ([`crate::Store::read_from_within`]).
//!
//! Only committed appends are kept (an append rolled back, or whose commit
//! failed, never is), and only as one run of consecutive positions: an
//! append that does not follow the last one kept (another process appended
//! in between) starts the run again. Positions are never reused (E6), so
//! what is kept never goes stale; a read that finds its position here gets
//! what the database holds for it.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::log::StoredEvent;

/// How much payload text is kept: a CSV commit's chunk of 5,000 users is
/// about 2.5 MB, a manual edit a few hundred bytes.
pub const RECENT_BYTES: usize = 16 << 20;

/// Committed events at consecutive positions, oldest first.
#[derive(Default)]
pub(crate) struct Recent {
    inner: Mutex<Run>,
}

#[derive(Default)]
struct Run {
    events: VecDeque<StoredEvent>,
    bytes: usize,
}

/// What a read took from the kept events.
pub(crate) struct Taken {
    pub events: Vec<StoredEvent>,
    /// Their payloads' text, in bytes.
    pub bytes: i64,
}

impl Recent {
    /// Keeps the events of a committed append (consecutive positions, in
    /// order), dropping the oldest kept beyond [`RECENT_BYTES`].
    pub(crate) fn keep(&self, events: Vec<StoredEvent>) {
        let Some(first) = events.first().map(|e| e.position) else {
            return;
        };
        let mut run = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if run.events.back().map(|e| e.position + 1) != Some(first) {
            run.events.clear();
            run.bytes = 0;
        }
        for e in events {
            run.bytes += e.payload.get().len();
            run.events.push_back(e);
        }
        while run.bytes > RECENT_BYTES {
            match run.events.pop_front() {
                Some(e) => run.bytes -= e.payload.get().len(),
                None => break,
            }
        }
    }

    /// The first and last positions kept, if any.
    pub(crate) fn span(&self) -> Option<(i64, i64)> {
        let run = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Some((run.events.front()?.position, run.events.back()?.position))
    }

    /// The kept events after `after`, as [`crate::Store::read_from_within`]
    /// selects them: at most `limit`, none after the first that brings the
    /// payloads' text to `max_bytes`. Empty when the event at `after + 1`
    /// is not kept.
    pub(crate) fn take(&self, after: i64, limit: i64, max_bytes: i64) -> Taken {
        let mut taken = Taken {
            events: Vec::new(),
            bytes: 0,
        };
        let run = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(start) = run.events.front().map(|e| e.position) else {
            return taken;
        };
        let Ok(skip) = usize::try_from(after + 1 - start) else {
            return taken;
        };
        for e in run.events.iter().skip(skip) {
            if taken.events.len() as i64 >= limit || taken.bytes >= max_bytes {
                break;
            }
            taken.bytes += e.payload.get().len() as i64;
            taken.events.push(e.clone());
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::RawJson;

    fn event(position: i64, payload_len: usize) -> StoredEvent {
        StoredEvent {
            position,
            aggregate_type: "User".into(),
            aggregate_id: format!("u{position}"),
            sequence: 1,
            event_type: "UserAdded".into(),
            event_version: "1".into(),
            payload: RawJson::from_text(format!("\"{}\"", "x".repeat(payload_len - 2))).unwrap(),
            metadata: RawJson::from_text("{}").unwrap(),
            customer_id: Some("c".into()),
            recorded_at: 0,
        }
    }

    fn positions(t: &Taken) -> Vec<i64> {
        t.events.iter().map(|e| e.position).collect()
    }

    #[test]
    fn e1_kept_events_are_taken_as_a_budgeted_read_selects_them() {
        let recent = Recent::default();
        recent.keep((1..=10).map(|p| event(p, 100)).collect());
        assert_eq!(
            positions(&recent.take(0, 100, 1 << 20)),
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(
            positions(&recent.take(3, 4, 1 << 20)),
            vec![4, 5, 6, 7],
            "the limit"
        );
        // 250 bytes: 100 and 200 before the third are under it, 300 is not.
        let t = recent.take(0, 100, 250);
        assert_eq!((positions(&t), t.bytes), (vec![1, 2, 3], 300));
        assert_eq!(positions(&recent.take(0, 100, 1)), vec![1], "at least one");
        assert!(
            recent.take(10, 100, 1 << 20).events.is_empty(),
            "after the last"
        );
        assert!(recent.take(11, 100, 1 << 20).events.is_empty());
    }

    #[test]
    fn e1_a_gap_starts_the_run_again_and_an_earlier_position_is_not_kept() {
        let recent = Recent::default();
        recent.keep((1..=5).map(|p| event(p, 10)).collect());
        recent.keep((6..=8).map(|p| event(p, 10)).collect());
        assert_eq!(
            positions(&recent.take(0, 100, 1 << 20)),
            (1..=8).collect::<Vec<_>>()
        );
        // Another process appended 9..=11: the next kept append starts a run.
        recent.keep((12..=13).map(|p| event(p, 10)).collect());
        assert!(recent.take(0, 100, 1 << 20).events.is_empty());
        assert!(
            recent.take(8, 100, 1 << 20).events.is_empty(),
            "9 is not kept"
        );
        assert_eq!(positions(&recent.take(11, 100, 1 << 20)), vec![12, 13]);
    }

    #[test]
    fn e1_the_oldest_go_beyond_the_budget() {
        let recent = Recent::default();
        let each = RECENT_BYTES / 4;
        recent.keep((1..=6).map(|p| event(p, each)).collect());
        assert!(
            recent.take(0, 100, i64::MAX).events.is_empty(),
            "1 and 2 went"
        );
        assert_eq!(positions(&recent.take(2, 100, i64::MAX)), vec![3, 4, 5, 6]);
    }
}
