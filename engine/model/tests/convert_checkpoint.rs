//! `scripts/convert_checkpoint.py` on a tiny reference-named model split into two
//! fairscale model-parallel shards: the merged file equals the unsplit weights and the
//! engine's logits from it match `transformers`. Also the converter's refusals.
//! The same for a sparse-MoE (Mixtral) LLM, whose stacked experts merge per expert.
//! Fixtures: `.venv/bin/python scripts/parity/llama.py` and `scripts/parity/mixtral.py`
//! (they run the converter).

use std::path::Path;
use std::process::Command;

use sphinx_model::config::{LlamaType, SphinxConfig};
use sphinx_model::llama::Llama;
use sphinx_model::weights::load_into;
use tch::{nn, Device};

mod common;
use common::{workspace, Fixtures};

const LLAMA: Fixtures = Fixtures::new("llama", "scripts/parity/llama.py");
const MIXTRAL: Fixtures = Fixtures::new("mixtral", "scripts/parity/mixtral.py");

const LOGITS_TOL: f64 = 1e-4;

#[test]
fn merged_shards_equal_the_unsplit_model_and_match_transformers() {
    let cfg = SphinxConfig::from_json_file(&LLAMA.path("gqa/converted/config.json")).unwrap();
    assert_eq!(cfg.llama_type, LlamaType::LlamaEns5Light);
    let converted = LLAMA.tensors("gqa/converted/model.safetensors");
    let unsplit = LLAMA.tensors("gqa/unsplit_with_extra.safetensors");
    assert_eq!(converted.len(), unsplit.len());
    for (name, t) in &unsplit {
        assert!(
            converted[name].equal(t),
            "{name}: merged tensor differs from the unsplit one"
        );
    }

    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Llama::new(vs.root() / "llma", &cfg.llm).unwrap();
    // The replicated non-LLM tensor the shards carry (as SPHINX's start_img).
    let _start_img =
        (vs.root() / "llma").var("start_img", &[1, 1, cfg.llm.dim], nn::Init::Const(0.0));
    load_into(&mut vs, &LLAMA.path("gqa/converted/model.safetensors")).unwrap();
    let r = LLAMA.tensors("gqa/reference.safetensors");
    let logits = tch::no_grad(|| model.forward_tokens(&r["ids"], 0, None).unwrap());
    let err = (&logits - &r["logits"]).abs().max().double_value(&[]);
    assert!(
        err <= LOGITS_TOL,
        "converted model logits vs transformers: {err:e}"
    );
}

fn run_converter(src: &Path, out: &Path) -> (bool, String) {
    let py = workspace().join(".venv/bin/python");
    assert!(
        py.exists(),
        "missing {}: run scripts/setup.sh",
        py.display()
    );
    let o = Command::new(py)
        .arg(workspace().join("scripts/convert_checkpoint.py"))
        .arg(src)
        .arg("--out-dir")
        .arg(out)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn copy_shards(to: &Path, skip: &str) {
    for e in std::fs::read_dir(LLAMA.path("gqa/shards")).unwrap() {
        let e = e.unwrap();
        if e.file_name() != skip {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn converter_names_a_missing_shard() {
    let dir = tempfile::tempdir().unwrap();
    copy_shards(dir.path(), "consolidated.01-of-02.model.pth");
    let (ok, stderr) = run_converter(dir.path(), &dir.path().join("out"));
    assert!(!ok);
    assert!(
        stderr.contains("missing ['consolidated.01-of-02.model.pth']"),
        "{stderr}"
    );
}

#[test]
fn converter_refuses_weights_that_contradict_config() {
    let dir = tempfile::tempdir().unwrap();
    copy_shards(dir.path(), "config.json");
    let cfg = r#"{"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 4, "multiple_of": 256}"#;
    std::fs::write(dir.path().join("config.json"), cfg).unwrap();
    let (ok, stderr) = run_converter(dir.path(), &dir.path().join("out"));
    assert!(!ok);
    // Both problems at once: wk/wv imply 2 KV heads, w1/w2/w3 imply a 240-wide FFN.
    assert!(
        stderr.contains("llma.layers.0.attention.wk.weight: merged shape (32, 64)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("llma.layers.1.feed_forward.w3.weight"),
        "{stderr}"
    );
    assert!(!dir.path().join("out/model.safetensors").exists());
}

#[test]
fn mixtral_shards_merge_per_expert_and_match_transformers() {
    let cfg = SphinxConfig::from_json_file(&MIXTRAL.path("converted/config.json")).unwrap();
    let moe = cfg
        .llm
        .moe
        .clone()
        .expect("the converter carries `moe` over");
    assert_eq!(
        (moe.num_experts, moe.experts_per_token, moe.hidden_dim),
        (4, 2, 96)
    );
    let converted = MIXTRAL.tensors("converted/model.safetensors");
    let unsplit = MIXTRAL.tensors("unsplit_with_extra.safetensors");
    assert_eq!(converted.len(), unsplit.len());
    for (name, t) in &unsplit {
        assert!(converted[name].equal(t), "{name}: merged tensor differs");
    }

    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Llama::new(vs.root() / "llma", &cfg.llm).unwrap();
    let _start_img =
        (vs.root() / "llma").var("start_img", &[1, 1, cfg.llm.dim], nn::Init::Const(0.0));
    load_into(&mut vs, &MIXTRAL.path("converted/model.safetensors")).unwrap();
    let r = MIXTRAL.tensors("reference.safetensors");
    let logits = tch::no_grad(|| model.forward_tokens(&r["ids"], 0, None).unwrap());
    let err = (&logits - &r["logits"]).abs().max().double_value(&[]);
    assert!(
        err <= LOGITS_TOL,
        "converted Mixtral vs transformers: {err:e}"
    );
}

#[test]
fn converter_refuses_experts_that_do_not_split_into_moe_num_experts() {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(MIXTRAL.path("shards")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let cfg_path = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["moe"]["num_experts"] = 5.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let (ok, stderr) = run_converter(dir.path(), &dir.path().join("out"));
    assert!(!ok);
    assert!(
        stderr.contains(
            "llma.layers.1.feed_forward.w2: stacked experts of shapes [(192, 64), (192, 64)]"
        ) && stderr.contains("moe.num_experts=5"),
        "{stderr}"
    );
    assert!(!dir.path().join("out/model.safetensors").exists());
}
