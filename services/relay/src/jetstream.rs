//! The NATS JetStream bus (async-nats): one stream, created with its
//! duplicate window when missing; every message carries `Nats-Msg-Id` (the
//! event's id, so JetStream drops a republished event within the window)
//! and `Nats-Expected-Last-Sequence` (so a message lands only right after
//! the one this relay published before it: no gap and no reordering, even
//! when two relays race or a connection drops mid-pipeline).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::{Client, ConnectOptions};
use async_trait::async_trait;

use crate::bus::{Ack, BusError, BusMessage, EventBus, PendingAck};
use crate::envelope::CONTENT_TYPE;

/// The header that carries the event's log position, so the relay can read
/// the stream's tail without parsing the CloudEvent.
pub const POSITION_HEADER: &str = "Roster-Position";

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct JetStreamSettings {
    /// One or more server URLs, comma-separated. Credentials may be given as
    /// `nats://user:password@host:4222` or `nats://token@host:4222`; they are
    /// taken out of the URL before it reaches the client or a log line.
    pub url: String,
    pub stream: String,
    /// Subjects are `<prefix>.<customer>.<EventType>`; the stream takes `<prefix>.>`.
    pub subject_prefix: String,
    pub duplicate_window: Duration,
    pub replicas: usize,
    /// Bound on API requests and on waiting for one acknowledgement.
    pub timeout: Duration,
    /// Most messages awaiting an acknowledgement at once.
    pub max_in_flight: usize,
}

impl JetStreamSettings {
    pub fn new(url: impl Into<String>) -> Self {
        JetStreamSettings {
            url: url.into(),
            stream: "ROSTER_EVENTS".into(),
            subject_prefix: "roster.events".into(),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            timeout: Duration::from_secs(5),
            max_in_flight: 20_000,
        }
    }

    /// The stream's subjects filter.
    pub fn stream_subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }

    fn check(&self) -> Result<(), BusError> {
        let bad_stream = self.stream.is_empty()
            || self
                .stream
                .chars()
                .any(|c| c.is_whitespace() || ".*>/\\".contains(c));
        if bad_stream {
            return Err(BusError::Config(format!(
                "'{}' is not a valid stream name (no spaces, '.', '*', '>', '/')",
                self.stream
            )));
        }
        let bad_prefix = self.subject_prefix.is_empty()
            || self.subject_prefix.split('.').any(|t| {
                t.is_empty()
                    || t.contains('*')
                    || t.contains('>')
                    || t.contains(char::is_whitespace)
            });
        if bad_prefix {
            return Err(BusError::Config(format!(
                "'{}' is not a valid subject prefix (dot-separated tokens without wildcards)",
                self.subject_prefix
            )));
        }
        Ok(())
    }
}

/// Credentials found in a server URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UrlCredentials {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits credentials out of a comma-separated list of server URLs: the
/// URLs without them (safe to log and to hand to the client) and the
/// credentials of the first URL that has any.
pub fn split_credentials(urls: &str) -> (String, UrlCredentials) {
    let mut creds = UrlCredentials::default();
    let mut found = false;
    let cleaned: Vec<String> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            let (scheme, rest) = match u.find("://") {
                Some(i) => (&u[..i + 3], &u[i + 3..]),
                None => ("", u),
            };
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            match authority.rfind('@') {
                Some(at) => {
                    let userinfo = &authority[..at];
                    if !found {
                        found = true;
                        match userinfo.split_once(':') {
                            Some((user, pass)) => {
                                creds.user = Some(percent_decode(user));
                                creds.password = Some(percent_decode(pass));
                            }
                            None => creds.token = Some(percent_decode(userinfo)),
                        }
                    }
                    format!("{scheme}{}{tail}", &authority[at + 1..])
                }
                None => u.to_string(),
            }
        })
        .collect();
    (cleaned.join(","), creds)
}

/// A server URL list fit for a log line: credentials replaced by `***`.
pub fn redact(urls: &str) -> String {
    urls.split(',')
        .map(str::trim)
        .map(|u| {
            let (scheme, rest) = match u.find("://") {
                Some(i) => (&u[..i + 3], &u[i + 3..]),
                None => ("", u),
            };
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            match authority.rfind('@') {
                Some(at) => format!("{scheme}***@{}{tail}", &authority[at + 1..]),
                None => u.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Publishes to one JetStream stream.
pub struct JetStreamBus {
    client: Client,
    js: Context,
    settings: JetStreamSettings,
    /// The stream sequence the next message expects to follow.
    expected: AtomicU64,
}

impl JetStreamBus {
    /// Connects (in the background when the server is not up yet: the
    /// relay waits and retries, it does not fail).
    pub async fn connect(settings: JetStreamSettings) -> Result<JetStreamBus, BusError> {
        settings.check()?;
        // Only ring is compiled in; installing it explicitly keeps a TLS
        // connection from panicking should another provider ever appear.
        let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
        let (urls, creds) = split_credentials(&settings.url);
        if urls.is_empty() {
            return Err(BusError::Config("NATS_URL is empty".into()));
        }
        let mut options = ConnectOptions::new()
            .name("roster-relay")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(settings.timeout))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((50u64 << attempts.min(6) as u64).min(2_000))
            });
        if let (Some(user), Some(pass)) = (creds.user, creds.password) {
            options = options.user_and_password(user, pass);
        } else if let Some(token) = creds.token {
            options = options.token(token);
        }
        let client = options
            .connect(urls.as_str())
            .await
            .map_err(|e| BusError::Config(format!("NATS URL {}: {e}", redact(&urls))))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(settings.timeout)
            .ack_timeout(settings.timeout)
            .max_ack_inflight(settings.max_in_flight)
            .backpressure_on_inflight(true)
            .build(client.clone());
        Ok(JetStreamBus {
            client,
            js,
            settings,
            expected: AtomicU64::new(0),
        })
    }

    pub fn settings(&self) -> &JetStreamSettings {
        &self.settings
    }

    /// The JetStream context (for tests and tools).
    pub fn context(&self) -> &Context {
        &self.js
    }

    fn stream_config(&self) -> StreamConfig {
        StreamConfig {
            name: self.settings.stream.clone(),
            description: Some(
                "Roster's event log as CloudEvents (published by `roster relay`)".into(),
            ),
            subjects: vec![self.settings.stream_subjects()],
            storage: StorageType::File,
            duplicate_window: self.settings.duplicate_window,
            num_replicas: self.settings.replicas.max(1),
            ..Default::default()
        }
    }

    /// Creates the stream with its duplicate window when it is missing. An
    /// existing stream is left as its operator configured it, but it must
    /// take our subjects.
    pub async fn ensure_stream(&self) -> Result<jetstream::stream::Stream, BusError> {
        let mut stream = self
            .js
            .get_or_create_stream(self.stream_config())
            .await
            .map_err(|e| BusError::Unavailable(format!("stream {}: {e}", self.settings.stream)))?;
        let info = stream
            .info()
            .await
            .map_err(|e| BusError::Unavailable(format!("stream {}: {e}", self.settings.stream)))?;
        let wanted = self.settings.stream_subjects();
        let covered = info
            .config
            .subjects
            .iter()
            .any(|s| s == &wanted || s == ">" || wanted.starts_with(s.trim_end_matches('>')));
        if !covered {
            return Err(BusError::Config(format!(
                "stream {} exists but does not take {wanted} (its subjects: {:?})",
                self.settings.stream, info.config.subjects
            )));
        }
        if info.config.duplicate_window != self.settings.duplicate_window {
            tracing::warn!(
                stream = %self.settings.stream,
                configured_secs = info.config.duplicate_window.as_secs_f64(),
                wanted_secs = self.settings.duplicate_window.as_secs_f64(),
                "the stream exists with another duplicate window; leaving it as configured"
            );
        }
        Ok(stream)
    }
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

#[async_trait]
impl EventBus for JetStreamBus {
    fn kind(&self) -> &'static str {
        "jetstream"
    }

    async fn prepare(&self) -> Result<Option<i64>, BusError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(BusError::Unavailable("not connected to NATS".into()));
        }
        let mut stream = self.ensure_stream().await?;
        let last = stream
            .info()
            .await
            .map_err(unavailable)?
            .state
            .last_sequence;
        let mut tail = None;
        if last > 0 {
            // The stream's last message says up to where the log is published
            // (messages land in log order, see the module docs). It may be gone
            // (limits, purge); then the relay's own checkpoint decides.
            if let Ok(m) = stream.get_raw_message(last).await {
                tail = m
                    .headers
                    .get(POSITION_HEADER)
                    .and_then(|v| v.as_str().parse::<i64>().ok());
            }
        }
        self.expected.store(last, Ordering::SeqCst);
        Ok(tail)
    }

    async fn publish(&self, message: BusMessage) -> Result<PendingAck, BusError> {
        let expected = self.expected.fetch_add(1, Ordering::SeqCst);
        let check = DuplicateCheck {
            js: self.js.clone(),
            stream: self.settings.stream.clone(),
            msg_id: message.msg_id.clone(),
            position: message.position,
            payload: message.payload.clone(),
        };
        let publish = PublishMessage::build()
            .payload(message.payload)
            .message_id(&message.msg_id)
            .expected_stream(&self.settings.stream)
            .expected_last_sequence(expected)
            .header("Content-Type", CONTENT_TYPE)
            .header(POSITION_HEADER, message.position.to_string().as_str());
        let ack = self
            .js
            .send_publish(message.subject, publish)
            .await
            .map_err(unavailable)?;
        Ok(Box::pin(async move {
            match ack.await {
                Ok(a) if a.duplicate => {
                    check.verify(a.sequence).await?;
                    Ok(Ack { duplicate: true })
                }
                Ok(_) => Ok(Ack { duplicate: false }),
                Err(e) => match e.kind() {
                    PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId => {
                        Err(BusError::Rejected(e.to_string()))
                    }
                    PublishErrorKind::StreamNotFound => Err(BusError::Unavailable(e.to_string())),
                    _ => Err(BusError::Unavailable(e.to_string())),
                },
            }
        }))
    }
}

/// What a duplicate acknowledgement must be checked against: JetStream
/// drops a message whose `Nats-Msg-Id` it saw within the duplicate window,
/// whatever the message holds. Before the relay counts such a message as
/// published, it reads back the one the stream holds and compares.
struct DuplicateCheck {
    js: Context,
    stream: String,
    msg_id: String,
    position: i64,
    payload: bytes::Bytes,
}

impl DuplicateCheck {
    async fn verify(&self, sequence: u64) -> Result<(), BusError> {
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(unavailable)?;
        let held = match stream.get_raw_message(sequence).await {
            Ok(m) => m,
            Err(e) => {
                return Err(BusError::Mismatch(format!(
                    "event at position {} (id {}) was acknowledged as a duplicate of stream \
                     sequence {sequence}, which cannot be read back to check it: {e}",
                    self.position, self.msg_id
                )))
            }
        };
        let header = |k: &str| held.headers.get(k).map(|v| v.as_str().to_string());
        let same_id = header("Nats-Msg-Id").as_deref() == Some(self.msg_id.as_str());
        let same_position =
            header(POSITION_HEADER).as_deref() == Some(self.position.to_string().as_str());
        if same_id && same_position && same_event(&held.payload, &self.payload) {
            return Ok(());
        }
        Err(BusError::Mismatch(format!(
            "event at position {} (id {}) was acknowledged as a duplicate of stream sequence \
             {sequence}, which holds another event (id {:?}, position {:?})",
            self.position,
            self.msg_id,
            header("Nats-Msg-Id"),
            header(POSITION_HEADER)
        )))
    }
}

/// Two CloudEvents are the same event when their coordinates in the log and
/// their time agree (the payload may differ in shape when an upcaster was
/// added between two publications).
fn same_event(held: &[u8], ours: &[u8]) -> bool {
    if held == ours {
        return true;
    }
    let (Ok(a), Ok(b)) = (
        serde_json::from_slice::<serde_json::Value>(held),
        serde_json::from_slice::<serde_json::Value>(ours),
    ) else {
        return false;
    };
    [
        "id",
        "source",
        "time",
        "position",
        "aggregatetype",
        "aggregateid",
        "aggregatesequence",
    ]
    .iter()
    .all(|k| a.get(*k) == b.get(*k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_before_it_is_used_or_logged() {
        let (urls, c) = split_credentials("nats://relay:s%40cret@nats-1:4222, nats://nats-2:4222");
        assert_eq!(urls, "nats://nats-1:4222,nats://nats-2:4222");
        assert_eq!(c.user.as_deref(), Some("relay"));
        assert_eq!(c.password.as_deref(), Some("s@cret"));
        let (urls, c) = split_credentials("tls://T0KEN@host");
        assert_eq!(urls, "tls://host");
        assert_eq!(c.token.as_deref(), Some("T0KEN"));
        let (urls, c) = split_credentials("127.0.0.1:4222");
        assert_eq!(
            (urls.as_str(), c),
            ("127.0.0.1:4222", UrlCredentials::default())
        );
        assert_eq!(
            redact("nats://relay:secret@h:1,nats://tok@h2"),
            "nats://***@h:1,nats://***@h2"
        );
        assert_eq!(redact("nats://h:1/path"), "nats://h:1/path");
        assert!(!redact("nats://u:p%40ss@h").contains("p%40ss"));
    }

    #[test]
    fn e5_same_event_compares_log_coordinates_and_time() {
        let a = br#"{"id":"User:u:1","source":"s","time":"t","position":3,"aggregatetype":"User","aggregateid":"u","aggregatesequence":1,"data":{"x":1}}"#;
        let upcast = br#"{"id":"User:u:1","source":"s","time":"t","position":3,"aggregatetype":"User","aggregateid":"u","aggregatesequence":1,"data":{"x":1,"y":2}}"#;
        let other = br#"{"id":"User:u:1","source":"s","time":"t2","position":9,"aggregatetype":"User","aggregateid":"u","aggregatesequence":1,"data":{"x":1}}"#;
        assert!(same_event(a, a));
        assert!(same_event(a, upcast));
        assert!(!same_event(a, other));
        assert!(!same_event(b"not json", a));
    }

    #[test]
    fn bad_names_are_configuration_errors() {
        let mut s = JetStreamSettings::new("nats://h");
        s.stream = "ROSTER.EVENTS".into();
        assert!(matches!(s.check(), Err(BusError::Config(_))));
        let mut s = JetStreamSettings::new("nats://h");
        s.subject_prefix = "roster.*".into();
        assert!(matches!(s.check(), Err(BusError::Config(_))));
        assert!(JetStreamSettings::new("nats://h").check().is_ok());
    }
}
