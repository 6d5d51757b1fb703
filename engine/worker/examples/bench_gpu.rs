//! GPU throughput of the worker's batch path (`sphinx_worker::stream::run_batch`, what
//! `sphinx serve` runs) on a SPHINX-Tiny-1k-sized model with random weights in bf16.
//!
//! `bench_gpu <workdir> <max_new_tokens> <modes> <batch sizes...>` writes the random
//! model folder, loads it like `sphinx serve`, and for each mode and batch size runs that
//! many letter pages (5 views each: nothing skipped) with one OCR task each, after one
//! warm-up batch. Modes, a comma list: `eager`; `static`, eager with the shapes graphs
//! replay (cache widths rounded up); `graphs`, the decode step replayed from CUDA graphs
//! (`--cuda-graphs`). Prints one JSON line per mode and batch size: pages/s end to end,
//! LLM sequence length, generated tokens, encode / prefill / decode seconds, decode
//! tokens/s, steps replayed from graphs, and a digest of every answer's text: `graphs`
//! gives the digest of `static` when its replays compute what the eager steps do, while
//! `eager` may differ from both in bf16, whose sums depend on the width. For
//! `scripts/bench-gpu.sh` to set against Hugging Face `generate` on the same lengths.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use image::{Rgb, RgbImage};
use serde_json::json;
use sphinx_core::Task;
use sphinx_model::char_tokenizer;
use sphinx_model::ModelConfig;
use sphinx_model::Sphinx;
use sphinx_worker::batch::{BatchOptions, PreparedPage};
use sphinx_worker::stream::run_batch;
use tch::{nn, Device, Tensor};

/// A US-letter page rendered for the 1024 canvas: 791 x 1024, so no sub-image is skipped.
const PAGE: (u32, u32) = (791, 1024);

fn write_model(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let cfg = ModelConfig::named("sphinx-tiny-1k").context("preset")?;
    std::fs::write(
        dir.join(sphinx_model::model_folder::CONFIG_FILE),
        serde_json::to_vec_pretty(&cfg)?,
    )?;
    std::fs::write(
        dir.join(sphinx_model::model_folder::TOKENIZER_FILE),
        char_tokenizer::tokenizer_json(),
    )?;
    let mut vs = nn::VarStore::new(Device::Cuda(0));
    Sphinx::build(
        &vs.root(),
        &cfg.sphinx.llm,
        &cfg.vision(),
        cfg.sphinx.skip_tokens,
    )?;
    vs.bfloat16();
    let named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.to_device(Device::Cpu)))
        .collect();
    Tensor::write_safetensors(&named, dir.join(sphinx_model::model_folder::WEIGHTS_FILE))?;
    Ok(())
}

/// Deterministic page-like noise: dark strokes on white.
fn page_image(seed: u32) -> RgbImage {
    RgbImage::from_fn(PAGE.0, PAGE.1, |x, y| {
        let h = x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed;
        if (y / 12).is_multiple_of(3) && !h.is_multiple_of(5) {
            Rgb([20, 20, 20])
        } else {
            Rgb([250, 250, 250])
        }
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        bail!("usage: bench_gpu <workdir> <max_new_tokens> <eager,static,graphs> <batch sizes...>");
    }
    if !tch::Cuda::is_available() {
        bail!("no CUDA device");
    }
    let dir = Path::new(&args[1]).join("sphinx-tiny-1k-random");
    let max_new: usize = args[2].parse()?;
    let modes: Vec<&str> = args[3].split(',').collect();
    if let Some(m) = modes
        .iter()
        .find(|m| !matches!(**m, "eager" | "static" | "graphs"))
    {
        bail!("unknown mode {m:?} (eager, static, graphs)");
    }
    let sizes: Vec<usize> = args[4..]
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    write_model(&dir)?;
    let start = Instant::now();
    let loaded = sphinx_model::model_folder::load(&dir, Device::Cuda(0))?;
    eprintln!("model loaded in {:.2} s", start.elapsed().as_secs_f64());
    let base = BatchOptions {
        max_new_tokens: max_new,
        max_views: 64,
        max_rows: 64,
        ..BatchOptions::default()
    };
    let page = |i: usize| {
        PreparedPage::from_image(
            &page_image(i as u32),
            [612.0, 792.0],
            (format!("{i:064x}"), 0, 1),
            vec![Task::Ocr],
            &loaded.tile,
        )
    };
    for mode in modes {
        let opts = BatchOptions {
            cuda_graphs: mode == "graphs",
            static_shapes: mode == "static",
            ..base.clone()
        };
        // Warm-up: cuDNN autotuning, allocator growth.
        let warm: Vec<PreparedPage> = (0..2).map(page).collect::<Result<_>>()?;
        run_batch(&loaded, &warm, &opts)?;
        for &b in &sizes {
            let pages: Vec<PreparedPage> = (0..b).map(page).collect::<Result<_>>()?;
            tch::Cuda::synchronize(0);
            let t0 = Instant::now();
            let (results, stats) = run_batch(&loaded, &pages, &opts)?;
            tch::Cuda::synchronize(0);
            let wall = t0.elapsed().as_secs_f64();
            let t = &results[0].tasks[0].tokens;
            let digest =
                results
                    .iter()
                    .flat_map(|r| &r.tasks)
                    .fold(0xcbf2_9ce4_8422_2325_u64, |h, task| {
                        task.raw_text
                            .bytes()
                            .chain([0])
                            .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
                    });
            println!(
                "{}",
                json!({
                    "mode": mode,
                    "batch": b,
                    "seq_len": t.prompt + t.visual,
                    "max_new_tokens": max_new,
                    "generated": stats.generated_tokens,
                    "wall_s": wall,
                    "encode_s": stats.encode.as_secs_f64(),
                    "prefill_s": stats.prefill.as_secs_f64(),
                    "decode_s": stats.decode.as_secs_f64(),
                    "pages_per_s": b as f64 / wall,
                    "decode_tokens_per_s": stats.generated_tokens as f64 / stats.decode.as_secs_f64(),
                    "graph_replays": stats.graph_replays,
                    "digest": format!("{digest:016x}"),
                })
            );
        }
    }
    Ok(())
}
