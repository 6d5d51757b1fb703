//! CLIP-ConvNeXt trunk vs timm's ConvNeXt (random tiny weights, float32, CPU).
//! Fixtures: `.venv/bin/python scripts/make_parity_fixtures.py vision`.

use std::collections::HashMap;
use std::path::PathBuf;

use sphinx_model::convnext::{ConvNext, ConvNextConfig};
use sphinx_model::weights;
use tch::{nn, Device, Tensor};

/// Parity bound on encoder features (the float32 acceptance criterion).
const MAX_ABS_ERR: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/fixtures/vision")
        .join(name);
    assert!(
        path.exists(),
        "missing fixture {}: run `.venv/bin/python scripts/make_parity_fixtures.py vision`",
        path.display()
    );
    path
}

fn tensors(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture(name))
        .expect("readable fixture")
        .into_iter()
        .collect()
}

#[test]
fn fixture_sizes_are_the_tiny_config() {
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap();
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
    weights::load_into(&mut vs, &fixture("convnext_weights.safetensors")).unwrap();
    let io = tensors("convnext_io.safetensors");
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
