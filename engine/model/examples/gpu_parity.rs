//! GPU check of the SPHINX-X engine, run by `scripts/gpu-parity.sh` on the lent GPU
//! machine (which has libtorch through PyTorch but no Rust toolchain).
//!
//! `gpu_parity parity <fixtures>`: the CPU float32 parity fixtures (`vision/`, `sphinx/`
//! under `<fixtures>`) rerun on CUDA; prints the relative error `||got - want|| /
//! ||want||` of each output. The encoders alone (float32 trunk, bfloat16 DINOv2, LLM) fail
//! above [`BF16_REL_TOL`]; the whole SPHINX-X page in the engine's GPU kinds
//! (`sphinx::cast_for_gpu`: everything bfloat16) fails above 1.5x the error of the peer
//! composition itself run in bfloat16 (`features_bf16`, `logits_bf16` of the fixture),
//! the bar `tests/sphinx_parity.rs` holds on the CPU. Lines marked `info` are not checked.
//!
//! `gpu_parity write-random <file>`: SPHINX-Tiny-1k shapes with random weights, written as
//! one bf16 safetensors file (what a converted checkpoint looks like).
//!
//! `gpu_parity load-and-run <file>`: times a cold load of that file into a CUDA VarStore
//! and one page forward (global view + 2 of 4 sub-images, 2 skipped, 128 text tokens);
//! the script samples device memory around this step only.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sphinx_model::config::LlamaConfig;
use sphinx_model::convnext::{ConvNext, ConvNextConfig};
use sphinx_model::dinov2::{DinoConfig, DinoV2};
use sphinx_model::sphinx::{self, PageInput, Sphinx};
use sphinx_model::weights;
use sphinx_model::MovConfig;
use tch::{nn, Device, Kind, Tensor};

/// The bfloat16 acceptance bound (relative error against the float32 reference).
const BF16_REL_TOL: f64 = 1e-2;
/// Text tokens of the full-size timing page (a typical OCR prompt plus some answer).
const FULL_TEXT_TOKENS: i64 = 128;
/// Timed repetitions of the full-size page forward (after one warm-up).
const FULL_REPEATS: usize = 5;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if !tch::Cuda::is_available() {
        bail!("CUDA is not available to libtorch (is libtorch_cuda.so on LD_LIBRARY_PATH?)");
    }
    match args.get(1).map(String::as_str) {
        Some("parity") if args.len() == 3 => parity(Path::new(&args[2])),
        Some("write-random") if args.len() == 3 => write_random(Path::new(&args[2])),
        Some("load-and-run") if args.len() == 3 => load_and_run(Path::new(&args[2])),
        _ => bail!(
            "usage: gpu_parity parity <fixtures dir> | write-random <file> | load-and-run <file>"
        ),
    }
}

fn read(path: &Path) -> Result<HashMap<String, Tensor>> {
    Ok(Tensor::read_safetensors(path)
        .with_context(|| format!("reading {}", path.display()))?
        .into_iter()
        .collect())
}

/// Relative L2 error of `got` (any dtype/device) against a float32 reference, checked.
/// `||got - want|| / ||want||`, quietly.
fn rel_of(got: &Tensor, want: &Tensor) -> f64 {
    let got = got.to_device(Device::Cpu).to_kind(Kind::Float);
    let want = want.to_kind(Kind::Float);
    (&got - &want).norm().double_value(&[]) / want.norm().double_value(&[])
}

fn rel_err(what: &str, got: &Tensor, want: &Tensor) -> f64 {
    report(what, got, want, true)
}

/// The same figure for information only (not what the engine runs).
fn info(what: &str, got: &Tensor, want: &Tensor) {
    report(what, got, want, false);
}

fn report(what: &str, got: &Tensor, want: &Tensor, checked: bool) -> f64 {
    let got = got.to_device(Device::Cpu).to_kind(Kind::Float);
    let num = (&got - want).norm().double_value(&[]);
    let den = want.norm().double_value(&[]);
    let max_abs = (&got - want).abs().max().double_value(&[]);
    let rel = num / den;
    let verdict = match (checked, rel <= BF16_REL_TOL) {
        (false, _) => "info",
        (true, true) => "ok",
        (true, false) => "FAIL",
    };
    println!("  {what:<28} rel {rel:.2e}  max abs {max_abs:.2e}  {verdict}");
    rel
}

fn cuda_bf16(t: &Tensor) -> Tensor {
    t.to_device(Device::Cuda(0)).to_kind(Kind::BFloat16)
}

/// A float32 tensor on the GPU holding the bfloat16 rounding of `t`.
fn rounded(t: &Tensor) -> Tensor {
    cuda_bf16(t).to_kind(Kind::Float)
}

/// Rounds every variable to bfloat16 precision, keeping float32 storage.
fn round_through_bf16(vs: &nn::VarStore) {
    let _guard = tch::no_grad_guard();
    for (_, mut v) in vs.variables() {
        let r = v.to_kind(Kind::BFloat16).to_kind(Kind::Float);
        v.copy_(&r);
    }
}

fn parity(fixtures: &Path) -> Result<()> {
    let dev = Device::Cuda(0);
    let mut worst: f64 = 0.0;
    println!(
        "engine GPU kinds on CUDA vs float32 CPU references (encoders alone: tolerance \
         {BF16_REL_TOL:.0e}; the page: 1.5x the peer in bf16):"
    );

    let vision = fixtures.join("vision");
    let io = read(&vision.join("convnext_io.safetensors"))?;
    // The engine's kind for the trunk: float32 weights, float32 pixels (TF32 kernels).
    let mut vs = nn::VarStore::new(dev);
    let convnext = ConvNext::new(
        &(vs.root() / sphinx_model::mov::CONVNEXT_NAME),
        &ConvNextConfig::tiny_test(),
    )?;
    weights::load_into(&mut vs, &vision.join("convnext_weights.safetensors"))?;
    worst = worst.max(rel_err(
        "ConvNeXt tokens (f32 trunk)",
        &convnext.forward(&io["input"].to_device(dev))?,
        &io["tokens"],
    ));
    // Why the trunk is not bfloat16: the same check with bfloat16 weights and pixels.
    let mut vs = nn::VarStore::new(dev);
    let convnext = ConvNext::new(
        &(vs.root() / sphinx_model::mov::CONVNEXT_NAME),
        &ConvNextConfig::tiny_test(),
    )?;
    vs.bfloat16();
    weights::load_into(&mut vs, &vision.join("convnext_weights.safetensors"))?;
    info(
        "  all-bf16 trunk",
        &convnext.forward(&cuda_bf16(&io["input"]))?,
        &io["tokens"],
    );
    // The floor bf16 STORAGE sets, whatever the kernels: the same weights and input
    // rounded to bfloat16, then every operation in float32.
    let mut vs = nn::VarStore::new(dev);
    let convnext = ConvNext::new(
        &(vs.root() / sphinx_model::mov::CONVNEXT_NAME),
        &ConvNextConfig::tiny_test(),
    )?;
    weights::load_into(&mut vs, &vision.join("convnext_weights.safetensors"))?;
    round_through_bf16(&vs);
    info(
        "  floor: bf16-rounded, f32 math",
        &convnext.forward(&rounded(&io["input"]))?,
        &io["tokens"],
    );

    let mut vs = nn::VarStore::new(dev);
    let dino = DinoV2::new(
        &(vs.root() / sphinx_model::mov::DINOV2_NAME),
        &DinoConfig::tiny_test(),
    )?;
    vs.bfloat16();
    weights::load_into(&mut vs, &vision.join("dinov2_weights.safetensors"))?;
    let io = read(&vision.join("dinov2_io.safetensors"))?;
    worst = worst.max(rel_err(
        "DINOv2 tokens (resampled)",
        &dino.forward(&cuda_bf16(&io["input"]))?,
        &io["tokens"],
    ));
    worst = worst.max(rel_err(
        "DINOv2 tokens (native grid)",
        &dino.forward(&cuda_bf16(&io["input_native"]))?,
        &io["tokens_native"],
    ));

    let sphinx_dir = fixtures.join("sphinx");
    let mut vs = nn::VarStore::new(dev);
    let model = Sphinx::new(
        &vs.root(),
        &LlamaConfig::tiny_test(),
        &MovConfig::tiny_test(),
    )?;
    sphinx::cast_for_gpu(&mut vs);
    weights::load_into(&mut vs, &sphinx_dir.join("model.safetensors"))?;
    let io = read(&sphinx_dir.join("io.safetensors"))?;
    let skipped: Vec<bool> = Vec::<i64>::try_from(&io["skipped"])?
        .into_iter()
        .map(|s| s != 0)
        .collect();
    // Pixels stay float32, as the worker sends them; each encoder casts to its kind.
    let views = model.page_views(&io["canvas"].to_device(dev), &skipped)?;
    let mut over_bar = Vec::new();
    let mut against_peer = |what: &str, got: &Tensor, want: &Tensor, peer: &Tensor| {
        let ours = rel_err(what, got, want);
        let bar = 1.5 * rel_of(peer, want);
        println!("    bar: 1.5 x the peer composition in bf16 = {bar:.2e}");
        if ours > bar {
            over_bar.push(format!("{what}: {ours:.2e} > {bar:.2e}"));
        }
    };
    against_peer(
        "SPHINX features (all bf16)",
        &model.encode_views(&views)?,
        &io["features"],
        &io["features_bf16"],
    );
    {
        let mut vs = nn::VarStore::new(dev);
        let model = Sphinx::new(
            &vs.root(),
            &LlamaConfig::tiny_test(),
            &MovConfig::tiny_test(),
        )?;
        weights::load_into(&mut vs, &sphinx_dir.join("model.safetensors"))?;
        round_through_bf16(&vs);
        let views = model.page_views(&rounded(&io["canvas"]), &skipped)?;
        info(
            "  floor: bf16-rounded, f32 math",
            &model.encode_views(&views)?,
            &io["features"],
        );
    }
    let ids = io["ids"].to_device(dev);
    let page = PageInput {
        views: &views,
        skipped: &skipped,
        ids: &ids,
    };
    against_peer(
        "SPHINX logits (skip page, all bf16)",
        &model.forward(&page)?,
        &io["logits"],
        &io["logits_bf16"],
    );
    if !over_bar.is_empty() {
        bail!(
            "bf16 parity failed against the peer's bar: {}",
            over_bar.join("; ")
        );
    }
    if worst > BF16_REL_TOL {
        bail!("bf16 parity failed: worst relative error {worst:.2e} > {BF16_REL_TOL:.0e}");
    }
    println!("bf16 parity passed (worst relative error {worst:.2e})");
    Ok(())
}

fn write_random(file: &Path) -> Result<()> {
    let dev = Device::Cuda(0);
    let (llm, vision) = (LlamaConfig::tinyllama(), MovConfig::sphinx_tiny_1k());
    let start = Instant::now();
    {
        let mut vs = nn::VarStore::new(dev);
        let _model = Sphinx::new(&vs.root(), &llm, &vision)?;
        vs.bfloat16();
        let vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(k, v)| (k, v.to_device(Device::Cpu).contiguous()))
            .collect();
        let params: i64 = vars.iter().map(|(_, t)| t.numel() as i64).sum();
        Tensor::write_safetensors(&vars, file)?;
        println!(
            "wrote {} ({:.2} B parameters, {:.1} GB) in {:.1} s",
            file.display(),
            params as f64 / 1e9,
            std::fs::metadata(file)?.len() as f64 / 1e9,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn load_and_run(file: &Path) -> Result<()> {
    let dev = Device::Cuda(0);
    let (llm, vision) = (LlamaConfig::tinyllama(), MovConfig::sphinx_tiny_1k());

    // Cold load: declare the model on the GPU in the engine's kinds, then copy every
    // tensor in.
    let start = Instant::now();
    let mut vs = nn::VarStore::new(dev);
    let model = Sphinx::new(&vs.root(), &llm, &vision)?;
    sphinx::cast_for_gpu(&mut vs);
    let declared = start.elapsed().as_secs_f64();
    let report = weights::load_into(&mut vs, file)?;
    tch::Cuda::synchronize(0);
    println!(
        "load: {:.2} s ({declared:.2} s declaring, {} tensors, {:.1} GB read)",
        start.elapsed().as_secs_f64(),
        report.tensors,
        report.bytes_read as f64 / 1e9
    );

    let side = vision.canvas_size();
    let canvas = Tensor::randn([3, side, side], (Kind::Float, dev));
    let skipped = [false, false, true, true];
    let ids = Tensor::randint(llm.vocab_size, [FULL_TEXT_TOKENS], (Kind::Int64, dev));
    let run = || -> Result<Tensor> {
        let views = model.page_views(&canvas, &skipped)?;
        let page = PageInput {
            views: &views,
            skipped: &skipped,
            ids: &ids,
        };
        Ok(tch::no_grad(|| model.forward(&page))?)
    };
    let logits = run()?;
    tch::Cuda::synchronize(0);
    if logits.size() != [1, FULL_TEXT_TOKENS, llm.vocab_size] {
        bail!("full-size logits have shape {:?}", logits.size());
    }
    let start = Instant::now();
    for _ in 0..FULL_REPEATS {
        let _logits = run()?;
    }
    tch::Cuda::synchronize(0);
    println!(
        "page forward (3 views encoded, 2 skipped, {FULL_TEXT_TOKENS} text tokens, batch 1): {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3 / FULL_REPEATS as f64
    );
    Ok(())
}
