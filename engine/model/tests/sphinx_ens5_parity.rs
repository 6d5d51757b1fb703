//! The four-expert SPHINX forward (Q-Former + CLIP + ConvNeXt + DINOv2, 32 + 257 words per
//! view) against a composition of peers nobody here wrote: transformers Blip2Model, open_clip
//! ViT, timm ConvNeXt, transformers Dinov2, torch projections and transformers
//! LlamaForCausalLM (`llama_ens5` layout) or MixtralForCausalLM (`mixtral_sparse_ens5`),
//! glued as the reference files do (tiny random weights, float32, CPU): the views, the
//! projected features of all five views and the logits at the text positions, each <= 1e-4.
//! The weights load strictly, so every parameter name is the reference's.
//! The same SPHINX-MoE saved as two model-parallel shards (reference key names) converts
//! with `scripts/convert_checkpoint.py` into a folder whose config selects this whole model
//! and whose forward gives the same logits; shards whose replicated tensors disagree are
//! refused with one error naming the tensor.
//! Fixtures: `.venv/bin/python scripts/parity/sphinx_ens5.py`.

use std::collections::HashMap;
use std::path::PathBuf;

use sphinx_model::config::{LlamaConfig, LlamaType, ModelConfig};
use sphinx_model::mov::MovConfig;
use sphinx_model::sphinx::{PageInput, Sphinx};
use sphinx_model::weights::load_into;
use tch::{nn, Device, Tensor};

mod common;
use common::Fixtures;

const FIXTURES: Fixtures = Fixtures::new("sphinx_ens5", "scripts/parity/sphinx_ens5.py");

const TOL: f64 = 1e-4;

fn fixture(kind: &str, rel: &str) -> PathBuf {
    FIXTURES.path(&format!("{kind}/{rel}"))
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.size(), want.size(), "{what}: shape");
    let scale = want.abs().max().double_value(&[]);
    assert!(scale > 0.1, "{what}: degenerate reference ({scale})");
    let err = (got - want).abs().max().double_value(&[]);
    eprintln!("{what}: max abs error {err:.3e} (reference max |x| {scale:.3})");
    assert!(err <= TOL, "{what}: {err:e} > {TOL:e}");
}

fn check(kind: &str, vision: MovConfig) {
    let llm: LlamaConfig = FIXTURES.json(&format!("{kind}/llm.json"));
    check_weights(kind, &llm, vision, &fixture(kind, "model.safetensors"));
}

/// The forward of the weights at `weights` against `kind`'s peer outputs.
fn check_weights(kind: &str, llm: &LlamaConfig, vision: MovConfig, weights: &std::path::Path) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    // The reference has no skip token: every cell is encoded.
    let model = Sphinx::build(&vs.root(), llm, &vision, false).unwrap();
    load_into(&mut vs, weights).unwrap();
    let io: HashMap<String, Tensor> = FIXTURES.tensors(&format!("{kind}/io.safetensors"));
    let _guard = tch::no_grad_guard();
    let skipped = [false; 4];
    let views = model.page_views(&io["canvas"], &skipped).unwrap();
    assert_close(
        &format!("{kind} small views"),
        &views.dinov2,
        &io["small_views"],
    );
    assert_close(
        &format!("{kind} ConvNeXt views"),
        &views.convnext,
        &io["convnext_views"],
    );
    let features = model.encode_views(&views).unwrap();
    assert_eq!(features.size()[1], 32 + 17, "queries then tokens");
    assert_close(&format!("{kind} features"), &features, &io["features"]);
    let page = PageInput {
        views: &views,
        skipped: &skipped,
        ids: &io["ids"],
    };
    let (_, n_image) = model.assemble(&page).unwrap();
    assert_eq!(n_image, 5 * (32 + 17 + 2));
    let logits = model.forward(&page).unwrap();
    assert_close(&format!("{kind} logits"), &logits, &io["logits"]);
}

#[test]
fn llama_ens5_forward_matches_the_peer_composition() {
    check("llama_ens5", MovConfig::tiny_test_four(true));
}

#[test]
fn mixtral_sparse_ens5_forward_matches_the_peer_composition() {
    check("mixtral_sparse_ens5", MovConfig::tiny_test_four(false));
}

#[test]
fn two_shard_sphinx_moe_release_converts_and_runs_like_the_peers() {
    let dir = "mixtral_sparse_ens5";
    let cfg = ModelConfig::from_json_file(&fixture(dir, "release/converted/config.json")).unwrap();
    assert_eq!(cfg.sphinx.llama_type, LlamaType::MixtralSparseEns5);
    assert!(!cfg.sphinx.skip_tokens);
    assert_eq!(cfg.vision(), MovConfig::tiny_test_four(false));
    let want: LlamaConfig = FIXTURES.json(&format!("{dir}/llm.json"));
    assert_eq!(cfg.sphinx.llm.moe, want.moe);
    check_weights(
        dir,
        &cfg.sphinx.llm,
        cfg.vision(),
        &fixture(dir, "release/converted/model.safetensors"),
    );
}

#[test]
fn shards_whose_replicated_encoder_differs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    )
    .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/convert_checkpoint.py"))
    .arg(fixture("mixtral_sparse_ens5", "release/bad"))
    .arg("--out-dir")
    .arg(tmp.path())
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("llma.qformer.query_tokens: replicated tensor differs between consolidated.00-of-02.model.pth and ['consolidated.01-of-02.model.pth']"),
        "{stderr}"
    );
    assert!(!tmp.path().join("model.safetensors").exists());
}
