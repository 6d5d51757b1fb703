//! The LLaMA backbone against Hugging Face `transformers` `LlamaForCausalLM` (random
//! weights, float32, CPU): logits within 1e-4, with GQA, non-default FFN sizing, a
//! non-default RoPE theta with linear scaling, and key padding masks.
//! Fixtures: `.venv/bin/python scripts/parity/llama.py`.

use std::collections::HashMap;

use sphinx_model::config::LlamaConfig;
use sphinx_model::llama::Llama;
use sphinx_model::weights::load_into;
use tch::{nn, Device, Kind, Tensor};

mod common;
use common::Fixtures;

const FIXTURES: Fixtures = Fixtures::new("llama", "scripts/parity/llama.py");

/// Required agreement with transformers on float32 logits.
const LOGITS_TOL: f64 = 1e-4;

fn load_model(name: &str) -> (nn::VarStore, Llama, HashMap<String, Tensor>) {
    let cfg: LlamaConfig = FIXTURES.json(&format!("{name}/llm.json"));
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Llama::new(vs.root() / "llma", &cfg).unwrap();
    load_into(
        &mut vs,
        &FIXTURES.path(&format!("{name}/model.safetensors")),
    )
    .unwrap();
    let reference = FIXTURES.tensors(&format!("{name}/reference.safetensors"));
    (vs, model, reference)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn check_logits(name: &str) {
    let (_vs, model, r) = load_model(name);
    let logits = tch::no_grad(|| model.forward_tokens(&r["ids"], 0, None).unwrap());
    let err = max_abs(&logits, &r["logits"]);
    eprintln!("{name}: max |logits - transformers| = {err:e}");
    assert!(
        err <= LOGITS_TOL,
        "{name}: max |logits - transformers| = {err:e}"
    );
    // The reference logits are O(1): a tolerance this tight is a real check.
    assert!(r["logits"].abs().max().double_value(&[]) > 1.0);
}

#[test]
fn fixture_model_is_the_tiny_test_preset() {
    let cfg: LlamaConfig = FIXTURES.json("gqa/llm.json");
    assert_eq!(cfg, LlamaConfig::tiny_test());
    // multiple_of 48 and ffn_dim_multiplier 1.3 move the hidden size off the default path.
    assert_eq!(cfg.ffn_hidden_dim(), 240);
}

#[test]
fn gqa_logits_match_transformers() {
    check_logits("gqa");
}

#[test]
fn mha_with_scaled_rope_matches_transformers() {
    check_logits("mha_scaled");
}

/// bfloat16 keeps 8 significant bits (relative rounding 2^-8 ~ 0.4%); through two
/// layers the logits may drift a few times that, relative to their largest magnitude.
const BF16_REL_TOL: f64 = 0.05;

#[test]
fn bfloat16_model_tracks_the_float32_reference() {
    let (mut vs, model, r) = load_model("gqa");
    vs.bfloat16();
    let logits = tch::no_grad(|| model.forward_tokens(&r["ids"], 0, None).unwrap());
    assert_eq!(logits.kind(), Kind::BFloat16);
    let scale = r["logits"].abs().max().double_value(&[]);
    let rel = max_abs(&logits.to_kind(Kind::Float), &r["logits"]) / scale;
    eprintln!("bf16 logits: max error {rel:.4} of the largest logit");
    assert!(
        rel <= BF16_REL_TOL,
        "bf16 logits drift {rel:.4} of the largest logit"
    );
}

#[test]
fn inputs_embeds_path_equals_token_path() {
    let (_vs, model, r) = load_model("gqa");
    tch::no_grad(|| {
        let embeds = model.embed_tokens(&r["ids"]).unwrap();
        let hidden = model.forward_embeds(&embeds, 0, None, None).unwrap();
        let err = max_abs(&model.logits(&hidden), &r["logits"]);
        assert!(err <= LOGITS_TOL, "inputs_embeds path: {err:e}");
    });
}

#[test]
fn key_mask_matches_transformers_attention_mask() {
    let (_vs, model, r) = load_model("gqa");
    let mask = r["key_mask"].to_kind(Kind::Bool);
    let logits = tch::no_grad(|| {
        let embeds = model.embed_tokens(&r["ids"]).unwrap();
        let hidden = model.forward_embeds(&embeds, 0, None, Some(&mask)).unwrap();
        model.logits(&hidden)
    });
    // A masked position's own query row differs by design (it may see itself so no row
    // is all-masked); every other row must match transformers.
    let keep = mask.unsqueeze(-1).to_kind(Kind::Float);
    let err = max_abs(&(&logits * &keep), &(&r["masked_logits"] * &keep));
    assert!(err <= LOGITS_TOL, "masked logits: {err:e}");
    let changed = max_abs(&r["masked_logits"].get(1), &r["logits"].get(1));
    assert!(
        changed > 1e-2,
        "the mask must change row 1 for this test to mean anything"
    );
}

#[test]
fn bad_inputs_are_typed_errors() {
    let (_vs, model, r) = load_model("gqa");
    let float_ids = r["ids"].to_kind(Kind::Float);
    assert!(model.embed_tokens(&float_ids).is_err());
    let wrong_width = Tensor::zeros([1, 3, 7], (Kind::Float, Device::Cpu));
    let err = model
        .forward_embeds(&wrong_width, 0, None, None)
        .unwrap_err();
    assert!(err.to_string().contains("[batch, seq, 64]"), "{err}");
    let limit = model.config().rope_positions();
    let long = Tensor::zeros([1, limit + 1, 64], (Kind::Float, Device::Cpu));
    assert!(model.forward_embeds(&long, 0, None, None).is_err());
    let bad_mask = Tensor::ones([2, 5], (Kind::Bool, Device::Cpu));
    let embeds = model.embed_tokens(&r["ids"]).unwrap();
    let err = model
        .forward_embeds(&embeds, 0, None, Some(&bad_mask))
        .unwrap_err();
    assert!(err.to_string().contains("key mask"), "{err}");
}
