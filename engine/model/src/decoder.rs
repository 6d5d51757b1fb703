//! Continuous batching: a fixed set of decode slots over one preallocated KV cache.
//!
//! A row (one page's task: its input embeddings) is **admitted** into a free slot: it is
//! prefilled alone, straight into its slot's rows of the shared cache
//! ([`KvCache::row`]), from column 0, so it computes what it would compute alone. Every
//! [`Decoder::step`] then feeds each slot's newest token at that slot's own position
//! ([`Llama::decode_step`]: per-row cache columns and masks), so rows admitted at
//! different times decode together; a row that stops frees its slot for the next at
//! once, and one long answer no longer holds the short ones.
//!
//! **No host synchronisation per token.** Token choice (argmax, or top-p with uniforms
//! drawn when the row is admitted), the history of chosen tokens, stop-sequence checks
//! and the token budget all live on the device. The host reads the stop flags only every
//! `read_every` steps (or when it knows a row has used its whole budget), and the
//! tokens of the rows that stopped; [`Decoder::host_reads`] counts those reads.
//!
//! **Token log-probabilities.** Each chosen token's log-probability under the model's
//! distribution (softmax of the logits, temperature 1, whatever the sampling) is kept
//! beside it on the device and read with the tokens, in the same transfer: what a
//! result's confidence is made of.

use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};

use crate::decode_graphs::{bucketed, GraphStats, Outcome, StepGraphs, KEYS_BUCKET};
use crate::generate::{
    check_config, GenerateConfig, GenerateError, Generated, Sampling, Stop, READ_EVERY,
};
use crate::kv_cache::KvCache;
use crate::llama::Llama;
use crate::splitmix::SplitMix64;

/// Host bookkeeping of an occupied slot (what the host knows without reading the device).
#[derive(Debug, Clone)]
struct Active {
    id: usize,
    /// Tokens chosen so far (the device's `generated`, without a read: one per step).
    chosen: usize,
    /// Its own budget of new tokens.
    max_new: usize,
    /// Columns it occupies after the next step.
    columns: i64,
}

/// A row that finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub id: usize,
    pub output: Generated,
    /// The natural log of each of `output.tokens`' probability under the model.
    pub logprobs: Vec<f32>,
}

/// Decode slots over one KV cache; see the module docs.
pub struct Decoder<'m> {
    llm: &'m Llama,
    cfg: GenerateConfig,
    read_every: usize,
    cache: KvCache,
    slots: Vec<Option<Active>>,
    device: Device,
    // Device state, one entry per slot.
    next: Tensor,
    positions: Tensor,
    /// 1 for slots holding a row, 0 for free ones (whose position stays at 0).
    occupied: Tensor,
    generated: Tensor,
    budget: Tensor,
    done: Tensor,
    stop_index: Tensor,
    stop_at: Tensor,
    history: Tensor,
    /// Log-probability of each token in `history`.
    logprobs: Tensor,
    uniforms: Tensor,
    stops: Vec<Tensor>,
    all_slots: Tensor,
    since_read: usize,
    host_reads: usize,
    prefill: Duration,
    decode: Duration,
    /// Cache columns are read in multiples of this (static shapes), or exactly.
    keys_bucket: Option<i64>,
    graphs: Option<StepGraphs>,
}

/// `stop_index` of a row that used its budget (no stop sequence).
const MAX_TOKENS: i64 = -2;
/// `stop_index` of a row still running.
const RUNNING: i64 = -1;

impl<'m> Decoder<'m> {
    /// `slots` rows at a time, each of at most `capacity` positions (prompt and answer);
    /// cache and state in `kind` on `device`. The host reads stop flags every
    /// `read_every` steps.
    pub fn new(
        llm: &'m Llama,
        cfg: &GenerateConfig,
        slots: usize,
        capacity: i64,
        read_every: usize,
        kind: Kind,
        device: Device,
    ) -> Result<Self, GenerateError> {
        check_config(cfg)?;
        if slots == 0 {
            return Err(GenerateError::EmptyBatch);
        }
        let s = slots as i64;
        let width = cfg.max_new_tokens.max(1) as i64;
        let long = (Kind::Int64, device);
        Ok(Self {
            llm,
            cfg: cfg.clone(),
            read_every: read_every.max(1),
            // Each layer's rows on that layer's device (a placed model spans several).
            cache: llm.new_cache(s, capacity, kind),
            slots: vec![None; slots],
            device,
            next: Tensor::zeros([s], long),
            positions: Tensor::zeros([s], long),
            occupied: Tensor::zeros([s], long),
            generated: Tensor::zeros([s], long),
            budget: Tensor::ones([s], long),
            done: Tensor::ones([s], (Kind::Bool, device)),
            stop_index: Tensor::full([s], RUNNING, long),
            stop_at: Tensor::zeros([s], long),
            history: Tensor::zeros([s, width], long),
            logprobs: Tensor::zeros([s, width], (Kind::Float, device)),
            uniforms: Tensor::zeros([s, width], (Kind::Double, device)),
            stops: cfg
                .stop
                .iter()
                .map(|seq| Tensor::from_slice(seq).to_device(device))
                .collect(),
            all_slots: Tensor::arange(s, long),
            since_read: 0,
            host_reads: 0,
            prefill: Duration::ZERO,
            decode: Duration::ZERO,
            keys_bucket: None,
            graphs: None,
        })
    }

    /// Reads the cache in widths that are multiples of `bucket` columns (the extra ones
    /// masked), so the decode step takes a few shapes instead of one per token: what a
    /// CUDA graph needs. The tokens are the same.
    pub fn use_static_shapes(&mut self, bucket: i64) {
        self.keys_bucket = Some(bucket.max(1));
    }

    /// Replays the decode step from CUDA graphs (see [`crate::decode_graphs`]), with
    /// static shapes. Refused, with the reason, unless the model and this decoder live on
    /// one CUDA device and the binary has the graph shim.
    pub fn use_cuda_graphs(&mut self) -> Result<(), GenerateError> {
        let devices = self.llm.layer_devices();
        let index = match self.device {
            Device::Cuda(i) if devices.iter().all(|&d| d == self.device) => i,
            _ => return Err(GenerateError::GraphDevices(format!("{devices:?}"))),
        };
        self.graphs = Some(StepGraphs::new(index)?);
        self.use_static_shapes(KEYS_BUCKET);
        Ok(())
    }

    /// Widths captured and steps replayed by CUDA graphs (zero without them).
    pub fn graph_stats(&self) -> GraphStats {
        self.graphs
            .as_ref()
            .map_or_else(GraphStats::default, StepGraphs::stats)
    }

    /// Decode slots in all (rows generated at once).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Positions (prompt and answer) each slot's rows of the cache hold.
    pub fn capacity(&self) -> i64 {
        self.cache.capacity()
    }

    /// Slots free for [`Self::admit`].
    pub fn free_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.is_none()).count()
    }

    /// True when no row is running.
    pub fn is_idle(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    /// Reads of device state by the host so far (each one a synchronisation on a GPU).
    pub fn host_reads(&self) -> usize {
        self.host_reads
    }

    /// Time spent prefilling admitted rows, and decoding.
    pub fn timings(&self) -> (Duration, Duration) {
        (self.prefill, self.decode)
    }

    /// Prefills row `id` (`seq: [len, dim]`: BOS, image block, prompt) into a free slot
    /// with a budget of `max_new` tokens (at most the config's) and chooses its first
    /// token. Sampling draws from the generator seeded `seed + id`.
    pub fn admit(&mut self, id: usize, seq: &Tensor, max_new: usize) -> Result<(), GenerateError> {
        self.admit_group(&[(id, seq)], max_new)
    }

    /// [`Self::admit`] for several rows of the same length at once: one prefill pass over
    /// all of them (one `[n, len]` forward instead of `n`; a page's tasks and the pages
    /// of one model mostly share a length), each into its own free slot.
    pub fn admit_group(
        &mut self,
        rows: &[(usize, &Tensor)],
        max_new: usize,
    ) -> Result<(), GenerateError> {
        let Some(&(first_id, first)) = rows.first() else {
            return Ok(());
        };
        let dim = self.llm.config().dim;
        let shape = first.size();
        if shape.len() != 2 || shape[0] < 1 || shape[1] != dim {
            return Err(GenerateError::Shape {
                index: first_id,
                dim,
                shape,
            });
        }
        let len = shape[0];
        for &(id, seq) in rows {
            let other = seq.size();
            if other != shape {
                return Err(GenerateError::GroupShape {
                    index: id,
                    shape: other,
                    expected: shape,
                });
            }
        }
        let max_new = max_new.clamp(1, self.cfg.max_new_tokens.max(1));
        let limit = (self.llm.config().rope_positions()).min(self.cache.capacity());
        if len + max_new as i64 > limit {
            return Err(GenerateError::TooLong {
                index: first_id,
                len,
                max_new,
                limit,
            });
        }
        let free: Vec<usize> = (0..self.slots.len())
            .filter(|&s| self.slots[s].is_none())
            .take(rows.len())
            .collect();
        if free.len() < rows.len() {
            return Err(GenerateError::Sampling(format!(
                "admitting {} rows needs as many free slots ({} free)",
                rows.len(),
                free.len()
            )));
        }
        let started = Instant::now();
        if let Sampling::TopP { seed, .. } = self.cfg.sampling {
            let width = self.uniforms.size()[1] as usize;
            for (&(id, _), &slot) in rows.iter().zip(&free) {
                let mut rng = SplitMix64(seed.wrapping_add(id as u64));
                let draws: Vec<f64> = (0..width).map(|_| rng.next_f64()).collect();
                self.uniforms
                    .get(slot as i64)
                    .copy_(&Tensor::from_slice(&draws).to_device(self.device));
            }
        }
        let kind = self.cache.layer(0).0.kind();
        let idx: Vec<i64> = free.iter().map(|&s| s as i64).collect();
        let slots_t = Tensor::from_slice(&idx).to_device(self.device);
        let hidden = if let [slot] = idx[..] {
            // One row: straight into its slot's rows of the cache.
            let mut row = self.cache.row(slot);
            let embeds = first.to_kind(kind).unsqueeze(0);
            self.llm
                .forward_embeds_at(&embeds, 0, None, Some(&mut row), None)?
        } else {
            let embeds = Tensor::stack(
                &rows
                    .iter()
                    .map(|(_, s)| s.to_kind(kind))
                    .collect::<Vec<_>>(),
                0,
            );
            let mut group = self.llm.new_cache(rows.len() as i64, len, kind);
            let hidden = self
                .llm
                .forward_embeds_at(&embeds, 0, None, Some(&mut group), None)?;
            self.cache.copy_rows_from(&group, &slots_t, len);
            hidden
        };
        let logits = self
            .llm
            .logits(&hidden.narrow(1, len - 1, 1))
            .squeeze_dim(1)
            .to_kind(Kind::Float);
        let _ = self.positions.index_fill_(0, &slots_t, len);
        let _ = self.occupied.index_fill_(0, &slots_t, 1);
        let _ = self.generated.index_fill_(0, &slots_t, 0);
        let _ = self.budget.index_fill_(0, &slots_t, max_new as i64);
        let _ = self.done.index_fill_(0, &slots_t, 0);
        let _ = self.stop_index.index_fill_(0, &slots_t, RUNNING);
        let _ = self.stop_at.index_fill_(0, &slots_t, 0);
        let (tokens, logprobs) = self.choose(&logits, &slots_t)?;
        self.record(&slots_t, &tokens, &logprobs);
        let _ = self.next.index_copy_(0, &slots_t, &tokens);
        for (&(id, _), &slot) in rows.iter().zip(&free) {
            self.slots[slot] = Some(Active {
                id,
                chosen: 1,
                max_new,
                columns: len + 1,
            });
        }
        sync(self.device);
        self.prefill += started.elapsed();
        Ok(())
    }

    /// One decoding step of every running row; returns the rows known to have finished
    /// (read every `read_every` steps, or at once when a row's budget is used up).
    pub fn step(&mut self) -> Result<Vec<Finished>, GenerateError> {
        if self.is_idle() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let budget_spent = self.slots.iter().flatten().any(|a| a.chosen >= a.max_new);
        if !budget_spent {
            let longest = self
                .slots
                .iter()
                .flatten()
                .map(|a| a.columns)
                .max()
                .expect("a running row");
            let keys = match self.keys_bucket {
                Some(bucket) => bucketed(longest, bucket, self.cache.capacity()),
                None => longest,
            };
            self.run_step(keys)?;
            for a in self.slots.iter_mut().flatten() {
                a.chosen += 1;
                a.columns += 1;
            }
            self.since_read += 1;
        }
        let budget_spent = self.slots.iter().flatten().any(|a| a.chosen >= a.max_new);
        let finished = if budget_spent || self.since_read >= self.read_every {
            self.collect()?
        } else {
            Vec::new()
        };
        self.decode += started.elapsed();
        Ok(finished)
    }

    /// The device part of a step, through its CUDA graph when graphs are on.
    fn run_step(&mut self, keys: i64) -> Result<(), GenerateError> {
        let Some(mut graphs) = self.graphs.take() else {
            return self.device_step(keys);
        };
        let outcome = graphs.step(keys, || self.device_step(keys));
        match outcome {
            Ok(Outcome::Done) => {
                self.graphs = Some(graphs);
                Ok(())
            }
            Ok(Outcome::Abandoned(e)) => {
                tracing::warn!(error = %e, "CUDA graph capture failed; decoding without graphs");
                self.device_step(keys)
            }
            Err(e) => Err(e),
        }
    }

    /// Feeds every slot's newest token and chooses the next, all on the device and in
    /// place (so a CUDA graph can replay it): the step reads and writes only the
    /// decoder's own tensors.
    fn device_step(&mut self, keys: i64) -> Result<(), GenerateError> {
        let emb = self.llm.embed_tokens(&self.next.view([-1, 1]))?;
        let positions = self.positions.view([-1, 1]);
        let hidden = self
            .llm
            .decode_step(&emb, &positions, &mut self.cache, keys)?;
        let logits = self.llm.logits(&hidden).squeeze_dim(1).to_kind(Kind::Float);
        let all = self.all_slots.shallow_clone();
        let (tokens, logprobs) = self.choose(&logits, &all)?;
        self.record(&all, &tokens, &logprobs);
        self.next.copy_(&tokens);
        let _ = self.positions.f_add_(&self.occupied)?;
        Ok(())
    }

    /// Runs until every row has finished.
    pub fn drain(&mut self) -> Result<Vec<Finished>, GenerateError> {
        let mut out = Vec::new();
        while !self.is_idle() {
            out.extend(self.step()?);
        }
        sync(self.device);
        Ok(out)
    }

    /// Next token of `rows` from their `logits: [n, vocab]` (float32), and its
    /// log-probability under the model (softmax over the known vocabulary), on the device.
    fn choose(&self, logits: &Tensor, rows: &Tensor) -> Result<(Tensor, Tensor), GenerateError> {
        let known = match self.cfg.vocab {
            Some(n) if n > 0 && n < logits.size()[1] => logits.narrow(1, 0, n),
            _ => logits.shallow_clone(),
        };
        let tokens = match self.cfg.sampling {
            Sampling::Greedy => known.argmax(-1, false),
            Sampling::TopP {
                temperature, top_p, ..
            } => {
                let probs = (&known / temperature).softmax(-1, Kind::Float);
                let (sorted, idx) = probs.sort(-1, true);
                let cum = sorted.cumsum(-1, Kind::Float);
                // The reference's `sample_top_p`: drop tokens whose preceding mass exceeds p.
                let drop = (&cum - &sorted).gt(top_p);
                let kept = sorted.masked_fill(&drop, 0.0);
                let kept =
                    (&kept / kept.sum_dim_intlist(-1, true, Kind::Float)).to_kind(Kind::Double);
                // Inverse CDF: the first index whose cumulative mass exceeds u (the last
                // kept one when rounding leaves u above the total).
                let cdf = kept.cumsum(-1, Kind::Double);
                let steps = self
                    .generated
                    .index_select(0, rows)
                    .clamp_max(self.uniforms.size()[1] - 1);
                let u = self
                    .uniforms
                    .index_select(0, rows)
                    .gather(1, &steps.unsqueeze(1), false);
                let below = cdf.le_tensor(&u).sum_dim_intlist(-1, false, Kind::Int64);
                let last = kept.gt(0.0).sum_dim_intlist(-1, false, Kind::Int64) - 1;
                let pick = below.minimum(&last);
                idx.gather(1, &pick.unsqueeze(1), false).squeeze_dim(1)
            }
        };
        let logprobs = known
            .log_softmax(-1, Kind::Float)
            .gather(1, &tokens.unsqueeze(1), false)
            .squeeze_dim(1);
        Ok((tokens, logprobs))
    }

    /// Appends `tokens` (and their `logprobs`) to the histories of `rows` that are still
    /// running, then checks stop sequences and budgets, all on the device.
    fn record(&mut self, rows: &Tensor, tokens: &Tensor, logprobs: &Tensor) {
        let width = self.history.size()[1];
        let done_before = self.done.index_select(0, rows);
        let running = done_before.logical_not();
        let gen = self.generated.index_select(0, rows);
        let mut hist = self.history.index_select(0, rows);
        // Rows that already stopped keep their history (their column may be the last).
        let col = gen.clamp_max(width - 1).unsqueeze(1);
        let value = tokens
            .unsqueeze(1)
            .where_self(&running.unsqueeze(1), &hist.gather(1, &col, false));
        let _ = hist.scatter_(1, &col, &value);
        let mut scores = self.logprobs.index_select(0, rows);
        let score = logprobs
            .unsqueeze(1)
            .where_self(&running.unsqueeze(1), &scores.gather(1, &col, false));
        let _ = scores.scatter_(1, &col, &score);
        let gen = &gen + running.to_kind(Kind::Int64);
        let n = rows.size()[0];
        let long = (Kind::Int64, self.device);
        let mut first = Tensor::full([n], RUNNING, long);
        let mut matched = Tensor::zeros([n], (Kind::Bool, self.device));
        for (i, stop) in self.stops.iter().enumerate().rev() {
            let l = stop.size()[0];
            let at =
                (gen.unsqueeze(1) - l + Tensor::arange(l, long).unsqueeze(0)).clamp(0, width - 1);
            let hit = hist
                .gather(1, &at, false)
                .eq_tensor(&stop.unsqueeze(0))
                .all_dim(1, false)
                .logical_and(&gen.ge(l));
            // Reverse order: the first stop sequence in the list wins, as on the host.
            first = Tensor::full([n], i as i64, long).where_self(&hit, &first);
            matched = matched.logical_or(&hit);
        }
        let budget = self.budget.index_select(0, rows);
        let newly = running.logical_and(&matched);
        let maxed = running
            .logical_and(&newly.logical_not())
            .logical_and(&gen.ge_tensor(&budget));
        let ended = newly.logical_or(&maxed);
        let stop_index = self.stop_index.index_select(0, rows);
        let stop_index = first.where_self(
            &newly,
            &Tensor::full([n], MAX_TOKENS, long).where_self(&maxed, &stop_index),
        );
        let stop_at = gen.where_self(&ended, &self.stop_at.index_select(0, rows));
        let _ = self.history.index_copy_(0, rows, &hist);
        let _ = self.logprobs.index_copy_(0, rows, &scores);
        let _ = self.generated.index_copy_(0, rows, &gen);
        let _ = self.stop_index.index_copy_(0, rows, &stop_index);
        let _ = self.stop_at.index_copy_(0, rows, &stop_at);
        let _ = self
            .done
            .index_copy_(0, rows, &done_before.logical_or(&ended));
    }

    /// Reads which rows stopped (one read), and the tokens and log-probabilities of
    /// those that did (one more), and frees their slots.
    fn collect(&mut self) -> Result<Vec<Finished>, GenerateError> {
        self.since_read = 0;
        let state = Tensor::stack(&[&self.stop_index, &self.stop_at], 0).to_device(Device::Cpu);
        self.host_reads += 1;
        let state = Vec::<Vec<i64>>::try_from(state)?;
        let ended: Vec<usize> = (0..self.slots.len())
            .filter(|&s| self.slots[s].is_some() && state[0][s] != RUNNING)
            .collect();
        if ended.is_empty() {
            return Ok(Vec::new());
        }
        let idx: Vec<i64> = ended.iter().map(|&s| s as i64).collect();
        let rows = Tensor::from_slice(&idx).to_device(self.device);
        // Tokens and their log-probabilities in one transfer: ids are exact in float64.
        let both = Tensor::stack(
            &[
                self.history.index_select(0, &rows).to_kind(Kind::Double),
                self.logprobs.index_select(0, &rows).to_kind(Kind::Double),
            ],
            0,
        )
        .to_device(Device::Cpu);
        self.host_reads += 1;
        let hist = Vec::<Vec<f64>>::try_from(both.get(0))?;
        let scores = Vec::<Vec<f64>>::try_from(both.get(1))?;
        let mut out = Vec::with_capacity(ended.len());
        for (k, &s) in ended.iter().enumerate() {
            let active = self.slots[s].take().expect("an occupied slot");
            let generated = state[1][s] as usize;
            let mut tokens: Vec<i64> = hist[k][..generated].iter().map(|&t| t as i64).collect();
            let mut logprobs: Vec<f32> = scores[k][..generated].iter().map(|&l| l as f32).collect();
            let stop = match state[0][s] {
                MAX_TOKENS => Stop::MaxTokens,
                i => {
                    let index = i as usize;
                    tokens.truncate(generated - self.cfg.stop[index].len());
                    logprobs.truncate(tokens.len());
                    Stop::Sequence { index }
                }
            };
            let _ = self.done.get(s as i64).fill_(1);
            let _ = self.positions.get(s as i64).fill_(0);
            let _ = self.occupied.get(s as i64).fill_(0);
            out.push(Finished {
                id: active.id,
                output: Generated {
                    tokens,
                    generated,
                    stop,
                },
                logprobs,
            });
        }
        Ok(out)
    }
}

/// A batch's outputs (in input order) and where its time went.
#[derive(Debug)]
pub struct Batch {
    pub outputs: Vec<Generated>,
    /// Each output's token log-probabilities ([`Finished::logprobs`]).
    pub logprobs: Vec<Vec<f32>>,
    pub prefill: Duration,
    pub decode: Duration,
    /// Reads of device state by the host while decoding (see [`Decoder::host_reads`]):
    /// about one per [`READ_EVERY`] tokens, never one per token.
    pub host_reads: usize,
}

/// Generates for each of `seqs` (input embeddings `[len_i, dim]`: BOS, visual block, prompt
/// text) together: every row is admitted into one [`Decoder`] (one slot each) and decoded
/// until all have stopped.
pub fn generate(
    llm: &Llama,
    seqs: &[Tensor],
    cfg: &GenerateConfig,
) -> Result<Batch, GenerateError> {
    check_config(cfg)?;
    let first = seqs.first().ok_or(GenerateError::EmptyBatch)?;
    let (kind, device) = (first.kind(), first.device());
    let limit = llm.config().rope_positions();
    let longest = seqs
        .iter()
        .map(|s| s.size().first().copied().unwrap_or(0))
        .max()
        .unwrap_or(0);
    let capacity = (longest + cfg.max_new_tokens as i64).min(limit).max(1);
    let mut decoder = Decoder::new(llm, cfg, seqs.len(), capacity, READ_EVERY, kind, device)?;
    for (id, s) in seqs.iter().enumerate() {
        decoder.admit(id, s, cfg.max_new_tokens)?;
    }
    let mut outputs: Vec<Option<Generated>> = vec![None; seqs.len()];
    let mut logprobs = vec![Vec::new(); seqs.len()];
    for f in decoder.drain()? {
        outputs[f.id] = Some(f.output);
        logprobs[f.id] = f.logprobs;
    }
    let (prefill, decode) = decoder.timings();
    Ok(Batch {
        outputs: outputs
            .into_iter()
            .map(|o| o.expect("every admitted row finishes"))
            .collect(),
        logprobs,
        prefill,
        decode,
        host_reads: decoder.host_reads(),
    })
}

/// Waits for queued GPU work, so a timing covers it (CUDA launches are asynchronous).
pub(crate) fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlamaConfig;
    use tch::nn;

    impl Decoder<'_> {
        /// Where every tensor a decode step reads or writes lives.
        fn state_addresses(&self) -> Vec<usize> {
            let mut all = vec![
                &self.next,
                &self.positions,
                &self.occupied,
                &self.generated,
                &self.budget,
                &self.done,
                &self.stop_index,
                &self.stop_at,
                &self.history,
                &self.uniforms,
                &self.all_slots,
            ];
            all.extend(&self.stops);
            let mut out: Vec<usize> = all.iter().map(|t| t.data_ptr() as usize).collect();
            for i in 0..self.llm.config().n_layers as usize {
                let (k, v) = self.cache.layer(i);
                out.extend([k.data_ptr() as usize, v.data_ptr() as usize]);
            }
            out
        }
    }

    /// A CUDA graph replays kernels on the addresses it captured: admitting rows, decoding
    /// and freeing slots must update the decoder's tensors in place, never rebind them.
    #[test]
    fn decoding_keeps_every_state_tensor_at_its_address() {
        let _guard = tch::no_grad_guard();
        let cfg = LlamaConfig::tiny_test();
        let vs = nn::VarStore::new(Device::Cpu);
        let llm = Llama::new(vs.root(), &cfg).unwrap();
        let gen = GenerateConfig {
            max_new_tokens: 12,
            sampling: Sampling::TopP {
                temperature: 0.8,
                top_p: 0.9,
                seed: 3,
            },
            stop: vec![vec![1], vec![2, 3]],
            vocab: None,
        };
        let mut d = Decoder::new(&llm, &gen, 2, 40, 3, Kind::Float, Device::Cpu).unwrap();
        d.use_static_shapes(8);
        let before = d.state_addresses();
        let row = |n: i64| Tensor::randn([n, cfg.dim], (Kind::Float, Device::Cpu));
        d.admit(0, &row(5), 12).unwrap();
        d.admit(1, &row(9), 4).unwrap();
        let mut finished = 0;
        let mut admitted = 2;
        while !d.is_idle() {
            finished += d.step().unwrap().len();
            if admitted < 4 && d.free_slots() > 0 {
                d.admit(admitted, &row(7), 6).unwrap();
                admitted += 1;
            }
            assert_eq!(d.state_addresses(), before);
        }
        assert_eq!(finished, 4);
    }
}
