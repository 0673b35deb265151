//! The bounded pre-pass over untrusted request bytes.
//!
//! `kafka-protocol` decodes arrays with `Vec::with_capacity(n)` where `n` comes off the wire, so a
//! four-byte Metadata body claiming 2^31-1 topics would make the allocator abort the process.
//! [`check_request`] walks the header and body against a hand-written [`schema`] of the request
//! and fails unless:
//! - every field lies within the frame;
//! - every array count, string length and bytes length fits in the bytes that remain
//!   (`count * minimum element size <= remaining`);
//! - every known tagged field's value takes exactly its declared size;
//! - the total number of array elements and tagged fields is at most
//!   [`DecodeLimits::array_elements_total_max`];
//! - the body ends exactly at the end of the frame.
//!
//! Only after it succeeds may the bytes be handed to `kafka-protocol`, whose decoders then
//! allocate at most in proportion to the frame size and the element limit.
//!
//! The walker mirrors `kafka-protocol`'s reading of primitive types exactly (for instance its
//! unsigned varints stop after five bytes), so that both agree on where every field starts.

pub mod schema;
pub mod schemas;

use kafka_protocol::messages::ApiKey;

use schema::{StructSchema, Ty};

/// Bounds on what one request may make the decoder allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most array elements plus tagged fields, summed over all arrays of one request.
    pub array_elements_total_max: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            array_elements_total_max: 1_000_000,
        }
    }
}

/// Why the bounded pre-pass rejected a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundedError {
    /// No schema describes this API at this version.
    #[error("no request schema for {api_key:?} v{api_version}")]
    NoSchema {
        /// The API.
        api_key: ApiKey,
        /// Its version.
        api_version: i16,
    },
    /// A field runs past the end of the frame.
    #[error("{structure}.{field} at offset {offset} needs {needed} bytes, {remaining} remain")]
    Truncated {
        /// The struct holding the field.
        structure: &'static str,
        /// The field.
        field: &'static str,
        /// Offset of the field in the header and body.
        offset: usize,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the frame.
        remaining: usize,
    },
    /// An array count or a string or bytes length that the remaining bytes cannot hold.
    #[error(
        "{structure}.{field} at offset {offset} claims {count} elements of at least \
         {element_size_min} bytes, {remaining} bytes remain"
    )]
    CountTooLarge {
        /// The struct holding the field.
        structure: &'static str,
        /// The field.
        field: &'static str,
        /// Offset of the count in the header and body.
        offset: usize,
        /// The count or length read.
        count: u64,
        /// The smallest encoded size of one element.
        element_size_min: usize,
        /// Bytes left in the frame after the count.
        remaining: usize,
    },
    /// A negative length other than -1 (null).
    #[error("{structure}.{field} at offset {offset} has negative length {length}")]
    NegativeLength {
        /// The struct holding the field.
        structure: &'static str,
        /// The field.
        field: &'static str,
        /// Offset of the length.
        offset: usize,
        /// The length read.
        length: i32,
    },
    /// A known tagged field whose value does not take exactly its declared size.
    #[error("tag {tag} ({structure}.{field}) declares {size_declared} bytes, its value takes {size_actual}")]
    TagSizeMismatch {
        /// The struct holding the field.
        structure: &'static str,
        /// The field.
        field: &'static str,
        /// The tag.
        tag: u32,
        /// Size in the tag header.
        size_declared: u64,
        /// Size the value actually takes.
        size_actual: usize,
    },
    /// The request holds more array elements and tagged fields than the limit.
    #[error("more than {max} array elements and tagged fields in one request")]
    ElementsTotalExceeded {
        /// The limit.
        max: usize,
    },
}

impl BoundedError {
    /// Whether the request broke a configured limit (rather than being malformed).
    pub fn is_limit(&self) -> bool {
        matches!(self, BoundedError::ElementsTotalExceeded { .. })
    }
}

/// Checks that a request (header then body, without the 4-byte size prefix) is within bounds
/// for `api_key` at `api_version`, so that `kafka-protocol` can decode it without allocating
/// more than the frame justifies. The header is walked at
/// `api_key.request_header_version(api_version)`.
///
/// Returns how many bytes follow the body. Kafka ignores such bytes and clients rely on it
/// (librdkafka 2.16 sends some after Metadata v12), so they are not an error; nothing past the
/// walked body is ever decoded.
pub fn check_request(
    api_key: ApiKey,
    api_version: i16,
    header_and_body: &[u8],
    limits: &DecodeLimits,
) -> Result<usize, BoundedError> {
    let no_schema = BoundedError::NoSchema {
        api_key,
        api_version,
    };
    let message = schemas::message_schema(api_key).ok_or(no_schema.clone())?;
    let header_version = api_key.request_header_version(api_version);
    if !message.versions.contains(api_version)
        || !schemas::REQUEST_HEADER_VERSIONS.contains(header_version)
    {
        return Err(no_schema);
    }
    let mut walker = Walker {
        buf: header_and_body,
        position: 0,
        elements_total: 0,
        limits,
        version: header_version,
        flexible: header_version >= 2,
    };
    walker.walk_struct(&schemas::REQUEST_HEADER)?;
    walker.version = api_version;
    walker.flexible = message.flexible.contains(api_version);
    walker.walk_struct(&message.body)?;
    Ok(walker.remaining())
}

/// Where the walker is: which struct and field, for error messages.
#[derive(Clone, Copy)]
struct At {
    structure: &'static str,
    field: &'static str,
}

struct Walker<'a> {
    buf: &'a [u8],
    position: usize,
    elements_total: usize,
    limits: &'a DecodeLimits,
    version: i16,
    flexible: bool,
}

impl Walker<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.position
    }

    fn skip(&mut self, at: At, size: u64) -> Result<(), BoundedError> {
        let remaining = self.remaining();
        match usize::try_from(size) {
            Ok(size) if size <= remaining => {
                self.position += size;
                Ok(())
            }
            _ => Err(BoundedError::Truncated {
                structure: at.structure,
                field: at.field,
                offset: self.position,
                needed: size,
                remaining,
            }),
        }
    }

    fn read<const N: usize>(&mut self, at: At) -> Result<[u8; N], BoundedError> {
        let start = self.position;
        self.skip(at, N as u64)?;
        let mut value = [0u8; N];
        value.copy_from_slice(&self.buf[start..self.position]);
        Ok(value)
    }

    /// An unsigned varint exactly as `kafka-protocol` reads it: at most five bytes, high bits
    /// of the fifth byte dropped.
    fn unsigned_varint(&mut self, at: At) -> Result<u32, BoundedError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [byte] = self.read::<1>(at)?;
            value |= (u32::from(byte) & 0x7f).wrapping_shl(i * 7);
            if byte < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// Reads a length or count: int16/int32 (non-compact) or unsigned varint minus one
    /// (compact). `None` is null.
    fn length(&mut self, at: At, compact: bool, wide: bool) -> Result<Option<u64>, BoundedError> {
        let offset = self.position;
        if compact {
            let n = self.unsigned_varint(at)?;
            return Ok(n.checked_sub(1).map(u64::from));
        }
        let n = if wide {
            i32::from_be_bytes(self.read::<4>(at)?)
        } else {
            i32::from(i16::from_be_bytes(self.read::<2>(at)?))
        };
        match n {
            -1 => Ok(None),
            n => u64::try_from(n)
                .map(Some)
                .map_err(|_| BoundedError::NegativeLength {
                    structure: at.structure,
                    field: at.field,
                    offset,
                    length: n,
                }),
        }
    }

    /// Checks that `count` elements of at least `element_size_min` bytes fit in what remains,
    /// and counts them against the request's element limit.
    fn claim(
        &mut self,
        at: At,
        offset: usize,
        count: u64,
        element_size_min: usize,
    ) -> Result<(), BoundedError> {
        let remaining = self.remaining();
        let needed = count.saturating_mul(element_size_min.max(1) as u64);
        if needed > remaining as u64 {
            return Err(BoundedError::CountTooLarge {
                structure: at.structure,
                field: at.field,
                offset,
                count,
                element_size_min,
                remaining,
            });
        }
        // `count <= remaining` now, so it fits in usize.
        self.elements_total = self.elements_total.saturating_add(count as usize);
        if self.elements_total > self.limits.array_elements_total_max {
            return Err(BoundedError::ElementsTotalExceeded {
                max: self.limits.array_elements_total_max,
            });
        }
        Ok(())
    }

    fn walk_struct(&mut self, schema: &StructSchema) -> Result<(), BoundedError> {
        for field in schema.fields {
            if field.versions.contains(self.version) {
                let at = At {
                    structure: schema.name,
                    field: field.name,
                };
                self.walk_value(at, &field.ty)?;
            }
        }
        if self.flexible {
            self.walk_tagged_fields(schema)?;
        }
        Ok(())
    }

    fn walk_value(&mut self, at: At, ty: &Ty) -> Result<(), BoundedError> {
        match ty {
            Ty::Bool | Ty::Int8 => self.skip(at, 1),
            Ty::Int16 => self.skip(at, 2),
            Ty::Int32 => self.skip(at, 4),
            Ty::Int64 => self.skip(at, 8),
            Ty::Uuid => self.skip(at, 16),
            Ty::String => self.walk_blob(at, self.flexible, false),
            Ty::LegacyString => self.walk_blob(at, false, false),
            Ty::Bytes => self.walk_blob(at, self.flexible, true),
            Ty::Struct(schema) => self.walk_struct(schema),
            Ty::Array(element) => {
                let size_min = self.size_min(element);
                self.walk_array(at, size_min, |walker| walker.walk_value(at, element))
            }
            Ty::StructArray(schema) => {
                let size_min = self.struct_size_min(schema);
                self.walk_array(at, size_min, |walker| walker.walk_struct(schema))
            }
        }
    }

    fn walk_blob(&mut self, at: At, compact: bool, wide: bool) -> Result<(), BoundedError> {
        match self.length(at, compact, wide)? {
            None => Ok(()),
            Some(size) => self.skip(at, size),
        }
    }

    fn walk_array(
        &mut self,
        at: At,
        element_size_min: usize,
        mut walk_element: impl FnMut(&mut Self) -> Result<(), BoundedError>,
    ) -> Result<(), BoundedError> {
        let offset = self.position;
        let Some(count) = self.length(at, self.flexible, true)? else {
            return Ok(());
        };
        self.claim(at, offset, count, element_size_min)?;
        for _ in 0..count {
            walk_element(self)?;
        }
        Ok(())
    }

    fn walk_tagged_fields(&mut self, schema: &StructSchema) -> Result<(), BoundedError> {
        let at = At {
            structure: schema.name,
            field: "_tagged_fields",
        };
        let offset = self.position;
        let count = self.unsigned_varint(at)?;
        // A tagged field takes at least two bytes: its tag and its size.
        self.claim(at, offset, u64::from(count), 2)?;
        for _ in 0..count {
            let tag = self.unsigned_varint(at)?;
            let size = u64::from(self.unsigned_varint(at)?);
            let known = schema
                .tagged
                .iter()
                .find(|tagged| tagged.tag == tag && tagged.field.versions.contains(self.version));
            let Some(known) = known else {
                self.skip(at, size)?;
                continue;
            };
            let at = At {
                structure: schema.name,
                field: known.field.name,
            };
            let start = self.position;
            self.walk_value(at, &known.field.ty)?;
            let size_actual = self.position - start;
            if size_actual as u64 != size {
                return Err(BoundedError::TagSizeMismatch {
                    structure: at.structure,
                    field: at.field,
                    tag,
                    size_declared: size,
                    size_actual,
                });
            }
        }
        Ok(())
    }

    /// The fewest bytes a value of this type takes at the current version.
    fn size_min(&self, ty: &Ty) -> usize {
        let length_size = |wide: bool| match (self.flexible, wide) {
            (true, _) => 1,
            (false, false) => 2,
            (false, true) => 4,
        };
        match ty {
            Ty::Bool | Ty::Int8 => 1,
            Ty::Int16 | Ty::LegacyString => 2,
            Ty::Int32 => 4,
            Ty::Int64 => 8,
            Ty::Uuid => 16,
            Ty::String => length_size(false),
            Ty::Bytes | Ty::Array(_) | Ty::StructArray(_) => length_size(true),
            Ty::Struct(schema) => self.struct_size_min(schema),
        }
    }

    fn struct_size_min(&self, schema: &StructSchema) -> usize {
        let fields: usize = schema
            .fields
            .iter()
            .filter(|field| field.versions.contains(self.version))
            .map(|field| self.size_min(&field.ty))
            .sum();
        fields + usize::from(self.flexible)
    }
}

#[cfg(test)]
mod tests;
