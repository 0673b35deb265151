//! Where finished files go: a local directory (`/dir`, `file:///dir`) or an object store
//! (`s3://bucket/prefix`).
//!
//! Both make a file appear whole or not at all. Locally a file is written under a temporary
//! name starting with a dot (`.<name>.<unique>.tmp`, which Hive, Spark and pyarrow skip; unique
//! so two sinks of one group never write the same temporary file), fsynced, renamed into place
//! and the directory fsynced. On S3 a single PUT is atomic, so no temporary object is
//! ever visible.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Object store options beyond the `AWS_*` environment (which is read first).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    /// Endpoint URL, for S3-compatible servers (MinIO, moto, ...).
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Allow `http://` endpoints.
    pub allow_http: Option<bool>,
    /// Access key id (else `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret access key (else `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
}

/// A sink's root.
#[derive(Debug, Clone)]
pub enum Store {
    /// A local directory.
    Local(PathBuf),
    /// A bucket and a key prefix.
    Object {
        /// The store.
        store: Arc<dyn ObjectStore>,
        /// Prefix of every key (may be empty).
        prefix: String,
        /// The URL, for logs.
        url: String,
    },
}

impl Store {
    /// Opens `root`: a path, `file://PATH` or `s3://BUCKET[/PREFIX]`.
    pub fn open(root: &str, s3: &S3Options) -> Result<Store> {
        if let Some(rest) = root.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::Config(format!("root {root:?} has no bucket")));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            }
            if let Some(allow_http) = s3.allow_http {
                builder = builder.with_allow_http(allow_http);
            }
            if let Some(key) = &s3.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            let store = builder.build()?;
            return Ok(Store::Object {
                store: Arc::new(store),
                prefix: prefix.trim_matches('/').to_string(),
                url: root.to_string(),
            });
        }
        if root.contains("://") && !root.starts_with("file://") {
            return Err(Error::Config(format!(
                "root {root:?}: use a directory, file://DIR or s3://BUCKET/PREFIX"
            )));
        }
        let path = root.strip_prefix("file://").unwrap_or(root);
        if path.is_empty() {
            return Err(Error::Config("root is empty".to_string()));
        }
        Ok(Store::Local(PathBuf::from(path)))
    }

    /// The root as given, for logs.
    pub fn describe(&self) -> String {
        match self {
            Store::Local(dir) => dir.display().to_string(),
            Store::Object { url, .. } => url.clone(),
        }
    }

    fn key(prefix: &str, relative: &str) -> ObjectPath {
        if prefix.is_empty() {
            ObjectPath::from(relative)
        } else {
            ObjectPath::from(format!("{prefix}/{relative}"))
        }
    }

    /// Writes `bytes` at `relative` (a `/`-separated path) so that it appears whole or not at all.
    pub async fn put_atomic(&self, relative: &str, bytes: Vec<u8>) -> Result<()> {
        match self {
            Store::Local(dir) => {
                let target = dir.join(relative);
                tokio::task::spawn_blocking(move || write_local_atomic(&target, &bytes))
                    .await
                    .map_err(|e| Error::io("write task", std::io::Error::other(e)))?
            }
            Store::Object { store, prefix, .. } => {
                store
                    .put(&Self::key(prefix, relative), PutPayload::from(bytes))
                    .await?;
                Ok(())
            }
        }
    }

    /// The bytes at `relative`, or `None` if there is no such file.
    pub async fn read(&self, relative: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Store::Local(dir) => match std::fs::read(dir.join(relative)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io(format!("read {relative}"), e)),
            },
            Store::Object { store, prefix, .. } => {
                match store.get(&Self::key(prefix, relative)).await {
                    Ok(got) => Ok(Some(got.bytes().await?.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Every file name (last path component) under `<root>/<topic>/`, with its relative path.
    pub async fn list(&self, topic: &str) -> Result<Vec<(String, String)>> {
        match self {
            Store::Local(dir) => {
                let base = dir.join(topic);
                let topic = topic.to_string();
                tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    walk_local(&base, &topic, &mut out)?;
                    Ok(out)
                })
                .await
                .map_err(|e| Error::io("list task", std::io::Error::other(e)))?
            }
            Store::Object { store, prefix, .. } => {
                let base = Self::key(prefix, topic);
                let metas: Vec<_> = store.list(Some(&base)).try_collect().await?;
                let strip = if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{prefix}/")
                };
                Ok(metas
                    .into_iter()
                    .filter_map(|m| {
                        let full = m.location.to_string();
                        let name = m.location.filename()?.to_string();
                        Some((full.strip_prefix(&strip).unwrap_or(&full).to_string(), name))
                    })
                    .collect())
            }
        }
    }

    /// Deletes the temporary files a crashed sink left under `<root>/<topic>/` for
    /// `partitions` (local only: object stores never show partial objects). A sink calls it for
    /// partitions it was just given, which no other sink of its group writes any more; the
    /// temporaries of other partitions may be another sink's writes in progress. Returns how
    /// many it deleted.
    pub async fn remove_temporaries(
        &self,
        topic: &str,
        partitions: &BTreeSet<i32>,
    ) -> Result<usize> {
        let Store::Local(dir) = self else {
            return Ok(0);
        };
        let mut removed = 0;
        for (relative, name) in self.list(topic).await? {
            let Some(partition) = temporary_partition(&name) else {
                continue;
            };
            if partitions.contains(&partition) {
                let path = dir.join(&relative);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(format!("remove {}", path.display()), e)),
                }
                tracing::info!(file = %path.display(), "removed a partial file left by an earlier owner");
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The partition of a temporary file's name (`.<partition>-<first>-<last>.<ext>[.<unique>].tmp`).
fn temporary_partition(name: &str) -> Option<i32> {
    let rest = name.strip_prefix('.')?;
    name.ends_with(".tmp").then_some(())?;
    rest.split_once('-')?.0.parse().ok()
}

fn walk_local(dir: &Path, relative: &str, out: &mut Vec<(String, String)>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let child = format!("{relative}/{name}");
        let kind = entry
            .file_type()
            .map_err(|e| Error::io(format!("stat {}", entry.path().display()), e))?;
        if kind.is_dir() {
            walk_local(&entry.path(), &child, out)?;
        } else {
            out.push((child, name));
        }
    }
    Ok(())
}

/// Temporary name, fsync, rename, fsync of the directory.
fn write_local_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = target
        .parent()
        .ok_or_else(|| Error::Config(format!("{} has no parent", target.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut file = std::fs::File::create(&temporary)
        .map_err(|e| Error::io(format!("create {}", temporary.display()), e))?;
    file.write_all(bytes)
        .map_err(|e| Error::io(format!("write {}", temporary.display()), e))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("fsync {}", temporary.display()), e))?;
    drop(file);
    std::fs::rename(&temporary, target)
        .map_err(|e| Error::io(format!("rename to {}", target.display()), e))?;
    let dir_handle =
        std::fs::File::open(dir).map_err(|e| Error::io(format!("open {}", dir.display()), e))?;
    dir_handle
        .sync_all()
        .map_err(|e| Error::io(format!("fsync {}", dir.display()), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_put_lists_and_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &format!("file://{}", dir.path().display()),
            &S3Options::default(),
        )
        .unwrap();
        store
            .put_atomic("t/dt=1970-01-01/hour=00/0-0-9.parquet", b"abc".to_vec())
            .await
            .unwrap();
        std::fs::write(
            dir.path()
                .join("t/dt=1970-01-01/hour=00/.0-10-19.parquet.tmp"),
            b"partial",
        )
        .unwrap();
        let mut names: Vec<String> = store
            .list("t")
            .await
            .unwrap()
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        names.sort();
        assert_eq!(names, [".0-10-19.parquet.tmp", "0-0-9.parquet"]);
        std::fs::write(
            dir.path()
                .join("t/dt=1970-01-01/hour=00/.1-10-19.parquet.0123abcd.tmp"),
            b"another partition's write in progress",
        )
        .unwrap();
        assert_eq!(
            store
                .remove_temporaries("t", &BTreeSet::from([0, 2]))
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.list("t").await.unwrap().len(), 2);
        assert_eq!(
            store
                .remove_temporaries("t", &BTreeSet::from([1]))
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.list("t").await.unwrap().len(), 1);
        assert!(store.list("missing").await.unwrap().is_empty());
    }

    #[test]
    fn temporaries_name_their_partition() {
        assert_eq!(temporary_partition(".3-10-19.parquet.tmp"), Some(3));
        assert_eq!(temporary_partition(".12-0-0.jsonl.ab12.tmp"), Some(12));
        assert_eq!(temporary_partition("3-10-19.parquet"), None);
        assert_eq!(temporary_partition("._strom_schema.json.ab12.tmp"), None);
    }

    #[test]
    fn roots_are_checked() {
        assert!(matches!(
            Store::open("/tmp/x", &S3Options::default()),
            Ok(Store::Local(_))
        ));
        assert!(Store::open("hdfs://x/y", &S3Options::default()).is_err());
        assert!(Store::open("s3:///x", &S3Options::default()).is_err());
        assert!(Store::open("", &S3Options::default()).is_err());
    }
}
