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

/// Decodes one stored event; the error names the position and what is wrong.
pub fn decode(
    e: StoredEvent,
    upcasters: &[Box<dyn cqrs_es::persist::EventUpcaster>],
) -> Result<Decoded, String> {
    let meta = EventMeta::from_text(e.metadata.get()).map_err(|err| err.to_string())?;
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
