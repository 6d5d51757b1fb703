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
//! through the decode loop, every row is **left-padded** to the longest sequence and
//! prefilled in one pass: padding slots are hidden by the key mask, and each row gets its
//! own RoPE positions (`0..len` for its tokens, then `len + step`), so a row computes what
//! it would compute alone. Under greedy decoding a batch therefore yields the same tokens
//! as one run per row (`tests/batched_generation.rs`). Sampling draws from a per-row
//! generator seeded by `seed + row`, so it is reproducible too.

use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};

use crate::llama::{KvCache, Llama, LlamaError, ROPE_TABLE_FACTOR};

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
    #[error("invalid sampling: {0}")]
    Sampling(String),
    #[error("stop sequence {index} is empty")]
    EmptyStop { index: usize },
    #[error(transparent)]
    Llama(#[from] LlamaError),
    #[error("libtorch rejected the operation: {0}")]
    Torch(#[from] tch::TchError),
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

/// A batch's outputs (in input order) and where its time went.
#[derive(Debug)]
pub struct Batch {
    pub outputs: Vec<Generated>,
    pub prefill: Duration,
    pub decode: Duration,
}

/// Generates for each of `seqs` (input embeddings `[len_i, dim]`: BOS, visual block, prompt
/// text) with one prefill and one decode loop for the whole batch.
pub fn generate(
    llm: &Llama,
    seqs: &[Tensor],
    cfg: &GenerateConfig,
) -> Result<Batch, GenerateError> {
    let dim = llm.config().dim;
    let limit = llm.config().max_seq_len * ROPE_TABLE_FACTOR;
    check_config(cfg)?;
    let first = seqs.first().ok_or(GenerateError::EmptyBatch)?;
    let (kind, device) = (first.kind(), first.device());
    let mut lens = Vec::with_capacity(seqs.len());
    for (index, s) in seqs.iter().enumerate() {
        let shape = s.size();
        if shape.len() != 2 || shape[0] < 1 || shape[1] != dim {
            return Err(GenerateError::Shape { index, dim, shape });
        }
        if shape[0] + cfg.max_new_tokens as i64 > limit {
            return Err(GenerateError::TooLong {
                index,
                len: shape[0],
                max_new: cfg.max_new_tokens,
                limit,
            });
        }
        lens.push(shape[0]);
    }
    let b = seqs.len() as i64;
    let longest = *lens.iter().max().expect("non-empty batch");
    let capacity = longest + cfg.max_new_tokens as i64;
    let pads: Vec<i64> = lens.iter().map(|l| longest - l).collect();

    // Left-padded inputs, the key mask over every slot, and per-row positions.
    let embeds = Tensor::zeros([b, longest, dim], (kind, device));
    let mut mask_rows = Vec::with_capacity(seqs.len());
    let mut pos_rows = Vec::with_capacity(seqs.len());
    for (i, s) in seqs.iter().enumerate() {
        let pad = pads[i];
        embeds
            .get(i as i64)
            .narrow(0, pad, lens[i])
            .copy_(&s.to_kind(kind).to_device(device));
        mask_rows.extend((0..capacity).map(|slot| slot >= pad));
        pos_rows.extend((0..longest).map(|slot| (slot - pad).max(0)));
    }
    let key_mask = Tensor::from_slice(&mask_rows)
        .view([b, capacity])
        .to_device(device);
    let positions = Tensor::from_slice(&pos_rows)
        .view([b, longest])
        .to_device(device);

    let started = Instant::now();
    let mut cache = KvCache::new(llm.config(), b, capacity, kind, device);
    let hidden = llm.forward_embeds_at(
        &embeds,
        0,
        Some(&positions),
        Some(&mut cache),
        Some(&key_mask.narrow(1, 0, longest)),
    )?;
    let mut logits = llm
        .logits(&hidden.narrow(1, longest - 1, 1))
        .squeeze_dim(1)
        .to_kind(Kind::Float);
    sync(device);
    let prefill = started.elapsed();

    let started = Instant::now();
    let mut rngs: Vec<SplitMix64> = (0..seqs.len())
        .map(|row| match cfg.sampling {
            Sampling::TopP { seed, .. } => SplitMix64(seed.wrapping_add(row as u64)),
            Sampling::Greedy => SplitMix64(0),
        })
        .collect();
    let mut tokens: Vec<Vec<i64>> = vec![Vec::new(); seqs.len()];
    let mut stops: Vec<Option<Stop>> = vec![None; seqs.len()];
    for step in 0..cfg.max_new_tokens {
        let known = match cfg.vocab {
            Some(n) if n > 0 && n < logits.size()[1] => logits.narrow(1, 0, n),
            _ => logits.shallow_clone(),
        };
        let next = choose(&known, cfg.sampling, &mut rngs)?;
        for (row, &tok) in next.iter().enumerate() {
            if stops[row].is_some() {
                continue;
            }
            tokens[row].push(tok);
            if let Some(index) = cfg.stop.iter().position(|s| tokens[row].ends_with(s)) {
                stops[row] = Some(Stop::Sequence { index });
            }
        }
        if stops.iter().all(Option::is_some) || step + 1 == cfg.max_new_tokens {
            break;
        }
        let slot = longest + step as i64;
        let ids = Tensor::from_slice(&next).view([b, 1]).to_device(device);
        let pos: Vec<i64> = lens.iter().map(|l| l + step as i64).collect();
        let pos = Tensor::from_slice(&pos).view([b, 1]).to_device(device);
        let emb = llm.embed_tokens(&ids)?;
        let hidden = llm.forward_embeds_at(
            &emb,
            slot,
            Some(&pos),
            Some(&mut cache),
            Some(&key_mask.narrow(1, 0, slot + 1)),
        )?;
        logits = llm.logits(&hidden).squeeze_dim(1).to_kind(Kind::Float);
    }
    sync(device);
    let decode = started.elapsed();

    let outputs = tokens
        .into_iter()
        .zip(stops)
        .map(|(mut toks, stop)| {
            let generated = toks.len();
            let stop = stop.unwrap_or(Stop::MaxTokens);
            if let Stop::Sequence { index } = stop {
                toks.truncate(generated - cfg.stop[index].len());
            }
            Generated {
                tokens: toks,
                generated,
                stop,
            }
        })
        .collect();
    Ok(Batch {
        outputs,
        prefill,
        decode,
    })
}

/// Waits for queued GPU work, so a timing covers it (CUDA launches are asynchronous).
fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

fn check_config(cfg: &GenerateConfig) -> Result<(), GenerateError> {
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

/// Next token of every row from `logits: [B, vocab]` (float32).
fn choose(
    logits: &Tensor,
    sampling: Sampling,
    rngs: &mut [SplitMix64],
) -> Result<Vec<i64>, GenerateError> {
    match sampling {
        Sampling::Greedy => Ok(Vec::<i64>::try_from(
            logits.argmax(-1, false).to_device(Device::Cpu),
        )?),
        Sampling::TopP {
            temperature, top_p, ..
        } => {
            let probs = (logits / temperature).softmax(-1, Kind::Float);
            let (sorted, idx) = probs.sort(-1, true);
            let cum = sorted.cumsum(-1, Kind::Float);
            // The reference's `sample_top_p`: drop tokens whose preceding mass exceeds p.
            let drop = (&cum - &sorted).gt(top_p);
            let kept = sorted.masked_fill(&drop, 0.0);
            let kept = &kept / kept.sum_dim_intlist(-1, true, Kind::Float);
            let kept = Vec::<Vec<f32>>::try_from(kept.to_device(Device::Cpu))?;
            let idx = Vec::<Vec<i64>>::try_from(idx.to_device(Device::Cpu))?;
            Ok(kept
                .iter()
                .zip(&idx)
                .zip(rngs.iter_mut())
                .map(|((p, ids), rng)| ids[inverse_cdf(p, rng.next_f64())])
                .collect())
        }
    }
}

/// Index `i` with `sum(p[..i]) <= u < sum(p[..=i])`; the last non-zero entry on rounding.
fn inverse_cdf(p: &[f32], u: f64) -> usize {
    let mut acc = 0.0f64;
    let mut last = 0;
    for (i, &x) in p.iter().enumerate() {
        if x > 0.0 {
            acc += f64::from(x);
            last = i;
            if u < acc {
                return i;
            }
        }
    }
    last
}

/// SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators",
/// OOPSLA 2014): a tiny seeded generator, so sampling needs no global torch seed.
struct SplitMix64(u64);

impl SplitMix64 {
    /// The golden-ratio increment and the two mixing multipliers of the paper's `mix64`.
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
    const MIX1: u64 = 0xbf58_476d_1ce4_e5b9;
    const MIX2: u64 = 0x94d0_49bb_1331_11eb;
    /// `2^-53`: the spacing of f64 values in [0.5, 1), so the top 53 bits map onto [0, 1).
    const UNIT: f64 = 1.0 / (1u64 << 53) as f64;

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(Self::MIX1);
        z = (z ^ (z >> 27)).wrapping_mul(Self::MIX2);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * Self::UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_published_sequence() {
        // First outputs for seed 1234567, from the reference C implementation
        // (https://prng.di.unimi.it/splitmix64.c), as listed in its test vectors.
        let mut r = SplitMix64(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn inverse_cdf_picks_the_bucket() {
        let p = [0.0, 0.25, 0.0, 0.75];
        assert_eq!(inverse_cdf(&p, 0.0), 1);
        assert_eq!(inverse_cdf(&p, 0.2499), 1);
        assert_eq!(inverse_cdf(&p, 0.25), 3);
        assert_eq!(inverse_cdf(&p, 0.999_999_9), 3);
    }
}
