//! Mixtral's sparse MoE against Hugging Face `transformers` `MixtralForCausalLM` (random
//! tiny weights, float32, CPU; 4 experts, top-2): the MoE block's output within 1e-4 with
//! the same two experts chosen for every token, and the whole LLM's logits within 1e-4.
//! Fixtures: `.venv/bin/python scripts/parity/mixtral.py`.

use std::collections::HashMap;

use sphinx_model::config::LlamaConfig;
use sphinx_model::llama::Llama;
use sphinx_model::moe::SparseMoe;
use sphinx_model::weights::load_into;
use tch::{nn, Device, Tensor};

mod common;
use common::Fixtures;

const FIXTURES: Fixtures = Fixtures::new("mixtral", "scripts/parity/mixtral.py");

const TOL: f64 = 1e-4;

fn setup() -> (LlamaConfig, HashMap<String, Tensor>) {
    let cfg: LlamaConfig = FIXTURES.json("llm.json");
    let reference = FIXTURES.tensors("reference.safetensors");
    (cfg, reference)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn moe_block_routes_and_mixes_like_transformers() {
    let (cfg, r) = setup();
    let moe_cfg = cfg.moe.clone().expect("a MoE config");
    let mut vs = nn::VarStore::new(Device::Cpu);
    let block = SparseMoe::new(vs.root() / "feed_forward", cfg.dim, &moe_cfg);
    load_into(&mut vs, &FIXTURES.path("block.safetensors")).unwrap();
    let _guard = tch::no_grad_guard();
    let (_, indices) = block.route(&r["block_input"]);
    let want = &r["block_indices"];
    assert_eq!(indices.size(), want.size());
    let same = indices.eq_tensor(want).all().int64_value(&[]);
    assert_eq!(
        same, 1,
        "the same two experts, in the same order, for every token"
    );
    // Routing is not degenerate: several experts are chosen first.
    let firsts = Vec::<i64>::try_from(want.select(1, 0)).unwrap();
    let mut distinct = firsts.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 3, "first choices {firsts:?}");
    let out = block.forward(&r["block_input"]);
    let err = max_abs(&out, &r["block_output"]);
    eprintln!("MoE block: max |ours - transformers| = {err:e}");
    assert!(err <= TOL, "MoE block: {err:e}");
    assert!(r["block_output"].abs().max().double_value(&[]) > 0.5);
}

#[test]
fn mixtral_logits_match_transformers() {
    let (cfg, r) = setup();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Llama::new(vs.root() / "llma", &cfg).unwrap();
    load_into(&mut vs, &FIXTURES.path("model.safetensors")).unwrap();
    let logits = tch::no_grad(|| model.forward_tokens(&r["ids"], 0, None).unwrap());
    let err = max_abs(&logits, &r["logits"]);
    eprintln!("Mixtral: max |logits - transformers| = {err:e}");
    assert!(err <= TOL, "Mixtral logits: {err:e}");
    assert!(r["logits"].abs().max().double_value(&[]) > 1.0);
}
