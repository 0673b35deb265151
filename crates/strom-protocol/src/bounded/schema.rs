//! The vocabulary of request schemas: a small, declarative description of a Kafka message's wire
//! layout per version, written by hand from Kafka's message definitions (the JSON specs that
//! `kafka-protocol` is generated from).
//!
//! A schema only says what the bounded walker needs to know: the type of each field, the
//! versions it is present in, and which tagged fields `kafka-protocol` decodes as known fields.
//! Whether strings, bytes and arrays use the compact encoding and whether structs end with a
//! tagged-field section follows from the message's flexible versions.

use kafka_protocol::messages::ApiKey;

/// An inclusive range of versions a field (or a message) is present in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// Lowest version, inclusive.
    pub min: i16,
    /// Highest version, inclusive.
    pub max: i16,
}

impl Versions {
    /// Whether `version` is within the range.
    pub const fn contains(self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

/// Every version.
pub const ALL: Versions = Versions {
    min: 0,
    max: i16::MAX,
};

/// No version (the flexible versions of a message that never became flexible).
pub const NONE: Versions = Versions { min: 0, max: -1 };

/// From `min` on.
pub const fn since(min: i16) -> Versions {
    Versions { min, max: i16::MAX }
}

/// Up to `max`, inclusive.
pub const fn until(max: i16) -> Versions {
    Versions { min: 0, max }
}

/// From `min` to `max`, inclusive.
pub const fn between(min: i16, max: i16) -> Versions {
    Versions { min, max }
}

/// The wire type of a field.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// One byte.
    Bool,
    /// One byte.
    Int8,
    /// Two bytes, big-endian.
    Int16,
    /// Four bytes, big-endian.
    Int32,
    /// Eight bytes, big-endian.
    Int64,
    /// Sixteen bytes.
    Uuid,
    /// A (nullable) string: int16 length, or unsigned-varint length + 1 in flexible versions.
    String,
    /// A (nullable) string that keeps the int16 length even in flexible versions (the request
    /// header's `client_id`).
    LegacyString,
    /// (Nullable) bytes or records: int32 length, or unsigned-varint length + 1 when flexible.
    Bytes,
    /// A (nullable) array of a primitive type: int32 count, or unsigned-varint count + 1.
    Array(&'static Ty),
    /// A (nullable) array of structs.
    StructArray(&'static StructSchema),
    /// A nested struct (used by tagged fields such as Fetch's `ReplicaState`).
    Struct(&'static StructSchema),
}

/// A field present in some versions of a struct.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Kafka's field name in snake case, for error messages.
    pub name: &'static str,
    /// Versions the field is on the wire in.
    pub versions: Versions,
    /// Its wire type.
    pub ty: Ty,
}

/// Shorthand for a [`Field`].
pub const fn field(name: &'static str, versions: Versions, ty: Ty) -> Field {
    Field { name, versions, ty }
}

/// A tagged field that `kafka-protocol` decodes as a known field (so its value must be walked
/// with its type, not skipped by size).
#[derive(Debug, Clone, Copy)]
pub struct TaggedField {
    /// The tag number.
    pub tag: u32,
    /// The field, with the versions in which this tag is known.
    pub field: Field,
}

/// The fields of a struct in wire order.
#[derive(Debug, Clone, Copy)]
pub struct StructSchema {
    /// Kafka's struct name, for error messages.
    pub name: &'static str,
    /// Fields in wire order.
    pub fields: &'static [Field],
    /// Tagged fields `kafka-protocol` knows; any other tag is skipped by its size.
    pub tagged: &'static [TaggedField],
}

/// A request message: its top-level struct, the versions this schema is written (and tested)
/// for, and the versions that use the flexible (compact, tagged) encoding.
#[derive(Debug, Clone, Copy)]
pub struct MessageSchema {
    /// The API this message is the request of.
    pub api_key: ApiKey,
    /// The versions this schema describes.
    pub versions: Versions,
    /// The flexible versions.
    pub flexible: Versions,
    /// The top-level struct.
    pub body: StructSchema,
}
