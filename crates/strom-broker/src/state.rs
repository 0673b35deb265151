//! The broker's shared state: configuration, the controller and the metadata image it
//! publishes, and the partition manager. One `Arc<BrokerState>` is shared by every connection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use strom_metadata::{Controller, ControllerError, MetadataImage};
use strom_protocol::bounded::DecodeLimits;
use tokio::sync::Semaphore;

use crate::config::BrokerConfig;
use crate::partition::ReplicaManager;

/// Shared state of a running broker.
#[derive(Debug)]
pub struct BrokerState {
    /// Static configuration.
    pub config: BrokerConfig,
    /// Host clients are told to connect to.
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: u16,
    /// The partitions this node hosts.
    pub replicas: ReplicaManager,
    /// Limits for decoding untrusted requests.
    pub decode_limits: DecodeLimits,
    /// The group coordinator.
    pub groups: crate::group::GroupCoordinator,
    /// Producer ids for idempotent producers.
    pub producer_ids: crate::producer_ids::ProducerIdAllocator,
    /// Permits, in KiB, for request bytes held in memory (`queued_request_bytes_max`).
    pub queued_request_kib: Arc<Semaphore>,
    /// The lower-priority threads that move the bytes of catch-up fetches.
    pub catch_up: crate::catchup::CatchUpIo,
    /// The byte budget of catch-up fetches while producers are active.
    pub catch_up_budget: crate::catchup::CatchUpBudget,
    controller: Mutex<Controller>,
    image: RwLock<Arc<MetadataImage>>,
}

impl BrokerState {
    /// Builds the state around an opened controller and publishes its image to the partition
    /// manager (which opens and recovers the logs).
    pub fn new(
        config: BrokerConfig,
        advertised_host: String,
        advertised_port: u16,
        controller: Controller,
    ) -> Result<BrokerState, strom_storage::StorageError> {
        let replicas = ReplicaManager::new(
            config.node_id,
            &config.data_dir,
            config.topic_defaults.clone(),
            config.log_open_files_max_effective(),
            config.log_cache_window_bytes,
        );
        let image = Arc::new(controller.image().clone());
        // After a clean shutdown the logs are opened without scanning their active segments;
        // the marker goes before anything can be appended, so a crash from now on recovers
        // fully.
        let clean_shutdown = strom_storage::checkpoint::clean_shutdown_marked(&config.data_dir);
        let started = std::time::Instant::now();
        replicas.load(&image, now_ms(), clean_shutdown)?;
        strom_storage::checkpoint::unmark_clean_shutdown(&config.data_dir)?;
        tracing::info!(
            partitions = replicas.all().len(),
            clean_shutdown,
            open_files_max = replicas.files().capacity(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "partition logs loaded"
        );
        let group_config = config.group_config();
        let producer_ids = crate::producer_ids::ProducerIdAllocator::open(&config.data_dir)
            .map_err(|source| strom_storage::StorageError::Io {
                context: "opening the producer id block".to_string(),
                source,
            })?;
        let queued_kib = (config.queued_request_bytes_max / 1024).min(Semaphore::MAX_PERMITS);
        let catch_up = crate::catchup::CatchUpIo::start(
            config.fetch_catchup_threads,
            config.fetch_catchup_nice,
        )
        .map_err(|source| strom_storage::StorageError::Io {
            context: "starting the catch-up fetch threads".to_string(),
            source,
        })?;
        let catch_up_budget =
            crate::catchup::CatchUpBudget::new(config.fetch_catchup_bytes_per_sec);
        Ok(BrokerState {
            config,
            advertised_host,
            advertised_port,
            replicas,
            decode_limits: DecodeLimits::default(),
            groups: crate::group::GroupCoordinator::new(group_config),
            producer_ids,
            queued_request_kib: Arc::new(Semaphore::new(queued_kib)),
            catch_up,
            catch_up_budget,
            controller: Mutex::new(controller),
            image: RwLock::new(image),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The current metadata image (cheap: an `Arc` clone).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    /// Runs a metadata change on the controller; when the image changed, publishes it and
    /// brings the hosted partitions in line.
    pub fn with_controller<T>(
        &self,
        change: impl FnOnce(&mut Controller) -> Result<T, ControllerError>,
    ) -> Result<T, ControllerError> {
        let mut controller = self.controller.lock();
        let before = controller.image().last_applied_offset;
        let result = change(&mut controller);
        if controller.image().last_applied_offset != before {
            let image = Arc::new(controller.image().clone());
            *self.image.write() = image.clone();
            if let Err(error) = self.replicas.apply_image(&image, now_ms()) {
                tracing::error!(%error, "applying the metadata image to local partitions failed");
            }
        }
        result
    }

    /// Creates each named topic that does not exist yet, with the broker's default partition
    /// count and replication factor, when auto-creation is enabled. Returns the names whose
    /// creation failed with the Kafka error code to report.
    pub fn auto_create_topics(&self, names: &[String]) -> BTreeMap<String, i16> {
        let mut failures = BTreeMap::new();
        if !self.config.auto_create_topics_enable {
            return failures;
        }
        let image = self.image();
        let missing: Vec<&String> = names.iter().filter(|n| image.topic(n).is_none()).collect();
        if missing.is_empty() {
            return failures;
        }
        let none = BTreeMap::new();
        for name in missing {
            let created = self.with_controller(|c| {
                c.create_topic(
                    name,
                    self.config.num_partitions,
                    self.config.default_replication_factor,
                    &none,
                    false,
                )
            });
            match created {
                Ok(_) => tracing::info!(topic = %name, "auto-created topic"),
                Err(ControllerError::TopicAlreadyExists(_)) => {}
                Err(error) => {
                    failures.insert(name.clone(), crate::errors::controller_error_code(&error));
                }
            }
        }
        failures
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
