//! The shared core: bootstrap, the metadata cache and the connection pool.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};
use parking_lot::RwLock;

use crate::connection::Connection;
use crate::error::{Error, Result};

/// Settings shared by producers, consumers and admins built on one [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of one or more brokers to bootstrap from.
    pub bootstrap_servers: Vec<String>,
    /// `client.id` sent with every request.
    pub client_id: String,
    /// How long to wait for a TCP connection.
    pub connect_timeout_ms: u64,
    /// How long to wait for any response (long polls add their own wait to it).
    pub request_timeout_ms: u64,
    /// How often a failed metadata refresh is retried, and how long to wait between tries.
    pub metadata_retries: u32,
    /// Backoff between retries of anything retriable.
    pub retry_backoff_ms: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap_servers: vec!["127.0.0.1:9092".to_string()],
            client_id: "strom".to_string(),
            connect_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            metadata_retries: 5,
            retry_backoff_ms: 100,
        }
    }
}

impl ClientConfig {
    /// A config bootstrapping from a comma-separated list of `host:port`.
    pub fn new(bootstrap_servers: &str) -> ClientConfig {
        ClientConfig {
            bootstrap_servers: bootstrap_servers
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            ..ClientConfig::default()
        }
    }
}

/// A broker as the cluster metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// `node.id`.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if set.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition in the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader's node id, -1 when there is none.
    pub leader: i32,
    /// Leader epoch, -1 if the broker does not say.
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Offline replica node ids.
    pub offline_replicas: Vec<i32>,
    /// Partition-level error code (0 = none).
    pub error_code: i16,
}

/// One topic in the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id (all zero if the broker does not send ids).
    pub topic_id: [u8; 16],
    /// Internal topic (e.g. `__consumer_offsets`).
    pub is_internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

/// The cluster as last seen: brokers, controller, topics.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// Cluster id, if the broker sends one.
    pub cluster_id: Option<String>,
    /// Controller node id, -1 if unknown.
    pub controller_id: i32,
    /// Brokers by node id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicInfo>,
}

struct Inner {
    config: ClientConfig,
    metadata: RwLock<Metadata>,
    connections: tokio::sync::Mutex<HashMap<String, Arc<Connection>>>,
}

/// A connection to a Kafka cluster: the metadata cache and one connection per broker, shared by
/// every [`Producer`](crate::Producer), [`Consumer`](crate::Consumer) and [`Admin`](crate::Admin)
/// built on it. Cloning is cheap.
///
/// ```no_run
/// # async fn example() -> strom_client::Result<()> {
/// use strom_client::{Client, ClientConfig};
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let metadata = client.metadata();
/// println!("cluster {:?} has {} brokers", metadata.cluster_id, metadata.brokers.len());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.config.bootstrap_servers)
            .finish()
    }
}

impl Client {
    /// Connects to the first reachable bootstrap server and loads the broker list.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        if config.bootstrap_servers.is_empty() {
            return Err(Error::Invalid("no bootstrap servers given".into()));
        }
        let client = Client {
            inner: Arc::new(Inner {
                config,
                metadata: RwLock::new(Metadata {
                    controller_id: -1,
                    ..Metadata::default()
                }),
                connections: tokio::sync::Mutex::new(HashMap::new()),
            }),
        };
        client.refresh_metadata(Some(&[]), false).await?;
        Ok(client)
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A copy of the cached metadata.
    pub fn metadata(&self) -> Metadata {
        self.inner.metadata.read().clone()
    }

    /// The cached metadata of `topic`, if known.
    pub fn cached_topic(&self, topic: &str) -> Option<TopicInfo> {
        self.inner.metadata.read().topics.get(topic).cloned()
    }

    /// Partition count of `topic` from the cache, if known.
    pub fn cached_partition_count(&self, topic: &str) -> Option<usize> {
        self.inner
            .metadata
            .read()
            .topics
            .get(topic)
            .map(|t| t.partitions.len())
    }

    /// Leader of a partition from the cache, if known and online.
    pub fn cached_leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let metadata = self.inner.metadata.read();
        let topic = metadata.topics.get(topic)?;
        // Partitions are listed by index, so the direct lookup almost always hits (a linear
        // search was a fifth of the producer's CPU over 10,000 partitions).
        let partition = usize::try_from(partition)
            .ok()
            .and_then(|i| topic.partitions.get(i))
            .filter(|p| p.partition == partition)
            .or_else(|| topic.partitions.iter().find(|p| p.partition == partition))?;
        (partition.leader >= 0).then_some(partition.leader)
    }

    /// The metadata of `topic`, from the cache or else from the cluster.
    ///
    /// `auto_create` lets a broker configured for it create the topic (as producers do).
    pub async fn topic(&self, topic: &str, auto_create: bool) -> Result<TopicInfo> {
        if let Some(info) = self.cached_topic(topic) {
            return Ok(info);
        }
        self.refresh_metadata(Some(&[topic.to_string()]), auto_create)
            .await?;
        self.cached_topic(topic)
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    /// Asks the cluster for fresh metadata of `topics` (`None`: every topic; `Some(&[])`: brokers
    /// only) and merges it into the cache. Retries with backoff on retriable errors.
    ///
    /// Topics the cluster reports as unknown are removed from the cache; other topic errors are
    /// returned.
    pub async fn refresh_metadata(
        &self,
        topics: Option<&[String]>,
        auto_create: bool,
    ) -> Result<Metadata> {
        let mut attempt = 0;
        loop {
            match self.refresh_metadata_once(topics, auto_create).await {
                Ok(metadata) => return Ok(metadata),
                Err(error)
                    if error.is_retriable() && attempt < self.inner.config.metadata_retries =>
                {
                    attempt += 1;
                    tracing::debug!(%error, attempt, "metadata refresh failed; retrying");
                    tokio::time::sleep(Duration::from_millis(self.inner.config.retry_backoff_ms))
                        .await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn refresh_metadata_once(
        &self,
        topics: Option<&[String]>,
        auto_create: bool,
    ) -> Result<Metadata> {
        let mut request = MetadataRequest::default();
        request.topics = topics.map(|names| {
            names
                .iter()
                .map(|name| {
                    let mut topic = MetadataRequestTopic::default();
                    topic.name = Some(TopicName(StrBytes::from_string(name.clone())));
                    topic
                })
                .collect()
        });
        request.allow_auto_topic_creation = auto_create;
        let (_, response) = self.send_any(&request).await?;
        let mut metadata = self.inner.metadata.write();
        metadata.cluster_id = response.cluster_id.map(|s| s.to_string());
        metadata.controller_id = response.controller_id.0;
        metadata.brokers = response
            .brokers
            .iter()
            .map(|b| {
                let info = BrokerInfo {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                };
                (info.node_id, info)
            })
            .collect();
        if topics.is_none() {
            metadata.topics.clear();
        }
        let mut first_error = None;
        for topic in response.topics {
            let name = topic.name.map(|n| n.0.to_string()).unwrap_or_default();
            match topic.error_code {
                0 => {}
                3 => {
                    metadata.topics.remove(&name);
                    continue;
                }
                code => {
                    metadata.topics.remove(&name);
                    first_error.get_or_insert_with(|| {
                        Error::kafka(code, format!("metadata of topic {name:?}"), None)
                    });
                    continue;
                }
            }
            let mut partitions: Vec<PartitionInfo> = topic
                .partitions
                .into_iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                    isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|n| n.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let info = TopicInfo {
                name: name.clone(),
                topic_id: *topic.topic_id.as_bytes(),
                is_internal: topic.is_internal,
                partitions,
            };
            metadata.topics.insert(name, info);
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(metadata.clone()),
        }
    }

    /// A connection to broker `node_id` (opened on first use, reopened when broken).
    pub async fn connection(&self, node_id: i32) -> Result<Arc<Connection>> {
        let addr = self
            .inner
            .metadata
            .read()
            .brokers
            .get(&node_id)
            .map(BrokerInfo::addr)
            .ok_or_else(|| Error::Protocol(format!("broker {node_id} is not in the metadata")))?;
        self.connection_to(&addr).await
    }

    /// A connection to `addr` (`host:port`), from the pool or new.
    pub async fn connection_to(&self, addr: &str) -> Result<Arc<Connection>> {
        let mut connections = self.inner.connections.lock().await;
        if let Some(connection) = connections.get(addr) {
            if !connection.is_closed() {
                return Ok(connection.clone());
            }
        }
        let config = &self.inner.config;
        let connection = Arc::new(
            Connection::connect(
                addr,
                &config.client_id,
                config.connect_timeout_ms,
                config.request_timeout_ms,
            )
            .await?,
        );
        connections.insert(addr.to_string(), connection.clone());
        Ok(connection)
    }

    /// A connection to any broker: a known broker first, else a bootstrap server.
    pub async fn any_connection(&self) -> Result<Arc<Connection>> {
        let known: Vec<String> = self
            .inner
            .metadata
            .read()
            .brokers
            .values()
            .map(BrokerInfo::addr)
            .collect();
        let mut candidates = known;
        for addr in &self.inner.config.bootstrap_servers {
            if !candidates.contains(addr) {
                candidates.push(addr.clone());
            }
        }
        let mut last_error = None;
        for addr in candidates {
            match self.connection_to(&addr).await {
                Ok(connection) => return Ok(connection),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Invalid("no brokers known".into())))
    }

    /// Sends `request` to any broker.
    pub async fn send_any<R: Request + 'static>(&self, request: &R) -> Result<(i16, R::Response)> {
        let connection = self.any_connection().await?;
        connection.send(request).await
    }

    /// Sends `request` to broker `node_id`.
    pub async fn send_to<R: Request + 'static>(
        &self,
        node_id: i32,
        request: &R,
    ) -> Result<(i16, R::Response)> {
        let connection = self.connection(node_id).await?;
        connection.send(request).await
    }

    /// Sends `request` to the controller if the metadata names one, else to any broker.
    pub async fn send_controller<R: Request + 'static>(
        &self,
        request: &R,
    ) -> Result<(i16, R::Response)> {
        let controller = self.inner.metadata.read().controller_id;
        if controller >= 0 {
            if let Ok(connection) = self.connection(controller).await {
                return connection.send(request).await;
            }
        }
        self.send_any(request).await
    }
}
