//! Stored events as CloudEvents 1.0 in the JSON event format, the
//! *structured* content mode of the CloudEvents NATS protocol binding (see
//! `docs/events.md` for why structured, and for every attribute).

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use roster_events::schema::{cloudevent_type, schema_id};
use roster_events::{META_ACTOR, META_CORRELATION, META_CUSTOMER, META_TIME};
use roster_store::{RawJson, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bus::BusMessage;

/// The NATS `Content-Type` header of every message: a structured-mode CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";
/// The `datacontenttype` of every event: `data` is a JSON object.
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// The subject token used for an event without a customer (none today).
pub const NO_CUSTOMER: &str = "_";

/// A CloudEvent as Roster publishes it. The extension attributes carry the
/// log's coordinates and the metadata of E2. `data` is a JSON value for a
/// subscriber; the relay publishes the stored text of the payload as it is
/// ([`RawJson`], issue 17).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent<D = Value> {
    pub specversion: String,
    /// `<aggregate_type>:<aggregate_id>:<sequence>`, unique across the whole
    /// log and stable across republishing (also the JetStream `Nats-Msg-Id`).
    /// A customer's Customer, Directory and DirectoryObjects aggregates share
    /// the customer's id, so the aggregate type is part of the id.
    pub id: String,
    /// `roster/customers/<customer_id>`.
    pub source: String,
    /// `com.roster.<EventType>.v<major>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The user's primary address when the event happened, or the domain
    /// of a domain event; absent for customer-wide events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When the change happened (RFC 3339, UTC, microseconds).
    pub time: String,
    pub datacontenttype: String,
    /// `urn:roster:schema:<EventType>:v<major>`, the `$id` of
    /// `docs/schemas/<EventType>.v<major>.json`.
    pub dataschema: String,
    /// Extension: position in the log's global order (gapless, increasing).
    pub position: i64,
    /// Extension: `User` or `Customer`.
    pub aggregatetype: String,
    /// Extension: the aggregate's id (a user id stays the same across renames and returns).
    pub aggregateid: String,
    /// Extension: the event's sequence number within its aggregate (1, 2, ...).
    pub aggregatesequence: i64,
    /// Extension: the full schema version of `data` (`major.minor`).
    pub eventversion: String,
    /// Extension: the customer (tenant) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customerid: Option<String>,
    /// Extension: who caused it: `token:<id>`, `sync:<run>` or `system:<name>` (E2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Extension: the request, sync run or import it belongs to (E2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlationid: Option<String>,
    /// Extension (CloudEvents distributed tracing): the W3C trace context of
    /// the request or run that wrote the event, when tracing was on, so a
    /// subscriber continues that trace (issue 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The event's payload, as described by `dataschema`.
    pub data: D,
}

/// Keeps a subject token free of the characters NATS gives meaning to.
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect();
    if t.is_empty() {
        NO_CUSTOMER.to_string()
    } else {
        t
    }
}

/// The NATS subject of an event: `<prefix>.<customer_id>.<EventType>`.
pub fn subject_for(prefix: &str, customer: Option<&str>, event_type: &str) -> String {
    format!(
        "{prefix}.{}.{}",
        token(customer.unwrap_or(NO_CUSTOMER)),
        token(event_type)
    )
}

/// The message id of an event: `<aggregate_type>:<aggregate_id>:<sequence>`.
/// The log holds at most one event per (aggregate type, aggregate id,
/// sequence), so the id is unique across the whole log (E5).
pub fn message_id(aggregate_type: &str, aggregate_id: &str, sequence: i64) -> String {
    format!("{aggregate_type}:{aggregate_id}:{sequence}")
}

fn meta_str(meta: &Value, key: &str) -> Option<String> {
    meta.get(key).and_then(Value::as_str).map(str::to_string)
}

/// What a CloudEvent takes from a stored event's payload: `data` (stored
/// payloads are externally tagged, `{"UserAdded": {...}}`, and `data` is the
/// inner object) and `subject` (its `address`, or else its `domain`, when
/// a string).
struct Data {
    data: RawJson,
    subject: Option<String>,
}

/// [`Data`] read from the stored text without building a generic value:
/// `None` when the text is not as every current event's is (then
/// [`data_of_value`] decides, as it did before the fast path).
fn data_of_text(payload: &RawJson, event_type: &str) -> Option<Data> {
    #[derive(Deserialize)]
    struct Subject<'a> {
        #[serde(borrow, default)]
        address: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        domain: Option<&'a serde_json::value::RawValue>,
    }
    let tagged: std::collections::HashMap<String, &serde_json::value::RawValue> =
        serde_json::from_str(payload.get()).ok()?;
    let inner = match tagged.get(event_type) {
        Some(inner) if tagged.len() == 1 => *inner,
        _ => return None,
    };
    // Only an object has fields (serde would also fill the struct from an
    // array, by position).
    if !inner.get().trim_start().starts_with('{') {
        return None;
    }
    let fields: Subject = serde_json::from_str(inner.get()).ok()?;
    let subject = [fields.address, fields.domain]
        .into_iter()
        .flatten()
        .find_map(|v| serde_json::from_str::<String>(v.get()).ok());
    Some(Data {
        data: RawJson::from(inner),
        subject,
    })
}

/// [`Data`] of a payload as a generic value (an upcast event, or a payload
/// [`data_of_text`] does not take).
fn data_of_value(payload: Value, event_type: &str) -> Data {
    let data = match payload {
        Value::Object(mut map) if map.len() == 1 && map.contains_key(event_type) => {
            map.remove(event_type).unwrap_or(Value::Null)
        }
        other => other,
    };
    let subject = ["address", "domain"]
        .iter()
        .find_map(|k| data.get(*k).and_then(Value::as_str))
        .map(str::to_string);
    Data {
        data: RawJson::from_value(&data),
        subject,
    }
}

/// Builds the CloudEvent of a stored event, brought to the current shape by
/// the upcasters. Never fails: whatever is stored is published, so one odd
/// event cannot stop the relay.
pub fn cloudevent(e: StoredEvent, upcasters: &[Box<dyn EventUpcaster>]) -> CloudEvent<RawJson> {
    let position = e.position;
    let recorded_at = e.recorded_at;
    let column_customer = e.customer_id.clone();
    let mut metadata = e.metadata.value().unwrap_or(Value::Null);
    let fast = if roster_store::exec::upcasts(upcasters, &e.event_type, &e.event_version) {
        None
    } else {
        data_of_text(&e.payload, &e.event_type)
    };
    let (aggregate_id, sequence, aggregate_type, event_type, event_version, data) = match fast {
        Some(data) => (
            e.aggregate_id,
            usize::try_from(e.sequence).unwrap_or_default(),
            e.aggregate_type,
            e.event_type,
            e.event_version,
            data,
        ),
        None => {
            let payload = e.payload.value().unwrap_or(Value::Null);
            let serialized = roster_events::upcast(
                SerializedEvent {
                    aggregate_id: e.aggregate_id,
                    sequence: usize::try_from(e.sequence).unwrap_or_default(),
                    aggregate_type: e.aggregate_type,
                    event_type: e.event_type,
                    event_version: e.event_version,
                    payload,
                    metadata: std::mem::take(&mut metadata),
                },
                upcasters,
            );
            metadata = serialized.metadata;
            let data = data_of_value(serialized.payload, &serialized.event_type);
            (
                serialized.aggregate_id,
                serialized.sequence,
                serialized.aggregate_type,
                serialized.event_type,
                serialized.event_version,
                data,
            )
        }
    };
    let customer = column_customer.or_else(|| meta_str(&metadata, META_CUSTOMER));
    let time = meta_str(&metadata, META_TIME)
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| DateTime::<Utc>::from_timestamp_micros(recorded_at))
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    CloudEvent {
        specversion: "1.0".into(),
        id: message_id(&aggregate_type, &aggregate_id, sequence as i64),
        source: format!(
            "roster/customers/{}",
            customer.as_deref().unwrap_or(NO_CUSTOMER)
        ),
        event_type: cloudevent_type(&event_type, &event_version),
        subject: data.subject,
        time,
        datacontenttype: DATA_CONTENT_TYPE.into(),
        dataschema: schema_id(&event_type, &event_version),
        position,
        aggregatetype: aggregate_type,
        aggregateid: aggregate_id,
        aggregatesequence: sequence as i64,
        eventversion: event_version,
        customerid: customer,
        actor: meta_str(&metadata, META_ACTOR),
        correlationid: meta_str(&metadata, META_CORRELATION),
        traceparent: meta_str(&metadata, roster_store::tracecontext::META_TRACEPARENT),
        data: data.data,
    }
}

/// The bus message of a stored event.
pub fn bus_message(
    e: StoredEvent,
    upcasters: &[Box<dyn EventUpcaster>],
    subject_prefix: &str,
) -> BusMessage {
    let recorded_at = e.recorded_at;
    let event_type = e.event_type.clone();
    let ce = cloudevent(e, upcasters);
    let subject = subject_for(subject_prefix, ce.customerid.as_deref(), &event_type);
    let payload = serde_json::to_vec(&ce).unwrap_or_default();
    BusMessage {
        subject,
        msg_id: ce.id,
        position: ce.position,
        event_type,
        recorded_at,
        payload: Bytes::from(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: Value) -> RawJson {
        RawJson::from_value(&v)
    }

    fn stored() -> StoredEvent {
        StoredEvent {
            position: 42,
            aggregate_type: "User".into(),
            aggregate_id: "0190a5a8-7b1e-7c3e-8f4a-1234567890ab".into(),
            sequence: 3,
            event_type: "AliasMapped".into(),
            event_version: "1.0".into(),
            payload: raw(
                json!({"AliasMapped": {"address": "ann@acme.example", "alias": "a@acme.example"}}),
            ),
            metadata: raw(json!({
                "customer_id": "0190a5a8-0000-7000-8000-000000000001",
                "actor": "token:0190a5a8-0000-7000-8000-000000000002",
                "correlation_id": "0190a5a8-0000-7000-8000-000000000003",
                "time": "2026-11-27T09:00:00.123456Z"
            })),
            customer_id: Some("0190a5a8-0000-7000-8000-000000000001".into()),
            recorded_at: 1_795_770_000_123_456,
        }
    }

    #[test]
    fn e5_a_stored_event_becomes_a_structured_cloudevent() {
        let m = bus_message(stored(), &[], "roster.events");
        assert_eq!(
            m.subject,
            "roster.events.0190a5a8-0000-7000-8000-000000000001.AliasMapped"
        );
        assert_eq!(m.msg_id, "User:0190a5a8-7b1e-7c3e-8f4a-1234567890ab:3");
        assert_eq!(m.position, 42);
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(
            v,
            json!({
                "specversion": "1.0",
                "id": "User:0190a5a8-7b1e-7c3e-8f4a-1234567890ab:3",
                "source": "roster/customers/0190a5a8-0000-7000-8000-000000000001",
                "type": "com.roster.AliasMapped.v1",
                "subject": "ann@acme.example",
                "time": "2026-11-27T09:00:00.123456Z",
                "datacontenttype": "application/json",
                "dataschema": "urn:roster:schema:AliasMapped:v1",
                "position": 42,
                "aggregatetype": "User",
                "aggregateid": "0190a5a8-7b1e-7c3e-8f4a-1234567890ab",
                "aggregatesequence": 3,
                "eventversion": "1.0",
                "customerid": "0190a5a8-0000-7000-8000-000000000001",
                "actor": "token:0190a5a8-0000-7000-8000-000000000002",
                "correlationid": "0190a5a8-0000-7000-8000-000000000003",
                "data": {"address": "ann@acme.example", "alias": "a@acme.example"}
            })
        );
        let back: CloudEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back.aggregatesequence, 3);
    }

    #[test]
    fn e5_the_writers_trace_context_is_the_traceparent_attribute() {
        // Issue 16: the CloudEvents distributed-tracing extension.
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut e = stored();
        let mut metadata = e.metadata.value().unwrap();
        metadata["traceparent"] = json!(tp);
        e.metadata = raw(metadata);
        let m = bus_message(e, &[], "roster.events");
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["traceparent"], tp);
        // Without one (tracing off), no attribute at all.
        let m = bus_message(stored(), &[], "roster.events");
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert!(v.get("traceparent").is_none());
    }

    #[test]
    fn e5_odd_events_are_still_published() {
        let mut e = stored();
        e.metadata = raw(json!({}));
        e.customer_id = None;
        e.recorded_at += 3_600_000_000;
        e.event_type = "Some.Future*Type".into();
        e.payload = raw(json!({"unexpected": true}));
        let m = bus_message(e, &[], "p");
        assert_eq!(m.subject, "p._.Some_Future_Type");
        let ce: CloudEvent = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(ce.data, json!({"unexpected": true}));
        // Without a time in the metadata, the commit time.
        assert_eq!(ce.time, "2026-11-27T10:00:00.123456Z");
        assert_eq!(ce.actor, None);
    }

    /// Issue 17: the relay reads `data` and `subject` from the stored text;
    /// for every payload it takes, they are what the generic value gives,
    /// and a payload it does not take is left to the generic value.
    #[test]
    fn e5_data_and_subject_from_the_stored_text_are_those_of_the_value() {
        let payloads = [
            r#"{"AliasMapped":{"address":"ann@acme.example","alias":"a@acme.example"}}"#,
            r#"{"UserAdded":{"customer_id":"c","address":"b\u00e9@acme.example","profile":{"first_name":"Zo\"e"},"aliases":["x@acme.example"]}}"#,
            r#"{"DomainAdded":{"domain":"acme.example"}}"#,
            r#"{"DomainAdded":{"address":7,"domain":"acme.example"}}"#,
            r#"{"UserAdded":{"address":null,"domain":null}}"#,
            r#"{"UserAdded":{"address":{"nested":"x"}}}"#,
            r#"{"UserAdded":{"address":"a@x.example","address":"b@x.example"}}"#,
            r#"{"UserAdded":{"address":"first@x.example"},"UserAdded":{"address":"last@x.example"}}"#,
            r#"{"UserAdded":{"address":"a@x.example"},"Other":{}}"#,
            r#"{"Other":{"address":"a@x.example"}}"#,
            r#"{"UserAdded":["a@x.example"]}"#,
            r#"{"UserAdded":"text"}"#,
            r#"{"U\u0073erAdded":{"address":"escaped-key@x.example"}}"#,
            r#"["UserAdded"]"#,
            r#"null"#,
            r#"{}"#,
        ];
        let mut taken = 0;
        for text in payloads {
            let payload = RawJson::from_text(text).unwrap();
            let by_value = data_of_value(payload.value().unwrap(), "UserAdded");
            let by_value_domain = data_of_value(payload.value().unwrap(), "DomainAdded");
            let by_value_alias = data_of_value(payload.value().unwrap(), "AliasMapped");
            for (event_type, expected) in [
                ("UserAdded", by_value),
                ("DomainAdded", by_value_domain),
                ("AliasMapped", by_value_alias),
            ] {
                let expected_data = expected.data.value().unwrap();
                if let Some(d) = data_of_text(&payload, event_type) {
                    taken += 1;
                    assert_eq!(
                        d.data.value().unwrap(),
                        expected_data,
                        "{text} as {event_type}"
                    );
                    assert_eq!(d.subject, expected.subject, "{text} as {event_type}");
                }
                // Whichever path decides, the published event is the value's.
                let mut e = stored();
                e.event_type = event_type.into();
                e.payload = payload.clone();
                let ce = cloudevent(e, &[]);
                assert_eq!(
                    ce.data.value().unwrap(),
                    expected_data,
                    "{text} as {event_type}"
                );
                assert_eq!(ce.subject, expected.subject, "{text} as {event_type}");
            }
        }
        assert!(
            taken >= 8,
            "the stored text decides for the usual shapes ({taken})"
        );
    }
}
