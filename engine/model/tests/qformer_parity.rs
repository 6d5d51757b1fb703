//! The BLIP-2 Q-Former expert against Hugging Face `transformers` `Blip2Model` (tiny
//! blip2-opt-2.7b structure, random weights, float32, CPU): the ViT's image tokens and the
//! 32 query features of `get_qformer_features`, each within 1e-4.
//! Fixtures: `.venv/bin/python scripts/parity/qformer.py`.

use std::collections::HashMap;

use sphinx_model::qformer::{QFormer, QFormerConfig};
use sphinx_model::weights::load_into;
use tch::{nn, Device, Tensor};

mod common;
use common::Fixtures;

const FIXTURES: Fixtures = Fixtures::new("qformer", "scripts/parity/qformer.py");

const TOL: f64 = 1e-4;

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn qformer_queries_match_transformers_blip2() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let q = QFormer::new(&vs.root(), &QFormerConfig::tiny_test()).unwrap();
    load_into(&mut vs, &FIXTURES.path("model.safetensors")).unwrap();
    let r: HashMap<String, Tensor> = FIXTURES.tensors("reference.safetensors");
    let _guard = tch::no_grad_guard();
    let image = max_abs(&q.encode_image(&r["pixels"]).unwrap(), &r["image"]);
    let queries = max_abs(&q.forward(&r["pixels"]).unwrap(), &r["queries"]);
    eprintln!("Q-Former: image tokens {image:e}, 32 queries {queries:e}");
    assert!(image <= TOL && queries <= TOL);
    assert!(r["queries"].abs().max().double_value(&[]) > 1.0);
}
