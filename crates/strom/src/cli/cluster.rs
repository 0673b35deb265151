//! `strom cluster info`.

use clap::{Args, Subcommand};
use serde_json::json;
use strom_client::Admin;

use super::{print_json, print_table, Format, GlobalArgs};

/// `strom cluster ...`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Show the cluster id, brokers, controller, and topic and partition counts.
    ///
    /// Examples:
    ///   strom cluster info
    ///   strom cluster info -b kafka1:9092 --format json
    Info,
}

/// Runs `strom cluster ...`.
pub async fn run(global: &GlobalArgs, args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Info => info(global).await,
    }
}

async fn info(global: &GlobalArgs) -> anyhow::Result<()> {
    let admin = Admin::new(global.connect().await?);
    let cluster = admin.describe_cluster().await?;
    let topics = admin.list_topics().await?;
    let partitions: usize = topics.iter().map(|t| t.partitions.len()).sum();
    if global.format == Format::Json {
        print_json(&json!({
            "cluster_id": cluster.cluster_id,
            "controller_id": cluster.controller_id,
            "brokers": cluster.brokers.iter().map(|b| json!({
                "node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack,
            })).collect::<Vec<_>>(),
            "topics": topics.len(),
            "partitions": partitions,
        }));
        return Ok(());
    }
    println!(
        "cluster id:  {}",
        cluster.cluster_id.as_deref().unwrap_or("-")
    );
    println!("controller:  {}", cluster.controller_id);
    println!("topics:      {}", topics.len());
    println!("partitions:  {partitions}");
    println!();
    let rows: Vec<Vec<String>> = cluster
        .brokers
        .iter()
        .map(|b| {
            let id = if b.node_id == cluster.controller_id {
                format!("{}*", b.node_id)
            } else {
                b.node_id.to_string()
            };
            vec![
                id,
                b.host.clone(),
                b.port.to_string(),
                b.rack.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(&["BROKER", "HOST", "PORT", "RACK"], &rows);
    Ok(())
}
