//! `strom`: the Strom broker and its command-line tools, in one binary.

mod allocator;
mod cli;
mod server;
mod transforms;

use clap::{Parser, Subcommand};

/// Strom: a Kafka-compatible commit log in one binary.
#[derive(Debug, Parser)]
#[command(name = "strom", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: cli::GlobalArgs,
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
    /// Create, list, describe, alter and delete topics.
    ///
    /// Examples:
    ///   strom topic create events -p 6 -c retention.ms=86400000
    ///   strom topic list
    ///   strom topic describe events --format json
    ///   strom topic alter-config events --set retention.ms=3600000
    ///   strom topic add-partitions events -n 2
    ///   strom topic delete events
    Topic(cli::topic::TopicArgs),
    /// Write records to a topic, one per line of stdin.
    ///
    /// Prints a summary (count, partitions, offsets) at the end.
    ///
    /// Examples:
    ///   echo hello | strom produce events
    ///   printf 'user-1:clicked\nuser-2:left\n' | strom produce events --key-separator :
    ///   seq 1000 | strom produce events -k fixed-key -H source=seq --compression zstd --acks 1
    Produce(cli::produce::ProduceArgs),
    /// Read records from topics and print them (kcat-like format string or JSON lines).
    ///
    /// Examples:
    ///   strom consume events -e
    ///   strom consume events -o end
    ///   strom consume events -p 0,2 -o 100 -n 10 -f '%p/%o %k=%v\n'
    ///   strom consume events -o @1700000000000 -e --format json
    ///   strom consume events clicks -g billing        (a group member; commits what it prints)
    Consume(cli::consume::ConsumeArgs),
    /// Consumer groups: list, describe (members, offsets, lag), reset offsets, delete.
    ///
    /// Examples:
    ///   strom group list
    ///   strom group describe billing --format json
    ///   strom group reset-offsets billing --topic events --to earliest            (dry run)
    ///   strom group reset-offsets billing --topic events --to @1700000000000 --execute
    ///   strom group delete billing
    Group(cli::group::GroupArgs),
    /// Show the cluster: id, brokers, controller, topic and partition counts.
    ///
    /// Examples:
    ///   strom cluster info
    ///   strom cluster info --format json
    Cluster(cli::cluster::ClusterArgs),
    /// Measure throughput and latency against any Kafka-compatible broker.
    ///
    /// Examples:
    ///   strom bench produce --messages 1000000 --size 100 --acks 1
    ///   strom bench consume --messages 1000000
    ///   strom bench e2e --size 1000 --acks all --format json
    Bench(cli::bench::BenchArgs),
    /// Data pipelines without code: sources, transforms and sinks (Parquet, JSON lines, topics).
    ///
    /// Examples:
    ///   strom connect run lake.toml
    ///   strom connect sink parquet --topics game-events,alerts --group lake --root /data/lake --roll-secs 60
    ///   strom connect sink jsonl --topics events --group archive --root s3://bucket/events --mode json
    ///   strom connect source taildir --files '/var/log/game/*.log*' --positions game.pos --topic logs
    ///   strom connect source http --addr 127.0.0.1:8088 --topic events --key-field player_id
    Connect(cli::connect::ConnectArgs),
    /// In-broker transforms: topic-to-topic pipelines the server runs and resumes after restarts
    ///
    /// Steps are the connectors' transforms as JSON (filter, mask, hash, drop, route, header).
    /// Delivery is at-least-once: after a crash the last uncommitted batch is produced again.
    ///
    /// Examples:
    ///   strom transform create clean --input game-events --output game-events-clean \
    ///       --step '{"type":"filter","field":"$.type","equals":"trade"}' \
    ///       --step '{"type":"hash","fields":["$.ip"]}'
    ///   strom transform create clean --input raw --output clean --steps-file steps.json
    ///   strom transform list --format json
    ///   strom transform delete clean
    #[command(verbatim_doc_comment)]
    Transform(cli::transform::TransformArgs),
}

fn main() -> std::process::ExitCode {
    allocator::keep_freed_memory();
    let cli = Cli::parse();
    init_logging();
    if !matches!(cli.command, Command::Server(_) | Command::Connect(_)) {
        // Tools that print behave like other Unix tools when their reader goes away
        // (`strom consume T | head`): end quietly instead of failing to print. Long-running
        // services keep Rust's default (SIGPIPE ignored, EPIPE handled as an error).
        // SAFETY: setting a signal disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Server(args) => server::run(args),
        Command::Topic(args) => cli::block_on(cli::topic::run(&cli.global, args)),
        Command::Produce(args) => cli::block_on(cli::produce::run(&cli.global, args)),
        Command::Consume(args) => cli::block_on(cli::consume::run(&cli.global, args)),
        Command::Group(args) => cli::block_on(cli::group::run(&cli.global, args)),
        Command::Cluster(args) => cli::block_on(cli::cluster::run(&cli.global, args)),
        Command::Bench(args) => cli::bench::main(&cli.global, args),
        Command::Connect(args) => cli::block_on(cli::connect::run(&cli.global, args)),
        Command::Transform(args) => cli::block_on(cli::transform::run(&cli.global, args)),
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
