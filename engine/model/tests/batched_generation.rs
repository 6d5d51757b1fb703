//! Batched generation over pages of different sizes, skip plans and prompt lengths gives,
//! token for token, what one run per page gives (tiny random SPHINX-X on the CPU).

use sphinx_core::tiling::{plan, TileConfig};
use sphinx_model::config::LlamaConfig;
use sphinx_model::generate;
use sphinx_model::generate::{GenerateConfig, GenerateError, Generated, Sampling, Stop};
use sphinx_model::MovConfig;
use sphinx_model::{PageInput, Sphinx};
use tch::{nn, Device, Kind, Tensor};

/// Pages in the batch: the "batch of 16 pages".
const PAGES: usize = 16;
/// New tokens per page: enough for stop sequences to be met mid-way.
const MAX_NEW: usize = 10;
/// BOS id of the LLaMA tokenizer (`<s>`).
const BOS: i64 = 1;

struct Fixture {
    _vs: nn::VarStore,
    model: Sphinx,
    seqs: Vec<Tensor>,
}

/// Page sizes (w, h) in pixels: portrait, landscape, square, extreme strips, so the skip
/// plans differ (none, a column, a row, three of four cells skipped).
const SIZES: [(u32, u32); PAGES] = [
    (850, 1100),
    (1100, 850),
    (1000, 1000),
    (300, 2000),
    (2000, 300),
    (612, 792),
    (1275, 1650),
    (500, 4000),
    (4000, 500),
    (640, 480),
    (480, 640),
    (2480, 3508),
    (3508, 2480),
    (100, 101),
    (1700, 200),
    (200, 1700),
];

fn build() -> Fixture {
    let vs = nn::VarStore::new(Device::Cpu);
    let mov_cfg = MovConfig::tiny_test();
    let model = sphinx_model::seeded::with_seed(20_261_126, || {
        Sphinx::new(&vs.root(), &LlamaConfig::tiny_test(), &mov_cfg)
    })
    .unwrap();
    let side = mov_cfg.canvas_size();
    let tile_cfg = TileConfig::new(side as u32, 2);
    let vocab = LlamaConfig::tiny_test().vocab_size;
    let mut seqs = Vec::new();
    let _guard = tch::no_grad_guard();
    for (i, &(w, h)) in SIZES.iter().enumerate() {
        let (placement, skip) = plan(w, h, &tile_cfg).unwrap();
        // Page content where the page lies, zero (the normalized padding) elsewhere.
        let canvas = Tensor::zeros([3, side, side], (Kind::Float, Device::Cpu));
        canvas
            .narrow(1, 0, i64::from(placement.height))
            .narrow(2, 0, i64::from(placement.width))
            .copy_(&Tensor::randn(
                [3, i64::from(placement.height), i64::from(placement.width)],
                (Kind::Float, Device::Cpu),
            ));
        let skipped = skip.flags().to_vec();
        let views = model.page_views(&canvas, &skipped).unwrap();
        let text_len = 3 + (i as i64 * 7) % 17;
        let ids = Tensor::cat(
            &[
                Tensor::from_slice(&[BOS]),
                Tensor::randint_low(3, vocab, [text_len], (Kind::Int64, Device::Cpu)),
            ],
            0,
        );
        let (seq, _) = model
            .assemble(&PageInput {
                views: &views,
                skipped: &skipped,
                ids: &ids,
            })
            .unwrap();
        seqs.push(seq.squeeze_dim(0));
    }
    Fixture {
        _vs: vs,
        model,
        seqs,
    }
}

fn singles(
    f: &Fixture,
    cfg: &GenerateConfig,
    seed_of: impl Fn(usize) -> Sampling,
) -> Vec<Generated> {
    let _guard = tch::no_grad_guard();
    f.seqs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let cfg = GenerateConfig {
                sampling: seed_of(i),
                ..cfg.clone()
            };
            let mut out = generate(f.model.llm(), std::slice::from_ref(s), &cfg).unwrap();
            out.outputs.remove(0)
        })
        .collect()
}

#[test]
fn batch_of_16_pages_equals_16_single_runs() {
    let f = build();
    let lens: Vec<i64> = f.seqs.iter().map(|s| s.size()[0]).collect();
    let mut distinct = lens.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() >= 8,
        "sequence lengths should differ: {lens:?}"
    );
    let _guard = tch::no_grad_guard();

    // Greedy, no stop: every row runs the full budget.
    let cfg = GenerateConfig {
        max_new_tokens: MAX_NEW,
        sampling: Sampling::Greedy,
        stop: vec![],
        vocab: None,
    };
    let batch = generate(f.model.llm(), &f.seqs, &cfg).unwrap();
    let alone = singles(&f, &cfg, |_| Sampling::Greedy);
    // A tokenizer smaller than the embedding table: ids past it are never chosen.
    let limit = 7;
    let small = GenerateConfig {
        vocab: Some(limit),
        ..cfg.clone()
    };
    let limited = generate(f.model.llm(), &f.seqs, &small).unwrap();
    for g in &limited.outputs {
        assert!(
            g.tokens.iter().all(|&t| (0..limit).contains(&t)),
            "{:?}",
            g.tokens
        );
    }
    if batch
        .outputs
        .iter()
        .any(|g| g.tokens.iter().any(|&t| t >= limit))
    {
        assert_ne!(limited.outputs, batch.outputs);
    }
    assert_eq!(batch.outputs, alone);
    assert!(batch
        .outputs
        .iter()
        .all(|g| g.tokens.len() == MAX_NEW && g.stop == Stop::MaxTokens));
    let distinct_outputs: std::collections::HashSet<_> =
        batch.outputs.iter().map(|g| g.tokens.clone()).collect();
    assert!(
        distinct_outputs.len() > 1,
        "pages should not all generate the same tokens"
    );

    // Stop sequences met at different steps in different rows: a two-token sequence from
    // row 0's output, and "EOS" as a token row 5 produces at its fourth step.
    let stop_a = alone[0].tokens[2..4].to_vec();
    let stop_b = vec![alone[5].tokens[3]];
    let cfg = GenerateConfig {
        stop: vec![stop_a.clone(), stop_b.clone()],
        ..cfg
    };
    let batch_stop = generate(f.model.llm(), &f.seqs, &cfg).unwrap();
    assert_eq!(batch_stop.outputs, singles(&f, &cfg, |_| Sampling::Greedy));
    for (row, (g, full)) in batch_stop.outputs.iter().zip(&alone).enumerate() {
        // Expected from the unconstrained run: the first step where a stop sequence ends.
        let hit = (1..=full.tokens.len()).find_map(|n| {
            let head = &full.tokens[..n];
            [&stop_a, &stop_b]
                .iter()
                .position(|s| head.ends_with(s))
                .map(|index| (n, index))
        });
        match hit {
            Some((n, index)) => {
                assert_eq!(g.stop, Stop::Sequence { index }, "row {row}");
                assert_eq!(g.generated, n, "row {row}");
                assert_eq!(
                    g.tokens,
                    full.tokens[..n - cfg.stop[index].len()],
                    "row {row}"
                );
            }
            None => assert_eq!(g, full, "row {row}"),
        }
    }
    assert!(matches!(batch_stop.outputs[0].stop, Stop::Sequence { .. }));
    assert!(batch_stop.outputs[0].generated <= 4);
}

#[test]
fn seeded_sampling_is_per_row_and_reproducible() {
    let f = build();
    let _guard = tch::no_grad_guard();
    let seed = 99;
    let sampled = |s| Sampling::TopP {
        temperature: 1.0,
        top_p: 0.9,
        seed: s,
    };
    let cfg = GenerateConfig {
        max_new_tokens: MAX_NEW,
        sampling: sampled(seed),
        stop: vec![],
        vocab: None,
    };
    let batch = generate(f.model.llm(), &f.seqs, &cfg).unwrap();
    let again = generate(f.model.llm(), &f.seqs, &cfg).unwrap();
    assert_eq!(batch.outputs, again.outputs);
    // Row i of a batch draws from seed + i, so a lone run seeded so matches it.
    let alone = singles(&f, &cfg, |i| sampled(seed + i as u64));
    assert_eq!(batch.outputs, alone);
    let greedy = generate(
        f.model.llm(),
        &f.seqs,
        &GenerateConfig {
            sampling: Sampling::Greedy,
            ..cfg.clone()
        },
    )
    .unwrap();
    assert_ne!(
        batch.outputs, greedy.outputs,
        "temperature 1 should sample, not argmax"
    );
}

#[test]
fn per_row_positions_match_the_contiguous_path() {
    let f = build();
    let _guard = tch::no_grad_guard();
    let llm = f.model.llm();
    let seq = f.seqs[3].unsqueeze(0);
    let len = seq.size()[1];
    let plain = llm.forward_embeds(&seq, 0, None, None).unwrap();
    let positions = Tensor::arange(len, (Kind::Int64, Device::Cpu)).unsqueeze(0);
    let at = llm
        .forward_embeds_at(&seq, 0, Some(&positions), None, None)
        .unwrap();
    assert_eq!(f64::try_from((&plain - &at).abs().max()).unwrap(), 0.0);
    // RoPE is relative: shifting every position alike changes nothing but rounding,
    // while stretching the distances changes the result, so positions do reach RoPE.
    let max_diff = |p: &Tensor| {
        let out = llm.forward_embeds_at(&seq, 0, Some(p), None, None).unwrap();
        f64::try_from((&plain - &out).abs().max()).unwrap()
    };
    assert!(max_diff(&(&positions + 5)) < 1e-3);
    assert!(max_diff(&(&positions * 2)) > 1e-2);
    let bad = Tensor::zeros([1, len + 1], (Kind::Int64, Device::Cpu));
    assert!(llm
        .forward_embeds_at(&seq, 0, Some(&bad), None, None)
        .is_err());
}

#[test]
fn bad_inputs_are_typed_errors() {
    let f = build();
    let _guard = tch::no_grad_guard();
    let llm = f.model.llm();
    let cfg = GenerateConfig {
        max_new_tokens: 4,
        sampling: Sampling::Greedy,
        stop: vec![],
        vocab: None,
    };
    assert!(matches!(
        generate(llm, &[], &cfg),
        Err(GenerateError::EmptyBatch)
    ));
    let wrong = Tensor::zeros([5, 3], (Kind::Float, Device::Cpu));
    assert!(matches!(
        generate(llm, &[f.seqs[0].shallow_clone(), wrong], &cfg),
        Err(GenerateError::Shape { index: 1, .. })
    ));
    let long = GenerateConfig {
        max_new_tokens: 10_000,
        ..cfg.clone()
    };
    assert!(matches!(
        generate(llm, &f.seqs, &long),
        Err(GenerateError::TooLong { index: 0, .. })
    ));
    let hot = GenerateConfig {
        sampling: Sampling::TopP {
            temperature: 0.0,
            top_p: 0.5,
            seed: 1,
        },
        ..cfg.clone()
    };
    assert!(matches!(
        generate(llm, &f.seqs, &hot),
        Err(GenerateError::Sampling(_))
    ));
    let empty_stop = GenerateConfig {
        stop: vec![vec![2], vec![]],
        ..cfg
    };
    assert!(matches!(
        generate(llm, &f.seqs, &empty_stop),
        Err(GenerateError::EmptyStop { index: 1 })
    ));
}

/// The config that gives row `i` of a batch run with `cfg` on its own: the same, with a
/// top-p seed of `seed + i` (a batch row draws from the generator seeded so).
fn alone(cfg: &GenerateConfig, i: usize) -> GenerateConfig {
    let sampling = match cfg.sampling {
        Sampling::TopP {
            temperature,
            top_p,
            seed,
        } => Sampling::TopP {
            temperature,
            top_p,
            seed: seed + i as u64,
        },
        s => s,
    };
    GenerateConfig {
        sampling,
        ..cfg.clone()
    }
}

/// Continuous batching: 16 rows with budgets from 1 to 31 tokens through 3 slots, each
/// admitted as soon as a slot frees, give every row the tokens it gets alone (greedy and
/// seeded top-p, with stop sequences met mid-way). The same holds with static shapes
/// (attention over the cache in widths of 7 columns, the extra ones masked: what a CUDA
/// graph replays), and graphs themselves are refused on the CPU with the reason.
#[test]
fn continuous_batching_gives_each_row_what_it_gets_alone() {
    use sphinx_model::decoder::Decoder;
    let f = build();
    let _guard = tch::no_grad_guard();
    let budget = |i: usize| 1 + (i * 13) % 31;
    let longest = f.seqs.iter().map(|s| s.size()[0]).max().unwrap();
    let greedy = Sampling::Greedy;
    let top_p = Sampling::TopP {
        temperature: 0.9,
        top_p: 0.8,
        seed: 5,
    };
    for (sampling, bucket) in [
        (greedy, None),
        (top_p, None),
        (greedy, Some(7)),
        (top_p, Some(7)),
    ] {
        // Stop sequences taken from what the rows say without any, so some stop early:
        // a token row 0 says fourth, and a pair row 1 says sixth and seventh.
        let free = GenerateConfig {
            max_new_tokens: 31,
            sampling,
            stop: vec![vec![-1]],
            vocab: None,
        };
        let said = generate(f.model.llm(), &f.seqs[..2], &free)
            .unwrap()
            .outputs;
        let cfg = GenerateConfig {
            stop: vec![vec![said[0].tokens[3]], said[1].tokens[5..7].to_vec()],
            ..free
        };
        let mut decoder = Decoder::new(
            f.model.llm(),
            &cfg,
            3,
            longest + 31,
            4,
            Kind::Float,
            Device::Cpu,
        )
        .unwrap();
        if let Some(b) = bucket {
            decoder.use_static_shapes(b);
        }
        let err = decoder.use_cuda_graphs().unwrap_err();
        assert!(matches!(err, GenerateError::GraphDevices(_)), "{err}");
        let mut next = 0;
        let mut got: Vec<Option<Generated>> = vec![None; f.seqs.len()];
        let mut scores = vec![Vec::new(); f.seqs.len()];
        let mut most_running = 0;
        while next < f.seqs.len() || !decoder.is_idle() {
            while next < f.seqs.len() && decoder.free_slots() > 0 {
                decoder.admit(next, &f.seqs[next], budget(next)).unwrap();
                next += 1;
            }
            most_running = most_running.max(3 - decoder.free_slots());
            for done in decoder.step().unwrap() {
                assert!(got[done.id].is_none(), "row {} finished twice", done.id);
                got[done.id] = Some(done.output);
                scores[done.id] = done.logprobs;
            }
        }
        assert_eq!(most_running, 3);
        let mut early = 0;
        for (i, out) in got.into_iter().enumerate() {
            let out = out.unwrap_or_else(|| panic!("row {i} never finished"));
            let alone_cfg = GenerateConfig {
                max_new_tokens: budget(i),
                ..alone(&cfg, i)
            };
            let mut alone_run =
                generate(f.model.llm(), std::slice::from_ref(&f.seqs[i]), &alone_cfg).unwrap();
            let alone = alone_run.outputs.remove(0);
            assert_eq!(out, alone, "row {i} ({sampling:?}, widths of {bucket:?})");
            // Each token's log-probability too, one per token kept, up to float32 order
            // of summation (other rows beside it, other cache widths).
            let alone_scores = alone_run.logprobs.remove(0);
            assert_eq!(scores[i].len(), out.tokens.len());
            for (a, b) in scores[i].iter().zip(&alone_scores) {
                assert!((a - b).abs() < 1e-4 && *a <= 0.0, "row {i}: {a} vs {b}");
            }
            assert!(out.generated <= budget(i));
            if matches!(out.stop, Stop::Sequence { .. }) {
                early += 1;
            }
        }
        assert!(
            early > 0,
            "some row should meet a stop sequence ({sampling:?})"
        );
    }
}

/// Decoding reads device state about once per `read_every` tokens, never once per token:
/// 48 tokens of 4 rows cost at most 48 / 8 + 2 reads (the stop flags each 8 steps, the
/// tokens of the finished rows once), and reading every step costs one per step.
#[test]
fn decoding_reads_the_device_every_k_steps_not_every_token() {
    use sphinx_model::decoder::Decoder;
    let f = build();
    let _guard = tch::no_grad_guard();
    let cfg = GenerateConfig {
        max_new_tokens: 48,
        sampling: Sampling::Greedy,
        stop: vec![vec![-1]],
        vocab: None,
    };
    let seqs = &f.seqs[..4];
    let batch = generate(f.model.llm(), seqs, &cfg).unwrap();
    assert!(batch.outputs.iter().all(|o| o.generated == 48));
    assert!(
        batch.host_reads <= 48 / sphinx_model::generate::READ_EVERY + 2,
        "{} host reads for 48 tokens",
        batch.host_reads
    );
    let longest = seqs.iter().map(|s| s.size()[0]).max().unwrap();
    let mut every_step = Decoder::new(
        f.model.llm(),
        &cfg,
        4,
        longest + 48,
        1,
        Kind::Float,
        Device::Cpu,
    )
    .unwrap();
    for (i, s) in seqs.iter().enumerate() {
        every_step.admit(i, s, 48).unwrap();
    }
    let out = every_step.drain().unwrap();
    assert_eq!(out.len(), 4);
    assert!(every_step.host_reads() >= 47, "{}", every_step.host_reads());
}

/// Rows of one length admitted as a group (one prefill pass over all of them) decode to
/// the tokens each gets alone, greedy and seeded top-p; a group of mixed lengths, or one
/// larger than the free slots, is refused.
#[test]
fn a_group_prefilled_together_answers_as_each_row_alone() {
    use sphinx_model::decoder::Decoder;
    let f = build();
    let _guard = tch::no_grad_guard();
    let base = &f.seqs[0];
    let rows: Vec<Tensor> = (0..6)
        .map(|i| {
            let noise = sphinx_model::seeded::with_seed(100 + i, || {
                Tensor::randn(base.size(), (Kind::Float, Device::Cpu)) * 0.05
            });
            base + noise
        })
        .collect();
    let len = base.size()[0];
    for sampling in [
        Sampling::Greedy,
        Sampling::TopP {
            temperature: 0.9,
            top_p: 0.8,
            seed: 11,
        },
    ] {
        let cfg = GenerateConfig {
            max_new_tokens: 12,
            sampling,
            stop: vec![vec![-1]],
            vocab: None,
        };
        let mut decoder = Decoder::new(
            f.model.llm(),
            &cfg,
            6,
            len + 12,
            4,
            Kind::Float,
            Device::Cpu,
        )
        .unwrap();
        let group: Vec<(usize, &Tensor)> = rows.iter().enumerate().collect();
        decoder.admit_group(&group, 12).unwrap();
        assert_eq!(decoder.free_slots(), 0);
        let mut got: Vec<Option<Generated>> = vec![None; rows.len()];
        for done in decoder.drain().unwrap() {
            got[done.id] = Some(done.output);
        }
        for (i, row) in rows.iter().enumerate() {
            let alone_cfg = alone(&cfg, i);
            let alone = generate(f.model.llm(), std::slice::from_ref(row), &alone_cfg)
                .unwrap()
                .outputs
                .remove(0);
            assert_eq!(got[i].as_ref(), Some(&alone), "row {i} ({sampling:?})");
        }
    }
    let cfg = GenerateConfig {
        max_new_tokens: 4,
        sampling: Sampling::Greedy,
        stop: vec![vec![-1]],
        vocab: None,
    };
    let longest = f.seqs.iter().map(|s| s.size()[0]).max().unwrap();
    let mut decoder = Decoder::new(
        f.model.llm(),
        &cfg,
        2,
        longest + 4,
        4,
        Kind::Float,
        Device::Cpu,
    )
    .unwrap();
    let other = f
        .seqs
        .iter()
        .find(|s| s.size()[0] != len)
        .expect("the fixture has pages of other lengths");
    let mixed = decoder
        .admit_group(&[(0, base), (1, other)], 4)
        .unwrap_err();
    assert!(
        matches!(mixed, GenerateError::GroupShape { index: 1, .. }),
        "{mixed}"
    );
    let three: Vec<(usize, &Tensor)> = rows.iter().take(3).enumerate().collect();
    let err = decoder.admit_group(&three, 4).unwrap_err().to_string();
    assert!(err.contains("needs as many free slots"), "{err}");
    assert_eq!(decoder.free_slots(), 2, "a refused group takes no slot");
}
