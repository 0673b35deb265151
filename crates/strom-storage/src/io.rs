//! The file I/O seam: every byte the log reads or writes goes through [`LogFile`], so another
//! backend (io_uring, direct I/O) can replace it in one place.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

/// An append-only file with positional reads.
#[derive(Debug)]
pub(crate) struct LogFile {
    file: File,
    path: PathBuf,
    len_bytes: u64,
}

impl LogFile {
    /// Opens `path` for reading and appending, creating it if missing.
    pub(crate) fn open(path: &Path) -> Result<LogFile> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
        let len_bytes = file
            .metadata()
            .map_err(|e| StorageError::io(format!("stat {}", path.display()), e))?
            .len();
        Ok(LogFile {
            file,
            path: path.to_path_buf(),
            len_bytes,
        })
    }

    /// Creates `path` empty (truncating anything there) and opens it.
    pub(crate) fn create(path: &Path) -> Result<LogFile> {
        let mut file = LogFile::open(path)?;
        file.truncate(0)?;
        Ok(file)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Appends all of `bytes`. On failure the file is cut back to its previous length so that it
    /// never ends in a partial write the log does not know about.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if let Err(error) = self.file.write_all(bytes) {
            let len_bytes = self.len_bytes;
            if let Err(trim) = self.file.set_len(len_bytes) {
                tracing::warn!(path = %self.path.display(), %trim, "could not trim failed append");
            }
            return Err(StorageError::io(
                format!("appending to {}", self.path.display()),
                error,
            ));
        }
        self.len_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Reads up to `buf.len()` bytes at `position`; returns how many were read (short only at
    /// end of file).
    pub(crate) fn read_at(&self, buf: &mut [u8], position: u64) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], position + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(StorageError::io(
                        format!("reading {} at {position}", self.path.display()),
                        e,
                    ))
                }
            }
        }
        Ok(done)
    }

    /// Cuts the file to `len_bytes`.
    pub(crate) fn truncate(&mut self, len_bytes: u64) -> Result<()> {
        self.file
            .set_len(len_bytes)
            .map_err(|e| StorageError::io(format!("truncating {}", self.path.display()), e))?;
        self.len_bytes = len_bytes;
        Ok(())
    }

    /// fsyncs the file's data.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| StorageError::io(format!("fsync {}", self.path.display()), e))
    }
}

/// fsyncs a directory so that file creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(format!("fsync directory {}", dir.display()), e))
}

/// Writes `contents` to `path` atomically: write a temporary file, fsync it, rename it over
/// `path`, fsync the directory.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    write_atomically_with(path, contents, true)
}

/// Like [`write_atomically`], durable against power loss only when `durable`; without it the
/// rename is still atomic against a killed process (the page cache survives), and two fsyncs
/// are saved, which matters when thousands of partitions open at once.
pub(crate) fn write_atomically_with(path: &Path, contents: &[u8], durable: bool) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let context = |what: &str| format!("{what} {}", tmp.display());
    let mut file = File::create(&tmp).map_err(|e| StorageError::io(context("creating"), e))?;
    file.write_all(contents)
        .map_err(|e| StorageError::io(context("writing"), e))?;
    if durable {
        file.sync_all()
            .map_err(|e| StorageError::io(context("fsync"), e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| StorageError::io(context("renaming"), e))?;
    if durable {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(format!("removing {}", path.display()), e)),
    }
}
