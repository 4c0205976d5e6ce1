//! Example subscriber: keeps the set of valid recipient addresses of one
//! customer from Roster's event stream, as a mail-routing service would.
//!
//!   cargo run -p roster-relay --example recipients -- \
//!       --nats-url nats://127.0.0.1:4222 --customer <customer id> \
//!       --snapshot ./recipients.json
//!
//! It reads the stream with a durable pull consumer filtered on
//! `<prefix>.<customer>.>` (one filter subject, which every JetStream
//! server supports), applies each CloudEvent, writes the set to the
//! snapshot file (with the log position it reflects) and only then
//! acknowledges (every 500 events, and whenever it has caught up). Restarted, it reloads the snapshot and skips events it
//! already applied, so a redelivery never counts twice.
//!
//! Valid recipients: the primary address and the aliases of every user,
//! distribution list and public folder that is `active` or
//! `pending_deletion` (a flagged user still receives mail until it is
//! deleted: the delete-after delay exists so that a directory mistake does
//! not bounce mail). `deactivated` and deleted ones are not valid.
//!
//! It uses nothing of Roster's code: only the documented contract
//! (docs/events.md) and async-nats.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy},
};
use clap::Parser;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[arg(long, default_value = "ROSTER_EVENTS")]
    stream: String,
    #[arg(long, default_value = "roster.events")]
    subject_prefix: String,
    /// The customer whose recipients to keep.
    #[arg(long)]
    customer: String,
    /// The durable consumer's name (default: recipients-<customer>).
    #[arg(long)]
    durable: Option<String>,
    /// Where the set is kept (JSON).
    #[arg(long)]
    snapshot: PathBuf,
}

/// One user, list or public folder, by aggregate id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Recipient {
    address: String,
    aliases: BTreeSet<String>,
    status: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The log position of the last event applied.
    position: i64,
    by_id: BTreeMap<String, Recipient>,
    /// The valid recipient addresses (derived; written for readers).
    #[serde(default)]
    recipients: BTreeSet<String>,
}

/// The part of a CloudEvent this subscriber needs.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    event_type: String,
    position: i64,
    aggregateid: String,
    #[serde(default)]
    data: Value,
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl State {
    fn apply(&mut self, e: &Event) {
        // com.roster.<EventType>.v<major>
        let name = e
            .event_type
            .strip_prefix("com.roster.")
            .and_then(|t| t.rsplit_once('.'))
            .map(|(n, _)| n)
            .unwrap_or_default();
        let data = &e.data;
        match name {
            "UserAdded" | "UserReturned" => {
                self.by_id.insert(
                    e.aggregateid.clone(),
                    Recipient {
                        address: String::new(),
                        aliases: strings(&data["aliases"]),
                        status: "active".into(),
                    },
                );
            }
            "UserDeleted" => {
                self.by_id.remove(&e.aggregateid);
            }
            _ => {}
        }
        let Some(r) = self.by_id.get_mut(&e.aggregateid) else {
            return;
        };
        // Every user event carries the primary address as it is after the
        // event, but AddressReleased: it names the address given up (the
        // user takes its next one with the AddressChanged that follows).
        if let Some(a) = data["address"].as_str() {
            r.address = a.to_string();
        }
        if name == "AddressReleased" {
            r.address.clear();
        }
        match name {
            "AliasMapped" => {
                r.aliases
                    .insert(data["alias"].as_str().unwrap_or_default().into());
            }
            "AliasUnmapped" => {
                r.aliases.remove(data["alias"].as_str().unwrap_or_default());
            }
            "FlaggedForDeletion" => r.status = "pending_deletion".into(),
            "DeletionCancelled" | "UserReactivated" => r.status = "active".into(),
            "UserDeactivated" => r.status = "deactivated".into(),
            _ => {}
        }
    }

    fn refresh(&mut self) {
        self.recipients = self
            .by_id
            .values()
            .filter(|r| r.status == "active" || r.status == "pending_deletion")
            .flat_map(|r| std::iter::once(r.address.clone()).chain(r.aliases.iter().cloned()))
            .filter(|a| !a.is_empty())
            .collect();
    }

    fn save(&mut self, path: &PathBuf) -> std::io::Result<()> {
        self.refresh();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, path)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let mut state: State = match std::fs::read(&args.snapshot) {
        Ok(bytes) => serde_json::from_slice(&bytes)?,
        Err(_) => State::default(),
    };
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(args.nats_url.as_str())
        .await?;
    let js = jetstream::new(client);
    let stream = loop {
        // The relay creates the stream; wait for it.
        match js.get_stream(&args.stream).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let durable = args
        .durable
        .clone()
        .unwrap_or_else(|| format!("recipients-{}", args.customer));
    let consumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: format!("{}.{}.>", args.subject_prefix, args.customer),
                // Acknowledging one message acknowledges those before it:
                // the subscriber acknowledges after each snapshot write.
                ack_policy: AckPolicy::All,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            },
        )
        .await?;
    state.save(&args.snapshot)?;
    eprintln!(
        "recipients: following {durable} from position {}",
        state.position
    );
    let mut messages = consumer.messages().await?;
    let mut unsaved = 0;
    while let Some(message) = messages.next().await {
        let message = message?;
        let event: Event = serde_json::from_slice(&message.payload)?;
        // Redelivered or already in the snapshot: applied once only.
        if event.position > state.position {
            state.apply(&event);
            state.position = event.position;
        }
        unsaved += 1;
        let caught_up = message.info().map(|i| i.pending == 0).unwrap_or(true);
        if caught_up || unsaved >= 500 {
            state.save(&args.snapshot)?;
            message.ack().await?;
            unsaved = 0;
        }
    }
    Ok(())
}
