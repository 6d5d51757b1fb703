//! [`LocalStore`]: the object store of local mode, a folder where key `a/b/c` is the
//! file `<root>/a/b/c`, so `sphinx tile --out DIR` leaves exactly the S3 layout on disk.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{validate_key, Metadata, ObjectInfo, ObjectStore, StoreError};

/// Folder (under the root) holding user metadata as `<key>.json`; never listed.
const META_DIR: &str = ".sphinx-meta";
/// Name prefix of the temporary files a write goes through; never listed.
const TMP_PREFIX: &str = ".sphinx-tmp-";

/// Distinguishes temporary files of concurrent writers in one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Filesystem object store rooted at a folder.
///
/// Writes go to a temporary file in the target folder, are flushed to disk, then
/// renamed over the key (or hard-linked for [`ObjectStore::put_if_absent`]), so a
/// reader or a crash never sees a half-written object. The blocking methods serve
/// synchronous callers (`sphinx tile` threads); the [`ObjectStore`] impl calls them
/// inline, since local file operations are short.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens (creating it if needed) the store rooted at `root`.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root)
            .map_err(|e| io_error("open store", &root.to_string_lossy(), e))?;
        Ok(LocalStore { root })
    }

    /// The folder this store writes under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key` (after checking the key).
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_local_key(key)?;
        Ok(self.root.join(key))
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.root.join(META_DIR).join(format!("{key}.json"))
    }

    /// Writes (or replaces) `key` atomically.
    pub fn put_blocking(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        self.put_with_metadata_blocking(key, body, &Metadata::new())
    }

    /// Writes (or replaces) `key` and its user metadata, each atomically.
    pub fn put_with_metadata_blocking(
        &self,
        key: &str,
        body: &[u8],
        metadata: &Metadata,
    ) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let meta_path = self.meta_path(key);
        if metadata.is_empty() {
            remove_if_exists(&meta_path).map_err(|e| io_error("put", key, e))?;
        } else {
            let json = serde_json::to_vec(metadata).expect("string map serializes");
            write_atomic(&meta_path, &json, Commit::Replace)
                .map_err(|e| io_error("put", key, e))?;
        }
        write_atomic(&path, body, Commit::Replace).map_err(|e| io_error("put", key, e))?;
        Ok(())
    }

    /// Creates `key` only if it does not exist; `Ok(false)` when it already did.
    pub fn put_if_absent_blocking(&self, key: &str, body: &[u8]) -> Result<bool, StoreError> {
        let path = self.path_of(key)?;
        match write_atomic(&path, body, Commit::IfAbsent) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_error("put_if_absent", key, e)),
        }
    }

    /// Reads a whole object.
    pub fn get_blocking(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(key)?;
        fs::read(&path).map_err(|e| io_error("get", key, e))
    }

    /// Size and user metadata of an object.
    pub fn head_blocking(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        let path = self.path_of(key)?;
        let meta = fs::metadata(&path).map_err(|e| io_error("head", key, e))?;
        if !meta.is_file() {
            return Err(StoreError::NotFound {
                key: key.to_string(),
            });
        }
        let metadata = match fs::read(self.meta_path(key)) {
            Ok(json) => serde_json::from_slice(&json).map_err(|e| StoreError::Permanent {
                op: "head",
                key: key.to_string(),
                message: format!("corrupt metadata file: {e}"),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Metadata::new(),
            Err(e) => return Err(io_error("head", key, e)),
        };
        Ok(ObjectInfo {
            size: meta.len(),
            metadata,
        })
    }

    /// Every key starting with `prefix`, sorted.
    pub fn list_blocking(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Walk only the deepest folder the prefix names, then filter by string prefix.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        if !dir_part.is_empty() {
            check_local_key(dir_part)?;
        }
        let mut keys = Vec::new();
        let start = self.root.join(dir_part);
        walk(&start, dir_part, &mut keys).map_err(|e| io_error("list", prefix, e))?;
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        Ok(keys)
    }

    /// Removes `key` (and its metadata); a missing object is not an error.
    pub fn delete_blocking(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        remove_if_exists(&path).map_err(|e| io_error("delete", key, e))?;
        remove_if_exists(&self.meta_path(key)).map_err(|e| io_error("delete", key, e))
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_with_metadata(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: &Metadata,
    ) -> Result<(), StoreError> {
        self.put_with_metadata_blocking(key, &body, metadata)
    }

    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, StoreError> {
        self.put_if_absent_blocking(key, &body)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.get_blocking(key)
    }

    async fn sha256(&self, key: &str) -> Result<String, StoreError> {
        let file =
            std::fs::File::open(self.path_of(key)?).map_err(|e| io_error("sha256", key, e))?;
        crate::keys::doc_id_of_reader(file).map_err(|e| io_error("sha256", key, e))
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        self.head_blocking(key)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.list_blocking(prefix)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.delete_blocking(key)
    }
}

/// Keys valid everywhere, minus the names this store reserves for itself.
fn check_local_key(key: &str) -> Result<(), StoreError> {
    validate_key(key)?;
    if key
        .split('/')
        .any(|s| s == META_DIR || s.starts_with(TMP_PREFIX))
    {
        return Err(StoreError::InvalidKey {
            key: key.to_string(),
            reason: "uses a name reserved by the local store",
        });
    }
    Ok(())
}

/// How a finished temporary file becomes the object.
#[derive(Clone, Copy)]
enum Commit {
    /// `rename`: atomically replaces any existing object.
    Replace,
    /// `hard_link`: fails with `AlreadyExists` instead of replacing.
    IfAbsent,
}

fn write_atomic(path: &Path, body: &[u8], commit: Commit) -> io::Result<()> {
    let dir = path.parent().expect("object paths are under the root");
    fs::create_dir_all(dir)?;
    let name = path.file_name().expect("object paths end in a file name");
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{}-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed),
        name.to_string_lossy()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(body)?;
        file.sync_all()?;
        match commit {
            Commit::Replace => fs::rename(&tmp, path),
            Commit::IfAbsent => fs::hard_link(&tmp, path),
        }
    })();
    // After a rename the temporary name is gone; otherwise it must not linger.
    if matches!(commit, Commit::IfAbsent) || result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn walk(dir: &Path, rel: &str, keys: &mut Vec<String>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == META_DIR || name.starts_with(TMP_PREFIX) {
            continue;
        }
        let key = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), &key, keys)?;
        } else {
            keys.push(key);
        }
    }
    Ok(())
}

fn io_error(op: &'static str, key: &str, e: io::Error) -> StoreError {
    let key = key.to_string();
    match e.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound { key },
        io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            StoreError::Transient {
                op,
                key,
                message: e.to_string(),
            }
        }
        _ => StoreError::Permanent {
            op,
            key,
            message: e.to_string(),
        },
    }
}
