//! Pages streaming through one set of decode slots: the compute half of `sphinx serve`,
//! `sphinx run`, `sphinx infer` and `sphinx eval`.
//!
//! [`PageStream::submit`] encodes a group of pages (the views of all of them in chunks of
//! `max_views`, so the encoders see large batches across documents; a page's views are
//! encoded once however many tasks it has) and queues one generation row per (page,
//! task). [`PageStream::advance`] admits queued rows into free decode slots of one
//! [`Decoder`] (continuous batching: a finished row's slot takes the next row at once)
//! and decodes a few steps. Pages submitted while others decode join the running decode
//! as slots free: the worker feeds the next micro-batch in without waiting for the slowest
//! answer of the previous one. A page is handed back once all its rows have finished.
//!
//! **One bad page fails only itself.** A group whose encoding fails is encoded again page
//! by page; when decoding fails, every page in flight is run again alone (the stream was
//! made with [`Isolation::PageByPage`]), so only the page the model refuses gets an error.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sphinx_core::error_record::describe;
use sphinx_core::prompts;
use sphinx_core::result::{
    ModelInfo, PageResult, StopReason, TaskResult, Timings, TokenCounts, TokenScore,
};
use sphinx_model::conversation::{Template, Turn};
use sphinx_model::generate::{GenerateConfig, Generated, Stop, READ_EVERY};
use sphinx_model::mov::MovViews;
use sphinx_model::{Decoder, Loaded};
use tch::{Kind, Tensor};

use crate::batch::{BatchOptions, BatchStats, PreparedPage};

/// What happens to the pages in flight when a batched step fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Run each page again alone, so one page the model refuses fails only itself.
    PageByPage,
    /// Fail every page in flight with the error (a caller that retries on its own).
    FailAll,
}

/// One (page, task) generation row.
struct Row {
    id: usize,
    page: usize,
    /// Index of its task in the page's task list.
    task: usize,
    question: String,
    prompt_len: u32,
    visual: u32,
    /// Input embeddings `[len, dim]` until admitted.
    seq: Option<Tensor>,
    len: i64,
}

/// A page whose rows are queued or decoding.
struct Flight<T> {
    tag: T,
    page: PreparedPage,
    tasks: Vec<Option<TaskResult>>,
    left: usize,
    submitted: Instant,
    encode: Duration,
    prefill: Duration,
    /// The stream's decode clock when its first row was admitted.
    decode_from: Option<Duration>,
}

/// A page that left the stream: its result, or why it has none.
pub type Done<T> = (T, Result<PageResult>);

/// Pages in, page results out, through one decoder; see the module docs.
pub struct PageStream<'m, T> {
    loaded: &'m Loaded,
    opts: BatchOptions,
    isolation: Isolation,
    template: Template,
    cfg: GenerateConfig,
    decoder: Option<Decoder<'m>>,
    pending: VecDeque<Row>,
    running: BTreeMap<usize, Row>,
    pages: BTreeMap<usize, Flight<T>>,
    next_row: usize,
    next_page: usize,
    /// Rows the caller expects soon beyond those queued: a decoder made now gets slots
    /// for them too (up to `max_rows`), so a stream under load is not stuck with the
    /// slot count of its first, smaller group.
    expected: usize,
    /// Time spent in decode steps since the stream began.
    decode_clock: Duration,
    /// Host reads and graph replays of decoders already dropped.
    dropped: Counts,
    /// Host reads and graph replays already counted by [`Self::take_stats`].
    reported: Counts,
    /// CUDA graphs were asked for and refused (said once).
    graphs_refused: bool,
    stats: BatchStats,
}

/// Counters a decoder keeps over its life.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    host_reads: usize,
    graph_replays: usize,
}

impl Counts {
    fn of(d: &Decoder<'_>) -> Self {
        Self {
            host_reads: d.host_reads(),
            graph_replays: d.graph_stats().replays,
        }
    }

    fn add(&mut self, o: Counts) {
        self.host_reads += o.host_reads;
        self.graph_replays += o.graph_replays;
    }
}

impl<'m, T> PageStream<'m, T> {
    pub fn new(loaded: &'m Loaded, opts: &BatchOptions, isolation: Isolation) -> Result<Self> {
        let template = Template::default_conversation();
        let cfg = GenerateConfig {
            max_new_tokens: opts.max_new_tokens,
            sampling: opts.sampling,
            stop: template.stop_sequences(&loaded.tokenizer)?,
            vocab: Some(loaded.tokenizer.vocab_size() as i64),
        };
        Ok(Self {
            loaded,
            opts: opts.clone(),
            isolation,
            template,
            cfg,
            decoder: None,
            pending: VecDeque::new(),
            running: BTreeMap::new(),
            pages: BTreeMap::new(),
            next_row: 0,
            next_page: 0,
            expected: 0,
            decode_clock: Duration::ZERO,
            dropped: Counts::default(),
            reported: Counts::default(),
            graphs_refused: false,
            stats: BatchStats::default(),
        })
    }

    /// True when no page is queued or decoding.
    pub fn is_idle(&self) -> bool {
        self.pages.is_empty()
    }

    /// Rows in decode slots now.
    pub fn rows_decoding(&self) -> usize {
        self.running.len()
    }

    /// Rows the stream could take now and keep its slots busy: its slots (or `max_rows`
    /// before the first decoder) and as many again queued, less those running or queued.
    pub fn room(&self) -> usize {
        let slots = self
            .decoder
            .as_ref()
            .map_or(self.opts.max_rows.max(1), Decoder::slots);
        (2 * slots).saturating_sub(self.running.len() + self.pending.len())
    }

    /// Tells the stream that about `rows` more rows are likely to arrive soon (see
    /// [`Self::room`]); the next decoder it makes is sized for them too.
    pub fn expect(&mut self, rows: usize) {
        self.expected = rows;
    }

    /// What the stream did since the last call (pages, views and tokens of pages
    /// finished or encoded in that time; device time spent in it).
    pub fn take_stats(&mut self) -> BatchStats {
        let mut now = self.dropped;
        if let Some(d) = &self.decoder {
            now.add(Counts::of(d));
        }
        let mut stats = std::mem::take(&mut self.stats);
        stats.host_reads += now.host_reads - self.reported.host_reads;
        stats.graph_replays += now.graph_replays - self.reported.graph_replays;
        self.reported = now;
        stats.slots = self.decoder.as_ref().map_or(stats.slots, Decoder::slots);
        stats
    }

    /// Encodes `pages` and queues their rows. Pages that cannot be encoded come back with
    /// their error (the group is tried page by page first when it fails as a whole).
    pub fn submit(&mut self, pages: Vec<(T, PreparedPage)>) -> Vec<Done<T>> {
        if pages.is_empty() {
            return Vec::new();
        }
        let _guard = tch::no_grad_guard();
        let refs: Vec<&PreparedPage> = pages.iter().map(|(_, p)| p).collect();
        match self.encode(&refs) {
            Ok((rows, took)) => {
                let n = pages.len() as u32;
                for ((tag, page), rows) in pages.into_iter().zip(rows) {
                    self.enqueue(tag, page, rows, took / n);
                }
                Vec::new()
            }
            Err(e) if pages.len() == 1 => {
                let (tag, _) = pages.into_iter().next().expect("one page");
                vec![(tag, Err(e))]
            }
            Err(e) => {
                tracing::warn!(error = %describe(&e), pages = pages.len(),
                    "encoding the group failed, encoding page by page");
                let mut failed = Vec::new();
                for (tag, page) in pages {
                    match self.encode(&[&page]) {
                        Ok((mut rows, took)) => self.enqueue(tag, page, rows.remove(0), took),
                        Err(e) => failed.push((tag, Err(e))),
                    }
                }
                failed
            }
        }
    }

    fn enqueue(&mut self, tag: T, page: PreparedPage, rows: Vec<Row>, encode: Duration) {
        let id = self.next_page;
        self.next_page += 1;
        self.stats.pages += 1;
        self.stats.rows += rows.len();
        for mut row in rows {
            row.id = self.next_row;
            row.page = id;
            self.next_row += 1;
            self.pending.push_back(row);
        }
        let tasks = page.tasks.iter().map(|_| None).collect();
        self.pages.insert(
            id,
            Flight {
                tag,
                left: page.tasks.len(),
                page,
                tasks,
                submitted: Instant::now(),
                encode,
                prefill: Duration::ZERO,
                decode_from: None,
            },
        );
    }

    /// Every page's views (the one page-to-model path), encoded all together; then one
    /// row per (page, task). Rows come back without ids.
    fn encode(&mut self, pages: &[&PreparedPage]) -> Result<(Vec<Vec<Row>>, Duration)> {
        let loaded = self.loaded;
        let started = Instant::now();
        for p in pages {
            if p.tasks.is_empty() {
                bail!("page {} of {} has no task", p.page_index, p.doc_id);
            }
        }
        let inputs = pages
            .iter()
            .map(|p| p.model_input(&loaded.model, loaded.device))
            .collect::<Result<Vec<_>>>()?;
        let parts: Vec<MovViews> = inputs
            .iter()
            .map(|i| MovViews {
                convnext: i.views.convnext.shallow_clone(),
                dinov2: i.views.dinov2.shallow_clone(),
            })
            .collect();
        let all = MovViews::cat(&parts);
        drop(parts);
        let total_views = all.len();
        let chunk = self.opts.max_views.max(1) as i64;
        let mut feats = Vec::new();
        let mut start = 0;
        while start < total_views {
            let n = chunk.min(total_views - start);
            let views = MovViews {
                convnext: all.convnext.narrow(0, start, n),
                dinov2: all.dinov2.narrow(0, start, n),
            };
            feats.push(loaded.model.encode_views(&views)?);
            start += n;
        }
        drop(all);
        let feats = Tensor::cat(&feats, 0);
        let limit = loaded.model.llm().config().rope_positions();
        let max_new = self.opts.max_new_tokens.max(1);
        let mut out = Vec::with_capacity(pages.len());
        let mut offset = 0;
        for (p, input) in pages.iter().zip(&inputs) {
            let n = input.views.len();
            let block = loaded
                .model
                .image_block(&feats.narrow(0, offset, n), &input.skipped)?;
            offset += n;
            let mut rows = Vec::with_capacity(p.tasks.len());
            for (t, task) in p.tasks.iter().enumerate() {
                let question = prompts::question(task)?;
                let prompt = self.template.prompt(&[Turn::ask(question.clone())])?;
                let ids = loaded.tokenizer.encode(&prompt, true, false)?;
                let ids_t = Tensor::from_slice(&ids).to_device(loaded.device);
                let (seq, n_image) = loaded.model.assemble_with_image(&ids_t, Some(&block))?;
                let seq = seq.squeeze_dim(0);
                let len = seq.size()[0];
                if len + max_new as i64 > limit {
                    bail!(
                        "page {} of {}: {len} positions (image and prompt) plus {max_new} new \
                         tokens exceed the model's {limit} positions",
                        p.page_index,
                        p.doc_id
                    );
                }
                rows.push(Row {
                    id: 0,
                    page: 0,
                    task: t,
                    question,
                    prompt_len: ids.len() as u32,
                    visual: n_image as u32,
                    seq: Some(seq),
                    len,
                });
            }
            out.push(rows);
        }
        self.stats.views += total_views as usize;
        let took = started.elapsed();
        self.stats.encode += took;
        Ok((out, took))
    }

    /// Admits queued rows into free slots, decodes up to [`READ_EVERY`] steps (until some
    /// row finishes) and returns the pages whose rows have all finished.
    pub fn advance(&mut self) -> Vec<Done<T>> {
        let _guard = tch::no_grad_guard();
        match self.try_advance() {
            Ok(done) => done,
            Err(e) => self.recover(e),
        }
    }

    fn try_advance(&mut self) -> Result<Vec<Done<T>>> {
        self.admit()?;
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(Vec::new());
        };
        let mut finished = Vec::new();
        for _ in 0..READ_EVERY {
            if decoder.is_idle() {
                break;
            }
            let started = Instant::now();
            finished = decoder.step().context("decoding failed")?;
            let took = started.elapsed();
            self.decode_clock += took;
            self.stats.decode += took;
            if !finished.is_empty() {
                break;
            }
        }
        let mut done = Vec::new();
        for f in finished {
            let row = self
                .running
                .remove(&f.id)
                .ok_or_else(|| anyhow!("the decoder finished row {} it was never given", f.id))?;
            if let Some(page) = self.finish_row(row, f.output, &f.logprobs)? {
                done.push(page);
            }
        }
        Ok(done)
    }

    /// Admits queued rows in order while a slot is free and the head row fits the cache;
    /// (re)makes the decoder when none runs and the queued rows need more than it has.
    /// Consecutive rows of one length are prefilled together (up to the free slots and
    /// `max_prefill_tokens`).
    fn admit(&mut self) -> Result<()> {
        while let Some(head) = self.pending.front() {
            let len = head.len;
            let need = len + self.opts.max_new_tokens.max(1) as i64;
            let (fits, idle) = match &self.decoder {
                Some(d) => (d.capacity() >= need && d.free_slots() > 0, d.is_idle()),
                None => (false, true),
            };
            if idle && (!fits || self.undersized()) {
                self.make_decoder()?;
            } else if !fits {
                // Wait for a slot, or for the running rows to drain before a bigger cache.
                return Ok(());
            }
            let decoder = self.decoder.as_mut().expect("made above");
            let by_tokens = (self.opts.max_prefill_tokens as i64 / len.max(1)).max(1) as usize;
            let n = self
                .pending
                .iter()
                .take(decoder.free_slots().min(by_tokens))
                .take_while(|r| r.len == len)
                .count();
            let mut group: Vec<Row> = self.pending.drain(..n).collect();
            let seqs: Vec<Tensor> = group
                .iter_mut()
                .map(|r| r.seq.take().expect("a queued row has its embeddings"))
                .collect();
            let ids: Vec<(usize, &Tensor)> = group.iter().map(|r| r.id).zip(&seqs).collect();
            if !decoder.is_idle() {
                self.stats.joined += n;
            }
            let started = Instant::now();
            decoder
                .admit_group(&ids, self.opts.max_new_tokens)
                .with_context(|| {
                    format!(
                        "rows {}.. ({n} rows, page {}) cannot be generated",
                        ids[0].0, group[0].page
                    )
                })?;
            let took = started.elapsed();
            self.stats.prefill += took;
            let clock = self.decode_clock;
            for row in group {
                if let Some(page) = self.pages.get_mut(&row.page) {
                    page.prefill += took / n as u32;
                    page.decode_from.get_or_insert(clock);
                }
                self.running.insert(row.id, row);
            }
        }
        Ok(())
    }

    /// Slots the next decoder should have, and the positions of each.
    fn wanted(&self) -> (usize, i64) {
        let max_new = self.opts.max_new_tokens.max(1) as i64;
        let longest = self.pending.iter().map(|r| r.len).max().unwrap_or(1);
        let capacity = longest + max_new;
        let by_tokens = (self.opts.max_tokens_in_flight as i64 / capacity.max(1)).max(1) as usize;
        let slots = self
            .opts
            .max_rows
            .max(1)
            .min(by_tokens)
            .min(self.pending.len() + self.expected)
            .max(1);
        (slots, capacity)
    }

    /// An idle decoder with fewer slots than the queue wants.
    fn undersized(&self) -> bool {
        let (slots, _) = self.wanted();
        self.decoder.as_ref().is_some_and(|d| d.slots() < slots)
    }

    fn make_decoder(&mut self) -> Result<()> {
        let (slots, capacity) = self.wanted();
        if let Some(old) = self.decoder.take() {
            self.dropped.add(Counts::of(&old));
        }
        let kind = self
            .pending
            .front()
            .and_then(|r| r.seq.as_ref())
            .map_or(Kind::Float, Tensor::kind);
        let mut decoder = Decoder::new(
            self.loaded.model.llm(),
            &self.cfg,
            slots,
            capacity,
            READ_EVERY,
            kind,
            self.loaded.device,
        )?;
        if self.opts.static_shapes {
            decoder.use_static_shapes(sphinx_model::decode_graphs::KEYS_BUCKET);
        }
        if self.opts.cuda_graphs {
            if let Err(e) = decoder.use_cuda_graphs() {
                if !self.graphs_refused {
                    tracing::warn!(error = %e, "CUDA graphs are off: decoding eagerly");
                    self.graphs_refused = true;
                }
            }
        }
        self.decoder = Some(decoder);
        self.stats.slots = self.stats.slots.max(slots);
        Ok(())
    }

    /// Records a finished row (its tokens and their log-probabilities); returns its page
    /// if that was the page's last row.
    fn finish_row(
        &mut self,
        row: Row,
        out: Generated,
        logprobs: &[f32],
    ) -> Result<Option<Done<T>>> {
        let loaded = self.loaded;
        self.stats.generated_tokens += out.generated;
        let (text, bytes) = loaded.tokenizer.decode_with_offsets(&out.tokens)?;
        let scores: Vec<TokenScore> = bytes
            .into_iter()
            .zip(logprobs)
            .map(|(bytes, &logprob)| TokenScore { bytes, logprob })
            .collect();
        let (answer, cut) = self.template.cut_answer(&text);
        let stop = match out.stop {
            Stop::Sequence { index: 0 } => StopReason::Eos,
            Stop::Sequence { .. } => StopReason::Separator,
            Stop::MaxTokens if cut => StopReason::Separator,
            Stop::MaxTokens => StopReason::MaxTokens,
        };
        let clock = self.decode_clock;
        let Some(flight) = self.pages.get_mut(&row.page) else {
            return Ok(None);
        };
        let decode = clock.saturating_sub(flight.decode_from.unwrap_or(clock));
        let mut task = TaskResult::from_answer(
            flight.page.tasks[row.task].clone(),
            row.question,
            answer.to_owned(),
            &flight.page.frame,
            stop,
            TokenCounts {
                prompt: row.prompt_len,
                visual: row.visual,
                generated: out.generated as u32,
            },
            Timings {
                encode_ms: ms(flight.encode),
                prefill_ms: ms(flight.prefill),
                decode_ms: ms(decode),
                total_ms: ms(flight.submitted.elapsed()),
            },
        );
        task.score(&scores);
        if let Some(c) = task.confidence {
            self.stats.scored_answers += 1;
            self.stats.confidence_sum += f64::from(c);
        }
        flight.tasks[row.task] = Some(task);
        flight.left -= 1;
        if flight.left > 0 {
            return Ok(None);
        }
        let flight = self.pages.remove(&row.page).expect("looked up above");
        let p = &flight.page;
        let result = PageResult::new(
            p.doc_id.clone(),
            p.page_index,
            p.page_count,
            ModelInfo {
                id: loaded.id.clone(),
            },
            p.frame.clone(),
            flight.tasks.into_iter().flatten().collect(),
        );
        Ok(Some((flight.tag, Ok(result))))
    }

    /// After a failed admission or step: every page in flight is run again alone, or
    /// fails with the error.
    fn recover(&mut self, e: anyhow::Error) -> Vec<Done<T>> {
        if let Some(old) = self.decoder.take() {
            self.dropped.add(Counts::of(&old));
        }
        self.pending.clear();
        self.running.clear();
        let flights: Vec<Flight<T>> = std::mem::take(&mut self.pages).into_values().collect();
        if self.isolation == Isolation::FailAll || flights.len() == 1 {
            let msg = describe(&e);
            return flights
                .into_iter()
                .map(|f| (f.tag, Err(anyhow!("{msg}"))))
                .collect();
        }
        tracing::warn!(error = %describe(&e), pages = flights.len(),
            "batched decoding failed, running each page alone");
        flights
            .into_iter()
            .map(|f| {
                let alone = run_alone(self.loaded, f.page, &self.opts);
                if let Ok((_, s)) = &alone {
                    self.stats.add(s);
                }
                (f.tag, alone.map(|(r, _)| r))
            })
            .collect()
    }
}

/// One page through a stream of its own.
fn run_alone(
    loaded: &Loaded,
    page: PreparedPage,
    opts: &BatchOptions,
) -> Result<(PageResult, BatchStats)> {
    let (mut results, stats) = run_pages(loaded, vec![page], opts)?;
    Ok((results.remove(0), stats))
}

/// Runs every task of every page; results come back in page order (a [`PageStream`]
/// drained once). Fails if any page fails.
pub fn run_batch(
    loaded: &Loaded,
    pages: &[PreparedPage],
    opts: &BatchOptions,
) -> Result<(Vec<PageResult>, BatchStats)> {
    run_pages(loaded, pages.to_vec(), opts)
}

/// [`run_batch`] of pages the caller hands over.
fn run_pages(
    loaded: &Loaded,
    pages: Vec<PreparedPage>,
    opts: &BatchOptions,
) -> Result<(Vec<PageResult>, BatchStats)> {
    let n = pages.len();
    let mut stream = PageStream::new(loaded, opts, Isolation::FailAll)?;
    let mut out: Vec<Option<PageResult>> = (0..n).map(|_| None).collect();
    let mut done = stream.submit(pages.into_iter().enumerate().collect());
    while !stream.is_idle() {
        done.extend(stream.advance());
    }
    for (i, result) in done {
        out[i] = Some(result.with_context(|| format!("page {} of {n} in the batch", i + 1))?);
    }
    let results = out
        .into_iter()
        .map(|r| r.ok_or_else(|| anyhow!("a page left the stream without a result")))
        .collect::<Result<Vec<_>>>()?;
    Ok((results, stream.take_stats()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
