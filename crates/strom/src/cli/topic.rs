//! `strom topic create|list|describe|alter-config|add-partitions|delete`.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::json;
use strom_client::{Admin, ConfigChange, ConfigSource, NewTopic};

use super::{ids, parse_key_value, print_json, print_table, Format, GlobalArgs};

/// `strom topic ...`.
#[derive(Debug, Args)]
pub struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic.
    ///
    /// Examples:
    ///   strom topic create events
    ///   strom topic create events -p 6 -c retention.ms=86400000 -c cleanup.policy=compact
    Create {
        /// Topic name.
        name: String,
        /// Partitions [default: the broker's num.partitions].
        #[arg(short = 'p', long)]
        partitions: Option<i32>,
        /// Replication factor [default: the broker's default.replication.factor].
        #[arg(short = 'r', long)]
        replicas: Option<i16>,
        /// Topic config, repeatable: -c retention.ms=60000.
        #[arg(short = 'c', long = "config", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// List topics with their partition counts.
    ///
    /// Examples:
    ///   strom topic list
    ///   strom topic list --format json
    List {
        /// Include internal topics (such as __consumer_offsets).
        #[arg(long)]
        internal: bool,
    },
    /// Show a topic's partitions (leader, replicas, ISR, offsets) and its non-default configs.
    ///
    /// Examples:
    ///   strom topic describe events
    ///   strom topic describe events --all-configs --format json
    Describe {
        /// Topic name.
        name: String,
        /// Show every config, not only those set on the topic.
        #[arg(long)]
        all_configs: bool,
    },
    /// Set or remove topic config overrides.
    ///
    /// Examples:
    ///   strom topic alter-config events --set retention.ms=3600000 --set segment.bytes=1048576
    ///   strom topic alter-config events --delete retention.ms
    AlterConfig {
        /// Topic name.
        name: String,
        /// Config to set, repeatable: --set key=value.
        #[arg(long = "set", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// Config override to remove (back to the default), repeatable.
        #[arg(long = "delete")]
        delete: Vec<String>,
    },
    /// Add partitions to a topic (existing keys may map to other partitions afterwards).
    ///
    /// Examples:
    ///   strom topic add-partitions events -n 3
    AddPartitions {
        /// Topic name.
        name: String,
        /// How many partitions to add.
        #[arg(short = 'n', long = "num")]
        count: i32,
    },
    /// Delete topics and all their data.
    ///
    /// Examples:
    ///   strom topic delete events
    ///   strom topic delete old-1 old-2
    Delete {
        /// Topic names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Runs `strom topic ...`.
pub async fn run(global: &GlobalArgs, args: TopicArgs) -> anyhow::Result<()> {
    let admin = Admin::new(global.connect().await?);
    let json = global.format == Format::Json;
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replicas,
            configs,
        } => {
            let topic = NewTopic {
                name: name.clone(),
                partitions: partitions.unwrap_or(-1),
                replication_factor: replicas.unwrap_or(-1),
                configs: configs.into_iter().collect(),
            };
            admin.create_topics(&[topic]).await?;
            let info = admin.client().topic(&name, false).await?;
            let replication = info.partitions.first().map_or(0, |p| p.replicas.len());
            if json {
                print_json(
                    &json!({"name": name, "partitions": info.partitions.len(), "replication_factor": replication}),
                );
            } else {
                println!(
                    "created topic {name} ({} partitions, replication factor {replication})",
                    info.partitions.len()
                );
            }
        }
        TopicCommand::List { internal } => list(&admin, json, internal).await?,
        TopicCommand::Describe { name, all_configs } => {
            describe(&admin, json, &name, all_configs).await?
        }
        TopicCommand::AlterConfig { name, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                bail!("nothing to change: give --set key=value or --delete key");
            }
            let mut changes: Vec<ConfigChange> = set
                .into_iter()
                .map(|(k, v)| ConfigChange::Set(k, v))
                .collect();
            changes.extend(delete.into_iter().map(ConfigChange::Delete));
            admin.alter_topic_config(&name, &changes).await?;
            if json {
                print_json(&json!({"name": name, "changed": changes.len()}));
            } else {
                println!("altered {} config(s) of topic {name}", changes.len());
            }
        }
        TopicCommand::AddPartitions { name, count } => {
            if count <= 0 {
                bail!("-n must be at least 1");
            }
            let current = admin
                .client()
                .refresh_metadata(Some(std::slice::from_ref(&name)), false)
                .await?;
            let Some(info) = current.topics.get(&name) else {
                bail!("unknown topic {name:?}")
            };
            let total = info.partitions.len() as i32 + count;
            admin.create_partitions(&name, total).await?;
            if json {
                print_json(&json!({"name": name, "partitions": total}));
            } else {
                println!("topic {name} now has {total} partitions");
            }
        }
        TopicCommand::Delete { names } => {
            admin.delete_topics(&names).await?;
            if json {
                print_json(&json!({"deleted": names}));
            } else {
                for name in names {
                    println!("deleted topic {name}");
                }
            }
        }
    }
    Ok(())
}

async fn list(admin: &Admin, json: bool, internal: bool) -> anyhow::Result<()> {
    let topics: Vec<_> = admin
        .list_topics()
        .await?
        .into_iter()
        .filter(|t| internal || !t.is_internal)
        .collect();
    if json {
        let out: Vec<_> = topics
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "partitions": t.partitions.len(),
                    "replication_factor": t.partitions.first().map_or(0, |p| p.replicas.len()),
                    "internal": t.is_internal,
                })
            })
            .collect();
        print_json(&json!(out));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.partitions.len().to_string(),
                t.partitions
                    .first()
                    .map_or(0, |p| p.replicas.len())
                    .to_string(),
            ]
        })
        .collect();
    print_table(&["NAME", "PARTITIONS", "REPLICAS"], &rows);
    Ok(())
}

async fn describe(admin: &Admin, json: bool, name: &str, all_configs: bool) -> anyhow::Result<()> {
    let topic = admin.describe_topic(name).await?;
    let configs: Vec<_> = topic
        .configs
        .iter()
        .filter(|c| all_configs || c.source == ConfigSource::Topic)
        .collect();
    if json {
        let config_map: BTreeMap<&str, Option<&str>> = configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_deref()))
            .collect();
        print_json(&json!({
            "name": topic.name,
            "topic_id": topic.topic_id,
            "internal": topic.is_internal,
            "partitions": topic.partitions.iter().map(|p| json!({
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
                "log_start_offset": p.log_start_offset,
                "high_watermark": p.high_watermark,
            })).collect::<Vec<_>>(),
            "configs": config_map,
        }));
        return Ok(());
    }
    println!("name:        {}", topic.name);
    println!("topic id:    {}", topic.topic_id);
    println!("internal:    {}", topic.is_internal);
    println!("partitions:  {}", topic.partitions.len());
    println!();
    let rows: Vec<Vec<String>> = topic
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.leader.to_string(),
                p.leader_epoch.to_string(),
                ids(&p.replicas),
                ids(&p.isr),
                p.log_start_offset.to_string(),
                p.high_watermark.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "PARTITION",
            "LEADER",
            "EPOCH",
            "REPLICAS",
            "ISR",
            "LOG-START",
            "HIGH-WATERMARK",
        ],
        &rows,
    );
    println!();
    if configs.is_empty() {
        println!("configs: (all defaults)");
    } else {
        let rows: Vec<Vec<String>> = configs
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.value.clone().unwrap_or_else(|| "-".into()),
                    c.source.name().to_string(),
                ]
            })
            .collect();
        print_table(&["CONFIG", "VALUE", "SOURCE"], &rows);
    }
    Ok(())
}
