mod cli_node;
mod cli_status;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use edgeshift::runtime::leader::{self, Leadership, LeaseOptions};
use edgeshift::runtime::metrics::Metrics;
use edgeshift::runtime::rate_limit::RateLimitLayer;
use edgeshift::runtime::server;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// edgeshift: fail services over from lost cloud regions to verified community edge nodes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log filter (RUST_LOG syntax), e.g. `info` or `edgeshift=debug`.
    #[arg(long, global = true, default_value = "info", env = "EDGESHIFT_LOG")]
    log_level: String,
    /// Write logs as JSON lines.
    #[arg(long, global = true, env = "EDGESHIFT_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(RunArgs),
    /// Regions, edge nodes and services in one view: phases, replicas, traffic weights.
    Status(ReadArgs),
    /// What-if: where the EdgeService in a file would run and get traffic now, and why.
    /// Reads the live cluster, writes nothing.
    Plan(PlanArgs),
    /// Print the CustomResourceDefinitions (all kinds) as YAML.
    Crd,
    /// For community node operators: a node key, and a signed EdgeNode registration.
    #[command(subcommand)]
    Node(cli_node::NodeCommand),
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct ReadArgs {
    /// Kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Only EdgeServices of this namespace (default: all).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
}

#[derive(clap::Args)]
struct PlanArgs {
    /// The EdgeService manifest (YAML).
    #[arg(long, short = 'f')]
    file: PathBuf,
    /// Kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the EdgeService (default: the manifest's, else `default`).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Watch EdgeServices in this namespace only (default: all namespaces).
    #[arg(long, env = "EDGESHIFT_NAMESPACE")]
    namespace: Option<String>,
    /// EdgeServices reconciled at once. A reconcile writes its growing children together,
    /// then the rest, then status: a mass failover is bounded by this over the API server's
    /// latency.
    #[arg(long, default_value_t = 64)]
    concurrency: u16,
    /// Seconds between read-only re-checks of a steady EdgeService.
    #[arg(long, default_value_t = 300)]
    resync_seconds: u64,
    /// A canary (http://, https:// or tcp://host:port) probed with every round; when all
    /// canaries fail, edgeshift presumes itself partitioned and judges no region. Repeatable.
    #[arg(long = "canary", value_name = "URL", value_parser = edgeshift::health::Target::canary)]
    canaries: Vec<edgeshift::health::Target>,
    /// Probe only the CloudRegions matching this label selector (default: all).
    #[arg(long, value_name = "SELECTOR")]
    region_selector: Option<String>,
    /// Do not probe regions at all (their verdicts are set by someone else, e.g. tests).
    #[arg(long)]
    disable_prober: bool,
    #[command(flatten)]
    edge_nodes: cli_node::EdgeNodeRunArgs,
    /// Elect a leader among replicas on a Lease: only the leader probes and writes, the others
    /// keep their caches warm and take over when it goes.
    #[arg(long)]
    leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "edgeshift-leader")]
    lease_name: String,
    /// Namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Seconds a Lease stays valid without renewal: the longest a killed leader blocks a
    /// standby. The holder renews a third of the way before expiry.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    lease_duration_seconds: u64,
    /// This process's identity in the Lease (default: $POD_NAME, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Serve /metrics, /healthz and /readyz on this address (e.g. 0.0.0.0:8080); off when unset.
    #[arg(long, value_name = "ADDR")]
    metrics_bind_address: Option<std::net::SocketAddr>,
    /// Requests per second to the API server (all requests, as client-go counts them); 0 turns
    /// the limit off.
    #[arg(long, default_value_t = DEFAULT_KUBE_API_QPS)]
    kube_api_qps: u32,
    /// Requests allowed at once above the steady rate (at least --kube-api-qps).
    #[arg(long, default_value_t = DEFAULT_KUBE_API_BURST)]
    kube_api_burst: u32,
}

/// The default client rate limit: about 70 % of the write ceiling `make bench` measured on
/// a small API server (~1,100 patches/s on 2 cores), so a mass failover may use most of it but
/// never all (see e2e/bench/README.md).
const DEFAULT_KUBE_API_QPS: u32 = 800;
const DEFAULT_KUBE_API_BURST: u32 = 1600;

type Shutdown =
    futures::future::Shared<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>>;

/// Runs `start(stop)` each time this process becomes the leader; `stop` resolves when it
/// stops leading or the process shuts down.
async fn while_leading<F, Fut>(leadership: Leadership, shutdown: Shutdown, mut start: F)
where
    F: FnMut(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures::FutureExt;
    loop {
        let mut waiting = leadership.clone();
        tokio::select! {
            _ = shutdown.clone() => return,
            _ = waiting.acquired() => {},
        }
        let mut changes = leadership.subscribe();
        let lost = async move {
            while *changes.borrow_and_update() {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        };
        let stop_shutdown = shutdown.clone();
        let stop = async move {
            tokio::select! {
                _ = stop_shutdown => {},
                _ = lost => {},
            }
        };
        start(Box::pin(stop)).await;
        if shutdown.clone().now_or_never().is_some() {
            return;
        }
    }
}

async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, String> {
    client_limited(kubeconfig, None).await
}

/// A client whose requests pass the rate limit `quota` (none when `None`).
async fn client_limited(
    kubeconfig: Option<&PathBuf>,
    quota: Option<governor::Quota>,
) -> Result<Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration found ($KUBECONFIG, ~/.kube/config or in-cluster): {e}"))?,
    };
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| format!("creating the Kubernetes client: {e}"))?
        .with_layer(&edgeshift::runtime::rate_limit::user_agent_layer());
    Ok(match quota {
        Some(quota) => builder.with_layer(&RateLimitLayer::new(quota)).build(),
        None => builder.build(),
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(args: RunArgs) -> Result<(), String> {
    let quota = edgeshift::runtime::rate_limit::quota(args.kube_api_qps, args.kube_api_burst);
    let client = client_limited(args.kubeconfig.as_ref(), quota).await?;
    // One signal stops every controller.
    let shutdown: Shutdown = futures::FutureExt::shared(Box::pin(async {
        shutdown_signal().await;
        tracing::info!("shutting down");
    }));
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let (leadership, election) = if args.leader_elect {
        let identity = args.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let options = LeaseOptions {
            name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity,
            duration_seconds: args.lease_duration_seconds,
            grace_seconds: (args.lease_duration_seconds / 3).max(1),
        };
        // The Lease has a client (and connection) of its own: a renewal must never queue
        // behind a mass failover's writes in the rate limit, or the leader would lose it.
        let lease_client = client_limited(args.kubeconfig.as_ref(), None).await?;
        let (leadership, task) = leader::elect(lease_client, options, shutdown.clone()).await?;
        (leadership, Some(task))
    } else {
        (Leadership::always(), None)
    };
    {
        let gauge = metrics.is_leader.clone();
        let mut changes = leadership.subscribe();
        tokio::spawn(async move {
            loop {
                gauge.set(i64::from(*changes.borrow_and_update()));
                if changes.changed().await.is_err() {
                    break;
                }
            }
        });
    }
    if let Some(addr) = args.metrics_bind_address {
        let health = server::Health {
            metrics: metrics.clone(),
            ready: ready.clone(),
        };
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = server::serve(addr, health, stop).await {
                tracing::error!(error = %e, "metrics and health endpoints");
            }
        });
    }
    let options = edgeshift::controller::Options {
        namespace: args.namespace,
        concurrency: args.concurrency,
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        leadership: leadership.clone(),
        metrics: metrics.clone(),
        ready,
    };
    let prober =
        (!args.disable_prober).then(|| edgeshift::controller::cloud_region::ProberOptions {
            canaries: args.canaries,
            region_selector: args.region_selector,
            metrics: metrics.clone(),
            ..Default::default()
        });
    if let Some(prober) = &prober {
        edgeshift::controller::cloud_region::check_options(&client, prober).await?;
    }
    let edge_nodes =
        args.edge_nodes
            .options()
            .map(|o| edgeshift::controller::edge_node::EdgeNodeOptions {
                metrics: metrics.clone(),
                ..o
            });
    if let Some(edge_nodes) = &edge_nodes {
        edgeshift::controller::edge_node::check_options(&client, edge_nodes).await?;
    }
    // The EdgeService controller runs on every replica (warm caches) and acts only while
    // leading; the prober and the EdgeNode controller run only while leading.
    let regions = async {
        if let Some(prober) = prober {
            while_leading(leadership.clone(), shutdown.clone(), |stop| {
                edgeshift::controller::cloud_region::run(client.clone(), prober.clone(), stop)
            })
            .await;
        }
    };
    let edge_nodes = async {
        if let Some(edge_nodes) = edge_nodes {
            while_leading(leadership.clone(), shutdown.clone(), |stop| {
                edgeshift::controller::edge_node::run(client.clone(), edge_nodes.clone(), stop)
            })
            .await;
        }
    };
    tokio::join!(
        edgeshift::controller::run(client.clone(), options, shutdown.clone()),
        regions,
        edge_nodes
    );
    if let Some(task) = election {
        // Release the lease so a standby takes over at once, not after it expires.
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
    Ok(())
}

fn block_on(f: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::runtime::Runtime::new()
        .map_err(|e| format!("starting the async runtime: {e}"))?
        .block_on(f)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    edgeshift::telemetry::init(&cli.log_level, cli.log_json);
    let result = match cli.command {
        Command::Version => {
            println!("edgeshift {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Crd => edgeshift::api::crds_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(|e| format!("rendering CRDs: {e}")),
        Command::Node(command) => cli_node::run(command),
        Command::Status(args) => block_on(async move {
            let client = client(args.kubeconfig.as_ref()).await?;
            cli_status::status(client, args.namespace.as_deref())
                .await
                .map(|out| println!("{out}"))
        }),
        Command::Plan(args) => block_on(async move {
            let client = client(args.kubeconfig.as_ref()).await?;
            cli_status::plan(client, &args.file, args.namespace.as_deref())
                .await
                .map(|out| print!("{out}"))
        }),
        Command::Run(args) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(run(args)),
            Err(e) => Err(format!("starting the async runtime: {e}")),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("edgeshift: {message}");
            ExitCode::FAILURE
        }
    }
}
