//! One-stage training on the CPU with the tiny model: it overfits 16 synthetic pages
//! (loss falls by >= 90%), a run interrupted mid-way and resumed from its last checkpoint
//! ends with bit-identical weights and the same loss at every later step, bad job specs
//! name the bad field, and the exported folder loads like a converted model.

use std::path::Path;
use std::sync::Arc;

use sphinx_core::synth::{self, SynthConfig};
use sphinx_core::LocalStore;
use sphinx_model::train::checkpoint::Output;
use sphinx_model::train::spec::TrainSpec;
use sphinx_model::train::trainer::{RunControl, TrainOutcome, Trainer};
use sphinx_model::ModelConfig;
use tch::Device;

/// 16 synthetic pages (seed 11) and their conversations in `dir`.
fn synth_pages(dir: &Path) -> String {
    let cfg = SynthConfig {
        seed: 11,
        first_index: 0,
        count: 16,
        noise: false,
        bounds: Default::default(),
    };
    synth::generate(&cfg, dir, |_| {}).unwrap();
    dir.join(synth::CONVERSATIONS_FILE).display().to_string()
}

fn spec(data: &str, extra: &str) -> TrainSpec {
    let text = format!(
        r#"{{"run": "tiny", "model": {{"config": "tiny-train", "seed": 3}},
            "datasets": [{{"path": "{data}", "weight": 1.0}}],
            "batch_size": 8, "grad_accum": 2, "max_text_tokens": 300, "cache_pages": 16,
            "precision": "f32", {extra}}}"#
    );
    TrainSpec::from_json(&text, "test").unwrap()
}

/// The runtime the outputs' store calls run on (the caller's, as in `sphinx train`).
fn runtime() -> tokio::runtime::Handle {
    static RT: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    });
    RT.handle().clone()
}

fn output(dir: &Path) -> Output {
    Output::new(Arc::new(LocalStore::new(dir).unwrap()), "", runtime()).unwrap()
}

fn losses(metrics: &[String]) -> Vec<f64> {
    metrics
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn tiny_model_overfits_sixteen_pages_and_exports_a_loadable_model() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let conv = synth_pages(data.path());
    let spec = spec(
        &conv,
        r#""steps": 60, "lr": 0.01, "warmup_steps": 5, "min_lr": 0.001, "weight_decay": 0.0"#,
    );
    let started = std::time::Instant::now();
    let mut t = Trainer::new(spec, output(out.path()), Device::Cpu, false).unwrap();
    let outcome = t.run(&RunControl::default(), &mut |_| {}).unwrap();
    let l = losses(&t.metrics);
    let (first, last) = (l[0], l[l.len() - 1]);
    let drop = 1.0 - last / first;
    eprintln!(
        "overfit: loss {first:.4} -> {last:.4} ({:.1}% drop) in {} steps, {:.1} s",
        drop * 100.0,
        l.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        drop >= 0.90,
        "loss fell by only {:.1}%: {l:?}",
        drop * 100.0
    );
    // The export is a model folder with a `latest` pointer to it.
    assert_eq!(
        outcome,
        TrainOutcome::Finished {
            model: "models/tiny/".into()
        }
    );
    let model = out.path().join("models/tiny");
    assert_eq!(
        std::fs::read_to_string(out.path().join("models/latest")).unwrap(),
        "tiny\n"
    );
    let cfg = ModelConfig::from_json_file(&model.join("config.json")).unwrap();
    assert_eq!(cfg, ModelConfig::named("tiny-train").unwrap());
    for f in ["model.safetensors", "tokenizer.json", "metrics.jsonl"] {
        assert!(model.join(f).exists(), "{f}");
    }
}

#[test]
fn resumed_run_matches_an_uninterrupted_one() {
    let data = tempfile::tempdir().unwrap();
    let conv = synth_pages(data.path());
    let spec = spec(
        &conv,
        r#""steps": 7, "lr": 0.003, "warmup_steps": 2, "weight_decay": 0.1, "clip_grad": 0.5,
           "checkpoint_every": 3"#,
    );
    // Uninterrupted.
    let out_a = tempfile::tempdir().unwrap();
    let mut a = Trainer::new(spec.clone(), output(out_a.path()), Device::Cpu, false).unwrap();
    a.run(&RunControl::default(), &mut |_| {}).unwrap();
    // Killed after step 5 (no final checkpoint: the newest is step 3), then resumed.
    let out_b = tempfile::tempdir().unwrap();
    let mut b = Trainer::new(spec.clone(), output(out_b.path()), Device::Cpu, false).unwrap();
    let halted = b
        .run(
            &RunControl {
                halt_at: Some(5),
                ..Default::default()
            },
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(
        halted,
        TrainOutcome::Stopped {
            step: 5,
            checkpoint: None
        }
    );
    drop(b);
    let mut c = Trainer::new(spec, output(out_b.path()), Device::Cpu, true).unwrap();
    assert_eq!(c.step(), 3, "resumes from the newest checkpoint");
    c.run(&RunControl::default(), &mut |_| {}).unwrap();
    let (la, lc) = (losses(&a.metrics), losses(&c.metrics));
    eprintln!("uninterrupted {la:?}\nresumed       {lc:?}");
    assert_eq!(la, lc, "same loss at every step");
    for ((na, ta), (nc, tc)) in a.trainable().iter().zip(c.trainable().iter()) {
        assert_eq!(na, nc);
        assert!(ta.equal(tc), "{na} differs after resume");
    }
}

#[test]
fn bad_job_specs_name_the_field() {
    let base = r#""run": "r", "model": {"config": "tiny-train"}, "datasets": [{"path": "d.jsonl"}],
                  "batch_size": 1, "lr": 0.001"#;
    let err = |extra: &str| {
        TrainSpec::from_json(&format!("{{{base}{extra}}}"), "job.json")
            .unwrap_err()
            .to_string()
    };
    let e = err("");
    assert!(e.contains("job.json") && e.contains("steps"), "{e}");
    let e = err(r#", "steps": 0"#);
    assert!(e.contains("`steps`"), "{e}");
    let e = err(r#", "steps": 5, "warmup_steps": 9"#);
    assert!(e.contains("`warmup_steps`"), "{e}");
    let e = err(r#", "steps": 5, "learning_rate": 1"#);
    assert!(e.contains("learning_rate"), "{e}");
    let e = TrainSpec::from_json(
        r#"{"run": "r", "model": {"config": "x"}, "datasets": [{"path": "d", "weight": 0}],
            "steps": 1, "batch_size": 1, "lr": 0.1}"#,
        "j",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("datasets[0].weight"), "{e}");
}

/// A dataset whose records name missing images is refused when the run starts, every
/// missing file named (not at the step that draws the first, again on each resume).
#[test]
fn missing_dataset_images_are_refused_at_the_start() {
    let data = tempfile::tempdir().unwrap();
    let jsonl = synth_pages(data.path());
    let gone = ["000003.png", "000009.png"].map(|n| data.path().join("images").join(n));
    for image in &gone {
        std::fs::remove_file(image).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let job = spec(&jsonl, r#""steps": 2, "lr": 0.001"#);
    let err = Trainer::new(job, output(out.path()), Device::Cpu, false)
        .err()
        .expect("refused");
    let said = format!("{err:#}");
    assert!(said.contains("2 of the 16 records"), "{said}");
    for image in &gone {
        assert!(said.contains(&image.display().to_string()), "{said}");
    }
}

/// The encoders learn exactly when `train_vision` is set: frozen (the paper's MoV) by
/// default, and really updated when asked. (A gradient-free encoder pass once left the
/// nano's random encoders at their initialisation through whole GPU runs.)
#[test]
fn encoders_train_exactly_when_train_vision_is_set() {
    let data = tempfile::tempdir().unwrap();
    let conv = synth_pages(data.path());
    let is_encoder = |n: &str| {
        n.starts_with("llma.openclip_convnext_xxl.") || n.starts_with("llma.dinov2_vitg14.")
    };
    for train_vision in [false, true] {
        let out = tempfile::tempdir().unwrap();
        let spec = spec(
            &conv,
            &format!(r#""steps": 1, "lr": 0.01, "train_vision": {train_vision}"#),
        );
        let mut t = Trainer::new(spec, output(out.path()), Device::Cpu, false).unwrap();
        // Copies: on the CPU in float32 `trainable` hands out the live parameters.
        let before: std::collections::HashMap<String, tch::Tensor> = t
            .trainable()
            .into_iter()
            .map(|(n, p)| (n, p.copy()))
            .collect();
        t.run(&RunControl::default(), &mut |_| {}).unwrap();
        let after: std::collections::HashMap<String, tch::Tensor> =
            t.trainable().into_iter().collect();
        let encoders: Vec<&String> = after.keys().filter(|n| is_encoder(n)).collect();
        if !train_vision {
            assert!(
                encoders.is_empty(),
                "frozen encoders in the optimizer: {encoders:?}"
            );
            continue;
        }
        for name in [
            "llma.openclip_convnext_xxl.stem.0.weight",
            "llma.openclip_convnext_xxl.stages.0.blocks.0.gamma",
            "llma.openclip_convnext_xxl.head.norm.weight",
            "llma.dinov2_vitg14.patch_embed.proj.weight",
            "llma.dinov2_vitg14.pos_embed",
            "llma.dinov2_vitg14.norm.weight",
        ] {
            let moved = (&after[name] - &before[name]).abs().max().double_value(&[]);
            assert!(moved > 1e-4, "{name} did not train (moved {moved:e})");
        }
    }
}
