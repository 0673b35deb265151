//! Mapping of component errors to Kafka error codes: one place, so every handler answers the
//! same failure with the same code.

use kafka_protocol::error::ResponseError;
use strom_metadata::ControllerError;
use strom_storage::batch::BatchError;
use strom_storage::{ProducerStateError, StorageError};

/// Kafka error code for a controller refusal.
pub fn controller_error_code(error: &ControllerError) -> i16 {
    match error {
        ControllerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists.code(),
        ControllerError::InvalidTopic(_) => ResponseError::InvalidTopicException.code(),
        ControllerError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition.code(),
        ControllerError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
        ControllerError::InvalidReplicationFactor(_) => {
            ResponseError::InvalidReplicationFactor.code()
        }
        ControllerError::InvalidConfig(_) => ResponseError::InvalidConfig.code(),
        ControllerError::InvalidRequest(_) => ResponseError::InvalidRequest.code(),
        ControllerError::Log(_) => ResponseError::KafkaStorageError.code(),
    }
}

/// Kafka error code for a batch that failed validation.
pub fn batch_error_code(error: &BatchError) -> i16 {
    match error {
        BatchError::Corrupt(_) => ResponseError::CorruptMessage.code(),
        BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat.code(),
        BatchError::TooLarge { .. } => ResponseError::MessageTooLarge.code(),
        BatchError::InvalidRecord(_) => ResponseError::InvalidRecord.code(),
        BatchError::InvalidTimestamp(_) => ResponseError::InvalidTimestamp.code(),
    }
}

/// Kafka error code for a storage failure.
pub fn storage_error_code(error: &StorageError) -> i16 {
    match error {
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        StorageError::Batch(batch) => batch_error_code(batch),
        StorageError::Producer(producer) => producer_error_code(producer),
        _ => ResponseError::KafkaStorageError.code(),
    }
}

/// Kafka error code for an idempotent batch the producer state refused.
pub fn producer_error_code(error: &ProducerStateError) -> i16 {
    match error {
        ProducerStateError::OutOfOrderSequence { .. } => {
            ResponseError::OutOfOrderSequenceNumber.code()
        }
        ProducerStateError::InvalidProducerEpoch { .. } => {
            ResponseError::InvalidProducerEpoch.code()
        }
        ProducerStateError::UnknownProducerId { .. } => ResponseError::UnknownProducerId.code(),
        ProducerStateError::InvalidBatch { .. } => ResponseError::InvalidRecord.code(),
    }
}
