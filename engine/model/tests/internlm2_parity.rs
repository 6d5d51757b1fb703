//! InternLM2 as a backbone: a tiny random model in the InternLM2 hub layout (packed
//! `wqkv`, InternLM2's names; `scripts/parity/internlm2.py`), converted by
//! `scripts/convert_hf_llm.py`, gives the logits of Hugging Face `transformers`
//! `LlamaForCausalLM` on the same weights within 1e-4 (InternLM2 is LLaMA's architecture
//! under other names, as InternLM's own convert2llama relies on). A checkpoint whose
//! `wqkv` does not fit its config fails conversion with one error naming the tensor.
//! Fixtures: `.venv/bin/python scripts/parity/internlm2.py`.

use std::path::Path;
use std::process::Command;

use sphinx_model::config::LlamaConfig;
use sphinx_model::llama::Llama;
use sphinx_model::weights::load_into;
use tch::{nn, Device, Tensor};

mod common;
use common::{workspace, Fixtures};

const FIXTURES: Fixtures = Fixtures::new("internlm2", "scripts/parity/internlm2.py");

const TOL: f64 = 1e-4;

#[test]
fn converted_internlm2_logits_match_transformers_llama() {
    let cfg: LlamaConfig = FIXTURES.json("converted/llm.json");
    // The intermediate size is InternLM2's own, not the multiple_of rule's.
    assert_eq!(cfg.hidden_dim, Some(96));
    assert_eq!(cfg.ffn_hidden_dim(), 96);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Llama::new(vs.root() / "llma", &cfg).unwrap();
    load_into(&mut vs, &FIXTURES.path("converted/llm.safetensors")).unwrap();
    let r: std::collections::HashMap<String, Tensor> = FIXTURES.tensors("reference.safetensors");
    let logits = tch::no_grad(|| model.forward_tokens(&r["ids"], 0, None).unwrap());
    let err = (&logits - &r["logits"]).abs().max().double_value(&[]);
    eprintln!("InternLM2: max |logits - transformers Llama| = {err:e}");
    assert!(err <= TOL, "InternLM2 logits: {err:e}");
    assert!(r["logits"].abs().max().double_value(&[]) > 1.0);
}

fn convert(src: &Path, out: &Path) -> (bool, String) {
    let o = Command::new(workspace().join(".venv/bin/python"))
        .arg(workspace().join("scripts/convert_hf_llm.py"))
        .arg(src)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn internlm2_with_a_wrong_head_split_fails_naming_wqkv() {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(FIXTURES.path("hf")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    // Claim MHA: wqkv would need (4 + 2 * 4) * 16 rows, the file has (4 + 2 * 2) * 16.
    let cfg_path = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["num_key_value_heads"] = 4.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let out = dir.path().join("out/llm.safetensors");
    let (ok, stderr) = convert(dir.path(), &out);
    assert!(!ok);
    for layer in 0..2 {
        let want = format!("model.layers.{layer}.attention.wqkv.weight: shape (128, 64)");
        assert!(stderr.contains(&want), "{stderr}");
    }
    assert!(stderr.contains("(192, 64)"), "{stderr}");
    assert!(!out.exists());
}
