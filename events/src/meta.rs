//! Event metadata (E2): who, when, and which request, sync run or import.
//!
//! Stored in the `metadata` column of the log as the string map cqrs-es
//! carries in its envelopes.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{AdminId, CorrelationId, CustomerId, TokenId};

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A principal authenticated by an API token.
    Token(TokenId),
    /// A directory sync run.
    Sync(Uuid),
    /// Roster itself (the deletion reaper, the command line).
    System(String),
    /// An administrator signed in to the console (T4, issue 14).
    Admin(AdminId),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Token(id) => write!(f, "token:{id}"),
            Actor::Sync(run) => write!(f, "sync:{}", run.hyphenated()),
            Actor::System(name) => write!(f, "system:{name}"),
            Actor::Admin(id) => write!(f, "admin:{id}"),
        }
    }
}

impl FromStr for Actor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("'{s}' is not an actor: expected token:<id>, admin:<id>, sync:<run> or system:<name>")
        };
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "token" => TokenId::parse(rest).map(Actor::Token).map_err(|_| bad()),
            "admin" => AdminId::parse(rest).map(Actor::Admin).map_err(|_| bad()),
            "sync" => Uuid::parse_str(rest).map(Actor::Sync).map_err(|_| bad()),
            "system" if !rest.is_empty() => Ok(Actor::System(rest.to_string())),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The metadata every event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub customer_id: CustomerId,
    pub actor: Actor,
    pub correlation_id: CorrelationId,
    pub time: DateTime<Utc>,
}

pub const META_CUSTOMER: &str = "customer_id";
pub const META_ACTOR: &str = "actor";
pub const META_CORRELATION: &str = "correlation_id";
pub const META_TIME: &str = "time";

#[derive(Debug, thiserror::Error)]
#[error("event metadata is incomplete or malformed: {0}")]
pub struct MetaError(pub String);

impl EventMeta {
    pub fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            (META_CUSTOMER.to_string(), self.customer_id.to_string()),
            (META_ACTOR.to_string(), self.actor.to_string()),
            (
                META_CORRELATION.to_string(),
                self.correlation_id.to_string(),
            ),
            (
                META_TIME.to_string(),
                self.time.to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
        ])
    }

    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, MetaError> {
        let get = |k: &str| {
            map.get(k)
                .ok_or_else(|| MetaError(format!("missing '{k}'")))
        };
        Ok(Self {
            customer_id: CustomerId::parse(get(META_CUSTOMER)?)
                .map_err(|e| MetaError(e.to_string()))?,
            actor: get(META_ACTOR)?.parse().map_err(MetaError)?,
            correlation_id: CorrelationId::parse(get(META_CORRELATION)?)
                .map_err(|e| MetaError(e.to_string()))?,
            time: DateTime::parse_from_rfc3339(get(META_TIME)?)
                .map_err(|e| MetaError(format!("time: {e}")))?
                .with_timezone(&Utc),
        })
    }

    /// The metadata of its stored JSON text.
    pub fn from_text(text: &str) -> Result<Self, MetaError> {
        let map: HashMap<String, String> =
            serde_json::from_str(text).map_err(|e| MetaError(e.to_string()))?;
        Self::from_map(&map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e2_metadata_round_trips() {
        let meta = EventMeta {
            customer_id: CustomerId::new(),
            actor: Actor::Token(TokenId::new()),
            correlation_id: CorrelationId::new(),
            time: Utc::now(),
        };
        let back = EventMeta::from_map(&meta.to_map()).unwrap();
        assert_eq!(back.customer_id, meta.customer_id);
        assert_eq!(back.actor, meta.actor);
        assert_eq!(back.correlation_id, meta.correlation_id);
        assert_eq!(back.time.timestamp_micros(), meta.time.timestamp_micros());
        for actor in [
            "sync:0190a5a8-7b1e-7c3e-8f4a-1234567890ab",
            "system:reaper",
            "admin:0190a5a8-7b1e-7c3e-8f4a-1234567890ab",
        ] {
            assert_eq!(actor.parse::<Actor>().unwrap().to_string(), actor);
        }
        assert!("nobody".parse::<Actor>().is_err());
    }
}
