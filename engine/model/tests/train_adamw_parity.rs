//! The training optimizer against PyTorch: `scripts/parity/adamw.py` runs
//! `torch.optim.AdamW` with the reference's decay groups, `clip_grad_norm_` and the
//! warmup + cosine schedule; our AdamW, clipping and [`Schedule`] must give the same
//! parameters after every step within float32 tolerance.

use std::path::PathBuf;

use serde_json::Value;
use sphinx_model::train::optimizer::{AdamW, AdamWConfig};
use sphinx_model::train::schedule::Schedule;
use tch::{Kind, Tensor};

const TOL: f64 = 1e-6;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn adamw_clipping_and_schedule_match_torch() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures/adamw/adamw.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing fixture {}; generate it with `.venv/bin/python scripts/parity/adamw.py`",
            path.display()
        )
    });
    let fx: Value = serde_json::from_str(&text).unwrap();
    let shapes = fx["shapes"].as_object().unwrap();
    let mut names: Vec<String> = shapes.keys().cloned().collect();
    names.sort();
    let params: Vec<(String, Tensor)> = names
        .iter()
        .map(|n| {
            let shape: Vec<i64> = shapes[n]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect();
            let t = Tensor::from_slice(&floats(&fx["init"][n]))
                .view(shape.as_slice())
                .set_requires_grad(true);
            (n.clone(), t)
        })
        .collect();
    let mut opt = AdamW::new(
        AdamWConfig {
            weight_decay: fx["weight_decay"].as_f64().unwrap(),
            ..Default::default()
        },
        params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect(),
    );
    // The fixture decays only the 2-D projection weight, as the reference's rule does.
    for p in &opt.params {
        assert_eq!(p.decay, p.name.ends_with("wq.weight"), "{}", p.name);
    }
    let sched = Schedule {
        lr: fx["lr"].as_f64().unwrap(),
        min_lr: fx["min_lr"].as_f64().unwrap(),
        warmup_steps: fx["warmup"].as_u64().unwrap(),
        total_steps: fx["total"].as_u64().unwrap(),
    };
    let mut worst = 0.0f64;
    for (step, s) in fx["steps"].as_array().unwrap().iter().enumerate() {
        let lr = sched.lr_at(step as u64);
        assert!(
            (lr - s["lr"].as_f64().unwrap()).abs() < 1e-12,
            "lr at {step}"
        );
        opt.zero_grad();
        // d/dp sum(p * g) = g: sets each gradient to the fixture's.
        let loss = params
            .iter()
            .map(|(n, p)| {
                let g = Tensor::from_slice(&floats(&s["grads"][n])).view(p.size().as_slice());
                (p * g).sum(Kind::Float)
            })
            .fold(Tensor::from(0.0f32), |a, b| a + b);
        loss.backward();
        let norm = opt.clip_grad_norm(fx["clip"].as_f64().unwrap());
        let want = s["grad_norm"].as_f64().unwrap();
        assert!(
            (norm - want).abs() <= 1e-5 * want.max(1.0),
            "grad norm {norm} vs {want}"
        );
        opt.step(lr);
        for (n, p) in &params {
            let want = Tensor::from_slice(&floats(&s["after"][n])).view(p.size().as_slice());
            let err = (p.detach() - want).abs().max().double_value(&[]);
            worst = worst.max(err);
            assert!(err <= TOL, "step {step} {n}: max abs error {err}");
        }
    }
    eprintln!("AdamW vs torch.optim.AdamW: max abs error {worst:e} over 6 steps");
}
