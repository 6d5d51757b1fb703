//! Autoregressive generation over a batch of pages whose sequences differ in length.
//!
//! Follows `MetaModel.generate` of LLaMA2-Accessory (`accessory/model/meta.py`): greedy
//! argmax when the temperature is 0, otherwise softmax(logits / temperature) then top-p
//! (nucleus) sampling with the reference's `sample_top_p` rule (keep the sorted tokens
//! whose preceding cumulative mass is at most `top_p`); a row stops when its newest
//! tokens equal a stop sequence (EOS, or the tokens of the conversation's end signal),
//! which is cut from the output; at most `max_new_tokens` are generated.
//!
//! Unlike the reference, which right-pads prompts and feeds the longer prompts' tail
//! through the decode loop, every row is prefilled alone into its slot of one KV cache
//! and then decoded at its own positions with the others (the `decoder` module, which
//! also holds `generate`), so a row
//! computes what it would compute alone. Under greedy decoding a batch therefore yields
//! the same tokens as one run per row (`tests/batched_generation.rs`). Sampling draws
//! from a per-row generator seeded by `seed + row`, so it is reproducible too. Choice,
//! stop checks and budgets run on the device; the host reads them every [`READ_EVERY`]
//! steps.

use crate::llama::LlamaError;

/// Why a batch could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("generation needs at least one sequence")]
    EmptyBatch,
    #[error("sequence {index}: input embeddings must be [len >= 1, {dim}], got {shape:?}")]
    Shape {
        index: usize,
        dim: i64,
        shape: Vec<i64>,
    },
    #[error(
        "sequence {index} of {len} positions plus {max_new} new tokens exceeds the model's \
         {limit} positions"
    )]
    TooLong {
        index: usize,
        len: i64,
        max_new: usize,
        limit: i64,
    },
    #[error("sequence {index} is {shape:?}; rows admitted together must all be {expected:?}")]
    GroupShape {
        index: usize,
        shape: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("invalid sampling: {0}")]
    Sampling(String),
    #[error("stop sequence {index} is empty")]
    EmptyStop { index: usize },
    #[error(transparent)]
    Llama(#[from] LlamaError),
    #[error("libtorch rejected the operation: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Graph(#[from] sphinx_cuda_graph::GraphError),
    #[error("CUDA graphs need the whole model on one CUDA device; it is on {0}")]
    GraphDevices(String),
}

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// Argmax (the reference's `temperature == 0`).
    Greedy,
    /// Softmax at `temperature`, nucleus of mass `top_p`, per-row generator `seed + row`.
    TopP {
        temperature: f64,
        top_p: f64,
        seed: u64,
    },
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Token sequences that end a row (EOS as `[eos]`, the end signal's tokens, ...).
    pub stop: Vec<Vec<i64>>,
    /// Ids the tokenizer can decode (`Some(n)`: only `0..n` are ever chosen). Models
    /// often pad their embedding table past the vocabulary; those rows are not tokens.
    pub vocab: Option<i64>,
}

/// Why a row stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Its newest tokens equalled `GenerateConfig::stop[index]`.
    Sequence { index: usize },
    /// `max_new_tokens` were generated.
    MaxTokens,
}

/// One row's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// New tokens, the matched stop sequence removed.
    pub tokens: Vec<i64>,
    /// Tokens actually generated (stop sequence included).
    pub generated: usize,
    pub stop: Stop,
}

/// Steps between the host's reads of which rows have stopped.
pub const READ_EVERY: usize = 8;

pub(crate) fn check_config(cfg: &GenerateConfig) -> Result<(), GenerateError> {
    if let Some(index) = cfg.stop.iter().position(Vec::is_empty) {
        return Err(GenerateError::EmptyStop { index });
    }
    if let Sampling::TopP {
        temperature, top_p, ..
    } = cfg.sampling
    {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(GenerateError::Sampling(format!(
                "temperature must be positive and finite, got {temperature}"
            )));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(GenerateError::Sampling(format!(
                "top_p must be in (0, 1], got {top_p}"
            )));
        }
    }
    Ok(())
}
