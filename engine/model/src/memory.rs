//! Will a model fit its device? Checked from the weights file's header and the config
//! before anything is allocated, so a model too large for the card (SPHINX-MoE's
//! Mixtral-8x7B alone is ~93 GB in bfloat16) fails at once with the sizes it needs instead
//! of a CUDA out-of-memory error half way through loading.
//!
//! [`crate::model_folder::load`] (every command) and the trainer (fine-tuning a folder)
//! call [`ensure_fits`] first.
//!
//! What is counted: every tensor of the weights at the kind the model runs in (bfloat16 on
//! a GPU, float32 on the CPU: [`crate::sphinx::cast_for_gpu`]), plus the KV cache of ONE
//! sequence of `max_seq_len` positions, the least any generation needs. Activations and
//! batching come on top; the check is a floor, not a promise.
//!
//! Where the free memory comes from: `SPHINX_DEVICE_MEMORY_BYTES` when set (containers that
//! hide the card's totals, and tests; one figure for every device, or a comma list, one
//! per device of a placement in order), else `MemAvailable` of `/proc/meminfo` for the CPU
//! and `nvidia-smi --query-gpu=memory.free` for CUDA device N. When neither is known the
//! check is skipped (and says so in the log): refusing a model that might fit would be worse.

use std::path::Path;

use tch::Device;

use crate::config::LlamaConfig;
use crate::weights;

/// Overrides the free memory of the device, in bytes.
pub const MEMORY_ENV: &str = "SPHINX_DEVICE_MEMORY_BYTES";

/// Why a model cannot be run on a device.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(
        "the model does not fit {device}: it needs {need} (weights {weights} as {kind} + KV \
         cache {kv} for {positions} positions) but {free} is free{source_note}",
        need = gib(*weights + *kv),
        weights = gib(*weights),
        kv = gib(*kv),
        free = gib(*free)
    )]
    DoesNotFit {
        device: String,
        weights: u64,
        kv: u64,
        kind: &'static str,
        positions: i64,
        free: u64,
        source_note: String,
    },
    #[error("cannot size the model: {0}")]
    Weights(#[from] weights::WeightsError),
}

/// Bytes as GiB (or MiB below one GiB) with two decimals (`"26.03 GiB"`).
pub(crate) fn gib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// What a model needs on a device, from its weights file and LLM config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub weights: u64,
    pub kv_cache: u64,
    /// Bytes per element of the kind the model runs in.
    pub elem: u64,
}

impl Need {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache
    }
}

/// Bytes per element the model runs in on `device` (bfloat16 on CUDA, float32 on the CPU).
pub fn run_elem_bytes(device: Device) -> u64 {
    if device.is_cuda() {
        2
    } else {
        4
    }
}

/// The need of the weights at `path` and an LLM of `llm`'s sizes on `device`.
pub fn need(path: &Path, llm: &LlamaConfig, device: Device) -> Result<Need, MemoryError> {
    let elem = run_elem_bytes(device);
    let elements: u64 = weights::list_tensors(path)?
        .values()
        .map(|shape| shape.iter().product::<i64>().max(0) as u64)
        .sum();
    // Keys and values of every layer: 2 x layers x kv_heads x head_dim per position.
    let per_position = 2 * llm.n_layers * llm.kv_heads() * llm.head_dim();
    Ok(Need {
        weights: elements * elem,
        kv_cache: (per_position * llm.max_seq_len).max(0) as u64 * elem,
        elem,
    })
}

/// Free memory of `device` and where the figure came from, if it can be known.
pub fn free_memory(device: Device) -> Option<(u64, String)> {
    free_memory_at(device, 0)
}

/// [`free_memory`] of the `slot`-th device of a placement: `SPHINX_DEVICE_MEMORY_BYTES`
/// may list one figure per device (`80000000000,80000000000`); a single figure is every
/// device's.
pub fn free_memory_at(device: Device, slot: usize) -> Option<(u64, String)> {
    if let Ok(v) = std::env::var(MEMORY_ENV) {
        let figures: Vec<&str> = v.split(',').map(str::trim).collect();
        let figure = figures
            .get(slot)
            .or(figures.first().filter(|_| figures.len() == 1));
        if let Some(bytes) = figure.and_then(|f| f.parse::<u64>().ok()) {
            return Some((bytes, format!(" ({MEMORY_ENV})")));
        }
    }
    match device {
        Device::Cpu => {
            let info = std::fs::read_to_string("/proc/meminfo").ok()?;
            let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some((kib * 1024, " (MemAvailable)".into()))
        }
        Device::Cuda(i) => {
            let out = std::process::Command::new("nvidia-smi")
                .args([
                    "--query-gpu=memory.free",
                    "--format=csv,noheader,nounits",
                    &format!("--id={i}"),
                ])
                .output()
                .ok()?;
            let mib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
            Some((mib << 20, " (nvidia-smi)".into()))
        }
        _ => None,
    }
}

/// Refuses a model whose [`need`] exceeds `free` bytes on `device`.
pub fn check(
    need: &Need,
    llm: &LlamaConfig,
    device: Device,
    free: u64,
    source_note: &str,
) -> Result<(), MemoryError> {
    if need.total() <= free {
        return Ok(());
    }
    Err(MemoryError::DoesNotFit {
        device: format!("{device:?}"),
        weights: need.weights,
        kv: need.kv_cache,
        kind: if need.elem == 2 {
            "bfloat16"
        } else {
            "float32"
        },
        positions: llm.max_seq_len,
        free,
        source_note: source_note.to_owned(),
    })
}

/// [`need`] then [`check`] against the device's [`free_memory`] (skipped, with a log line,
/// when it cannot be known).
pub fn ensure_fits(path: &Path, llm: &LlamaConfig, device: Device) -> Result<Need, MemoryError> {
    let need = need(path, llm, device)?;
    match free_memory(device) {
        Some((free, note)) => check(&need, llm, device, free, &note)?,
        None => tracing::warn!(
            "free memory of {device:?} unknown: not checking that the model ({}) fits",
            gib(need.total())
        ),
    }
    Ok(need)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn the_override_gives_one_figure_for_all_devices_or_one_each() {
        // The only test of this binary that reads the variable.
        std::env::set_var(MEMORY_ENV, "1000");
        assert_eq!(free_memory_at(Device::Cuda(3), 2).unwrap().0, 1000);
        std::env::set_var(MEMORY_ENV, "1000, 2000");
        let at = |slot| free_memory_at(Device::Cuda(slot), slot).map(|f| f.0);
        assert_eq!((at(0), at(1)), (Some(1000), Some(2000)));
        assert!(free_memory_at(Device::Cuda(0), 0)
            .unwrap()
            .1
            .contains(MEMORY_ENV));
        std::env::remove_var(MEMORY_ENV);
    }

    #[test]
    fn counts_weights_at_the_run_kind_and_one_kv_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Tensor::zeros([10, 10], (Kind::BFloat16, Device::Cpu));
        let b = Tensor::zeros([5], (Kind::Float, Device::Cpu));
        Tensor::write_safetensors(&[("a", &a), ("b", &b)], &path).unwrap();
        let llm = LlamaConfig::tiny_test(); // 2 layers, 2 KV heads of 16, 128 positions
        let cpu = need(&path, &llm, Device::Cpu).unwrap();
        assert_eq!(cpu.weights, 105 * 4);
        assert_eq!(cpu.kv_cache, 2 * 2 * 2 * 16 * 128 * 4);
        let gpu = need(&path, &llm, Device::Cuda(0)).unwrap();
        assert_eq!((gpu.weights, gpu.kv_cache), (105 * 2, cpu.kv_cache / 2));
        assert!(check(&cpu, &llm, Device::Cpu, cpu.total(), "").is_ok());
        let err = check(&cpu, &llm, Device::Cpu, 1000, " (test)")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not fit Cpu")
                && err.contains("as float32")
                && err.contains("128 positions")
                && err.contains("(test)"),
            "{err}"
        );
    }
}
