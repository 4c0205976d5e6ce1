//! Decoding stored events once per batch, for every projection.

use roster_events::{
    CustomerEvent, DirectoryEvent, DirectoryObjectsEvent, EventMeta, SyncReportEvent, UserEvent,
    CUSTOMER_AGGREGATE, DIRECTORY_AGGREGATE, DIRECTORY_OBJECTS_AGGREGATE, SYNC_REPORT_AGGREGATE,
    USER_AGGREGATE,
};
use roster_store::StoredEvent;

/// A stored event with its typed payload and metadata.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub recorded_at: i64,
    pub meta: EventMeta,
    pub event: AnyEvent,
}

#[derive(Debug, Clone)]
pub enum AnyEvent {
    User(UserEvent),
    Customer(CustomerEvent),
    Directory(DirectoryEvent),
    DirectoryObjects(DirectoryObjectsEvent),
    SyncReport(SyncReportEvent),
    /// An aggregate these projections do not know (a later feature); skipped.
    Other,
}

/// The metadata of the event decoded last, by its text: an append stamps
/// one text on all its events, so a batch parses it once per append, not
/// once per event (issue 17: a 100,000-user run's events share one).
#[derive(Default)]
pub struct MetaCache(Option<(String, EventMeta)>);

impl MetaCache {
    fn meta(&mut self, text: &str) -> Result<EventMeta, String> {
        if let Some((last, meta)) = &self.0 {
            if last == text {
                return Ok(meta.clone());
            }
        }
        let meta = EventMeta::from_text(text).map_err(|err| err.to_string())?;
        self.0 = Some((text.to_string(), meta.clone()));
        Ok(meta)
    }
}

/// Decodes one stored event; the error names the position and what is
/// wrong. `metas` keeps the last metadata parsed, for a run of events that
/// share it.
pub fn decode(
    e: StoredEvent,
    upcasters: &[Box<dyn cqrs_es::persist::EventUpcaster>],
    metas: &mut MetaCache,
) -> Result<Decoded, String> {
    let meta = metas.meta(e.metadata.get())?;
    let (position, aggregate_type, aggregate_id, sequence, event_type, recorded_at) = (
        e.position,
        e.aggregate_type.clone(),
        e.aggregate_id.clone(),
        e.sequence,
        e.event_type.clone(),
        e.recorded_at,
    );
    let event = match aggregate_type.as_str() {
        USER_AGGREGATE => AnyEvent::User(
            roster_store::decode::<UserEvent>(e, upcasters).map_err(|err| err.to_string())?,
        ),
        CUSTOMER_AGGREGATE => AnyEvent::Customer(
            roster_store::decode::<CustomerEvent>(e, upcasters).map_err(|err| err.to_string())?,
        ),
        DIRECTORY_AGGREGATE => AnyEvent::Directory(
            roster_store::decode::<DirectoryEvent>(e, upcasters).map_err(|err| err.to_string())?,
        ),
        DIRECTORY_OBJECTS_AGGREGATE => AnyEvent::DirectoryObjects(
            roster_store::decode::<DirectoryObjectsEvent>(e, upcasters)
                .map_err(|err| err.to_string())?,
        ),
        SYNC_REPORT_AGGREGATE => AnyEvent::SyncReport(
            roster_store::decode::<SyncReportEvent>(e, upcasters).map_err(|err| err.to_string())?,
        ),
        _ => AnyEvent::Other,
    };
    Ok(Decoded {
        position,
        aggregate_type,
        aggregate_id,
        sequence,
        event_type,
        recorded_at,
        meta,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_events::{CorrelationId, CustomerId};

    fn meta_text(customer: u128, actor: &str, correlation: u128) -> String {
        let meta = EventMeta {
            customer_id: CustomerId(uuid::Uuid::from_u128(customer)),
            actor: actor.parse().unwrap(),
            correlation_id: CorrelationId(uuid::Uuid::from_u128(correlation)),
            time: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
        };
        serde_json::to_string(&meta.to_map()).unwrap()
    }

    /// Issue 17 (E2): the metadata a batch takes from its cache is what
    /// parsing each event's own text gives: the same text gives the same
    /// metadata, another text its own, and a text that cannot be read is
    /// refused without disturbing what the cache holds.
    #[test]
    fn e2_metadata_shared_by_a_run_of_events_is_parsed_once_and_read_alike() {
        let mut metas = MetaCache::default();
        let a = meta_text(1, "system:sync", 7);
        let b = meta_text(2, "system:import", 8);
        for text in [&a, &a, &b, &a, &b, &b] {
            assert_eq!(
                metas.meta(text).unwrap(),
                EventMeta::from_text(text).unwrap()
            );
        }
        assert!(metas.meta("{\"customer_id\": \"nope\"}").is_err());
        assert!(metas.meta("not json").is_err());
        assert_eq!(metas.meta(&b).unwrap(), EventMeta::from_text(&b).unwrap());
        let cached = metas.0.as_ref().map(|(t, _)| t.as_str());
        assert_eq!(cached, Some(b.as_str()), "the last good text is kept");
    }
}
