//! The size prefix of a request frame: a 4-byte big-endian length, then that many bytes.

/// Default bound on a request frame (Kafka's `socket.request.max.bytes`, 100 MiB).
pub const FRAME_SIZE_MAX_DEFAULT_BYTES: usize = 100 * 1024 * 1024;

/// Smallest request frame: api key (2), api version (2), correlation id (4).
pub const FRAME_SIZE_MIN_BYTES: usize = 8;

/// Why a frame size prefix was rejected. The broker closes the connection on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative.
    #[error("frame size is negative ({0})")]
    Negative(i32),
    /// The size prefix exceeds the configured maximum.
    #[error("frame size {size_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    TooLarge {
        /// The size the prefix claims.
        size_bytes: usize,
        /// The configured maximum.
        max_bytes: usize,
    },
    /// The frame is too small to hold an api key, api version and correlation id (8 bytes).
    #[error("frame size {0} bytes is too small for a request header (8 bytes minimum)")]
    TooSmall(usize),
}

/// Validates the 4-byte big-endian size prefix of a request frame and returns the size of the
/// frame that follows it, in bytes.
pub fn frame_size(prefix: [u8; 4], max_bytes: usize) -> Result<usize, FrameError> {
    let size = i32::from_be_bytes(prefix);
    let size_bytes = usize::try_from(size).map_err(|_| FrameError::Negative(size))?;
    if size_bytes > max_bytes {
        return Err(FrameError::TooLarge {
            size_bytes,
            max_bytes,
        });
    }
    if size_bytes < FRAME_SIZE_MIN_BYTES {
        return Err(FrameError::TooSmall(size_bytes));
    }
    Ok(size_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sizes_within_bounds() {
        assert_eq!(frame_size(8i32.to_be_bytes(), 100), Ok(8));
        assert_eq!(frame_size(100i32.to_be_bytes(), 100), Ok(100));
    }

    #[test]
    fn rejects_one_byte_too_large() {
        assert_eq!(
            frame_size(101i32.to_be_bytes(), 100),
            Err(FrameError::TooLarge {
                size_bytes: 101,
                max_bytes: 100
            })
        );
    }

    #[test]
    fn rejects_one_byte_too_small() {
        assert_eq!(
            frame_size(7i32.to_be_bytes(), 100),
            Err(FrameError::TooSmall(7))
        );
    }

    #[test]
    fn rejects_negative() {
        assert_eq!(
            frame_size((-1i32).to_be_bytes(), 100),
            Err(FrameError::Negative(-1))
        );
        assert_eq!(
            frame_size(i32::MIN.to_be_bytes(), usize::MAX),
            Err(FrameError::Negative(i32::MIN))
        );
    }

    #[test]
    fn default_max_is_100_mib() {
        let max = FRAME_SIZE_MAX_DEFAULT_BYTES;
        assert_eq!(frame_size((max as i32).to_be_bytes(), max), Ok(max));
        assert!(frame_size((max as i32 + 1).to_be_bytes(), max).is_err());
    }
}
