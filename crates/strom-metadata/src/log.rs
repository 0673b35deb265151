//! The durable metadata log: one record per line, `<crc32c hex> <json>`, fsynced on every
//! append. Metadata changes are rare and small, so clarity beats speed here. On open, a torn or
//! corrupt tail (a crash mid-write) is truncated away; every fully written record survives.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::record::MetadataRecord;

/// Longest line the log accepts when reading back (a record is far smaller).
const LINE_SIZE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Errors of the metadata log.
#[derive(Debug, thiserror::Error)]
pub enum MetadataLogError {
    /// The file system failed.
    #[error("metadata log {path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A record could not be serialized (a bug).
    #[error("metadata record could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    /// A fully written record (its CRC matches) that this version cannot read: written by a
    /// newer Strom. Refusing to start beats truncating it away as if it were torn.
    #[error("metadata log {path} record {offset} is intact but unknown to this version of strom ({reason}); upgrade strom to open this data directory")]
    UnknownRecord {
        /// File involved.
        path: PathBuf,
        /// Offset of the record.
        offset: i64,
        /// What the parser said.
        reason: String,
    },
}

/// The metadata log file and the offset of its next record.
#[derive(Debug)]
pub struct MetadataLog {
    path: PathBuf,
    file: File,
    next_offset: i64,
}

impl MetadataLog {
    /// Opens the log in `dir` (creating it), returning the log and every valid record in order.
    pub fn open(dir: &Path) -> Result<(MetadataLog, Vec<MetadataRecord>), MetadataLogError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MetadataLogError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("metadata.log");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io(&path))?;
        let (records, valid_len_bytes) = match read_valid_prefix(&file).map_err(io(&path))? {
            Ok(prefix) => prefix,
            Err((offset, reason)) => {
                return Err(MetadataLogError::UnknownRecord {
                    path,
                    offset,
                    reason,
                })
            }
        };
        let file_len_bytes = file.metadata().map_err(io(&path))?.len();
        if valid_len_bytes < file_len_bytes {
            tracing::warn!(
                path = %path.display(),
                valid_len_bytes,
                file_len_bytes,
                "metadata log has a torn or corrupt tail; truncating it"
            );
            file.set_len(valid_len_bytes).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io(&path))?;
        let next_offset = records.len() as i64;
        Ok((
            MetadataLog {
                path,
                file,
                next_offset,
            },
            records,
        ))
    }

    /// Offset the next appended record will get.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Appends records durably (one write, one fsync); returns the offset of the first.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<i64, MetadataLogError> {
        let mut text = String::new();
        for record in records {
            let json = serde_json::to_string(record)?;
            let crc = crc32c::crc32c(json.as_bytes());
            text.push_str(&format!("{crc:08x} {json}\n"));
        }
        let io = |source| MetadataLogError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(text.as_bytes()).map_err(io)?;
        self.file
            .sync_data()
            .map_err(|source| MetadataLogError::Io {
                path: self.path.clone(),
                source,
            })?;
        let first = self.next_offset;
        self.next_offset += records.len() as i64;
        Ok(first)
    }
}

/// Parsed records and the length of the valid prefix, or the offset of an intact record that
/// cannot be understood.
type Prefix = Result<(Vec<MetadataRecord>, u64), (i64, String)>;

/// Reads records until the first line that is torn, too long, or fails its CRC. An intact line
/// (CRC matches) that does not parse is an error, not a torn tail.
fn read_valid_prefix(file: &File) -> std::io::Result<Prefix> {
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(0))?;
    let mut records = Vec::new();
    let mut valid_len_bytes = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(LINE_SIZE_MAX_BYTES as u64)
            .read_until(b'\n', &mut line)?;
        if read == 0 || line.last() != Some(&b'\n') {
            break;
        }
        match parse_line(&line[..line.len() - 1]) {
            Line::Record(record) => records.push(*record),
            Line::Torn => break,
            Line::Unknown(reason) => return Ok(Err((records.len() as i64, reason))),
        }
        valid_len_bytes += read as u64;
    }
    Ok(Ok((records, valid_len_bytes)))
}

enum Line {
    Record(Box<MetadataRecord>),
    Torn,
    Unknown(String),
}

fn parse_line(line: &[u8]) -> Line {
    let Some((crc_hex, json)) = std::str::from_utf8(line)
        .ok()
        .and_then(|text| text.split_once(' '))
    else {
        return Line::Torn;
    };
    let crc_ok =
        u32::from_str_radix(crc_hex, 16).is_ok_and(|crc| crc == crc32c::crc32c(json.as_bytes()));
    if !crc_ok {
        return Line::Torn;
    }
    match serde_json::from_str(json) {
        Ok(record) => Line::Record(Box::new(record)),
        Err(error) => Line::Unknown(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.to_string(),
            topic_id: uuid::Uuid::new_v4(),
        }
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let written = vec![topic("a"), topic("b")];
        {
            let (mut log, records) = MetadataLog::open(dir.path()).unwrap();
            assert!(records.is_empty());
            assert_eq!(log.append(&written).unwrap(), 0);
            assert_eq!(log.next_offset(), 2);
        }
        let (log, records) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(records, written);
        assert_eq!(log.next_offset(), 2);
    }

    #[test]
    fn an_intact_unknown_record_is_an_error_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
            log.append(&[topic("a")]).unwrap();
        }
        let path = dir.path().join("metadata.log");
        let future = r#"{"type":"SomethingNewer","x":1}"#;
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!(
            "{:08x} {future}\n",
            crc32c::crc32c(future.as_bytes())
        ));
        std::fs::write(&path, &text).unwrap();
        let error = MetadataLog::open(dir.path()).unwrap_err();
        assert!(
            matches!(error, MetadataLogError::UnknownRecord { offset: 1, .. }),
            "{error}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "nothing truncated"
        );
    }

    #[test]
    fn torn_and_corrupt_tails_are_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let first = topic("a");
        {
            let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
            log.append(&[first.clone(), topic("b")]).unwrap();
        }
        let path = dir.path().join("metadata.log");
        let bytes = std::fs::read(&path).unwrap();
        let first_line_len = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
        // Every cut inside the second line leaves exactly the first record.
        for cut in first_line_len..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let (_, records) = MetadataLog::open(dir.path()).unwrap();
            assert_eq!(records, vec![first.clone()], "cut at {cut}");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len() as usize,
                first_line_len
            );
        }
        // A flipped byte in the second line drops it.
        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 3;
        corrupt[last] ^= 0x01;
        std::fs::write(&path, &corrupt).unwrap();
        let (_, records) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(records, vec![first]);
    }
}
