//! The model folder: what `scripts/convert_checkpoint.py`, `scripts/convert_tokenizer.py`
//! and `sphinx train` write and every command loads: `config.json` ([`ModelConfig`]),
//! `model.safetensors` (the weights, reference names) and `tokenizer.json`. The one list
//! of its file names, and the one loader.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sphinx_core::tiling::TileConfig;
use tch::{nn, Device};

use crate::config::{ModelConfig, SphinxConfig};
use crate::memory;
use crate::mov::MovConfig;
use crate::param_names;
use crate::placement::{self, DeviceFree, PartPaths, Plan};
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
    /// Where pages go in and results come out: the front's device (encoders, embeddings).
    pub device: Device,
    /// Where each part lives (one device unless placed across several).
    pub placement: Plan,
    _stores: Vec<nn::VarStore>,
}

/// The id results name a model by ([`Loaded::id`]): its folder's name, known before the
/// weights are read.
pub fn model_id(dir: &Path) -> String {
    dir.canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Loads a converted model folder onto `device`.
pub fn load(dir: &Path, device: Device) -> Result<Loaded> {
    // A trained folder may carry its own encoder sizes (`vision`); a converted release
    // gets the encoders of its llama_type.
    let cfg = ModelConfig::from_json_file(&dir.join(CONFIG_FILE))?;
    load_with(dir, device, &cfg.sphinx, &cfg.vision())
}

/// Loads a model folder across `devices` (in pipeline order): on one device as [`load`];
/// on several, placed by [`placement::plan`] from the weights' sizes and each device's
/// free memory, the fewest devices that hold it, balanced.
pub fn load_on(dir: &Path, devices: &[Device]) -> Result<Loaded> {
    let cfg = ModelConfig::from_json_file(&dir.join(CONFIG_FILE))?;
    let (sphinx, vision) = (&cfg.sphinx, cfg.vision());
    match devices {
        [] => bail!("no device given to load {}", dir.display()),
        [device] => return load_with(dir, *device, sphinx, &vision),
        _ => {}
    }
    let plan = plan_for(&dir.join(WEIGHTS_FILE), &sphinx.llm, devices)?;
    tracing::info!("placing {}: {plan}", dir.display());
    load_planned(dir, sphinx, &vision, &plan)
}

/// The placement of the weights at `weights_path` on `devices`, from each device's free
/// memory ([`memory::free_memory_at`]); refuses what cannot be placed.
pub fn plan_for(
    weights_path: &Path,
    llm: &crate::config::LlamaConfig,
    devices: &[Device],
) -> Result<Plan> {
    if devices.is_empty() {
        bail!("no device to place the model on");
    }
    for (i, d) in devices.iter().enumerate() {
        if devices[..i].contains(d) {
            bail!("device {d:?} is listed twice");
        }
    }
    let cuda = devices.iter().filter(|d| d.is_cuda()).count();
    if cuda != 0 && cuda != devices.len() {
        bail!(
            "cannot place one model on the CPU and GPUs at once (it runs in float32 on the \
             CPU, bfloat16 on a GPU): list only GPUs, got {devices:?}"
        );
    }
    let elem = memory::run_elem_bytes(devices[0]);
    let sizes = placement::part_sizes(weights_path, llm, elem)?;
    let mut free = Vec::with_capacity(devices.len());
    for (slot, &device) in devices.iter().enumerate() {
        let Some((bytes, _)) = memory::free_memory_at(device, slot) else {
            bail!(
                "cannot place the model: the free memory of {device:?} is unknown (set {})",
                memory::MEMORY_ENV
            );
        };
        free.push(DeviceFree {
            device,
            free: bytes,
        });
    }
    Ok(placement::plan(&sizes, &free)?)
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
    memory::ensure_fits(&weights_path, &cfg.llm, device)?;
    let plan = Plan::single(device, cfg.llm.n_layers.max(0) as usize);
    load_planned(dir, cfg, vision, &plan)
}

/// Loads with every part on the device `plan` gives it: one variable store per slot, so
/// each part is created (and its weights copied) on its own device only.
pub fn load_planned(
    dir: &Path,
    cfg: &SphinxConfig,
    vision: &MovConfig,
    plan: &Plan,
) -> Result<Loaded> {
    let weights_path = dir.join(WEIGHTS_FILE);
    check_skip_token(&weights_path, cfg.skip_tokens)?;
    if plan.layers.len() as i64 != cfg.llm.n_layers {
        bail!(
            "the placement has {} layers, {} has {}",
            plan.layers.len(),
            dir.join(CONFIG_FILE).display(),
            cfg.llm.n_layers
        );
    }
    let mut stores: Vec<nn::VarStore> =
        plan.devices.iter().map(|&d| nn::VarStore::new(d)).collect();
    let model = Sphinx::build_parts(
        &PartPaths::planned(&stores, plan),
        &cfg.llm,
        vision,
        cfg.skip_tokens,
    )?;
    // On a GPU the model runs in bfloat16, as the reference serves (see `cast_for_gpu`).
    // On the CPU it stays float32 (the precision the parity tests prove).
    // cuDNN's benchmark mode stays off: it re-tunes for every new shape, and decoding
    // makes a new attention shape at every step (measured: 4x slower decode).
    for vs in stores.iter_mut().filter(|vs| vs.device().is_cuda()) {
        sphinx::cast_for_gpu(vs);
    }
    weights::load_stores(&mut stores, &[weights_path.as_path()])
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
    Ok(Loaded {
        id: model_id(dir),
        model,
        tokenizer,
        tile,
        device: plan.devices[plan.front],
        placement: plan.clone(),
        _stores: stores,
    })
}

/// Refuses a model folder whose `config.json` and weights disagree on the skip token, so
/// a released model is never fed an embedding it never saw and a trained one never loses
/// its own.
fn check_skip_token(weights_path: &Path, claimed: bool) -> Result<()> {
    let name = format!("{}.{}", param_names::ROOT_NAME, sphinx::SKIP_TOKEN_NAME);
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
