//! `strom`: the Strom broker and its command-line tools, in one binary.

mod server;

use clap::{Parser, Subcommand};

/// Strom: a Kafka-compatible commit log in one binary.
#[derive(Debug, Parser)]
#[command(name = "strom", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker.
    ///
    /// With no options it serves Kafka clients on 127.0.0.1:9092, health on
    /// http://127.0.0.1:9644/health, and keeps data in ./strom-data.
    ///
    /// Settings come from built-in defaults, then `--config strom.toml`, then STROM_*
    /// environment variables, then flags (strongest).
    ///
    /// Examples:
    ///   strom server
    ///   strom server --data-dir /var/lib/strom --kafka-addr 0.0.0.0:9092 --advertised-kafka-addr kafka1:9092
    ///   STROM_NUM_PARTITIONS=6 strom server --config strom.toml
    Server(server::ServerArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Server(args) => server::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = std::env::var("STROM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}
