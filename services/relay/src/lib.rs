//! The relay (issue 5, E5): reads Roster's event log in its global order
//! and publishes every event as a CloudEvent, to NATS JetStream when
//! `NATS_URL` is set, otherwise to an in-process bus so that `roster serve`
//! needs no broker.
//!
//! - [`EventBus`]: the capability, with [`JetStreamBus`] and [`InProcessBus`].
//! - [`Relay`]: the checkpointed, pipelined tailer (checkpoint moves only
//!   after acknowledgements; a lease keeps one relay publishing).
//! - [`envelope`]: stored events as structured-mode CloudEvents.
//! - [`NatsArgs`], [`start_in_serve`], [`run_relay`]: what the `roster`
//!   binary needs.
//!
//! Subjects, envelope, versioning and delivery guarantees are documented in
//! `docs/events.md`.
#![forbid(unsafe_code)]
// No production function over 120 lines (clippy.toml; issue 13).
#![warn(clippy::too_many_lines)]

pub mod bus;
pub mod envelope;
pub mod inprocess;
pub mod jetstream;
pub mod relay;

use std::sync::Arc;
use std::time::Duration;

pub use bus::{Ack, BusError, BusMessage, EventBus, PendingAck};
pub use envelope::CloudEvent;
pub use inprocess::InProcessBus;
pub use jetstream::{redact, JetStreamBus, JetStreamSettings};
pub use relay::{Relay, RelayConfig, RelayError};

use roster_store::Store;
use tokio::sync::watch;

/// NATS settings shared by `roster serve` and `roster relay`.
#[derive(clap::Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated (nats://host:4222; credentials as
    /// nats://user:password@host or nats://token@host). Unset: `serve` uses
    /// the in-process bus.
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// The JetStream stream the relay publishes to (created when missing).
    #[arg(long, env = "ROSTER_NATS_STREAM", default_value = "ROSTER_EVENTS")]
    pub nats_stream: String,
    /// Subjects are <prefix>.<customer id>.<EventType>; the stream takes <prefix>.>.
    #[arg(
        long,
        env = "ROSTER_NATS_SUBJECT_PREFIX",
        default_value = "roster.events"
    )]
    pub nats_subject_prefix: String,
    /// The duplicate window of a stream the relay creates, in seconds.
    #[arg(long, env = "ROSTER_NATS_DUPLICATE_WINDOW_SECS", default_value_t = 120)]
    pub nats_duplicate_window_secs: u64,
    /// Replicas of a stream the relay creates (a clustered JetStream).
    #[arg(long, env = "ROSTER_NATS_REPLICAS", default_value_t = 1)]
    pub nats_replicas: usize,
}

impl NatsArgs {
    /// JetStream settings, when a URL is set.
    pub fn settings(&self) -> Option<JetStreamSettings> {
        let url = self
            .nats_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())?;
        let mut s = JetStreamSettings::new(url);
        s.stream = self.nats_stream.clone();
        s.subject_prefix = self.nats_subject_prefix.clone();
        s.duplicate_window = Duration::from_secs(self.nats_duplicate_window_secs.max(1));
        s.replicas = self.nats_replicas.max(1);
        Some(s)
    }

    /// The relay's checkpoint for this stream.
    pub fn checkpoint_name(&self) -> String {
        format!("relay:jetstream:{}", self.nats_stream)
    }
}

/// The relay options of `roster serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeRelayArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Do not run the relay inside `serve` (a separate `roster relay` does it).
    #[arg(long, env = "ROSTER_NO_RELAY")]
    pub no_relay: bool,
}

/// A running relay.
pub struct RelayHandle {
    pub relay: Arc<Relay>,
    pub task: tokio::task::JoinHandle<()>,
    /// The in-process bus, for in-process subscribers (embedded default).
    pub in_process: Option<InProcessBus>,
}

async fn jetstream_relay(store: Store, nats: &NatsArgs) -> Result<Relay, BusError> {
    let settings = nats
        .settings()
        .ok_or_else(|| BusError::Config("NATS_URL is not set".into()))?;
    tracing::info!(
        url = %redact(&settings.url),
        stream = %settings.stream,
        subjects = %settings.stream_subjects(),
        duplicate_window_secs = settings.duplicate_window.as_secs(),
        "relay publishes to NATS JetStream"
    );
    let bus = JetStreamBus::connect(settings.clone()).await?;
    let mut config = RelayConfig::durable(nats.checkpoint_name(), &settings.subject_prefix);
    config.window = config.window.min(settings.max_in_flight);
    Ok(Relay::new(store, Arc::new(bus), config))
}

/// Starts the relay inside `roster serve`: JetStream when `NATS_URL` is
/// set, the in-process bus otherwise; nothing with `--no-relay`.
pub async fn start_in_serve(
    store: Store,
    args: &ServeRelayArgs,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<RelayHandle>, BusError> {
    if args.no_relay {
        tracing::info!("relay disabled in serve (ROSTER_NO_RELAY)");
        return Ok(None);
    }
    let (relay, in_process) = if args.nats.settings().is_some() {
        (jetstream_relay(store, &args.nats).await?, None)
    } else {
        tracing::info!("relay publishes to the in-process bus (NATS_URL is not set)");
        let bus = InProcessBus::default();
        let relay = Relay::new(
            store,
            Arc::new(bus.clone()),
            RelayConfig::live(&args.nats.nats_subject_prefix),
        );
        (relay, Some(bus))
    };
    let relay = Arc::new(relay);
    let task = tokio::spawn(relay.clone().run(shutdown));
    Ok(Some(RelayHandle {
        relay,
        task,
        in_process,
    }))
}

/// `roster relay`: publishes to JetStream until `stop` completes.
pub async fn run_relay(
    store: Store,
    nats: &NatsArgs,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), BusError> {
    run_relay_with(store, nats, stop, |_| {}).await
}

/// [`run_relay`], handing the running relay to `started` (for health endpoints).
pub async fn run_relay_with(
    store: Store,
    nats: &NatsArgs,
    stop: impl std::future::Future<Output = ()>,
    started: impl FnOnce(Arc<Relay>),
) -> Result<(), BusError> {
    if nats.settings().is_none() {
        return Err(BusError::Config(
            "roster relay needs NATS_URL (the in-process bus serves only `roster serve`)".into(),
        ));
    }
    let relay = Arc::new(jetstream_relay(store, nats).await?);
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(relay.clone().run(rx));
    started(relay.clone());
    stop.await;
    let _ = tx.send(true);
    let _ = task.await;
    tracing::info!("relay stopped");
    Ok(())
}
