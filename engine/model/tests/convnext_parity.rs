//! CLIP-ConvNeXt trunk vs timm's ConvNeXt (random tiny weights, float32, CPU).
//! Fixtures: `.venv/bin/python scripts/make_parity_fixtures.py vision`.

use sphinx_model::convnext::{ConvNext, ConvNextConfig};
use sphinx_model::weights;
use tch::{nn, Device};

mod common;
use common::Fixtures;

const FIXTURES: Fixtures = Fixtures::new("vision", "scripts/make_parity_fixtures.py vision");

/// Parity bound on encoder features (the float32 acceptance criterion).
const MAX_ABS_ERR: f64 = 1e-4;

#[test]
fn fixture_sizes_are_the_tiny_config() {
    let cfg: serde_json::Value = FIXTURES.json("config.json");
    let tiny = ConvNextConfig::tiny_test();
    assert_eq!(cfg["convnext"]["depths"], serde_json::json!(tiny.depths));
    assert_eq!(cfg["convnext"]["dims"], serde_json::json!(tiny.dims));
    assert_eq!(
        cfg["convnext"]["norm_eps"],
        serde_json::json!(tiny.norm_eps)
    );
}

#[test]
fn convnext_tokens_match_timm() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = ConvNext::new(
        &(vs.root() / "openclip_convnext_xxl"),
        &ConvNextConfig::tiny_test(),
    )
    .unwrap();
    weights::load_into(&mut vs, &FIXTURES.path("convnext_weights.safetensors")).unwrap();
    let io = FIXTURES.tensors("convnext_io.safetensors");
    let got = model.forward(&io["input"]).unwrap();
    let want = &io["tokens"];
    assert_eq!(got.size(), want.size());
    let err = (got - want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]);
    assert!(
        scale > 0.1,
        "reference tokens are degenerate (max |x| = {scale})"
    );
    eprintln!("max abs error {err:.3e} (reference max |x| {scale:.3})");
    assert!(err <= MAX_ABS_ERR, "max abs error {err} > {MAX_ABS_ERR}");
}
