//! Starting a fine-tune from parts: `scripts/assemble_model.py` turns a base InternLM2 in the
//! Hugging Face layout, an open_clip ConvNeXt checkpoint and a DINOv2 hub checkpoint (tiny
//! sizes, the libraries' own key names; `scripts/parity/parts.py`) into one model folder
//! that loads strictly, whose LLM gives transformers' logits and whose encoders are the
//! parts' tensors; a part of the wrong kind fails with one error naming the file.
//! Fixtures: `.venv/bin/python scripts/parity/parts.py`.

use std::process::Command;

use sphinx_model::config::ModelConfig;
use sphinx_model::sphinx::Sphinx;
use sphinx_model::weights::load_into;
use tch::{nn, Device};

mod common;
use common::{workspace, Fixtures};

const FIXTURES: Fixtures = Fixtures::new("parts", "scripts/parity/parts.py");

#[test]
fn assembled_folder_loads_with_the_parts_and_the_llm_matches_transformers() {
    let cfg = ModelConfig::from_json_file(&FIXTURES.path("assembled/config.json")).unwrap();
    assert!(
        cfg.sphinx.skip_tokens,
        "models trained here have a skip token"
    );
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Sphinx::build(
        &vs.root(),
        &cfg.sphinx.llm,
        &cfg.vision(),
        cfg.sphinx.skip_tokens,
    )
    .unwrap();
    // Strict: every variable found, nothing left over, every shape right.
    load_into(&mut vs, &FIXTURES.path("assembled/model.safetensors")).unwrap();
    let vars = vs.variables();
    let parts = FIXTURES.tensors("parts_reference.safetensors");
    assert!(parts.len() > 50);
    for (name, t) in &parts {
        assert!(vars[name].equal(t), "{name} differs from its part");
    }
    let r = FIXTURES.tensors("internlm2/reference.safetensors");
    let logits = tch::no_grad(|| model.llm().forward_tokens(&r["ids"], 0, None).unwrap());
    let err = (&logits - &r["logits"]).abs().max().double_value(&[]);
    assert!(err <= 1e-4, "assembled LLM vs transformers: {err:e}");
}

#[test]
fn a_part_of_the_wrong_kind_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let dino = FIXTURES.path("dinov2_vitg14_pretrain.pth");
    let o = Command::new(workspace().join(".venv/bin/python"))
        .arg(workspace().join("scripts/assemble_model.py"))
        .args(["--llm".as_ref(), FIXTURES.path("internlm2/hf").as_os_str()])
        .args(["--convnext".as_ref(), dino.as_os_str()])
        .args(["--dinov2".as_ref(), dino.as_os_str()])
        .args(["--llama-type", "llama_ens5_light", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("dinov2_vitg14_pretrain.pth: no open_clip ConvNeXt trunk tensors"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("assemble_model:").count(), 1, "{stderr}");
    assert!(!out.join("model.safetensors").exists());
}

#[test]
fn four_expert_folder_from_parts_loads_with_clip_and_blip2_as_released() {
    let cfg = ModelConfig::from_json_file(&FIXTURES.path("assembled_four/config.json")).unwrap();
    let vision = cfg.vision();
    assert!(vision.four.is_some() && !cfg.sphinx.skip_tokens);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _model = Sphinx::build(&vs.root(), &cfg.sphinx.llm, &vision, false).unwrap();
    load_into(&mut vs, &FIXTURES.path("assembled_four/model.safetensors")).unwrap();
    let vars = vs.variables();
    // transformers 5's packed qkv.bias arrives as the released q_bias / v_bias.
    assert!(vars.contains_key("llma.qformer.vision_model.encoder.layers.0.self_attn.q_bias"));
    for (name, t) in &FIXTURES.tensors("parts_four_reference.safetensors") {
        assert!(vars[name].equal(t), "{name} differs from its part");
    }
}
