//! JSON Schemas of the events as they are published (issue 5, E5),
//! generated from the Rust types, and the names that tie a published event
//! to its schema: CloudEvents `type`, `dataschema` and the schema file.
//!
//! Every aggregate's event enum is listed once, in [`event_schemas`]; each
//! (type, version) of its `TYPES` list gets one schema. A variant without a
//! `TYPES` entry, or an entry without a variant, is an error, so the lists
//! cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::{
    CustomerEvent, DirectoryEvent, DirectoryObjectsEvent, UserEvent, CUSTOMER_AGGREGATE,
    DIRECTORY_AGGREGATE, DIRECTORY_OBJECTS_AGGREGATE, USER_AGGREGATE,
};
use crate::{ImportEvent, IMPORT_AGGREGATE};
use crate::{SyncReportEvent, SYNC_REPORT_AGGREGATE};

/// The JSON Schema dialect of the generated files.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The schema of one event type at its current version: the shape of the
/// CloudEvent's `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSchema {
    pub aggregate_type: &'static str,
    pub event_type: &'static str,
    /// The current `event_version` (`major.minor`).
    pub version: &'static str,
    pub schema: Value,
}

impl EventSchema {
    /// The file name under `docs/schemas/`.
    pub fn file_name(&self) -> String {
        schema_file_name(self.event_type, self.version)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{aggregate}: event types without a TYPES entry: {missing:?}; TYPES entries without a variant: {extra:?}")]
    Mismatch {
        aggregate: &'static str,
        missing: Vec<String>,
        extra: Vec<String>,
    },
    #[error("event type {0} is declared by two aggregates")]
    Duplicate(String),
    #[error("unexpected schema shape for {0}")]
    Shape(String),
}

/// The major part of an event version: `1.2` is `1`.
pub fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// The CloudEvents `type` of an event: `com.roster.UserAdded.v1`. It
/// changes only with the major version (a breaking change).
pub fn cloudevent_type(event_type: &str, version: &str) -> String {
    format!("com.roster.{event_type}.v{}", major(version))
}

/// The CloudEvents `dataschema` of an event, also the `$id` of its schema
/// file: `urn:roster:schema:UserAdded:v1`.
pub fn schema_id(event_type: &str, version: &str) -> String {
    format!("urn:roster:schema:{event_type}:v{}", major(version))
}

/// The schema's file name under `docs/schemas/`: `UserAdded.v1.json`.
pub fn schema_file_name(event_type: &str, version: &str) -> String {
    format!("{event_type}.v{}.json", major(version))
}

/// Every event type of every aggregate, with its schema. A new aggregate's
/// event enum is added here, and only here.
pub fn event_schemas() -> Result<Vec<EventSchema>, SchemaError> {
    let mut out = Vec::new();
    schemas_of::<UserEvent>(USER_AGGREGATE, UserEvent::TYPES, &mut out)?;
    schemas_of::<CustomerEvent>(CUSTOMER_AGGREGATE, CustomerEvent::TYPES, &mut out)?;
    schemas_of::<DirectoryEvent>(DIRECTORY_AGGREGATE, DirectoryEvent::TYPES, &mut out)?;
    schemas_of::<DirectoryObjectsEvent>(
        DIRECTORY_OBJECTS_AGGREGATE,
        DirectoryObjectsEvent::TYPES,
        &mut out,
    )?;
    schemas_of::<ImportEvent>(IMPORT_AGGREGATE, ImportEvent::TYPES, &mut out)?;
    schemas_of::<SyncReportEvent>(SYNC_REPORT_AGGREGATE, SyncReportEvent::TYPES, &mut out)?;
    let mut seen = BTreeSet::new();
    for s in &out {
        if !seen.insert(s.event_type) {
            return Err(SchemaError::Duplicate(s.event_type.to_string()));
        }
    }
    Ok(out)
}

/// The schemas of one aggregate's events: the enum is externally tagged
/// (`{"UserAdded": {...}}`, as stored), and the published `data` is the
/// inner object, so each variant's schema becomes a document of its own
/// with the definitions it uses.
fn schemas_of<E: JsonSchema>(
    aggregate: &'static str,
    types: &'static [(&'static str, &'static str)],
    out: &mut Vec<EventSchema>,
) -> Result<(), SchemaError> {
    let generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let root = generator.into_root_schema_for::<E>().to_value();
    let defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let variants = root
        .get("oneOf")
        .and_then(Value::as_array)
        .ok_or_else(|| SchemaError::Shape(aggregate.to_string()))?;
    let mut by_name: BTreeMap<String, Value> = BTreeMap::new();
    for v in variants {
        let props = v
            .get("properties")
            .and_then(Value::as_object)
            .filter(|p| p.len() == 1)
            .ok_or_else(|| SchemaError::Shape(aggregate.to_string()))?;
        for (name, schema) in props {
            by_name.insert(name.clone(), schema.clone());
        }
    }
    let declared: BTreeSet<&str> = types.iter().map(|(t, _)| *t).collect();
    let missing: Vec<String> = by_name
        .keys()
        .filter(|n| !declared.contains(n.as_str()))
        .cloned()
        .collect();
    let extra: Vec<String> = declared
        .iter()
        .filter(|t| !by_name.contains_key(**t))
        .map(|t| t.to_string())
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(SchemaError::Mismatch {
            aggregate,
            missing,
            extra,
        });
    }
    for (event_type, version) in types {
        let mut body = by_name[*event_type].clone();
        if let Some(target) = body.get("$ref").and_then(Value::as_str) {
            let name = target.trim_start_matches("#/$defs/").to_string();
            body = defs
                .get(&name)
                .cloned()
                .ok_or_else(|| SchemaError::Shape(event_type.to_string()))?;
        }
        let mut needed = BTreeSet::new();
        collect_refs(&body, &defs, &mut needed);
        let mut doc = Map::new();
        doc.insert("$schema".into(), json!(DIALECT));
        doc.insert("$id".into(), json!(schema_id(event_type, version)));
        doc.insert(
            "title".into(),
            json!(format!(
                "{event_type} v{} ({aggregate} event)",
                major(version)
            )),
        );
        if let Value::Object(fields) = body {
            for (k, v) in fields {
                if k != "title" {
                    doc.insert(k, v);
                }
            }
        }
        if !needed.is_empty() {
            let used: Map<String, Value> = needed
                .into_iter()
                .filter_map(|n| defs.get(&n).map(|d| (n, d.clone())))
                .collect();
            doc.insert("$defs".into(), Value::Object(used));
        }
        out.push(EventSchema {
            aggregate_type: aggregate,
            event_type,
            version,
            schema: Value::Object(doc),
        });
    }
    Ok(())
}

/// Every definition `value` refers to, directly or through other definitions.
fn collect_refs(value: &Value, defs: &Map<String, Value>, needed: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(name) = v.as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
                        if needed.insert(name.to_string()) {
                            if let Some(def) = defs.get(name) {
                                collect_refs(def, defs, needed);
                            }
                        }
                    }
                } else {
                    collect_refs(v, defs, needed);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, defs, needed)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e5_every_declared_event_type_has_a_schema() {
        let schemas = event_schemas().unwrap();
        let expected = UserEvent::TYPES.len()
            + CustomerEvent::TYPES.len()
            + DirectoryEvent::TYPES.len()
            + DirectoryObjectsEvent::TYPES.len()
            + ImportEvent::TYPES.len()
            + SyncReportEvent::TYPES.len();
        assert_eq!(schemas.len(), expected);
        let added = schemas
            .iter()
            .find(|s| s.event_type == "UserAdded")
            .unwrap();
        assert_eq!(added.schema["$id"], "urn:roster:schema:UserAdded:v1");
        assert_eq!(added.schema["type"], "object");
        let required: Vec<&str> = added.schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(required.contains(&"address"), "{required:?}");
        // Optional in the output (skipped when empty), so not required.
        assert!(!required.contains(&"aliases"), "{required:?}");
        // Every reference resolves inside the document.
        let text = added.schema.to_string();
        for name in ["Source", "Kind", "Profile"] {
            assert!(text.contains(&format!("#/$defs/{name}")), "{text}");
            assert!(added.schema["$defs"].get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn e5_names_follow_the_major_version() {
        assert_eq!(
            cloudevent_type("UserAdded", "1.0"),
            "com.roster.UserAdded.v1"
        );
        assert_eq!(
            cloudevent_type("UserAdded", "2.3"),
            "com.roster.UserAdded.v2"
        );
        assert_eq!(
            schema_file_name("DomainAdded", "1.4"),
            "DomainAdded.v1.json"
        );
        assert_eq!(schema_id("X", "3"), "urn:roster:schema:X:v3");
    }
}
