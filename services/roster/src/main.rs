//! `roster`: one binary, roles as subcommands (one container image).
// Unsafe only in `allocator`, which sets one option of mimalloc's.
#![deny(unsafe_code)]
// No production function over 120 lines (clippy.toml; issue 13).
#![warn(clippy::too_many_lines)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use roster_events::{CustomerId, PartnerId, TokenId};
use roster_projections::Projector;
use roster_store::auth::Scope;
use roster_store::{Clock, Db, Store, SystemClock};
use tokio::sync::watch;

mod admin;
mod allocator;
mod progress;

#[derive(Parser)]
#[command(
    name = "roster",
    version,
    about = "Keeps each customer's mail users in step with its directory."
)]
struct Cli {
    #[command(flatten)]
    storage: Storage,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Storage {
    /// Where the embedded SQLite database lives when DATABASE_URL is not set.
    #[arg(
        long,
        env = "ROSTER_DATA_DIR",
        default_value = "./roster-data",
        global = true
    )]
    data_dir: PathBuf,
    /// PostgreSQL URL (postgres://user@host:port/db). Unset: embedded SQLite in the data dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// PostgreSQL connections this process keeps at most.
    #[arg(
        long,
        env = "ROSTER_DB_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    db_max_connections: u32,
    /// How long a query waits for a PostgreSQL connection, in milliseconds;
    /// while the database is down, requests answer 503 after this long.
    #[arg(
        long,
        env = "ROSTER_DB_ACQUIRE_TIMEOUT_MS",
        default_value_t = 1_500,
        global = true
    )]
    db_acquire_timeout_ms: u64,
    /// MiB of a sync run's open append (the JSON text of the events a lane
    /// reads) a projection lane may lag behind while the projector projects
    /// the append beside it (twice that held in all); 0: runs are projected
    /// from the log once committed (docs/architecture.md).
    #[arg(
        long,
        env = "ROSTER_PROJECT_BESIDE_MIB",
        default_value_t = 16,
        global = true
    )]
    project_beside_mib: u64,
    /// Seconds between the progress lines of `rebuild` and `migrate` when
    /// standard error is not a terminal (on a terminal: a progress bar).
    #[arg(
        long,
        env = "ROSTER_PROGRESS_SECS",
        default_value_t = 5.0,
        global = true
    )]
    progress_secs: f64,
    /// Log format: json (default) or text.
    #[arg(long, env = "ROSTER_LOG_FORMAT", default_value = "json", global = true)]
    log_format: String,
    /// The key that seals directory secrets (D7): 32 bytes in base64 or hex.
    #[arg(long, env = "ROSTER_SECRET_KEY", global = true, hide_env_values = true)]
    secret_key: Option<String>,
    /// A file holding that key. Default: secret.key in the data dir (created
    /// on the embedded default; with DATABASE_URL a key must be given).
    #[arg(long, env = "ROSTER_SECRET_KEY_FILE", global = true)]
    secret_key_file: Option<PathBuf>,
    /// Where directory connections may go besides public addresses and, for
    /// Entra ID, https to Microsoft's clouds: a comma-separated list of
    /// `http`, `loopback`, `private`, `link-local`, `metadata` and host names
    /// (`*.example.test` for subdomains) Entra ID endpoints may use.
    #[arg(long, env = "ROSTER_ALLOW_OUTBOUND", global = true)]
    allow_outbound: Option<String>,
    /// Testing and staging only: read the current time from this file (RFC 3339).
    #[arg(long, env = "ROSTER_CLOCK_FILE", global = true, hide = true)]
    clock_file: Option<PathBuf>,
}

impl Storage {
    fn clock(&self) -> anyhow::Result<Arc<dyn Clock>> {
        match &self.clock_file {
            Some(path) => match roster_store::file_clock(path) {
                Some(clock) => {
                    tracing::warn!(file = %path.display(), "ROSTER_CLOCK_FILE is set: the time is read from a file (a build for tests)");
                    Ok(clock)
                }
                None => bail!(
                    "ROSTER_CLOCK_FILE is set, but this build has no clock override: it exists only in builds for tests (feature roster-store/test-clock). Unset ROSTER_CLOCK_FILE"
                ),
            },
            None => Ok(Arc::new(SystemClock)),
        }
    }

    /// The operator's outbound policy for directory connections (issue 10).
    fn outbound(&self) -> anyhow::Result<Arc<roster_sync::OutboundPolicy>> {
        let text = self.allow_outbound.as_deref().unwrap_or("");
        let policy = roster_sync::OutboundPolicy::parse(text).map_err(anyhow::Error::msg)?;
        if !text.trim().is_empty() {
            tracing::warn!(
                allow = text,
                "ROSTER_ALLOW_OUTBOUND widens where directory connections may go"
            );
        }
        Ok(Arc::new(policy))
    }

    /// The live tables' projector of `serve` and `worker`.
    fn projector(&self, store: Store) -> anyhow::Result<Projector> {
        if self.project_beside_mib > 1_024 {
            bail!(
                "ROSTER_PROJECT_BESIDE_MIB must be between 0 (off) and 1024, not {}",
                self.project_beside_mib
            );
        }
        Ok(Projector::new(store, "").with_beside_bytes((self.project_beside_mib as i64) << 20))
    }

    fn pool_settings(&self) -> anyhow::Result<roster_store::PoolSettings> {
        if self.db_max_connections == 0 || self.db_max_connections > 10_000 {
            bail!(
                "ROSTER_DB_MAX_CONNECTIONS must be between 1 and 10000, not {}",
                self.db_max_connections
            );
        }
        if !(100..=600_000).contains(&self.db_acquire_timeout_ms) {
            bail!(
                "ROSTER_DB_ACQUIRE_TIMEOUT_MS must be between 100 and 600000 milliseconds, not {}",
                self.db_acquire_timeout_ms
            );
        }
        Ok(roster_store::PoolSettings {
            max_connections: self.db_max_connections,
            acquire_timeout: Duration::from_millis(self.db_acquire_timeout_ms),
        })
    }

    /// Loads the key that seals directory secrets and checks that it opens
    /// the stored ones (issue 16): a wrong key stops the start with a
    /// message naming where the key comes from, instead of a 500 later.
    async fn secret_key(&self, db: &Db) -> anyhow::Result<roster_store::SecretKey> {
        let (key, source) = roster_store::SecretKey::load(
            self.secret_key.as_deref(),
            self.secret_key_file.as_deref(),
            &self.data_dir,
            db.backend() == roster_store::Backend::Sqlite,
        )?;
        if let Err(e) = db.check_secret_key(&key).await {
            if let roster_store::secrets::KeySource::Created(path) = &source {
                // A key made just now cannot be the one they were sealed
                // with: leave no new file behind (the real one may be restored).
                let _ = std::fs::remove_file(path);
            }
            return Err(e.into());
        }
        match source {
            roster_store::secrets::KeySource::Created(path) => tracing::info!(
                file = %path.display(),
                key_id = key.id(),
                "created the key that seals directory secrets; back it up with the data"
            ),
            _ => tracing::info!(key_id = key.id(), "directory secrets key loaded"),
        }
        Ok(key)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Runs the HTTP API with the projector, the worker and the relay in-process.
    Serve(ServeArgs),
    /// Runs only the worker: scheduled syncs (D4) and the deletion reaper (D3.i).
    Worker {
        /// Seconds between the worker's passes.
        #[arg(long, env = "ROSTER_WORKER_TICK_SECS", default_value_t = 30)]
        tick_secs: u64,
        #[command(flatten)]
        health: HealthArgs,
    },
    /// Applies the database schema and creates the projection tables, then exits.
    Migrate,
    /// Runs only the projector (for a deployment with separate roles).
    Project {
        #[command(flatten)]
        health: HealthArgs,
    },
    /// Replays the whole log into fresh projection tables and swaps them in (E3).
    Rebuild {
        /// Build the fresh tables and compare them with the live ones; change nothing.
        #[arg(long)]
        verify: bool,
    },
    /// Publishes the event log to NATS JetStream as CloudEvents (E5); with
    /// several replicas one publishes and the others stand by.
    Relay {
        #[command(flatten)]
        nats: roster_relay::NatsArgs,
        #[command(flatten)]
        health: HealthArgs,
        /// /readyz is 503 once every attempt to start publishing has failed
        /// for this many seconds (the bus unreachable, a stream it cannot
        /// create).
        #[arg(long, env = "ROSTER_RELAY_READY_FAILING_SECS", default_value_t = 30)]
        ready_failing_secs: u64,
    },
    /// Issues, lists and revokes API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Adds, lists and disables console administrators; prints invitation
    /// and password-reset links.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
        #[command(flatten)]
        console: admin::ConsoleArgs,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ROSTER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// On a store without any token, this token becomes the first partner-administrator token.
    #[arg(long, env = "ROSTER_BOOTSTRAP_TOKEN", hide_env_values = true)]
    bootstrap_token: Option<String>,
    /// How long a write waits for the read models to show it, in milliseconds.
    #[arg(long, env = "ROSTER_CONSISTENCY_TIMEOUT_MS", default_value_t = 10_000)]
    consistency_timeout_ms: u64,
    /// The event relay (E5): NATS JetStream when NATS_URL is set, else the in-process bus.
    #[command(flatten)]
    relay: roster_relay::ServeRelayArgs,
    /// Do not run the worker (scheduled syncs and the deletion reaper) in this process.
    #[arg(long, env = "ROSTER_NO_WORKER")]
    no_worker: bool,
    /// Seconds between the worker's passes.
    #[arg(long, env = "ROSTER_WORKER_TICK_SECS", default_value_t = 30)]
    worker_tick_secs: u64,
    #[command(flatten)]
    ready: ReadyArgs,
    /// The admin console (served at `/`).
    #[command(flatten)]
    console: admin::ConsoleArgs,
    /// Seconds a client has to send a request's line and headers (from the
    /// connection's start, or the end of the previous response).
    #[arg(long, env = "ROSTER_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    http_header_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body.
    #[arg(long, env = "ROSTER_HTTP_BODY_TIMEOUT_SECS", default_value_t = 60)]
    http_body_timeout_secs: u64,
    /// Seconds without a byte either way after which a connection is closed.
    #[arg(long, env = "ROSTER_HTTP_IDLE_TIMEOUT_SECS", default_value_t = 120)]
    http_idle_timeout_secs: u64,
    /// Connections open at once; more are closed as soon as accepted.
    #[arg(long, env = "ROSTER_HTTP_MAX_CONNECTIONS", default_value_t = 1024)]
    http_max_connections: usize,
}

impl ServeArgs {
    fn http_limits(&self) -> anyhow::Result<roster_api::server::HttpLimits> {
        for (name, v) in [
            (
                "ROSTER_HTTP_HEADER_TIMEOUT_SECS",
                self.http_header_timeout_secs,
            ),
            ("ROSTER_HTTP_BODY_TIMEOUT_SECS", self.http_body_timeout_secs),
            ("ROSTER_HTTP_IDLE_TIMEOUT_SECS", self.http_idle_timeout_secs),
        ] {
            if v == 0 || v > 86_400 {
                bail!("{name} must be between 1 and 86400 seconds, not {v}");
            }
        }
        if self.http_max_connections == 0 {
            bail!("ROSTER_HTTP_MAX_CONNECTIONS must be at least 1");
        }
        Ok(roster_api::server::HttpLimits {
            header_timeout: Duration::from_secs(self.http_header_timeout_secs),
            body_timeout: Duration::from_secs(self.http_body_timeout_secs),
            idle_timeout: Duration::from_secs(self.http_idle_timeout_secs),
            max_connections: self.http_max_connections,
        })
    }
}

/// `/healthz`, `/readyz` and `/metrics` of the roles without the API.
#[derive(Args, Clone)]
struct HealthArgs {
    /// Serve /healthz, /readyz and /metrics on this address (host:port).
    /// Unset: no HTTP endpoint.
    #[arg(long, env = "ROSTER_LISTEN")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    ready: ReadyArgs,
}

impl HealthArgs {
    async fn bind(&self) -> anyhow::Result<Option<tokio::net::TcpListener>> {
        match self.listen {
            Some(listen) => Ok(Some(bind(listen, "ROSTER_LISTEN (--listen)").await?)),
            None => Ok(None),
        }
    }
}

/// When `/readyz` says the read models are ready.
#[derive(Args, Clone, Copy)]
struct ReadyArgs {
    /// /readyz is 503 while a projection is more than this many events
    /// behind the log's head ...
    #[arg(long, env = "ROSTER_READY_MAX_LAG_EVENTS", default_value_t = 1_000)]
    ready_max_lag_events: i64,
    /// ... and its oldest unapplied event is older than this, in seconds.
    #[arg(long, env = "ROSTER_READY_MAX_LAG_SECS", default_value_t = 5.0)]
    ready_max_lag_secs: f64,
}

impl ReadyArgs {
    fn limits(&self) -> roster_projections::LagLimits {
        roster_projections::LagLimits {
            max_events: self.ready_max_lag_events.max(0),
            max_age: Duration::from_secs_f64(self.ready_max_lag_secs.max(0.0)),
        }
    }
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issues a token and prints it once on standard output.
    Issue {
        /// A partner-administrator token for this partner id.
        #[arg(long, conflicts_with_all = ["new_partner", "customer"])]
        partner: Option<String>,
        /// Creates a partner with this name and issues a partner-administrator token for it.
        #[arg(long, conflicts_with_all = ["partner", "customer"])]
        new_partner: Option<String>,
        /// A customer-administrator token for this customer id.
        #[arg(long, conflicts_with_all = ["partner", "new_partner"])]
        customer: Option<String>,
        /// Who or what the token is for (shown in listings).
        #[arg(long, default_value = "cli")]
        label: String,
    },
    /// Lists tokens (never their secrets).
    List,
    /// Revokes a token by id.
    Revoke { token_id: String },
}

/// The accepted values of `ROSTER_LOG_FORMAT`.
const LOG_FORMATS: [&str; 2] = ["json", "text"];

fn check_log_format(format: &str) -> anyhow::Result<()> {
    if !LOG_FORMATS.contains(&format) {
        bail!(
            "ROSTER_LOG_FORMAT (--log-format) is {format:?}: use one of {}",
            LOG_FORMATS.join(", ")
        );
    }
    Ok(())
}

/// The data directory exists (or can be made) and a file can be written in
/// it; the error names the directory (issue 16).
fn check_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let fail = |e: std::io::Error| {
        anyhow::anyhow!(
            "the data directory {} is not writable ({e}): set ROSTER_DATA_DIR (--data-dir) to a directory this user can write",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".roster-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(fail)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Binds the listen address before anything else happens, so that a port
/// in use stops the start before the database is touched (issue 16).
async fn bind(listen: SocketAddr, setting: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {listen} ({e}): is another process using the port? Set {setting} to a free address"
        )
    })
}

/// Logs on stderr, and OpenTelemetry traces over OTLP/HTTP when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set (issue
/// 16); the exporter reads the standard `OTEL_*` variables. Returns the
/// tracer provider to flush at exit.
fn init_logging(format: &str) -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if format == "text" {
        fmt.boxed()
    } else {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed()
    };
    let (provider, otel_error) = match otel_provider() {
        Ok(p) => (p, None),
        Err(e) => (None, Some(e)),
    };
    let otel = provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider;
        tracing_opentelemetry::layer().with_tracer(p.tracer("roster"))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .init();
    if let Some(e) = otel_error {
        tracing::error!(error = %e, "OpenTelemetry export is off: the OTLP exporter could not be built");
    }
    if provider.is_some() {
        roster_store::tracecontext::set_current(current_traceparent);
        tracing::info!(
            endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .unwrap_or_default(),
            "exporting traces over OTLP/HTTP"
        );
    }
    provider
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// The tracer provider when OTLP export is asked for.
fn otel_provider() -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    let wanted = (env_set("OTEL_EXPORTER_OTLP_ENDPOINT")
        || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
        && !std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim() == "none");
    if !wanted {
        return Ok(None);
    }
    if let Ok(p) = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL") {
        if !p.trim().is_empty() && p.trim() != "http/protobuf" {
            bail!("OTEL_EXPORTER_OTLP_PROTOCOL is {p:?}: this build exports http/protobuf only");
        }
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("building the OTLP span exporter")?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !env_set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name("roster");
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(Some(provider))
}

/// The W3C `traceparent` of the current span (recorded with the events it
/// appends, and carried into their CloudEvents).
fn current_traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Connects, then under the startup lock (one process at a time, issue 16)
/// applies the migrations and creates the projection tables. The caller
/// may do more under the lock (the first token) before releasing it.
async fn open_locked(
    storage: &Storage,
    say: &dyn Fn(&str),
) -> anyhow::Result<(Store, roster_store::StartupLock)> {
    let db = Db::connect_with(
        storage.database_url.as_deref(),
        &storage.data_dir,
        storage.pool_settings()?,
    )
    .await?;
    say("taking the startup lock");
    let lock = db.startup_lock().await?;
    say("applying migrations");
    // Appends are stamped with the service's clock (B7).
    let store = Store::open(db).await?.with_clock(storage.clock()?);
    say("creating the projection tables");
    Projector::new(store.clone(), "").ensure_tables().await?;
    Ok((store, lock))
}

async fn open(storage: &Storage) -> anyhow::Result<Store> {
    let (store, lock) = open_locked(storage, &|_| {}).await?;
    lock.release().await;
    Ok(store)
}

fn main() -> anyhow::Result<()> {
    // Before the runtime starts its threads: mimalloc's options are plain
    // values every thread reads.
    allocator::configure();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("the async runtime could not start")?
        .block_on(main_async())
}

async fn main_async() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Err(e) = check_log_format(&cli.storage.log_format) {
        let _ = init_logging("text");
        return Err(e);
    }
    let tracer = init_logging(&cli.storage.log_format);
    let result = run(cli).await;
    if let Some(provider) = tracer {
        // Flush the spans still queued (on a thread: the exporter blocks).
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
    result
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(cli.storage, args).await,
        Command::Migrate => migrate(cli.storage).await,
        Command::Project { health } => project(cli.storage, health).await,
        Command::Rebuild { verify } => rebuild(cli.storage, verify).await,
        Command::Worker { tick_secs, health } => worker(cli.storage, tick_secs, health).await,
        Command::Relay {
            nats,
            health,
            ready_failing_secs,
        } => {
            let failing = Duration::from_secs(ready_failing_secs);
            relay(cli.storage, nats, health, failing).await
        }
        Command::Token { command } => token(cli.storage, command).await,
        Command::Admin { command, console } => {
            let store = open(&cli.storage).await?;
            let key = cli.storage.secret_key(store.db()).await?;
            let admins =
                roster_app::admins::Admins::new(store.db().clone(), key, console.settings()?);
            admin::run(admins, &console, command).await
        }
    }
}

/// `roster migrate`: the schema and projection tables, under the startup lock.
async fn migrate(storage: Storage) -> anyhow::Result<()> {
    let phases = progress::Phases::new();
    let (store, lock) = open_locked(&storage, &|what| phases.phase(what)).await?;
    lock.release().await;
    phases.finish();
    eprintln!("schema is up to date ({})", store.db().backend().as_str());
    Ok(())
}

/// `roster project`: only the projector, with its health endpoints.
async fn project(storage: Storage, health: HealthArgs) -> anyhow::Result<()> {
    let listener = health.bind().await?;
    let store = open(&storage).await?;
    let projector = Arc::new(Projector::new(store, ""));
    let (tx, rx) = watch::channel(false);
    let endpoints = match listener {
        Some(listener) => {
            let router = roster_api::roles::projection_health(
                projector.clone(),
                storage.clock()?,
                health.ready.limits(),
                install_metrics()?,
            );
            Some(roster_api::roles::serve_health(
                listener,
                router,
                tx.subscribe(),
            )?)
        }
        None => None,
    };
    if endpoints.is_some() {
        spawn_collector(
            projector.store().clone(),
            Some(projector.clone()),
            None,
            storage.clock()?,
            tx.subscribe(),
        );
    }
    let task = tokio::spawn(projector.clone().run(rx, Duration::from_millis(200)));
    shutdown_signal().await;
    let _ = tx.send(true);
    let _ = task.await;
    if let Some(e) = endpoints {
        let _ = e.await;
    }
    Ok(())
}

/// `roster rebuild [--verify]`: replays the log into fresh tables (E3).
async fn rebuild(storage: Storage, verify: bool) -> anyhow::Result<()> {
    use progress::{Checkpoints, Progress};
    let store = open(&storage).await?;
    let live = Projector::new(store.clone(), "");
    let every = Duration::from_secs_f64(storage.progress_secs.clamp(0.01, 3600.0));
    if verify {
        let p = Progress::start(
            &store,
            "catching up the live projections",
            Checkpoints::Live,
            every,
        );
        let caught_up = live.catch_up().await;
        p.finish().await;
        caught_up?;
        let p = Progress::start(
            &store,
            "rebuild --verify: replaying",
            Checkpoints::Rebuild,
            every,
        );
        let report = roster_projections::rebuild::rebuild(&store, false).await;
        p.finish().await;
        let report = report?;
        tracing::info!("rebuild --verify: comparing the fresh tables with the live ones");
        let fresh =
            roster_projections::rebuild::dump(&store, roster_projections::rebuild::REBUILD_PREFIX)
                .await?;
        let current = roster_projections::rebuild::dump(&store, "").await?;
        roster_projections::rebuild::drop_tables(
            &store,
            roster_projections::rebuild::REBUILD_PREFIX,
        )
        .await?;
        let differing: Vec<&String> = fresh
            .keys()
            .filter(|t| fresh.get(*t) != current.get(*t))
            .collect();
        if differing.is_empty() {
            eprintln!(
                "rebuilt {} events: every projection equals the live one",
                report.events
            );
            Ok(())
        } else {
            bail!("rebuilt projections differ from the live ones in: {differing:?}");
        }
    } else {
        let p = Progress::start(&store, "rebuild: replaying", Checkpoints::Rebuild, every);
        let report = roster_projections::rebuild::rebuild(&store, true).await;
        p.finish().await;
        let report = report?;
        eprintln!(
            "replayed {} events into fresh tables and swapped them in: {}",
            report.events,
            report.tables.join(", ")
        );
        Ok(())
    }
}

/// `roster worker`: scheduled syncs (D4), the reaper (D3.i), run leases.
async fn worker(storage: Storage, tick_secs: u64, health: HealthArgs) -> anyhow::Result<()> {
    let runs = roster_sync::check_env().map_err(anyhow::Error::msg)?;
    let listener = health.bind().await?;
    let store = open(&storage).await?;
    let key = storage.secret_key(store.db()).await?;
    let outbound = storage.outbound()?;
    let projector = Arc::new(storage.projector(store.clone())?);
    let (health_tx, health_rx) = watch::channel(false);
    let endpoints = match listener {
        Some(listener) => {
            let router = roster_api::roles::projection_health(
                projector.clone(),
                storage.clock()?,
                health.ready.limits(),
                install_metrics()?,
            );
            Some(roster_api::roles::serve_health(
                listener, router, health_rx,
            )?)
        }
        None => None,
    };
    if endpoints.is_some() {
        spawn_collector(
            store.clone(),
            Some(projector.clone()),
            None,
            storage.clock()?,
            health_tx.subscribe(),
        );
    }
    let mut sync = roster_sync::SyncService::new(
        store,
        projector,
        storage.clock()?,
        key,
        Arc::new(roster_sync::DefaultReaders::new(outbound.clone())),
        runs,
    );
    sync.outbound = outbound;
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(roster_sync::worker::run(
        sync,
        Duration::from_secs(tick_secs.max(1)),
        rx,
    ));
    shutdown_signal().await;
    let _ = tx.send(true);
    let _ = health_tx.send(true);
    let _ = task.await;
    if let Some(e) = endpoints {
        let _ = e.await;
    }
    Ok(())
}

/// `roster relay`: publishes the log to NATS JetStream (E5).
async fn relay(
    storage: Storage,
    nats: roster_relay::NatsArgs,
    health: HealthArgs,
    ready_failing: Duration,
) -> anyhow::Result<()> {
    let listener = health.bind().await?;
    let store = open(&storage).await?;
    let endpoints = match listener {
        Some(listener) => {
            let metrics = install_metrics()?;
            tracing::info!(listen = %listener.local_addr()?, "relay health endpoints: /healthz, /readyz, /metrics");
            Some((listener, metrics))
        }
        None => None,
    };
    let clock = storage.clock()?;
    let collector_store = store.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    roster_relay::run_relay_with(store, &nats, shutdown_signal(), move |relay| {
        if let Some((listener, metrics)) = endpoints {
            spawn_collector(collector_store, None, Some(relay.clone()), clock, stop_rx);
            let router = roster_api::roles::relay_health(relay, metrics, ready_failing);
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "relay health endpoints stopped");
                }
            });
        }
    })
    .await?;
    let _ = stop_tx.send(true);
    Ok(())
}

async fn token(storage: Storage, command: TokenCommand) -> anyhow::Result<()> {
    let store = open(&storage).await?;
    let db = store.db();
    let now = SystemClock.now();
    match command {
        TokenCommand::Issue {
            partner,
            new_partner,
            customer,
            label,
        } => {
            let scope = if let Some(p) = partner {
                let id = PartnerId::parse(&p)?;
                if !db.partner_exists(id).await? {
                    bail!("no partner {id}; use --new-partner NAME to create one");
                }
                Scope::Partner(id)
            } else if let Some(name) = new_partner {
                Scope::Partner(db.create_partner(&name, now).await?)
            } else if let Some(c) = customer {
                let id = CustomerId::parse(&c)?;
                if db.customer_partner(id).await?.is_none() {
                    bail!("no customer {id}");
                }
                Scope::Customer(id)
            } else {
                bail!(
                    "say whom the token is for: --partner ID, --new-partner NAME or --customer ID"
                );
            };
            let issued = roster_app::security::create_token(
                db,
                &roster_app::security::By::cli(),
                scope,
                &label,
                now,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            match scope {
                Scope::Partner(p) => eprintln!(
                    "issued token {} for partner {p}; it is shown once:",
                    issued.token_id
                ),
                Scope::Customer(c) => eprintln!(
                    "issued token {} for customer {c}; it is shown once:",
                    issued.token_id
                ),
            }
            println!("{}", issued.secret);
        }
        TokenCommand::List => {
            for t in db.list_tokens().await? {
                let scope = match t.scope {
                    Scope::Partner(p) => format!("partner:{p}"),
                    Scope::Customer(c) => format!("customer:{c}"),
                };
                let state = match t.revoked_at {
                    Some(r) => format!("revoked {}", r.to_rfc3339()),
                    None => "active".into(),
                };
                println!(
                    "{}\t{scope}\t{}\t{}\t{state}",
                    t.token_id,
                    t.label,
                    t.created_at.to_rfc3339()
                );
            }
        }
        TokenCommand::Revoke { token_id } => {
            let id = TokenId::parse(&token_id)?;
            let token = db
                .list_tokens()
                .await?
                .into_iter()
                .find(|t| t.token_id == id);
            let revoked = match token {
                Some(t) => roster_app::security::revoke_token(
                    db,
                    &roster_app::security::By::cli(),
                    &t,
                    now,
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
                None => false,
            };
            if revoked {
                eprintln!("revoked {id}");
            } else {
                bail!("no active token {id}");
            }
        }
    }
    Ok(())
}

async fn serve(storage: Storage, args: ServeArgs) -> anyhow::Result<()> {
    // Start-up checks before anything is written (issue 16): the settings,
    // the listen port, the bootstrap token's shape.
    let limits = args.http_limits()?;
    let console_settings = args.console.settings()?;
    let public_url = args.console.public_url()?;
    let runs = roster_sync::check_env().map_err(anyhow::Error::msg)?;
    let bootstrap = args.bootstrap_token.as_deref().filter(|t| !t.is_empty());
    if let Some(token) = bootstrap {
        check_bootstrap_token(token).map_err(anyhow::Error::msg)?;
    }
    let outbound = storage.outbound()?;
    let clock: Arc<dyn Clock> = storage.clock()?;
    let listener = bind(args.listen, "ROSTER_LISTEN (--listen)").await?;
    if storage.database_url.is_none() {
        check_data_dir(&storage.data_dir)?;
    }
    let (store, lock) = open_locked(&storage, &|_| {}).await?;
    let backend = store.db().backend();
    let key = storage.secret_key(store.db()).await?;
    // Under the startup lock: however many replicas start together on a
    // fresh database, one creates the first token (issue 16).
    if let Some(token) = bootstrap {
        if let Some(id) = store.db().bootstrap(token, clock.now()).await? {
            tracing::info!(token_id = %id, "ROSTER_BOOTSTRAP_TOKEN is now the first partner-administrator token");
        }
    } else if !store.db().has_tokens().await? {
        // A fresh store and no bootstrap token: hand the first token over in a
        // file only the owner can read, never in the log. The file must be
        // writable before the token is made.
        let path = storage.data_dir.join("initial-token");
        check_data_dir(&storage.data_dir)?;
        if let Some(issued) = store.db().initial_token(clock.now()).await? {
            write_secret_file(&path, &issued.secret)?;
            tracing::info!(
                token_id = %issued.token_id,
                file = %path.display(),
                "no API token existed: a partner-administrator token was written to this file; read it, then delete the file"
            );
        }
    }
    lock.release().await;
    let projector = Arc::new(storage.projector(store.clone())?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let projector_task = tokio::spawn(projector.clone().run(stop_rx, Duration::from_millis(200)));

    let metrics = install_metrics()?;
    let mut app = roster_app::App::new(store.clone(), projector.clone(), clock);
    app.consistency_timeout = Duration::from_millis(args.consistency_timeout_ms);
    let mut sync = roster_sync::SyncService::new(
        store.clone(),
        projector.clone(),
        app.clock.clone(),
        key,
        Arc::new(roster_sync::DefaultReaders::new(outbound.clone())),
        runs,
    );
    sync.outbound = outbound;
    let admins =
        roster_app::admins::Admins::new(store.db().clone(), sync.key.clone(), console_settings);
    if store.db().admin_count().await? == 0 {
        tracing::info!(
            "no console administrator exists yet: add the first with `roster admin add --email you@example.com --name \"Your Name\"`, which prints an invitation link (see docs/admins.md)"
        );
    }
    let console = roster_console::router(roster_console::ConsoleState::new(
        app.clone(),
        sync.clone(),
        admins,
        roster_console::ConsoleConfig { public_url },
    ));
    let mut state = roster_api::AppState::new(app, sync);
    state.metrics = Some(metrics);
    state.ready_lag = args.ready.limits();
    let worker_task = (!args.no_worker).then(|| {
        tokio::spawn(roster_sync::worker::run(
            state.sync.clone(),
            Duration::from_secs(args.worker_tick_secs.max(1)),
            stop_tx.subscribe(),
        ))
    });
    let app = roster_api::router_with_console(state, console);

    let relay =
        roster_relay::start_in_serve(store.clone(), &args.relay, stop_tx.subscribe()).await?;
    spawn_collector(
        store.clone(),
        Some(projector.clone()),
        relay.as_ref().map(|r| r.relay.clone()),
        storage.clock()?,
        stop_tx.subscribe(),
    );
    let local = listener.local_addr()?;
    tracing::info!(
        listen = %local,
        backend = backend.as_str(),
        data_dir = %storage.data_dir.display(),
        transparent_huge_pages = if allocator::huge_pages_disabled() { "off" } else { "kernel" },
        "roster is serving"
    );
    if backend == roster_store::Backend::Sqlite {
        tracing::info!(database = %storage.data_dir.join("roster.db").display(), "embedded SQLite database (set DATABASE_URL for PostgreSQL)");
    }
    roster_api::server::serve(listener, app, limits, shutdown_signal()).await?;
    let _ = stop_tx.send(true);
    let _ = projector_task.await;
    if let Some(w) = worker_task {
        let _ = w.await;
    }
    if let Some(relay) = relay {
        let _ = relay.task.await;
    }
    store.db().close().await;
    tracing::info!("stopped");
    Ok(())
}

fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    roster_api::telemetry::install().map_err(anyhow::Error::msg)
}

/// Reads the gauges of the database, the projections and the relay every
/// few seconds until `stop` turns true (issue 16).
fn spawn_collector(
    store: Store,
    projector: Option<Arc<Projector>>,
    relay: Option<Arc<roster_relay::Relay>>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let checkpoint = match &relay {
                Some(r) => tokio::time::timeout(Duration::from_secs(2), r.checkpoint())
                    .await
                    .ok()
                    .and_then(Result::ok),
                None => None,
            };
            roster_api::telemetry::collect(
                &store,
                projector.as_deref(),
                checkpoint,
                clock.now().timestamp_micros(),
            )
            .await;
            tokio::select! {
                _ = tokio::time::sleep(roster_api::telemetry::COLLECT_INTERVAL) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    })
}

/// A bootstrap token becomes a partner-administrator token: one that looks
/// like a template's placeholder, or is short, is refused at start.
fn check_bootstrap_token(token: &str) -> Result<(), String> {
    let lower = token.to_ascii_lowercase();
    let squeezed: String = lower
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    for marker in [
        "changeme",
        "placeholder",
        "replaceme",
        "yourtoken",
        "example",
        "secret",
        "password",
    ] {
        if squeezed.contains(marker) {
            return Err(format!(
                "ROSTER_BOOTSTRAP_TOKEN looks like a placeholder (it contains '{marker}'): set it to at least 24 random characters, e.g. `openssl rand -hex 32`"
            ));
        }
    }
    if token.chars().count() < 24 {
        return Err(format!(
            "ROSTER_BOOTSTRAP_TOKEN is {} characters long: it becomes a partner-administrator token, so give it at least 24 random characters, e.g. `openssl rand -hex 32`",
            token.chars().count()
        ));
    }
    let distinct: std::collections::BTreeSet<char> = token.chars().collect();
    if distinct.len() < 8 {
        return Err(
            "ROSTER_BOOTSTRAP_TOKEN repeats too few characters to be random: set it to e.g. `openssl rand -hex 32`".into(),
        );
    }
    Ok(())
}

/// Writes a secret to a new file readable by its owner only.
fn write_secret_file(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{secret}")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::check_bootstrap_token;

    #[test]
    fn placeholder_and_short_bootstrap_tokens_are_refused() {
        for bad in [
            "CHANGE-ME-to-at-least-24-random-characters",
            "changeme-changeme-changeme-1234",
            "please-put-a-placeholder-here-123",
            "Change_Me_0123456789abcdefghij",
            "short-token-1234",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            let e = check_bootstrap_token(bad).unwrap_err();
            assert!(e.contains("ROSTER_BOOTSTRAP_TOKEN"), "{bad}: {e}");
        }
        assert!(check_bootstrap_token("3f9a1c7e52b84d06a9e1f3c5b7d92e40").is_ok());
        assert!(check_bootstrap_token("bootstrap-0b8e6f9c1d2a4e7fb3c5d8a9e0f1a2b3").is_ok());
    }
}
