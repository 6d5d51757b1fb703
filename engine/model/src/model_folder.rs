//! The model folder: what `scripts/convert_checkpoint.py`, `scripts/convert_tokenizer.py`
//! and `sphinx train` write and every command loads: `config.json` ([`ModelConfig`]),
//! `model.safetensors` (the weights, reference names) and `tokenizer.json`. The one list
//! of its file names, and the one loader.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sphinx_core::tiling::TileConfig;
use tch::{nn, Device};

use crate::config::{ModelConfig, SphinxConfig};
use crate::mov::MovConfig;
use crate::sphinx::{self, Sphinx};
use crate::tokenizer::Tokenizer;
use crate::weights;

/// The model's sizes and layout.
pub const CONFIG_FILE: &str = "config.json";
/// The weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The tokenizer (Hugging Face `tokenizers` JSON).
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Every file of a model folder.
pub const FILES: [&str; 3] = [CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE];

/// A loaded model: weights, tokenizer and the tiling its views need.
pub struct Loaded {
    pub id: String,
    pub model: Sphinx,
    pub tokenizer: Tokenizer,
    pub tile: TileConfig,
    pub device: Device,
    _vs: nn::VarStore,
}

/// Loads a converted model folder onto `device`.
pub fn load(dir: &Path, device: Device) -> Result<Loaded> {
    // A trained folder may carry its own encoder sizes (`vision`); a converted release
    // gets the encoders of its llama_type.
    let cfg = ModelConfig::from_json_file(&dir.join(CONFIG_FILE))?;
    load_with(dir, device, &cfg.sphinx, &cfg.vision())
}

/// Loads with an explicit vision config (tests use tiny encoders).
pub fn load_with(
    dir: &Path,
    device: Device,
    cfg: &SphinxConfig,
    vision: &MovConfig,
) -> Result<Loaded> {
    let weights_path = dir.join(WEIGHTS_FILE);
    check_skip_token(&weights_path, cfg.skip_tokens)?;
    // Before anything is allocated: a model too large for the device fails with its sizes.
    crate::memory::ensure_fits(&weights_path, &cfg.llm, device)?;
    let mut vs = nn::VarStore::new(device);
    let model = Sphinx::build(&vs.root(), &cfg.llm, vision, cfg.skip_tokens)?;
    // On a GPU the model runs in bfloat16, as the reference serves (see `cast_for_gpu`).
    // On the CPU it stays float32 (the precision the parity tests prove).
    // cuDNN's benchmark mode stays off: it re-tunes for every new shape, and decoding
    // makes a new attention shape at every step (measured: 4x slower decode).
    if device.is_cuda() {
        sphinx::cast_for_gpu(&mut vs);
    }
    weights::load_files(&mut vs, &[weights_path.as_path()])
        .with_context(|| format!("cannot load weights {}", weights_path.display()))?;
    let tokenizer = Tokenizer::from_file(&dir.join(TOKENIZER_FILE))?;
    if tokenizer.vocab_size() as i64 > cfg.llm.vocab_size {
        bail!(
            "{} has {} pieces but the model's vocab_size ({}) is {}: the tokenizer belongs to \
             another model",
            dir.join(TOKENIZER_FILE).display(),
            tokenizer.vocab_size(),
            dir.join(CONFIG_FILE).display(),
            cfg.llm.vocab_size
        );
    }
    let tile = vision.tiling(cfg.skip_tokens);
    let id = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    Ok(Loaded {
        id,
        model,
        tokenizer,
        tile,
        device,
        _vs: vs,
    })
}

/// Refuses a model folder whose `config.json` and weights disagree on the skip token, so
/// a released model is never fed an embedding it never saw and a trained one never loses
/// its own.
fn check_skip_token(weights_path: &Path, claimed: bool) -> Result<()> {
    let name = format!("{}.{}", sphinx::ROOT_NAME, sphinx::SKIP_TOKEN_NAME);
    let present = weights::list_tensors(weights_path)?.contains_key(&name);
    match (claimed, present) {
        (true, false) => bail!(
            "{}: config.json says skip_tokens: true but the weights have no tensor {name} \
             (a released checkpoint has none: convert it with scripts/convert_checkpoint.py, \
             which writes skip_tokens: false)",
            weights_path.display()
        ),
        (false, true) => bail!(
            "{}: config.json says skip_tokens: false but the weights carry {name}; set \
             skip_tokens: true or re-convert the checkpoint",
            weights_path.display()
        ),
        _ => Ok(()),
    }
}
