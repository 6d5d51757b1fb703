//! `scripts/convert_hf_llm.py` on base LLMs as Hugging Face publishes them: a Llama written
//! by transformers' `save_pretrained` and a Mixtral in the mistralai hub layout (checked by
//! transformers' own loader in the fixture) give transformers' logits within 1e-4.
//! (InternLM2 is `tests/internlm2_parity.rs`.) Fixtures: `.venv/bin/python scripts/parity/hf_llm.py`.

use std::collections::HashMap;
use std::path::PathBuf;

use sphinx_model::config::LlamaConfig;
use sphinx_model::llama::Llama;
use sphinx_model::weights::load_into;
use tch::{nn, Device, Tensor};

fn fixture(rel: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/fixtures/hf_llm")
        .join(rel);
    assert!(
        p.exists(),
        "missing fixture {}: run `.venv/bin/python scripts/parity/hf_llm.py`",
        p.display()
    );
    p
}

fn check(kind: &str) -> LlamaConfig {
    let cfg: LlamaConfig = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("{kind}/converted/llm.json"))).unwrap(),
    )
    .unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Llama::new(vs.root() / "llma", &cfg).unwrap();
    load_into(
        &mut vs,
        &fixture(&format!("{kind}/converted/llm.safetensors")),
    )
    .unwrap();
    let r: HashMap<String, Tensor> =
        Tensor::read_safetensors(fixture(&format!("{kind}/reference.safetensors")))
            .unwrap()
            .into_iter()
            .collect();
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
