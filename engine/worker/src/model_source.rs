//! Where a worker's model comes from: a local folder, or an S3 prefix copied once into a
//! local cache (workers on one host share it; a restart does not download again).
//!
//! `s3://bucket/models/<run>/` is used as is. A prefix ending in `latest`
//! (`s3://bucket/models/latest`) is the pointer `sphinx train` publishes: the object
//! `models/latest` holds the run name, and the model is `models/<run>/`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sphinx_core::settings::S3Args;
use sphinx_core::{ObjectStore, S3Store};

/// Files of a model folder, as `sphinx infer` loads them.
pub const MODEL_FILES: [&str; 3] = sphinx_model::model_folder::FILES;

/// The trained nano committed with the checkout (`models/sphinx-nano/`), if this binary
/// was built from one that has it: the default model of `sphinx run` and `sphinx infer`.
pub fn bundled_nano() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/sphinx-nano");
    dir.join(sphinx_model::model_folder::WEIGHTS_FILE)
        .exists()
        .then_some(dir)
}

/// A parsed `--model` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl ModelSource {
    pub fn parse(spec: &str) -> Result<Self> {
        let Some(rest) = spec.strip_prefix("s3://") else {
            return Ok(Self::Local(PathBuf::from(spec)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        if bucket.is_empty() || prefix.is_empty() {
            bail!("model {spec:?} must be s3://<bucket>/<prefix>");
        }
        Ok(Self::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// Where a command keeps the models it fetches from S3, and how it reaches S3: the one
/// definition of `--model-cache` (`SPHINX_MODEL_CACHE`) and the S3 flags for every command
/// that takes a model.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelCacheArgs {
    /// Local cache for models fetched from S3.
    #[arg(long, env = "SPHINX_MODEL_CACHE", default_value = DEFAULT_MODEL_CACHE)]
    pub model_cache: PathBuf,
    #[command(flatten)]
    pub s3: S3Args,
}

/// Where models fetched from S3 are kept unless `SPHINX_MODEL_CACHE` says otherwise.
pub const DEFAULT_MODEL_CACHE: &str = "/tmp/sphinx-models";

impl Default for ModelCacheArgs {
    fn default() -> Self {
        Self {
            model_cache: PathBuf::from(DEFAULT_MODEL_CACHE),
            s3: S3Args::default(),
        }
    }
}

impl ModelCacheArgs {
    /// The local folder of a `--model` value: the folder itself, or the cached copy of an
    /// `s3://` model, fetched with these settings.
    pub async fn local_folder(&self, spec: &Path) -> Result<PathBuf> {
        local_folder(&spec.to_string_lossy(), &self.model_cache, &self.s3).await
    }

    /// The same, for the commands without an async runtime (`infer`, `eval`, `train`).
    pub fn local_folder_blocking(&self, spec: &Path) -> Result<PathBuf> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(self.local_folder(spec))
    }
}

/// The local folder of a `--model` value: the folder itself, or for
/// `s3://bucket/models/<run>/` (or `.../models/latest`) its copy in `cache`, fetched with
/// the environment's AWS settings. `sphinx run`, `serve` and `train` take models alike.
async fn local_folder(spec: &str, cache: &Path, s3: &S3Args) -> Result<PathBuf> {
    match ModelSource::parse(spec)? {
        ModelSource::Local(dir) => Ok(dir),
        ModelSource::S3 { bucket, prefix } => {
            let sdk = aws_config::load_from_env().await;
            let store = S3Store::new(crate::aws::s3_client(&sdk, s3), bucket.clone());
            fetch_to_cache(&store, &bucket, &prefix, cache)
                .await
                .with_context(|| format!("model {spec}"))
        }
    }
}

/// Resolves `prefix` (following a `latest` pointer) and copies the model files into
/// `cache/<bucket>/<prefix>/`, skipping files already there with the same size.
/// Returns the local folder.
pub async fn fetch_to_cache(
    store: &dyn ObjectStore,
    bucket: &str,
    prefix: &str,
    cache: &Path,
) -> Result<PathBuf> {
    let prefix = resolve_latest(store, prefix).await?;
    // The prefix becomes a folder: one that could leave the cache is refused.
    sphinx_core::store::validate_key(&prefix)
        .with_context(|| format!("model s3://{bucket}/{prefix} cannot be cached"))?;
    let dir = cache.join(bucket).join(&prefix);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create model cache {}", dir.display()))?;
    for name in MODEL_FILES {
        let key = format!("{prefix}/{name}");
        let info = store
            .head(&key)
            .await
            .with_context(|| format!("model file s3://{bucket}/{key}"))?;
        let local = dir.join(name);
        if std::fs::metadata(&local).is_ok_and(|m| m.len() == info.size) {
            continue;
        }
        tracing::info!(key, bytes = info.size, "downloading model file");
        let bytes = store
            .get(&key)
            .await
            .with_context(|| format!("cannot download s3://{bucket}/{key}"))?;
        // Write beside, then rename: a worker killed mid-download never leaves a
        // truncated file that a later start would take as complete.
        let partial = dir.join(format!(".{name}.partial"));
        std::fs::write(&partial, &bytes)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        std::fs::rename(&partial, &local)?;
    }
    Ok(dir)
}

/// `models/latest` -> `models/<run named in the pointer object>`; other prefixes unchanged.
async fn resolve_latest(store: &dyn ObjectStore, prefix: &str) -> Result<String> {
    if prefix != "latest" && !prefix.ends_with("/latest") {
        return Ok(prefix.to_string());
    }
    let pointer = store
        .get(prefix)
        .await
        .with_context(|| format!("cannot read the model pointer {prefix}"))?;
    let run = String::from_utf8_lossy(&pointer).trim().to_string();
    if run.is_empty() || run.contains('/') || run == "." || run == ".." {
        bail!("model pointer {prefix} holds {run:?}, not a run name");
    }
    let parent = prefix.rsplit_once('/').map_or("", |(p, _)| p);
    Ok(if parent.is_empty() {
        run
    } else {
        format!("{parent}/{run}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphinx_core::store::LocalStore;

    #[test]
    fn specs_parse() {
        assert_eq!(
            ModelSource::parse("s3://b/models/run-1/").unwrap(),
            ModelSource::S3 {
                bucket: "b".into(),
                prefix: "models/run-1".into()
            }
        );
        assert_eq!(
            ModelSource::parse("models/x").unwrap(),
            ModelSource::Local("models/x".into())
        );
        assert!(ModelSource::parse("s3://b").is_err());
        assert!(ModelSource::parse("s3:///x").is_err());
    }

    #[tokio::test]
    async fn latest_pointer_is_followed_and_files_are_cached_once() {
        let root = tempfile::tempdir().unwrap();
        let store = LocalStore::new(root.path()).unwrap();
        for name in MODEL_FILES {
            store
                .put(&format!("models/r7/{name}"), name.as_bytes().to_vec())
                .await
                .unwrap();
        }
        store.put("models/latest", b"r7\n".to_vec()).await.unwrap();
        let cache = tempfile::tempdir().unwrap();
        let dir = fetch_to_cache(&store, "bkt", "models/latest", cache.path())
            .await
            .unwrap();
        assert_eq!(dir, cache.path().join("bkt/models/r7"));
        assert_eq!(
            std::fs::read(dir.join("config.json")).unwrap(),
            b"config.json"
        );
        // Cached files of the right size are not downloaded again...
        store
            .put("models/r7/config.json", b"CONFIG.JSON".to_vec())
            .await
            .unwrap();
        fetch_to_cache(&store, "bkt", "models/r7", cache.path())
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(dir.join("config.json")).unwrap(),
            b"config.json"
        );
        // ...but a missing model file is an error naming it.
        store.delete("models/r7/tokenizer.json").await.unwrap();
        let err = fetch_to_cache(&store, "bkt", "models/r7", cache.path())
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("models/r7/tokenizer.json"),
            "{err:#}"
        );
        store.put("models/latest", b"../x".to_vec()).await.unwrap();
        let err = fetch_to_cache(&store, "bkt", "models/latest", cache.path())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a run name"), "{err}");
        // A prefix that would make a folder outside the cache is refused before any.
        let err = fetch_to_cache(&store, "bkt", "models/../../../escaped", cache.path())
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("cannot be cached"), "{err:#}");
        assert!(!cache.path().join("../escaped").exists());
    }
}
