//! `scripts/convert_hf_llm.py` on base LLMs as Hugging Face publishes them: a Llama written
//! by transformers' `save_pretrained` and a Mixtral in the mistralai hub layout (checked by
//! transformers' own loader in the fixture) give transformers' logits within 1e-4.
//! (InternLM2 is `tests/internlm2_parity.rs`.) Fixtures: `.venv/bin/python scripts/parity/hf_llm.py`.

use std::collections::HashMap;

use sphinx_model::config::LlamaConfig;
use sphinx_model::llama::Llama;
use sphinx_model::weights::load_into;
use tch::{nn, Device, Tensor};

mod common;
use common::Fixtures;

const FIXTURES: Fixtures = Fixtures::new("hf_llm", "scripts/parity/hf_llm.py");

fn check(kind: &str) -> LlamaConfig {
    let cfg: LlamaConfig = FIXTURES.json(&format!("{kind}/converted/llm.json"));
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Llama::new(vs.root() / "llma", &cfg).unwrap();
    load_into(
        &mut vs,
        &FIXTURES.path(&format!("{kind}/converted/llm.safetensors")),
    )
    .unwrap();
    let r: HashMap<String, Tensor> = FIXTURES.tensors(&format!("{kind}/reference.safetensors"));
    let logits = tch::no_grad(|| model.forward_tokens(&r["ids"], 0, None).unwrap());
    let err = (&logits - &r["logits"]).abs().max().double_value(&[]);
    eprintln!("{kind}: max |logits - transformers| = {err:e}");
    assert!(err <= 1e-4, "{kind}: {err:e}");
    assert!(r["logits"].abs().max().double_value(&[]) > 1.0);
    cfg
}

#[test]
fn save_pretrained_llama_converts_to_transformers_logits() {
    let cfg = check("llama");
    assert_eq!(cfg.ffn_hidden_dim(), 240);
}

#[test]
fn hub_layout_mixtral_converts_to_transformers_logits() {
    let cfg = check("mixtral");
    assert_eq!(cfg.moe.map(|m| m.num_experts), Some(4));
}
