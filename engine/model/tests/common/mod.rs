//! What the model's test binaries share: finding the reference fixtures that
//! `scripts/fixtures.d/` makes under `target/fixtures/` (each set by one generator,
//! whose command a missing fixture names), and reading them.
#![allow(dead_code)] // each test binary uses the part it needs

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use tch::Tensor;

/// The workspace root (tests run from the crate's folder).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One fixture set: the folder under `target/fixtures/` and the command that makes it.
pub struct Fixtures {
    dir: &'static str,
    generator: &'static str,
}

impl Fixtures {
    /// `generator` is run from the workspace root, e.g. `scripts/parity/llama.py`.
    pub const fn new(dir: &'static str, generator: &'static str) -> Self {
        Self { dir, generator }
    }

    /// The path of `rel` in this set; a missing file fails the test with the command
    /// that makes it, since a stale checkout is the usual cause.
    pub fn path(&self, rel: &str) -> PathBuf {
        let p = workspace().join("target/fixtures").join(self.dir).join(rel);
        assert!(
            p.exists(),
            "missing fixture {}: run `{}` from the workspace root",
            p.display(),
            self.command()
        );
        p
    }

    /// The command that remakes this set, for messages.
    pub fn command(&self) -> String {
        format!(".venv/bin/python {}", self.generator)
    }

    /// The tensors of the safetensors file `rel`, by name.
    pub fn tensors(&self, rel: &str) -> HashMap<String, Tensor> {
        tensors(&self.path(rel))
    }

    /// The JSON file `rel`, parsed.
    pub fn json<T: DeserializeOwned>(&self, rel: &str) -> T {
        let path = self.path(rel);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
    }
}

/// The tensors of a safetensors file, by name.
pub fn tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .into_iter()
        .collect()
}
