//! The APIs and versions the broker speaks.
//!
//! [`SUPPORTED_APIS`] is the single source of truth: request decoding accepts exactly these
//! (api key, version) pairs, and the broker's ApiVersions response advertises exactly this table.
//! Adding an API means adding a row here and a schema in [`crate::bounded`] (a test checks that
//! every row has a schema for each of its versions).

use kafka_protocol::messages::ApiKey;

/// Every API the broker accepts, with its lowest and highest supported version (inclusive).
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
];

/// The supported version range `(min, max)` of the API with this key, or `None` when the broker
/// does not speak that API.
pub fn supported_range(api_key: i16) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(key, _, _)| *key as i16 == api_key)
        .map(|&(_, min, max)| (min, max))
}

/// Whether the broker accepts this api key at this version.
pub fn is_supported(api_key: i16, api_version: i16) -> bool {
    supported_range(api_key).is_some_and(|(min, max)| (min..=max).contains(&api_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_within_kafka_protocol_and_not_empty() {
        for &(key, min, max) in SUPPORTED_APIS {
            let valid = key.valid_versions();
            assert!(min <= max, "{key:?}");
            assert!(valid.min <= min && max <= valid.max, "{key:?} vs {valid:?}");
        }
    }

    #[test]
    fn no_duplicate_rows() {
        for (i, (a, _, _)) in SUPPORTED_APIS.iter().enumerate() {
            assert!(SUPPORTED_APIS[i + 1..].iter().all(|(b, _, _)| a != b));
        }
    }

    #[test]
    fn lookup() {
        assert_eq!(supported_range(ApiKey::Metadata as i16), Some((0, 12)));
        assert_eq!(supported_range(ApiKey::JoinGroup as i16), None);
        assert_eq!(supported_range(-1), None);
        assert!(is_supported(ApiKey::Fetch as i16, 12));
        assert!(!is_supported(ApiKey::Fetch as i16, 13));
        assert!(!is_supported(ApiKey::Fetch as i16, 3));
    }
}
