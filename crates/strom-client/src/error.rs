//! The client's one error type.

use kafka_protocol::error::ResponseError;

/// Everything that can go wrong talking to a Kafka broker.
///
/// Operating errors only: a broker that is down, a request that timed out, a Kafka error code.
/// The client never panics on what a broker sends.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No TCP connection could be made to the broker.
    #[error("cannot reach {addr}: is `strom server` running? ({cause})")]
    Unreachable {
        /// `host:port` that was tried.
        addr: String,
        /// The socket error (in the message, not a `source`, so it is not printed twice).
        cause: std::io::Error,
    },
    /// The connection broke while a request was in flight or being sent.
    #[error("connection to {addr} lost: {reason}")]
    Disconnected {
        /// `host:port` of the broker.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The broker did not answer in time.
    #[error("{api} request to {addr} timed out after {timeout_ms} ms")]
    Timeout {
        /// The API (e.g. `Produce`).
        api: String,
        /// `host:port` of the broker.
        addr: String,
        /// The request timeout.
        timeout_ms: u64,
    },
    /// The broker does not support any version of an API this client can speak.
    #[error("broker {addr} does not support {api} (versions this client speaks: {min}..={max})")]
    UnsupportedApi {
        /// The API.
        api: String,
        /// `host:port` of the broker.
        addr: String,
        /// Lowest version the client speaks.
        min: i16,
        /// Highest version the client speaks.
        max: i16,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        /// The Kafka error.
        code: ResponseError,
        /// What was being done (`create topic "t"`).
        context: String,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// A response could not be decoded or made no sense.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A record could not be delivered within the producer's `delivery_timeout_ms`.
    #[error("records for {tp} not delivered within {timeout_ms} ms{}", last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    DeliveryTimeout {
        /// `topic-partition`.
        tp: String,
        /// The delivery timeout.
        timeout_ms: u64,
        /// The last error seen while retrying, if any.
        last_error: Option<String>,
    },
    /// A topic is not known to the cluster.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// A partition is not known to the cluster.
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// Bad configuration or arguments given to the client.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The producer or consumer was closed.
    #[error("client closed")]
    Closed,
}

impl Error {
    /// Builds [`Error::Kafka`] from a non-zero error code.
    pub fn kafka(code: i16, context: impl Into<String>, message: Option<String>) -> Error {
        Error::Kafka {
            code: ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code)),
            context: context.into(),
            message: message.filter(|m| !m.is_empty()),
        }
    }

    /// A copy of this error, for handing one failure to every record of a batch.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Unreachable { addr, cause } => Error::Unreachable {
                addr: addr.clone(),
                cause: std::io::Error::new(cause.kind(), cause.to_string()),
            },
            Error::Disconnected { addr, reason } => Error::Disconnected {
                addr: addr.clone(),
                reason: reason.clone(),
            },
            Error::Timeout {
                api,
                addr,
                timeout_ms,
            } => Error::Timeout {
                api: api.clone(),
                addr: addr.clone(),
                timeout_ms: *timeout_ms,
            },
            Error::UnsupportedApi {
                api,
                addr,
                min,
                max,
            } => Error::UnsupportedApi {
                api: api.clone(),
                addr: addr.clone(),
                min: *min,
                max: *max,
            },
            Error::Kafka {
                code,
                context,
                message,
            } => Error::Kafka {
                code: *code,
                context: context.clone(),
                message: message.clone(),
            },
            Error::Protocol(m) => Error::Protocol(m.clone()),
            Error::UnknownTopic(t) => Error::UnknownTopic(t.clone()),
            Error::UnknownPartition { topic, partition } => Error::UnknownPartition {
                topic: topic.clone(),
                partition: *partition,
            },
            Error::Invalid(m) => Error::Invalid(m.clone()),
            Error::Closed => Error::Closed,
            Error::DeliveryTimeout {
                tp,
                timeout_ms,
                last_error,
            } => Error::DeliveryTimeout {
                tp: tp.clone(),
                timeout_ms: *timeout_ms,
                last_error: last_error.clone(),
            },
        }
    }

    /// The Kafka error code, if this is a Kafka error.
    pub fn kafka_code(&self) -> Option<ResponseError> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying again (after a metadata refresh and a backoff) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Disconnected { .. } | Error::Timeout { .. } | Error::Unreachable { .. } => true,
            Error::Kafka { code, .. } => code.is_retriable(),
            Error::UnknownTopic(_) | Error::UnknownPartition { .. } => true,
            _ => false,
        }
    }

    /// Whether the client's metadata is probably stale (leader moved, topic created or deleted).
    pub fn needs_metadata_refresh(&self) -> bool {
        matches!(
            self.kafka_code(),
            Some(
                ResponseError::NotLeaderOrFollower
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::NotController
                    | ResponseError::UnknownTopicId
            )
        ) || matches!(
            self,
            Error::Disconnected { .. } | Error::UnknownTopic(_) | Error::UnknownPartition { .. }
        )
    }
}

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turns a Kafka error code into `Ok(())` or [`Error::Kafka`].
pub(crate) fn check(
    code: i16,
    context: impl FnOnce() -> String,
    message: Option<&kafka_protocol::protocol::StrBytes>,
) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(Error::kafka(
            code,
            context(),
            message.map(|m| m.to_string()),
        ))
    }
}
