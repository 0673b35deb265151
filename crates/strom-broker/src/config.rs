//! The broker's static configuration, with Strom's embedded defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Everything a broker needs to start. Every field has a default, so an empty `strom.toml`
/// (or none) gives a working single-node broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// This node's id (`node.id`).
    pub node_id: i32,
    /// Where partition logs and metadata live.
    pub data_dir: PathBuf,
    /// Address the Kafka listener binds.
    pub kafka_addr: SocketAddr,
    /// Address clients are told to connect to; defaults to `kafka_addr` (with the real port
    /// when `kafka_addr` asks for port 0).
    pub advertised_kafka_addr: Option<String>,
    /// Address of the HTTP side (health, metrics); `None` disables it.
    pub http_addr: Option<SocketAddr>,
    /// Rack of this broker, if any.
    pub rack: Option<String>,
    /// Create unknown topics on Metadata and Produce (`auto.create.topics.enable`).
    pub auto_create_topics_enable: bool,
    /// Partitions of auto-created topics and of CreateTopics asking for -1 (`num.partitions`).
    pub num_partitions: i32,
    /// Replication factor used when a request asks for -1 (`default.replication.factor`).
    pub default_replication_factor: i16,
    /// Largest request frame accepted (`socket.request.max.bytes`).
    pub socket_request_max_bytes: usize,
    /// Bytes of request frames held in memory at once over all connections
    /// (`queued.max.request.bytes`); a reader waits when it is reached.
    pub queued_request_bytes_max: usize,
    /// Responses one connection gathers before they are written (requests are read ahead only
    /// as far as one read buffer; their answers are coalesced into one vectored write).
    pub inflight_requests_per_connection_max: usize,
    /// Open client connections at most (`max.connections`).
    pub connections_max: usize,
    /// A connection that sends no request for this long is closed (`connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// Largest fetch response the broker builds, whatever the client asks for.
    pub fetch_response_bytes_max: usize,
    /// A fetch that starts at least this many bytes behind the end of one of its partitions
    /// is a catch-up read: its bytes are read and written to the socket by the catch-up
    /// threads, which run at a lower CPU priority, so a consumer replaying old data does not
    /// take CPU from producers and tailing consumers. 0 sends every fetch the normal way.
    pub fetch_catchup_lag_bytes: u64,
    /// Bytes a partition received within this many ms before a fetch do not count towards
    /// that lag: a consumer this close behind the producers reads the normal way however fast
    /// they write (a consumer 64 MiB behind a partition written at 400 MB/s is 160 ms behind,
    /// and limited to `fetch_catchup_bytes_per_sec` it could never catch up). 0: every byte
    /// counts.
    pub fetch_catchup_tail_ms: u64,
    /// Bytes per second that catch-up reads may take, over the whole broker, while producers
    /// are active (an append within the last second); 0: no limit. With no producers they are
    /// not limited. Default 128 MiB/s: with 256 a consumer replaying 1 GB cut a 7M msgs/s
    /// producer to 0.74-0.81 of its rate on the 2-core benchmark VM, with 128 to 0.89-0.94
    /// (BENCHMARKS.md, tenth session).
    pub fetch_catchup_bytes_per_sec: u64,
    /// Threads that move the bytes of catch-up reads.
    pub fetch_catchup_threads: usize,
    /// Nice value of the catch-up threads (0 = same priority as the rest, 19 = lowest). They
    /// still get all the CPU nobody else wants.
    pub fetch_catchup_nice: i32,
    /// How often retention and segment.ms rolls run (`log.retention.check.interval.ms`).
    pub log_retention_check_interval_ms: u64,
    /// Segment files (`.log`) kept open at most, over all partitions; the least recently used
    /// is closed and reopened on its next read or append. Index files hold no descriptor.
    /// 0 (the default) means half of the open files limit at start (`strom server` first
    /// raises the soft limit to the hard one), leaving the rest to connections.
    pub log_open_files_max: usize,
    /// Bytes of each partition's newest data left in the page cache: older data is written
    /// back and evicted by a background thread, so new appends reuse its pages instead of
    /// needing pages never used before (`strom_storage::cache_window`). Default 1 GiB: a
    /// produce burst of a few hundred MB evicts nothing while it runs, and a consumer up to
    /// 1 GiB behind reads from memory. 0: the kernel keeps everything until memory runs out.
    pub log_cache_window_bytes: u64,
    /// MiB of heap `strom server` touches and frees before it starts serving (default 128; 0:
    /// none). The allocator keeps freed memory (see the `strom` binary's `allocator.rs`), so the
    /// first load after a start reuses it instead of faulting in fresh pages while it is served:
    /// on the VM this project is measured on, the first e2e run after a start had p99 of 39-49
    /// ms without it and 2.0-3.6 ms with it (BENCHMARKS.md, tenth session).
    pub heap_warm_mib: usize,
    /// How often the log cleaner looks for compacted partitions to clean
    /// (`log.cleaner.backoff.ms`).
    pub log_cleaner_backoff_ms: u64,
    /// Partitions of `__consumer_offsets` when it is created (`offsets.topic.num.partitions`).
    pub offsets_topic_num_partitions: i32,
    /// `segment.bytes` of `__consumer_offsets` (`offsets.topic.segment.bytes`).
    pub offsets_topic_segment_bytes: i64,
    /// How long the first rebalance of an empty group waits for more members
    /// (`group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay_ms: u64,
    /// Smallest session timeout a member may ask for (`group.min.session.timeout.ms`).
    pub group_min_session_timeout_ms: i32,
    /// Largest session timeout a member may ask for (`group.max.session.timeout.ms`).
    pub group_max_session_timeout_ms: i32,
    /// Most members in one group (`group.max.size`).
    pub group_max_size: usize,
    /// How long committed offsets of an empty group are kept (`offsets.retention.minutes`).
    pub offsets_retention_minutes: i64,
    /// How often expired offsets are looked for (`offsets.retention.check.interval.ms`).
    pub offsets_retention_check_interval_ms: u64,
    /// Largest metadata string of an offset commit (`offset.metadata.max.bytes`).
    pub offset_metadata_max_bytes: usize,
    /// Session timeout of KIP-848 consumer group members (`group.consumer.session.timeout.ms`).
    pub group_consumer_session_timeout_ms: u64,
    /// Heartbeat interval of KIP-848 consumer group members
    /// (`group.consumer.heartbeat.interval.ms`).
    pub group_consumer_heartbeat_interval_ms: i32,
    /// Broker-wide defaults for topic configs, by Kafka topic config name
    /// (e.g. `"retention.ms" = "86400000"`).
    pub topic_defaults: BTreeMap<String, String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            data_dir: PathBuf::from("./strom-data"),
            kafka_addr: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_kafka_addr: None,
            http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9644))),
            rack: None,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            socket_request_max_bytes: strom_protocol::frame::FRAME_SIZE_MAX_DEFAULT_BYTES,
            queued_request_bytes_max: 512 * 1024 * 1024,
            inflight_requests_per_connection_max: 100,
            connections_max: 10_000,
            connections_max_idle_ms: 600_000,
            fetch_response_bytes_max: 64 * 1024 * 1024,
            fetch_catchup_lag_bytes: 64 * 1024 * 1024,
            fetch_catchup_tail_ms: 1000,
            fetch_catchup_bytes_per_sec: 128 * 1024 * 1024,
            fetch_catchup_threads: 2,
            fetch_catchup_nice: 10,
            log_retention_check_interval_ms: 60_000,
            log_open_files_max: 0,
            log_cache_window_bytes: 1024 * 1024 * 1024,
            heap_warm_mib: 128,
            log_cleaner_backoff_ms: 15_000,
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: 10_000,
            offsets_retention_minutes: 10_080,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            topic_defaults: BTreeMap::new(),
        }
    }
}

impl BrokerConfig {
    /// Checks values that would make the broker misbehave; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_id < 0 {
            return Err(format!("node_id must be >= 0, not {}", self.node_id));
        }
        if self.num_partitions < 1 {
            return Err(format!(
                "num_partitions must be >= 1, not {}",
                self.num_partitions
            ));
        }
        if self.socket_request_max_bytes < 1024 {
            return Err("socket_request_max_bytes must be at least 1024".to_string());
        }
        if self.queued_request_bytes_max < self.socket_request_max_bytes {
            return Err(
                "queued_request_bytes_max must be at least socket_request_max_bytes".to_string(),
            );
        }
        if self.inflight_requests_per_connection_max == 0 || self.connections_max == 0 {
            return Err("connection limits must be at least 1".to_string());
        }
        if self.fetch_catchup_threads == 0 {
            return Err("fetch_catchup_threads must be at least 1".to_string());
        }
        if !(0..=19).contains(&self.fetch_catchup_nice) {
            return Err(format!(
                "fetch_catchup_nice must be in 0..=19, not {}",
                self.fetch_catchup_nice
            ));
        }
        if self.offsets_topic_num_partitions < 1 {
            return Err("offsets_topic_num_partitions must be at least 1".to_string());
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err(
                "group_min_session_timeout_ms exceeds group_max_session_timeout_ms".to_string(),
            );
        }
        for (key, value) in &self.topic_defaults {
            strom_metadata::topic_config::validate_topic_config(key, value)
                .map_err(|e| format!("topic_defaults: {e}"))?;
        }
        Ok(())
    }
}

impl BrokerConfig {
    /// `log_open_files_max`, with 0 resolved to half of the open files limit (the cache
    /// raises anything below 16 to 16).
    pub fn log_open_files_max_effective(&self) -> usize {
        match self.log_open_files_max {
            0 => strom_storage::default_open_files_max(),
            max => max,
        }
    }

    /// The group coordinator's settings.
    pub fn group_config(&self) -> crate::group::GroupConfig {
        crate::group::GroupConfig {
            offsets_topic_num_partitions: self.offsets_topic_num_partitions,
            offsets_topic_segment_bytes: self.offsets_topic_segment_bytes,
            timings: crate::group::state::GroupTimings {
                initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
                min_session_timeout_ms: self.group_min_session_timeout_ms,
                max_session_timeout_ms: self.group_max_session_timeout_ms,
                max_members: self.group_max_size,
            },
            offsets_retention_ms: self.offsets_retention_minutes.saturating_mul(60_000),
            offset_metadata_max_bytes: self.offset_metadata_max_bytes,
            consumer_timings: crate::group::consumer::ConsumerGroupTimings {
                session_timeout_ms: self.group_consumer_session_timeout_ms,
                heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms,
                max_members: self.group_max_size,
            },
        }
    }
}
