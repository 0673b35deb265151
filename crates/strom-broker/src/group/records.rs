//! The records the group coordinator keeps in `__consumer_offsets`, in Kafka's own binary
//! formats, so Kafka tooling that reads the topic understands them:
//! - offset commit: key v1 `(group, topic, partition)`, value v3 `(offset, leader epoch,
//!   metadata, commit timestamp)`;
//! - group metadata: key v2 `(group)`, value v3 `(protocol type, generation, protocol, leader,
//!   state timestamp, members)`.
//!
//! A null value is a tombstone: the offset or the group was deleted.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Key of an offset commit record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetKey {
    /// Group id.
    pub group: String,
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, -1 if unknown.
    pub leader_epoch: i32,
    /// Client-supplied metadata.
    pub metadata: String,
    /// When the commit was made.
    pub commit_timestamp_ms: i64,
}

/// One member in a persisted group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// Member id.
    pub member_id: String,
    /// Static instance id, if any.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Subscription metadata for the chosen protocol.
    pub subscription: Bytes,
    /// Assignment from the last sync.
    pub assignment: Bytes,
}

/// A persisted group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// Protocol type (`consumer`, `connect`, ...).
    pub protocol_type: String,
    /// Generation.
    pub generation_id: i32,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// When the state last changed.
    pub state_timestamp_ms: i64,
    /// Members.
    pub members: Vec<MemberRecord>,
}

/// A decoded `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorRecord {
    /// An offset commit (`None`: deleted).
    Offset(OffsetKey, Option<OffsetValue>),
    /// Group metadata (`None`: group deleted).
    Group(String, Option<GroupRecord>),
}

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("bad __consumer_offsets record: {0}")]
pub struct RecordError(String);

impl OffsetKey {
    /// Kafka's key bytes (version 1).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_i16(1);
        put_string(&mut out, &self.group);
        put_string(&mut out, &self.topic);
        out.put_i32(self.partition);
        out.freeze()
    }
}

impl OffsetValue {
    /// Kafka's value bytes (version 3).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_i16(3);
        out.put_i64(self.offset);
        out.put_i32(self.leader_epoch);
        put_string(&mut out, &self.metadata);
        out.put_i64(self.commit_timestamp_ms);
        out.freeze()
    }
}

/// Kafka's group metadata key bytes (version 2).
pub fn encode_group_key(group: &str) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(2);
    put_string(&mut out, group);
    out.freeze()
}

impl GroupRecord {
    /// Kafka's value bytes (version 3).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_i16(3);
        put_string(&mut out, &self.protocol_type);
        out.put_i32(self.generation_id);
        put_nullable_string(&mut out, self.protocol_name.as_deref());
        put_nullable_string(&mut out, self.leader.as_deref());
        out.put_i64(self.state_timestamp_ms);
        out.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_string(&mut out, &m.member_id);
            put_nullable_string(&mut out, m.group_instance_id.as_deref());
            put_string(&mut out, &m.client_id);
            put_string(&mut out, &m.client_host);
            out.put_i32(m.rebalance_timeout_ms);
            out.put_i32(m.session_timeout_ms);
            put_bytes(&mut out, &m.subscription);
            put_bytes(&mut out, &m.assignment);
        }
        out.freeze()
    }
}

/// Decodes one record's key and value. Unknown key versions are an error (the caller skips
/// the record and logs it).
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<CoordinatorRecord, RecordError> {
    let mut key = key;
    let version = get_i16(&mut key)?;
    match version {
        0 | 1 => {
            let offset_key = OffsetKey {
                group: get_string(&mut key)?,
                topic: get_string(&mut key)?,
                partition: get_i32(&mut key)?,
            };
            let value = value.map(decode_offset_value).transpose()?;
            Ok(CoordinatorRecord::Offset(offset_key, value))
        }
        2 => {
            let group = get_string(&mut key)?;
            let value = value.map(decode_group_value).transpose()?;
            Ok(CoordinatorRecord::Group(group, value))
        }
        other => Err(RecordError(format!("unknown key version {other}"))),
    }
}

fn decode_offset_value(mut value: &[u8]) -> Result<OffsetValue, RecordError> {
    let version = get_i16(&mut value)?;
    let offset = get_i64(&mut value)?;
    let leader_epoch = if version >= 3 {
        get_i32(&mut value)?
    } else {
        -1
    };
    let metadata = get_string(&mut value)?;
    let commit_timestamp_ms = get_i64(&mut value)?;
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn decode_group_value(mut value: &[u8]) -> Result<GroupRecord, RecordError> {
    let version = get_i16(&mut value)?;
    if !(0..=3).contains(&version) {
        return Err(RecordError(format!(
            "unknown group value version {version}"
        )));
    }
    let protocol_type = get_string(&mut value)?;
    let generation_id = get_i32(&mut value)?;
    let protocol_name = get_nullable_string(&mut value)?;
    let leader = get_nullable_string(&mut value)?;
    let state_timestamp_ms = if version >= 2 {
        get_i64(&mut value)?
    } else {
        -1
    };
    let count = get_i32(&mut value)?;
    // Each member takes at least 30 bytes: bound the count by what remains.
    if count < 0 || count as usize > value.len() / 30 + 1 {
        return Err(RecordError(format!("bad member count {count}")));
    }
    let mut members = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let member_id = get_string(&mut value)?;
        let group_instance_id = if version >= 3 {
            get_nullable_string(&mut value)?
        } else {
            None
        };
        let client_id = get_string(&mut value)?;
        let client_host = get_string(&mut value)?;
        let rebalance_timeout_ms = if version >= 1 {
            get_i32(&mut value)?
        } else {
            -1
        };
        let session_timeout_ms = get_i32(&mut value)?;
        let subscription = get_bytes(&mut value)?;
        let assignment = get_bytes(&mut value)?;
        members.push(MemberRecord {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupRecord {
        protocol_type,
        generation_id,
        protocol_name,
        leader,
        state_timestamp_ms,
        members,
    })
}

fn put_string(out: &mut BytesMut, text: &str) {
    out.put_i16(text.len().min(i16::MAX as usize) as i16);
    out.put_slice(&text.as_bytes()[..text.len().min(i16::MAX as usize)]);
}

fn put_nullable_string(out: &mut BytesMut, text: Option<&str>) {
    match text {
        Some(text) => put_string(out, text),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_i32(bytes.len() as i32);
    out.put_slice(bytes);
}

fn need(buf: &[u8], size: usize) -> Result<(), RecordError> {
    if buf.len() < size {
        return Err(RecordError(format!(
            "needs {size} bytes, has {}",
            buf.len()
        )));
    }
    Ok(())
}

fn get_i16(buf: &mut &[u8]) -> Result<i16, RecordError> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

fn get_i32(buf: &mut &[u8]) -> Result<i32, RecordError> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut &[u8]) -> Result<i64, RecordError> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

fn get_nullable_string(buf: &mut &[u8]) -> Result<Option<String>, RecordError> {
    let length = get_i16(buf)?;
    if length < 0 {
        return Ok(None);
    }
    need(buf, length as usize)?;
    let text = String::from_utf8(buf[..length as usize].to_vec())
        .map_err(|_| RecordError("string is not UTF-8".to_string()))?;
    buf.advance(length as usize);
    Ok(Some(text))
}

fn get_string(buf: &mut &[u8]) -> Result<String, RecordError> {
    get_nullable_string(buf)?.ok_or_else(|| RecordError("null string".to_string()))
}

fn get_bytes(buf: &mut &[u8]) -> Result<Bytes, RecordError> {
    let length = get_i32(buf)?;
    if length < 0 {
        return Ok(Bytes::new());
    }
    need(buf, length as usize)?;
    let bytes = Bytes::copy_from_slice(&buf[..length as usize]);
    buf.advance(length as usize);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_records_round_trip() {
        let key = OffsetKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        let value = OffsetValue {
            offset: 42,
            leader_epoch: 1,
            metadata: "m".into(),
            commit_timestamp_ms: 7,
        };
        let decoded = decode(&key.encode(), Some(&value.encode())).unwrap();
        assert_eq!(decoded, CoordinatorRecord::Offset(key.clone(), Some(value)));
        assert_eq!(
            decode(&key.encode(), None).unwrap(),
            CoordinatorRecord::Offset(key, None)
        );
    }

    #[test]
    fn group_records_round_trip_and_reject_garbage() {
        let record = GroupRecord {
            protocol_type: "consumer".into(),
            generation_id: 4,
            protocol_name: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp_ms: 9,
            members: vec![MemberRecord {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let key = encode_group_key("g");
        let value = record.encode();
        assert_eq!(
            decode(&key, Some(&value)).unwrap(),
            CoordinatorRecord::Group("g".into(), Some(record))
        );
        for cut in 0..value.len() {
            assert!(decode(&key, Some(&value[..cut])).is_err(), "cut {cut}");
        }
        assert!(decode(&[0, 9, 0, 0], None).is_err());
        assert!(decode(&[0], None).is_err());
    }
}
