//! `sphinx-model`: SPHINX-X (Mixture of Visual experts + projector + skip tokens +
//! LLaMA-family LLM) on tch/libtorch, loading converted safetensors checkpoints.
//!
//! One file per component, each readable next to its paragraph of the SPHINX-X paper.

pub mod char_tokenizer;
pub mod clip;
pub mod config;
pub mod conversation;
pub mod convnext;
pub mod dataset;
pub mod decode_graphs;
pub mod decoder;
pub mod dinov2;
pub mod generate;
pub mod kv_cache;
mod layers;
pub mod llama;
pub mod memory;
pub mod model_folder;
pub mod moe;
pub mod mov;
pub mod param_names;
pub mod placement;
pub mod qformer;
pub mod rope;
pub mod seeded;
pub mod sphinx;
mod splitmix;
pub mod tokenizer;
#[cfg(feature = "train")]
pub mod train;
pub mod views;
pub mod vision_error;
pub mod weights;

// The types other crates use, at the root: `sphinx_model::Sphinx`, not its module path.
pub use config::{ModelConfig, SphinxConfig};
pub use conversation::Template;
pub use decoder::{generate, Decoder};
pub use generate::{GenerateConfig, Generated, Sampling};
pub use model_folder::Loaded;
pub use mov::{MovConfig, ViewLayout};
pub use sphinx::{page_input, PageInput, Sphinx};
pub use tokenizer::Tokenizer;
#[cfg(feature = "train")]
pub use train::{
    checkpoint::Output, spec::TrainSpec, trainer::RunControl, trainer::TrainOutcome,
    trainer::Trainer,
};
