//! Continuous against static batching, on the nano's LLM (`ModelConfig::nano()`, random
//! weights: decode time does not depend on what the weights say), on a mixed-length
//! workload: rows of the nano's sequence length (its image block and the OCR prompt,
//! ~470 positions) whose answers end after 8 tokens (three rows in four) or 96 (one in
//! four), in a fixed shuffled order, as OCR answers of short and dense pages do.
//!
//!   bench_decode continuous [rows] [slots]   admit a row as soon as a slot frees
//!   bench_decode static [rows] [slots]       `slots` rows at a time, each group decoded
//!                                            until its longest row ends
//!
//! Both use the same `Decoder`; only the admission differs. Prints rows/s; the ratio of
//! the two is taken by timing both commands side by side (docs/performance.md).

use std::time::Instant;

use sphinx_model::generate::{GenerateConfig, Sampling, READ_EVERY};
use sphinx_model::llama::Llama;
use sphinx_model::Decoder;
use sphinx_model::ModelConfig;
use tch::{nn, Device, Kind, Tensor};

const SEQ_LEN: i64 = 470;
const SHORT: usize = 8;
const LONG: usize = 96;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("continuous");
    let rows: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let slots: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(8);
    if !matches!(mode, "continuous" | "static") {
        eprintln!("usage: bench_decode continuous|static [rows] [slots]");
        std::process::exit(2);
    }
    let _guard = tch::no_grad_guard();
    tch::manual_seed(7);
    let cfg = ModelConfig::nano();
    let vs = nn::VarStore::new(Device::Cpu);
    let llm = Llama::new(vs.root() / "llma", &cfg.sphinx.llm).expect("nano LLM");
    let dim = cfg.sphinx.llm.dim;
    // Budgets: a fixed permutation of 3 short : 1 long.
    let budgets: Vec<usize> = (0..rows)
        .map(|i| if (i * 7 + 3) % 4 == 0 { LONG } else { SHORT })
        .collect();
    let seqs: Vec<Tensor> = (0..rows)
        .map(|_| Tensor::randn([SEQ_LEN, dim], (Kind::Float, Device::Cpu)) * 0.02)
        .collect();
    let gen = GenerateConfig {
        max_new_tokens: LONG,
        sampling: Sampling::Greedy,
        stop: vec![vec![-1]],
        vocab: None,
    };
    let mut decoder = Decoder::new(
        &llm,
        &gen,
        slots,
        SEQ_LEN + LONG as i64,
        READ_EVERY,
        Kind::Float,
        Device::Cpu,
    )
    .expect("decoder");
    let started = Instant::now();
    let (mut next, mut done, mut tokens) = (0, 0, 0);
    while done < rows {
        let admit = match mode {
            "continuous" => true,
            _ => decoder.is_idle(),
        };
        while admit && next < rows && decoder.free_slots() > 0 {
            decoder
                .admit(next, &seqs[next], budgets[next])
                .expect("admit");
            next += 1;
        }
        for f in decoder.step().expect("step") {
            done += 1;
            tokens += f.output.generated;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{mode}: {rows} rows ({slots} slots) in {secs:.2} s: {:.2} rows/s, {:.0} tokens/s, {} host reads",
        rows as f64 / secs,
        tokens as f64 / secs,
        decoder.host_reads()
    );
}
