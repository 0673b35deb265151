//! `fraud-detection`: the online game's fraud detector, the seed's worked example.
//!
//! `game-server` produces logins and trades of simulated players to ONE topic, `game-events`,
//! keyed by player id (so a player's login always precedes their trades in their partition),
//! and writes the ids of the trades it made suspicious to a truth file. `detector` joins the
//! consumer group `fraud-detectors` (start several), keeps per player the last 20 logins and
//! the last 20 unflagged trades, and sends flagged trades to `alerts`.

mod detector;
mod game;

use clap::{Parser, Subcommand};

/// The game fraud detector on Strom.
#[derive(Debug, Parser)]
#[command(name = "fraud-detection", version, about)]
struct Cli {
    /// Brokers to bootstrap from, comma separated.
    #[arg(
        short = 'b',
        long,
        global = true,
        env = "STROM_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce logins and trades (and write the ground truth of suspicious trades).
    GameServer(game::GameArgs),
    /// Flag suspicious trades, as a member of a consumer group.
    Detector(detector::DetectorArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("STROM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::GameServer(args) => game::run(&cli.brokers, args).await,
            Command::Detector(args) => detector::run(&cli.brokers, args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
