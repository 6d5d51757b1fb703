//! Object storage behind one small trait, so the tiler Lambda and the GPU worker (S3)
//! and the local `sphinx tile`/`sphinx run` (a folder) share every line above it.
//!
//! Keys are `/`-separated relative paths as produced by [`crate::keys`]. Every
//! implementation checks them with [`validate_key`], so a key that would escape a
//! local root is refused the same way everywhere.

use std::collections::BTreeMap;

use async_trait::async_trait;

mod local;
#[cfg(feature = "aws")]
pub(crate) mod s3;

pub use local::LocalStore;
#[cfg(feature = "aws")]
pub use s3::S3Store;

/// User metadata of an object (S3 `x-amz-meta-*`, names without the prefix, lowercase).
pub type Metadata = BTreeMap<String, String>;

/// What `head` says about an object without reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size of the body in bytes.
    pub size: u64,
    /// User metadata stored with the object.
    pub metadata: Metadata,
}

/// Why a store operation failed. Callers branch on [`StoreError::is_transient`]:
/// transient faults are retried, the others are reported.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist (S3 404 / no such file).
    #[error("object {key:?} not found")]
    NotFound { key: String },
    /// The key is not a valid relative object key.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// A fault that may go away on retry: 5xx, throttling, timeouts, refused connections.
    #[error("{op} {key:?} failed (transient): {message}")]
    Transient {
        op: &'static str,
        key: String,
        message: String,
    },
    /// A fault that retrying will not fix: access denied, bad request, disk errors.
    #[error("{op} {key:?} failed: {message}")]
    Permanent {
        op: &'static str,
        key: String,
        message: String,
    },
}

impl StoreError {
    /// True when retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }

    /// True when the error says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

/// A flat key -> bytes store with S3 semantics (whole-object writes, strong
/// read-after-write, string-prefix listing).
///
/// Dyn-compatible (`Arc<dyn ObjectStore>`) so handlers are written once over trait
/// objects and tested with a local store.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Writes (or replaces) `key` with `body` and user `metadata`.
    async fn put_with_metadata(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: &Metadata,
    ) -> Result<(), StoreError>;

    /// Writes `key` only if no object exists there: `Ok(true)` when this call created
    /// it, `Ok(false)` when it already existed (left untouched). The object appears
    /// complete or not at all, so it can decide which of two racing writers goes on.
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, StoreError>;

    /// Reads a whole object; a missing one is [`StoreError::NotFound`].
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;

    /// The SHA-256 (lowercase hex) of an object's bytes, read piece by piece: the document
    /// id ([`crate::keys::doc_id`]) of an upload too large to hold in memory.
    async fn sha256(&self, key: &str) -> Result<String, StoreError>;

    /// Size and user metadata of an object; a missing one is [`StoreError::NotFound`].
    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError>;

    /// Every key that starts with `prefix` (a string prefix, as in S3), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Removes `key`; removing a missing object succeeds (as in S3).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Writes (or replaces) `key` with `body` and no metadata.
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.put_with_metadata(key, body, &Metadata::new()).await
    }
}

/// Checks that `key` is a relative `/`-separated path with no empty, `.` or `..`
/// segments and no backslash or NUL, the common ground of S3 keys and file paths: what
/// a key must be before it names a file ([`LocalStore`], and every copy of S3 objects
/// into a local folder). S3 itself takes any name ([`validate_s3_key`]).
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let invalid = |reason| {
        Err(StoreError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return invalid("empty");
    }
    if key.contains('\\') || key.contains('\0') {
        return invalid("contains a backslash or NUL");
    }
    if key.split('/').any(|s| s.is_empty()) {
        return invalid("leading, trailing or doubled '/'");
    }
    if key.split('/').any(|s| s == "." || s == "..") {
        return invalid("'.' or '..' segment");
    }
    Ok(())
}

/// What S3 takes as a key: 1 to 1,024 bytes of UTF-8, any of them, for a key is a name,
/// not a path there. Uploads come with whatever their tools wrote (`scans\2026.pdf`,
/// `batch//a.pdf`) and must be read like any other.
pub fn validate_s3_key(key: &str) -> Result<(), StoreError> {
    let reason = match key.len() {
        0 => "empty",
        1..=1024 => return Ok(()),
        _ => "longer than 1,024 bytes",
    };
    Err(StoreError::InvalidKey {
        key: key.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_keys_are_names_not_paths() {
        for fine in [
            "inbox/scans\\2026.pdf",
            "inbox/batch//a.pdf",
            "inbox/./x",
            "../x",
        ] {
            assert!(validate_s3_key(fine).is_ok(), "{fine:?}");
            assert!(validate_key(fine).is_err(), "{fine:?} names no file");
        }
        assert!(validate_s3_key("").is_err());
        assert!(validate_s3_key(&"k".repeat(1024)).is_ok());
        assert!(validate_s3_key(&"k".repeat(1025)).is_err());
    }

    #[test]
    fn keys_that_could_escape_a_root_are_refused() {
        for bad in [
            "", "/abs", "a//b", "a/", "../x", "a/./b", "a/../b", "a\\b", "a\0b",
        ] {
            let err = validate_key(bad).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidKey { .. }),
                "{bad:?}: {err}"
            );
        }
        for good in [
            "a",
            "work/abc/page-0000.bundle",
            "inbox/my file.pdf",
            "a/..b/c.",
        ] {
            validate_key(good).unwrap();
        }
    }
}
