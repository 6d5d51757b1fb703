//! A full-size SPHINX-MoE on one card: Mixtral-8x7B and the four-expert MoV (CLIP
//! ViT-L/14, the BLIP-2 Q-Former with its EVA ViT-g, ConvNeXt-XXL, DINOv2-g), random
//! weights made on the GPU directly in bfloat16 (a file of ~94 GiB would not fit the
//! lent machine's disk), then one letter page: its views encoded, its image block built,
//! its OCR prompt prefilled and `new` tokens decoded, each phase timed.
//!
//!   moe_gpu [new_tokens]
//!
//! Prints one JSON line: parameters, bytes, build seconds, encode / prefill / decode
//! seconds, sequence length. Peak device memory is read from outside by
//! `scripts/gpu-moe.sh` (nvidia-smi), as tch exposes no allocator statistics.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sphinx_model::generate::{GenerateConfig, Sampling};
use sphinx_model::views::canvas_tensor;
use sphinx_model::{generate, ModelConfig, Sphinx};
use tch::{nn, Device, Kind, Tensor};

fn sync() {
    tch::Cuda::synchronize(0);
}

fn main() -> Result<()> {
    let new: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(16);
    if !tch::Cuda::is_available() {
        bail!("no CUDA device");
    }
    let _guard = tch::no_grad_guard();
    let device = Device::Cuda(0);
    let cfg = ModelConfig::named("sphinx-moe").context("the sphinx-moe preset")?;
    let vision = cfg.vision();

    let t = Instant::now();
    let mut vs = nn::VarStore::new(device);
    vs.set_kind(Kind::BFloat16);
    let model = Sphinx::build(&vs.root(), &cfg.sphinx.llm, &vision, cfg.sphinx.skip_tokens)?;
    sync();
    let build_s = t.elapsed().as_secs_f64();
    let vars = vs.variables();
    let params: i64 = vars.values().map(Tensor::numel).map(|n| n as i64).sum();
    let bytes: i64 = vars
        .values()
        .map(|t| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64)
        .sum();
    drop(vars);

    // A letter page on the model's canvas, every cell encoded (nothing skipped).
    let tile = vision.tiling(cfg.sphinx.skip_tokens);
    let side = tile.canvas;
    let page = image::RgbImage::from_fn(side, side, |x, y| {
        let ink = (y / 12) % 3 == 0 && (x.wrapping_mul(2_654_435_761) >> 29) % 5 != 0;
        image::Rgb(if ink { [20, 20, 20] } else { [250, 250, 250] })
    });
    let cells = (tile.grid * tile.grid) as usize;
    let canvas = canvas_tensor(&page).to_device(device);
    let run = |new: usize| -> Result<serde_json::Value> {
        sync();
        let t = Instant::now();
        let input = model.page_input(&canvas, &vec![false; cells])?;
        let feats = model.encode_views(&input.views)?;
        let block = model.image_block(&feats, &input.skipped)?;
        sync();
        let encode_s = t.elapsed().as_secs_f64();
        // BOS and a 40-token prompt (its length, not its words, is what costs).
        let ids = Tensor::arange_start(1, 41, (Kind::Int64, device));
        let (seq, n_image) = model.assemble_with_image(&ids, Some(&block))?;
        let gen = GenerateConfig {
            max_new_tokens: new,
            sampling: Sampling::Greedy,
            stop: vec![vec![-1]],
            vocab: None,
        };
        let out = generate(model.llm(), &[seq.squeeze_dim(0)], &gen)?;
        sync();
        Ok(json!({
            "views": input.views.len(),
            "image_positions": n_image,
            "seq_len": n_image + 40,
            "new_tokens": out.outputs[0].generated,
            "encode_s": encode_s,
            "prefill_s": out.prefill.as_secs_f64(),
            "decode_s": out.decode.as_secs_f64(),
            "page_s": t.elapsed().as_secs_f64(),
        }))
    };
    run(2)?; // warm-up: cuDNN autotuning, allocator growth
    let timed = run(new)?;
    println!(
        "{}",
        json!({
            "model": "sphinx-moe (random bf16)",
            "params": params,
            "weight_bytes": bytes,
            "build_s": build_s,
            "page": timed,
        })
    );
    Ok(())
}
