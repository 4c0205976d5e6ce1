//! The JSON Schemas in `docs/schemas/` are generated from the event types
//! (issue 5, E5) and must stay current: this test regenerates them in
//! memory and fails when a file differs or is missing. To rewrite them:
//!
//!   ROSTER_WRITE_SCHEMAS=1 cargo test -p roster-events --test schemas
//!
//! It also checks the schemas against the stored samples of every event
//! (`tests/stored/`): each sample's data has the required fields and no
//! field the schema does not know.

use std::path::PathBuf;

use roster_events::schema::{event_schemas, schema_file_name};
use serde_json::Value;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas")
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

#[test]
fn e5_json_schemas_in_docs_are_current() {
    let write = std::env::var_os("ROSTER_WRITE_SCHEMAS").is_some_and(|v| v == "1");
    let dir = schemas_dir();
    let mut stale = Vec::new();
    for s in event_schemas().expect("schemas") {
        let path = dir.join(s.file_name());
        let want = pretty(&s.schema);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &want).unwrap();
            } else {
                stale.push(s.file_name());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale or missing JSON Schemas in docs/schemas: {stale:?}; regenerate with \
         ROSTER_WRITE_SCHEMAS=1 cargo test -p roster-events --test schemas, and review the diff \
         against the versioning policy in docs/events.md"
    );
}

/// Resolves `#/$defs/X` references (one level is enough for our shapes).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or(v),
        None => v,
    }
}

/// A small structural check: objects have their required properties and
/// no unknown ones; nested objects are checked the same way.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let (Some(props), Some(obj)) = (schema.get("properties"), value.as_object()) {
        for req in schema["required"].as_array().into_iter().flatten() {
            let name = req.as_str().unwrap();
            if !obj.contains_key(name) {
                errors.push(format!("{at}: required '{name}' missing"));
            }
        }
        for (k, v) in obj {
            match props.get(k) {
                None => errors.push(format!("{at}: '{k}' is not in the schema")),
                Some(p) => check(doc, p, v, &format!("{at}.{k}"), errors),
            }
        }
    }
}

#[test]
fn e5_stored_samples_fit_their_schemas() {
    let schemas = event_schemas().unwrap();
    let stored = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/stored");
    let mut checked = 0;
    for s in &schemas {
        let sample = stored.join(format!(
            "{}.{}.v{}.json",
            s.aggregate_type, s.event_type, s.version
        ));
        let text = std::fs::read_to_string(&sample)
            .unwrap_or_else(|e| panic!("{}: {e}", sample.display()));
        let sample: Value = serde_json::from_str(&text).unwrap();
        let data = &sample["payload"][s.event_type];
        assert!(data.is_object(), "{}: {sample}", s.event_type);
        let mut errors = Vec::new();
        check(&s.schema, &s.schema, data, s.event_type, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            s.file_name(),
            schema_file_name(s.event_type, s.version),
            "file names follow the major version"
        );
        checked += 1;
    }
    assert_eq!(checked, schemas.len());
    // Every event type that has a stored sample (each aggregate's events do,
    // see stored_shapes.rs) has a schema: a new aggregate's enum that is not
    // listed in `event_schemas` fails here.
    for entry in std::fs::read_dir(&stored).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let mut parts = name.splitn(3, '.');
        let (Some(aggregate), Some(event_type)) = (parts.next(), parts.next()) else {
            continue;
        };
        assert!(
            schemas
                .iter()
                .any(|s| s.aggregate_type == aggregate && s.event_type == event_type),
            "{name}: {aggregate}.{event_type} has no JSON Schema; list its enum in \
             roster_events::schema::event_schemas"
        );
    }
}
