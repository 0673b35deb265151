//! `strom group list|describe|reset-offsets|delete`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use strom_client::{Admin, Error, GroupDescription, OffsetReset, OffsetSpec, ResponseError};

use super::{print_json, print_table, Format, GlobalArgs};

/// `strom group ...`.
#[derive(Debug, Args)]
pub struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// List consumer groups with their state and type.
    ///
    /// Examples:
    ///   strom group list
    ///   strom group list --format json
    List,
    /// Show a group: state, assignor, members and their partitions, and per partition the
    /// committed offset, the end offset and the lag.
    ///
    /// Examples:
    ///   strom group describe billing
    ///   strom group describe billing --format json
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets of a topic. A dry run by default: prints the plan;
    /// add --execute to commit it. The group must have no running members.
    ///
    /// Examples:
    ///   strom group reset-offsets billing --topic events --to earliest
    ///   strom group reset-offsets billing --topic events --to latest --execute
    ///   strom group reset-offsets billing --topic events --to 1500 -p 0,1 --execute
    ///   strom group reset-offsets billing --topic events --to @1700000000000 --execute --format json
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose offsets to move.
        #[arg(long, short = 't')]
        topic: String,
        /// Where to: earliest, latest, an OFFSET, or @TIMESTAMP_MS (first record at or after it).
        #[arg(long)]
        to: OffsetSpec,
        /// Only these partitions, comma separated (default: all).
        #[arg(short = 'p', long, value_delimiter = ',')]
        partitions: Vec<i32>,
        /// Commit the new offsets (without it, nothing changes).
        #[arg(long)]
        execute: bool,
    },
    /// Delete groups and their committed offsets (they must have no running members).
    ///
    /// Examples:
    ///   strom group delete billing
    ///   strom group delete old-1 old-2
    Delete {
        /// Group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

/// Runs `strom group ...`.
pub async fn run(global: &GlobalArgs, args: GroupArgs) -> anyhow::Result<()> {
    let admin = Admin::new(global.connect().await?);
    match args.command {
        GroupCommand::List => list(global, &admin).await,
        GroupCommand::Describe { group } => describe(global, &admin, &group).await,
        GroupCommand::ResetOffsets {
            group,
            topic,
            to,
            partitions,
            execute,
        } => reset_offsets(global, &admin, &group, &topic, &partitions, to, execute).await,
        GroupCommand::Delete { groups } => delete(&admin, &groups).await,
    }
}

/// Adds what to do to the group errors a user can fix.
fn explain(error: Error, group: &str) -> anyhow::Error {
    let hint = match error.kafka_code() {
        Some(ResponseError::GroupIdNotFound) => Some(format!("no group {group:?}; `strom group list` shows the groups")),
        Some(ResponseError::NonEmptyGroup) => {
            Some(format!("group {group:?} still has members; stop its consumers first (`strom group describe {group}` lists them)"))
        }
        _ => None,
    };
    match hint {
        Some(hint) => anyhow::Error::new(error).context(hint),
        None => error.into(),
    }
}

async fn list(global: &GlobalArgs, admin: &Admin) -> anyhow::Result<()> {
    let groups = admin.list_groups().await?;
    if global.format == Format::Json {
        print_json(&json!(groups
            .iter()
            .map(|g| json!({"group": g.group_id, "state": g.state, "protocol_type": g.protocol_type, "type": g.group_type}))
            .collect::<Vec<_>>()));
        return Ok(());
    }
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.group_id.clone(),
                dash(&g.state),
                dash(&g.group_type),
                dash(&g.protocol_type),
            ]
        })
        .collect();
    print_table(&["GROUP", "STATE", "TYPE", "PROTOCOL-TYPE"], &rows);
    Ok(())
}

async fn describe(global: &GlobalArgs, admin: &Admin, group: &str) -> anyhow::Result<()> {
    let description = admin
        .describe_group(group)
        .await
        .map_err(|e| explain(e, group))?;
    if global.format == Format::Json {
        print_json(&describe_json(&description));
        return Ok(());
    }
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    println!("group:        {}", description.group_id);
    println!("state:        {}", description.state);
    println!("assignor:     {}", dash(&description.protocol));
    println!("coordinator:  {}", description.coordinator);
    println!("members:      {}", description.members.len());
    if !description.members.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = description
            .members
            .iter()
            .map(|m| {
                let assignment: Vec<String> =
                    m.assignment.iter().map(|tp| tp.to_string()).collect();
                vec![
                    m.member_id.clone(),
                    m.group_instance_id.clone().unwrap_or_else(|| "-".into()),
                    dash(&m.client_id),
                    dash(&m.client_host),
                    if assignment.is_empty() {
                        "-".into()
                    } else {
                        assignment.join(",")
                    },
                ]
            })
            .collect();
        print_table(
            &["MEMBER", "INSTANCE", "CLIENT-ID", "HOST", "ASSIGNMENT"],
            &rows,
        );
    }
    println!();
    let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let rows: Vec<Vec<String>> = description
        .offsets
        .iter()
        .map(|o| {
            vec![
                o.tp.topic.clone(),
                o.tp.partition.to_string(),
                opt(o.committed),
                opt((o.end_offset >= 0).then_some(o.end_offset)),
                opt(o.lag),
                o.member_id.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"],
        &rows,
    );
    Ok(())
}

fn describe_json(d: &GroupDescription) -> serde_json::Value {
    json!({
        "group": d.group_id,
        "state": d.state,
        "protocol_type": d.protocol_type,
        "assignor": d.protocol,
        "coordinator": d.coordinator,
        "members": d.members.iter().map(|m| json!({
            "member_id": m.member_id,
            "group_instance_id": m.group_instance_id,
            "client_id": m.client_id,
            "client_host": m.client_host,
            "subscription": m.subscription,
            "assignment": m.assignment.iter().map(|tp| json!({"topic": tp.topic, "partition": tp.partition})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "offsets": d.offsets.iter().map(|o| json!({
            "topic": o.tp.topic,
            "partition": o.tp.partition,
            "committed": o.committed,
            "end_offset": (o.end_offset >= 0).then_some(o.end_offset),
            "lag": o.lag,
            "member_id": o.member_id,
        })).collect::<Vec<_>>(),
        "total_lag": d.offsets.iter().filter_map(|o| o.lag).sum::<i64>(),
    })
}

async fn reset_offsets(
    global: &GlobalArgs,
    admin: &Admin,
    group: &str,
    topic: &str,
    partitions: &[i32],
    to: OffsetSpec,
    execute: bool,
) -> anyhow::Result<()> {
    let plan = match admin
        .reset_group_offsets(group, topic, partitions, to, execute)
        .await
    {
        Ok(plan) => plan,
        Err(Error::UnknownTopic(t)) => {
            bail!("unknown topic {t:?}; `strom topic list` shows the topics")
        }
        Err(error @ Error::Invalid(_)) => bail!(
            "{}",
            error.to_string().trim_start_matches("invalid argument: ")
        ),
        Err(error) => {
            return Err(explain(error, group))
                .with_context(|| format!("reset offsets of group {group:?}"))
        }
    };
    if global.format == Format::Json {
        print_json(&json!({
            "group": group,
            "topic": topic,
            "executed": execute,
            "partitions": plan.iter().map(|r: &OffsetReset| json!({
                "topic": r.tp.topic, "partition": r.tp.partition, "current": r.current, "new": r.target,
            })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|r| {
            vec![
                r.tp.topic.clone(),
                r.tp.partition.to_string(),
                r.current.map_or_else(|| "-".into(), |c| c.to_string()),
                r.target.to_string(),
            ]
        })
        .collect();
    print_table(&["TOPIC", "PARTITION", "CURRENT", "NEW"], &rows);
    println!();
    if execute {
        println!("Committed {} new offset(s) for group {group}.", plan.len());
    } else {
        println!("Dry run: nothing changed. Add --execute to commit these offsets.");
    }
    Ok(())
}

async fn delete(admin: &Admin, groups: &[String]) -> anyhow::Result<()> {
    for group in groups {
        admin
            .delete_groups(std::slice::from_ref(group))
            .await
            .map_err(|e| explain(e, group))?;
        println!("deleted group {group}");
    }
    Ok(())
}
