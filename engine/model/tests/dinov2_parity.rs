//! DINOv2 ViT vs transformers' Dinov2Model with SwiGLU, weights renamed to the
//! facebookresearch hub names (random tiny weights, float32, CPU).
//! Fixtures: `.venv/bin/python scripts/make_parity_fixtures.py vision`.

use sphinx_model::dinov2::{DinoConfig, DinoV2};
use sphinx_model::weights;
use tch::{nn, Device, Tensor};

mod common;
use common::Fixtures;

const FIXTURES: Fixtures = Fixtures::new("vision", "scripts/make_parity_fixtures.py vision");

/// Parity bound on encoder features (the float32 acceptance criterion).
const MAX_ABS_ERR: f64 = 1e-4;

fn model() -> DinoV2 {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = DinoV2::new(&(vs.root() / "dinov2_vitg14"), &DinoConfig::tiny_test()).unwrap();
    weights::load_into(&mut vs, &FIXTURES.path("dinov2_weights.safetensors")).unwrap();
    model
}

fn assert_close(got: Tensor, want: &Tensor) {
    assert_eq!(got.size(), want.size());
    let scale = want.abs().max().double_value(&[]);
    assert!(
        scale > 0.1,
        "reference tokens are degenerate (max |x| = {scale})"
    );
    let err = (got - want).abs().max().double_value(&[]);
    eprintln!("max abs error {err:.3e} (reference max |x| {scale:.3})");
    assert!(err <= MAX_ABS_ERR, "max abs error {err} > {MAX_ABS_ERR}");
}

#[test]
fn fixture_sizes_are_the_tiny_config() {
    let cfg: serde_json::Value = FIXTURES.json("config.json");
    let tiny = DinoConfig::tiny_test();
    let d = &cfg["dinov2"];
    assert_eq!(d["embed_dim"], tiny.embed_dim);
    assert_eq!(d["depth"], tiny.depth);
    assert_eq!(d["num_heads"], tiny.num_heads);
    assert_eq!(d["patch_size"], tiny.patch_size);
    assert_eq!(d["pos_grid"], tiny.pos_grid);
}

#[test]
fn tokens_match_with_resampled_positions() {
    let io = FIXTURES.tensors("dinov2_io.safetensors");
    assert_close(model().forward(&io["input"]).unwrap(), &io["tokens"]);
}

#[test]
fn tokens_match_on_the_trained_grid() {
    let io = FIXTURES.tensors("dinov2_io.safetensors");
    assert_close(
        model().forward(&io["input_native"]).unwrap(),
        &io["tokens_native"],
    );
}
