//! Training state in an object store: periodic checkpoints, the newest one found by
//! listing, and the exported model with its `latest` pointer.
//!
//! Everything goes through [`sphinx_core::store::ObjectStore`], so a local folder and S3
//! behave the same. A checkpoint is `<prefix>checkpoints/<run>/step-NNNNNNNN/` holding
//! `trainable.safetensors` (the trained parameters; frozen ones are rebuilt from the
//! model source), `optimizer.safetensors` (AdamW moments and float32 masters),
//! `metrics.jsonl` (the run's history so far) and `state.json` (step, data cursor, seed),
//! written LAST: a checkpoint without `state.json` was interrupted and is ignored.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sphinx_core::store::{ObjectStore, StoreError};
use tch::Tensor;

use crate::dataset::Cursor;

/// Object names inside a checkpoint and a model folder.
pub const STATE: &str = "state.json";
pub const TRAINABLE: &str = "trainable.safetensors";
pub const OPTIMIZER: &str = "optimizer.safetensors";
pub const METRICS: &str = "metrics.jsonl";
pub const LATEST: &str = "latest";

/// Why saving or loading training state failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("checkpoint {key}: {reason}")]
    Bad { key: String, reason: String },
}

/// The small part of a checkpoint: where the run is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: u64,
    /// Where the data mixture continues.
    pub cursor: Cursor,
    /// The run's seed (data order; initialisation); a resume checks it is unchanged.
    pub seed: u64,
    /// The job spec the run started with, for the record.
    pub spec: serde_json::Value,
}

/// A store plus a key prefix (`""` or ending in `/`), used synchronously from the
/// training loop: the caller's runtime (`sphinx train` owns it) drives the async store.
pub struct Output {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    rt: tokio::runtime::Handle,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// `step-NNNNNNNN` (zero-padded so listing order is step order).
pub fn step_dir(step: u64) -> String {
    format!("step-{step:08}")
}

impl Output {
    /// Keys under `prefix` in `store`, whose calls run on `rt` (a runtime the caller
    /// keeps; the training loop must not run on one of its worker threads).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        rt: tokio::runtime::Handle,
    ) -> Result<Self, CheckpointError> {
        let prefix = match prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        Ok(Self { store, prefix, rt })
    }

    fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    /// Writes `rel` (relative to the prefix).
    pub fn put(&self, rel: &str, body: Vec<u8>) -> Result<(), CheckpointError> {
        let key = self.key(rel);
        Ok(self.rt.block_on(self.store.put(&key, body))?)
    }

    /// Reads `rel`.
    pub fn get(&self, rel: &str) -> Result<Vec<u8>, CheckpointError> {
        let key = self.key(rel);
        Ok(self.rt.block_on(self.store.get(&key))?)
    }

    /// Keys (relative to the prefix) starting with `rel`.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, CheckpointError> {
        let key = self.key(rel);
        let keys = self.rt.block_on(self.store.list(&key))?;
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_owned))
            .collect())
    }

    /// `checkpoints/<run>/`.
    pub fn checkpoints_of(run: &str) -> String {
        format!("checkpoints/{run}/")
    }

    /// The newest complete checkpoint of `run` (`checkpoints/<run>/step-N/`), if any.
    pub fn newest_checkpoint(&self, run: &str) -> Result<Option<String>, CheckpointError> {
        let base = Self::checkpoints_of(run);
        let newest = self
            .list(&base)?
            .into_iter()
            .filter(|k| k.ends_with(&format!("/{STATE}")))
            .filter_map(|k| k.strip_suffix(STATE).map(str::to_owned))
            .filter(|d| d[base.len()..].starts_with("step-"))
            .max();
        Ok(newest)
    }

    /// Writes one checkpoint; `state.json` last.
    pub fn save_checkpoint(
        &self,
        run: &str,
        state: &TrainState,
        trainable: &[(String, Tensor)],
        optimizer: &[(String, Tensor)],
        metrics: &[String],
    ) -> Result<String, CheckpointError> {
        let dir = format!("{}{}/", Self::checkpoints_of(run), step_dir(state.step));
        self.put(
            &format!("{dir}{TRAINABLE}"),
            safetensors_bytes(trainable, &dir)?,
        )?;
        self.put(
            &format!("{dir}{OPTIMIZER}"),
            safetensors_bytes(optimizer, &dir)?,
        )?;
        self.put(&format!("{dir}{METRICS}"), lines(metrics))?;
        let json = serde_json::to_vec_pretty(state).expect("state serializes");
        self.put(&format!("{dir}{STATE}"), json)?;
        Ok(dir)
    }

    /// Reads a checkpoint written by [`Output::save_checkpoint`].
    #[allow(clippy::type_complexity)]
    pub fn load_checkpoint(
        &self,
        dir: &str,
    ) -> Result<
        (
            TrainState,
            Vec<(String, Tensor)>,
            Vec<(String, Tensor)>,
            Vec<String>,
        ),
        CheckpointError,
    > {
        let bad = |reason: String| CheckpointError::Bad {
            key: self.key(dir),
            reason,
        };
        let state: TrainState = serde_json::from_slice(&self.get(&format!("{dir}{STATE}"))?)
            .map_err(|e| bad(format!("state.json: {e}")))?;
        let trainable = tensors_from_bytes(&self.get(&format!("{dir}{TRAINABLE}"))?, dir)?;
        let optimizer = tensors_from_bytes(&self.get(&format!("{dir}{OPTIMIZER}"))?, dir)?;
        let metrics = String::from_utf8_lossy(&self.get(&format!("{dir}{METRICS}"))?)
            .lines()
            .map(str::to_owned)
            .collect();
        Ok((state, trainable, optimizer, metrics))
    }

    /// Publishes a model folder `models/<run>/` then the `models/latest` pointer.
    pub fn export_model(
        &self,
        run: &str,
        files: Vec<(&str, Vec<u8>)>,
    ) -> Result<String, CheckpointError> {
        let dir = format!("models/{run}/");
        for (name, body) in files {
            self.put(&format!("{dir}{name}"), body)?;
        }
        self.put(&format!("models/{LATEST}"), format!("{run}\n").into_bytes())?;
        Ok(self.key(&dir))
    }
}

/// JSONL body of lines.
pub fn lines(v: &[String]) -> Vec<u8> {
    v.iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

/// A safetensors file of named tensors, as bytes (written through a temp file, tch's
/// only safetensors writer).
pub fn safetensors_bytes(
    named: &[(String, Tensor)],
    what: &str,
) -> Result<Vec<u8>, CheckpointError> {
    let io = |e: String| CheckpointError::Bad {
        key: what.to_owned(),
        reason: e,
    };
    let tmp = tempfile::NamedTempFile::new().map_err(|e| io(e.to_string()))?;
    let cpu: Vec<(String, Tensor)> = named
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.detach().to_device(tch::Device::Cpu).contiguous(),
            )
        })
        .collect();
    Tensor::write_safetensors(&cpu, tmp.path()).map_err(|e| io(e.to_string()))?;
    std::fs::read(tmp.path()).map_err(|e| io(e.to_string()))
}

/// Named CPU tensors of a safetensors body.
pub fn tensors_from_bytes(
    bytes: &[u8],
    what: &str,
) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let io = |e: String| CheckpointError::Bad {
        key: what.to_owned(),
        reason: e,
    };
    let tmp = tempfile::NamedTempFile::new().map_err(|e| io(e.to_string()))?;
    std::fs::write(tmp.path(), bytes).map_err(|e| io(e.to_string()))?;
    Tensor::read_safetensors(tmp.path()).map_err(|e| io(e.to_string()))
}
