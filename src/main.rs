use clap::{Parser, Subcommand};

/// edgeshift: fail services over from lost cloud regions to verified community edge nodes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log filter (RUST_LOG syntax), e.g. `info` or `edgeshift=debug`.
    #[arg(long, global = true, default_value = "info", env = "EDGESHIFT_LOG")]
    log_level: String,
    /// Write logs as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version.
    Version,
}

fn main() {
    let cli = Cli::parse();
    edgeshift::telemetry::init(&cli.log_level, cli.log_json);
    match cli.command {
        Command::Version => println!("edgeshift {}", env!("CARGO_PKG_VERSION")),
    }
}
