//! Tails files matching a glob, like Flume's taildir source: new complete lines of every
//! matching file become records; files are known by inode, so a renamed (rotated) file is
//! read to its end under its new name while the new file starts at 0. Positions are saved
//! (atomically, by rename) after the broker acknowledged the lines they cover.
//!
//! Delivery: exactly once across a clean stop and start (positions are saved after every
//! acknowledged batch, and a stop waits for it); at least once across a kill between an
//! acknowledgement and the save of the positions (the lines of that one batch again).
//! The pattern must match rotated names too (`app.log*`), or the tail of a rotated file
//! written after the last look is lost.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runner::{Output, Shutdown};

/// Bytes read from one file per look at most.
const READ_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// One line may be this long at most; a longer one is cut into pieces of this size.
const LINE_BYTES_MAX: usize = 1024 * 1024;

/// Where reading stands in one file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Position {
    /// Last path seen.
    pub path: PathBuf,
    /// Bytes consumed (complete lines sent and acknowledged).
    pub offset: u64,
}

/// Positions by inode.
pub type Positions = BTreeMap<u64, Position>;

/// A glob of `DIR/PATTERN` with `*` and `?` in the file name.
pub struct Glob {
    dir: PathBuf,
    pattern: Vec<char>,
}

impl Glob {
    /// Parses `DIR/PATTERN`.
    pub fn parse(text: &str) -> Result<Glob> {
        let path = Path::new(text);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Config(format!("files {text:?} has no file name")))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if dir.to_string_lossy().contains(['*', '?']) {
            return Err(Error::Config(format!(
                "files {text:?}: wildcards go in the file name only"
            )));
        }
        Ok(Glob {
            dir: dir.to_path_buf(),
            pattern: name.chars().collect(),
        })
    }

    /// Whether a file name matches.
    pub fn matches(&self, name: &str) -> bool {
        fn go(p: &[char], n: &[char]) -> bool {
            match (p.first(), n.first()) {
                (None, None) => true,
                (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
                (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
                (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
                _ => false,
            }
        }
        let name: Vec<char> = name.chars().collect();
        go(&self.pattern, &name)
    }

    /// Matching files with inode and modification time, oldest first.
    fn list(&self) -> Result<Vec<(u64, PathBuf)>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io(format!("list {}", self.dir.display()), e))?;
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !self.matches(&name) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() {
                files.push((meta.modified().ok(), meta.ino(), entry.path()));
            }
        }
        files.sort();
        Ok(files
            .into_iter()
            .map(|(_, ino, path)| (ino, path))
            .collect())
    }
}

/// Loads positions (empty when the file does not exist).
pub fn load_positions(path: &Path) -> Result<Positions> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Config(format!("positions file {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Positions::new()),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

fn save_positions(path: &Path, positions: &Positions) -> Result<()> {
    let temporary = path.with_extension("tmp");
    let text = serde_json::to_vec_pretty(positions).map_err(|e| Error::Config(e.to_string()))?;
    std::fs::write(&temporary, text)
        .map_err(|e| Error::io(format!("write {}", temporary.display()), e))?;
    std::fs::rename(&temporary, path)
        .map_err(|e| Error::io(format!("rename to {}", path.display()), e))
}

/// Complete lines from `offset` (at most [`READ_BYTES_MAX`] bytes): the lines and the bytes
/// they take, newlines included. A file shorter than `offset` was truncated: read from 0.
fn read_lines(path: &Path, offset: u64) -> Result<(u64, Vec<Bytes>, u64)> {
    let mut file =
        std::fs::File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .len();
    let start = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io(format!("seek {}", path.display()), e))?;
    let mut buf = Vec::new();
    file.take(READ_BYTES_MAX)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    let mut lines = Vec::new();
    let mut used = 0usize;
    while let Some(end) = buf[used..].iter().position(|b| *b == b'\n') {
        let line = &buf[used..used + end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        lines.extend(line.chunks(LINE_BYTES_MAX).map(Bytes::copy_from_slice));
        if line.is_empty() {
            lines.push(Bytes::new());
        }
        used += end + 1;
    }
    if used == 0 && buf.len() as u64 >= READ_BYTES_MAX {
        // A line longer than everything read: send what there is, as a piece.
        lines.push(Bytes::copy_from_slice(&buf));
        used = buf.len();
    }
    Ok((start, lines, used as u64))
}

/// Tails until `shutdown`.
pub async fn run(
    files: &str,
    positions_path: &Path,
    poll: Duration,
    output: &Output,
    mut shutdown: Shutdown,
) -> Result<()> {
    let glob = Glob::parse(files)?;
    let mut positions = load_positions(positions_path)?;
    tracing::info!(files, positions = %positions_path.display(), known = positions.len(), "taildir source running");
    loop {
        let mut sent_any = false;
        let listed = glob.list()?;
        positions.retain(|ino, _| listed.iter().any(|(i, _)| i == ino));
        for (ino, path) in listed {
            let offset = positions.get(&ino).map_or(0, |p| p.offset);
            let (start, lines, used) = read_lines(&path, offset)?;
            if start != offset {
                tracing::warn!(file = %path.display(), offset, "file is shorter than its position: truncated, reading from 0");
            }
            if used == 0 {
                positions.insert(
                    ino,
                    Position {
                        path,
                        offset: start,
                    },
                );
                continue;
            }
            let batch: Vec<(Option<Bytes>, Bytes)> = lines.into_iter().map(|l| (None, l)).collect();
            output.send_all(None, batch).await?;
            positions.insert(
                ino,
                Position {
                    path,
                    offset: start + used,
                },
            );
            save_positions(positions_path, &positions)?;
            sent_any = true;
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        if !sent_any {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names_only() {
        let glob = Glob::parse("/var/log/app.log*").unwrap();
        assert!(glob.matches("app.log") && glob.matches("app.log.1"));
        assert!(!glob.matches("other.log"));
        assert!(Glob::parse("x?.log").unwrap().matches("x1.log"));
        assert!(Glob::parse("/var/*/app.log").is_err());
    }

    #[test]
    fn only_complete_lines_are_read_and_truncation_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "one\ntwo\r\nthr").unwrap();
        let (start, lines, used) = read_lines(&path, 0).unwrap();
        assert_eq!((start, used), (0, 9));
        assert_eq!(lines, vec![Bytes::from("one"), Bytes::from("two")]);
        let (_, lines, used) = read_lines(&path, 9).unwrap();
        assert!(lines.is_empty() && used == 0);
        std::fs::write(&path, "x\n").unwrap();
        let (start, lines, _) = read_lines(&path, 9).unwrap();
        assert_eq!((start, lines), (0, vec![Bytes::from("x")]));
    }
}
