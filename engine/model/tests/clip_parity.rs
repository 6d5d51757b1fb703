//! The CLIP ViT-L/14 expert against open_clip (its `ViT-L-14` vision tower at tiny sizes,
//! random weights, float32, CPU): the spatial tokens of open_clip's own forward, its pooled
//! embedding (cls through `ln_post` and `proj`), and all 17 tokens of the reference's
//! `clip_encode_image`, each within 1e-4.
//! Fixtures: `.venv/bin/python scripts/parity/clip.py`.

use std::collections::HashMap;

use sphinx_model::clip::{ClipConfig, ClipVision};
use sphinx_model::weights::load_into;
use tch::{nn, Device, Tensor};

mod common;
use common::Fixtures;

const FIXTURES: Fixtures = Fixtures::new("clip", "scripts/parity/clip.py");

const TOL: f64 = 1e-4;

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn clip_tokens_match_open_clip() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let cfg = ClipConfig::tiny_test();
    let clip = ClipVision::new(&(vs.root() / "visual"), &cfg).unwrap();
    load_into(&mut vs, &FIXTURES.path("model.safetensors")).unwrap();
    let r: HashMap<String, Tensor> = FIXTURES.tensors("reference.safetensors");
    let ours = tch::no_grad(|| clip.forward(&r["pixels"]).unwrap());
    assert_eq!(ours.size(), [2, 17, 128]);
    let spatial = max_abs(&ours.narrow(1, 1, 16), &r["tokens"]);
    let proj = vs.variables()["visual.proj"].shallow_clone();
    let pooled = max_abs(&ours.select(1, 0).matmul(&proj), &r["pooled"]);
    let all = max_abs(&ours, &r["all_tokens"]);
    eprintln!("CLIP: spatial {spatial:e}, pooled {pooled:e}, all tokens {all:e}");
    assert!(spatial <= TOL && pooled <= TOL && all <= TOL);
    assert!(r["tokens"].abs().max().double_value(&[]) > 1.0);
}
