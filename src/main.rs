use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
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
    /// Print the CustomResourceDefinitions (all kinds) as YAML.
    Crd,
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Watch EdgeServices in this namespace only (default: all namespaces).
    #[arg(long, env = "EDGESHIFT_NAMESPACE")]
    namespace: Option<String>,
    /// EdgeServices reconciled at once.
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// Seconds between read-only re-checks of a steady EdgeService.
    #[arg(long, default_value_t = 300)]
    resync_seconds: u64,
}

async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, String> {
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
    Client::try_from(config).map_err(|e| format!("creating the Kubernetes client: {e}"))
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
    let client = client(args.kubeconfig.as_ref()).await?;
    let options = edgeshift::controller::Options {
        namespace: args.namespace,
        concurrency: args.concurrency,
        resync: Duration::from_secs(args.resync_seconds.max(1)),
    };
    edgeshift::controller::run(client, options, async {
        shutdown_signal().await;
        tracing::info!("shutting down");
    })
    .await;
    Ok(())
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
