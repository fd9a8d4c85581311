//! The embedded metadata store of a single node: one JSON file in the first log dir,
//! replaced atomically on every change, and Kafka's `meta.properties` beside it.
//!
//! Durability order of [`Store::save`]:
//! 1. write the whole new content to `__sluice_metadata.json.tmp`;
//! 2. fsync the temporary file;
//! 3. rename it over `__sluice_metadata.json`;
//! 4. fsync the directory, so the rename survives a crash.
//!
//! A crash before step 3 leaves the previous file in place (a stale `.tmp` is
//! overwritten by the next save); after step 4 the new content is durable. There is no
//! state in between that a reader could see half-written.
//!
//! Only the control thread touches the store.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_core::config::{parse_properties, TopicConfigs};

use crate::error::CoordinationError;

/// Name of the metadata file in the first log dir.
pub const METADATA_FILE_NAME: &str = "__sluice_metadata.json";
const META_PROPERTIES: &str = "meta.properties";
/// Version of the JSON layout; a file with another version is refused, not guessed at.
const FORMAT_VERSION: u32 = 1;

/// Everything the embedded store persists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredMetadata {
    pub format_version: u32,
    pub cluster_id: String,
    /// First producer id not yet reserved: ids below it may have been handed out.
    pub next_producer_id_block: i64,
    pub topics: Vec<StoredTopic>,
}

/// A topic as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredTopic {
    pub name: String,
    /// UUID, hyphenated hex.
    pub id: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: TopicConfigs,
}

/// The store of one log dir. Owned by the control thread.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    path: PathBuf,
}

impl Store {
    /// Opens the store in `dir` (created if needed): loads the metadata, or starts a
    /// new cluster with a fresh cluster id, and checks and writes `meta.properties`.
    pub fn open(dir: &Path, broker_id: i32) -> Result<(Store, StoredMetadata), CoordinationError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CoordinationError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let store = Store {
            dir: dir.to_path_buf(),
            path: dir.join(METADATA_FILE_NAME),
        };
        let meta_path = dir.join(META_PROPERTIES);
        let meta = match fs::read_to_string(&meta_path) {
            Ok(text) => Some(read_meta_properties(&meta_path, &text)?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(io(&meta_path)(error)),
        };
        let metadata = match fs::read(&store.path) {
            Ok(bytes) => {
                let metadata: StoredMetadata =
                    serde_json::from_slice(&bytes).map_err(|error| CoordinationError::Corrupt {
                        path: store.path.clone(),
                        reason: error.to_string(),
                    })?;
                if metadata.format_version != FORMAT_VERSION {
                    return Err(CoordinationError::Corrupt {
                        path: store.path.clone(),
                        reason: format!(
                            "format version {} is not the supported {FORMAT_VERSION}",
                            metadata.format_version
                        ),
                    });
                }
                metadata
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let metadata = StoredMetadata {
                    format_version: FORMAT_VERSION,
                    cluster_id: match &meta {
                        Some((_, cluster_id)) => cluster_id.clone(),
                        None => new_cluster_id(),
                    },
                    next_producer_id_block: 0,
                    topics: Vec::new(),
                };
                store.save(&metadata)?;
                metadata
            }
            Err(error) => return Err(io(&store.path)(error)),
        };
        if let Some((stored_broker_id, stored_cluster_id)) = &meta {
            if *stored_broker_id != broker_id {
                return Err(CoordinationError::Inconsistent {
                    path: meta_path,
                    reason: format!(
                        "the log dir belongs to broker.id {stored_broker_id}, not {broker_id}"
                    ),
                });
            }
            if *stored_cluster_id != metadata.cluster_id {
                return Err(CoordinationError::Inconsistent {
                    path: meta_path,
                    reason: format!(
                        "cluster.id {stored_cluster_id} does not match the metadata store's {}",
                        metadata.cluster_id
                    ),
                });
            }
        } else {
            let text = format!(
                "#\n# Written by Sluice\nversion=0\nbroker.id={broker_id}\ncluster.id={}\n",
                metadata.cluster_id
            );
            write_atomically(&store.dir, &meta_path, text.as_bytes())?;
        }
        Ok((store, metadata))
    }

    /// Persists `metadata` atomically (see the module doc for the order of steps).
    pub fn save(&self, metadata: &StoredMetadata) -> Result<(), CoordinationError> {
        assert_eq!(metadata.format_version, FORMAT_VERSION);
        let bytes =
            serde_json::to_vec_pretty(metadata).map_err(|error| CoordinationError::Corrupt {
                path: self.path.clone(),
                reason: format!("cannot serialise: {error}"),
            })?;
        write_atomically(&self.dir, &self.path, &bytes)
    }
}

/// Checks the `meta.properties` of log dir `dir` (created if needed) against this
/// broker's id and the cluster id ZooKeeper holds, and writes it if it is missing
/// (cluster mode; the single-node store does the same in [`Store::open`]).
pub(crate) fn check_meta_properties(
    dir: &Path,
    broker_id: i32,
    cluster_id: &str,
) -> Result<(), CoordinationError> {
    fs::create_dir_all(dir).map_err(|source| CoordinationError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let meta_path = dir.join(META_PROPERTIES);
    match fs::read_to_string(&meta_path) {
        Ok(text) => {
            let (stored_broker_id, stored_cluster_id) = read_meta_properties(&meta_path, &text)?;
            if stored_broker_id != broker_id {
                return Err(CoordinationError::Inconsistent {
                    path: meta_path,
                    reason: format!(
                        "the log dir belongs to broker.id {stored_broker_id}, not {broker_id}"
                    ),
                });
            }
            if stored_cluster_id != cluster_id {
                return Err(CoordinationError::Inconsistent {
                    path: meta_path,
                    reason: format!(
                        "cluster.id {stored_cluster_id} does not match ZooKeeper's {cluster_id}"
                    ),
                });
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let text = format!(
                "#\n# Written by Sluice\nversion=0\nbroker.id={broker_id}\ncluster.id={cluster_id}\n"
            );
            write_atomically(dir, &meta_path, text.as_bytes())
        }
        Err(source) => Err(CoordinationError::Io {
            path: meta_path,
            source,
        }),
    }
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename, then fsyncs `dir`.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), CoordinationError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CoordinationError::Io { path, source }
    };
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io(path))?;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

/// `(broker.id, cluster.id)` of a `meta.properties`.
fn read_meta_properties(path: &Path, text: &str) -> Result<(i32, String), CoordinationError> {
    let corrupt = |reason: String| CoordinationError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let properties: BTreeMap<String, String> = parse_properties(text)
        .map_err(|error| corrupt(error.to_string()))?
        .into_iter()
        .collect();
    let broker_id = properties
        .get("broker.id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| corrupt("no valid broker.id".into()))?;
    let cluster_id = properties
        .get("cluster.id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| corrupt("no cluster.id".into()))?;
    Ok((broker_id, cluster_id.clone()))
}

/// A new cluster id the way Kafka makes one: a random UUID in URL-safe base64 without
/// padding (22 characters).
pub(crate) fn new_cluster_id() -> String {
    base64_url(uuid::Uuid::new_v4().as_bytes())
}

/// Unpadded URL-safe base64 (Kafka's `Uuid.toString`).
pub(crate) fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_kafka_uuid_strings() {
        assert_eq!(base64_url(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(base64_url(b"\xfb\xff"), "-_8");
        assert_eq!(base64_url(b"Man"), "TWFu");
        assert_eq!(base64_url(b"Ma"), "TWE");
        assert_eq!(new_cluster_id().len(), 22);
    }

    #[test]
    fn round_trip_and_meta_properties() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut metadata) = Store::open(dir.path(), 3).unwrap();
        assert!(metadata.topics.is_empty());
        metadata.topics.push(StoredTopic {
            name: "t".into(),
            id: uuid::Uuid::new_v4().to_string(),
            partitions: 4,
            replication_factor: 1,
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
        });
        metadata.next_producer_id_block = 2000;
        store.save(&metadata).unwrap();
        drop(store);

        let (_, reloaded) = Store::open(dir.path(), 3).unwrap();
        assert_eq!(reloaded, metadata);
        let meta = fs::read_to_string(dir.path().join("meta.properties")).unwrap();
        assert!(meta.contains("version=0\n"), "{meta}");
        assert!(meta.contains("broker.id=3\n"), "{meta}");
        assert!(
            meta.contains(&format!("cluster.id={}\n", metadata.cluster_id)),
            "{meta}"
        );
        assert!(!dir.path().join("__sluice_metadata.json.tmp").exists());

        let error = Store::open(dir.path(), 4).unwrap_err();
        assert!(error.to_string().contains("broker.id 3, not 4"), "{error}");
    }

    #[test]
    fn corrupt_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(METADATA_FILE_NAME), b"{not json").unwrap();
        let error = Store::open(dir.path(), 0).unwrap_err();
        assert!(
            matches!(error, CoordinationError::Corrupt { .. }),
            "{error}"
        );
    }
}
