//! A random-weight nano SPHINX-X in a model folder: what `sphinx run` uses when no
//! trained model is given or bundled, so the pipeline can be shown end to end. Its
//! results are noise, which `sphinx run` says loudly and the model id says in every
//! result.

use std::path::Path;

use anyhow::{Context, Result};
use sphinx_model::char_tokenizer;
use sphinx_model::model_folder;
use sphinx_model::ModelConfig;
use sphinx_model::Sphinx;
use tch::{nn, Device, Tensor};

/// The folder name, hence the model id written into every result.
pub const RANDOM_MODEL_ID: &str = "random-untrained-nano";
/// Fixed seed: every machine gets the same random model (and the same noise).
const SEED: i64 = 0;

/// Writes the model into `dir` unless it is already there.
pub fn ensure(dir: &Path) -> Result<()> {
    if model_folder::FILES.iter().all(|f| dir.join(f).exists()) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cfg = ModelConfig::nano();
    std::fs::write(
        dir.join(model_folder::CONFIG_FILE),
        serde_json::to_vec_pretty(&cfg)?,
    )?;
    std::fs::write(
        dir.join(model_folder::TOKENIZER_FILE),
        char_tokenizer::tokenizer_json(),
    )?;
    let vs = nn::VarStore::new(Device::Cpu);
    sphinx_model::seeded::with_seed(SEED, || {
        Sphinx::build(
            &vs.root(),
            &cfg.sphinx.llm,
            &cfg.vision(),
            cfg.sphinx.skip_tokens,
        )
    })?;
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    // Written last: its presence marks a complete folder.
    let tmp = dir.join(".model.safetensors.partial");
    Tensor::write_safetensors(&named, &tmp)?;
    std::fs::rename(&tmp, dir.join(model_folder::WEIGHTS_FILE))?;
    Ok(())
}
