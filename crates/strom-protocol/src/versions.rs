//! The APIs and versions the broker speaks, and those it has request schemas for.
//!
//! [`SUPPORTED_APIS`] is the single source of truth: request decoding accepts exactly these
//! (api key, version) pairs, and the broker's ApiVersions response advertises exactly this table.
//! A row belongs there only once the broker has a handler for the API.
//!
//! [`SCHEMA_VERSIONS`] lists every API that has a request schema in [`crate::bounded`], with the
//! versions the schema covers. It is a superset of [`SUPPORTED_APIS`] (a test checks it), and the
//! schema proofs run over all of it, so an API is proven before it is enabled. Enabling an API
//! (or a version) means adding a row to [`SUPPORTED_APIS`] within its [`SCHEMA_VERSIONS`] range;
//! adding one the broker has no schema for means a schema and a row here first.

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
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::InitProducerId, 0, 5),
];

/// Every API with a request schema, with the lowest and highest version its schema describes
/// (inclusive). Covers every row of [`SUPPORTED_APIS`]; the rest have schemas (proven by the
/// tests) but no broker handler yet, so the broker neither advertises nor accepts them.
pub const SCHEMA_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// The version range `(min, max)` of the API with this key in a table of (api key, min, max)
/// rows, or `None` when the table has no row for it.
pub fn range_in(table: &[(ApiKey, i16, i16)], api_key: i16) -> Option<(i16, i16)> {
    table
        .iter()
        .find(|(key, _, _)| *key as i16 == api_key)
        .map(|&(_, min, max)| (min, max))
}

/// The supported version range `(min, max)` of the API with this key, or `None` when the broker
/// does not speak that API.
pub fn supported_range(api_key: i16) -> Option<(i16, i16)> {
    range_in(SUPPORTED_APIS, api_key)
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
        for &(key, min, max) in SUPPORTED_APIS.iter().chain(SCHEMA_VERSIONS) {
            let valid = key.valid_versions();
            assert!(min <= max, "{key:?}");
            assert!(valid.min <= min && max <= valid.max, "{key:?} vs {valid:?}");
        }
    }

    #[test]
    fn no_duplicate_rows() {
        for table in [SUPPORTED_APIS, SCHEMA_VERSIONS] {
            for (i, (a, _, _)) in table.iter().enumerate() {
                assert!(table[i + 1..].iter().all(|(b, _, _)| a != b), "{a:?}");
            }
        }
    }

    #[test]
    fn every_supported_api_is_covered_by_schema_versions() {
        for &(key, min, max) in SUPPORTED_APIS {
            let (schema_min, schema_max) = range_in(SCHEMA_VERSIONS, key as i16)
                .unwrap_or_else(|| panic!("{key:?} is supported but not in SCHEMA_VERSIONS"));
            assert!(
                schema_min <= min && max <= schema_max,
                "{key:?} supports {min}..={max}, schema covers {schema_min}..={schema_max}"
            );
        }
    }

    #[test]
    fn schema_versions_list_exactly_the_schemas() {
        for api_key in i16::MIN..=i16::MAX {
            let Ok(key) = ApiKey::try_from(api_key) else {
                continue;
            };
            let schema = crate::bounded::schemas::message_schema(key);
            match (range_in(SCHEMA_VERSIONS, api_key), schema) {
                (None, None) => {}
                (Some((min, max)), Some(schema)) => {
                    assert_eq!(schema.api_key, key);
                    assert_eq!(
                        (schema.versions.min, schema.versions.max),
                        (min, max),
                        "{key:?}"
                    );
                }
                (row, schema) => panic!("{key:?}: table row {row:?}, schema {schema:?}"),
            }
        }
    }

    #[test]
    fn lookup() {
        assert_eq!(supported_range(ApiKey::Metadata as i16), Some((0, 12)));
        assert_eq!(supported_range(ApiKey::JoinGroup as i16), Some((0, 9)));
        assert_eq!(supported_range(ApiKey::EndTxn as i16), None);
        assert_eq!(
            range_in(SCHEMA_VERSIONS, ApiKey::JoinGroup as i16),
            Some((0, 9))
        );
        assert_eq!(supported_range(-1), None);
        assert!(is_supported(ApiKey::Fetch as i16, 12));
        assert!(!is_supported(ApiKey::Fetch as i16, 13));
        assert!(!is_supported(ApiKey::Fetch as i16, 3));
    }
}
