//! Safetensors loading: float32 / bfloat16 / float16 files into float32 and bfloat16
//! models, and ONE error that lists every missing, unexpected, mis-shaped and
//! unsupported-dtype tensor of a wrong checkpoint.
//! Fixtures: `.venv/bin/python scripts/parity/llama.py`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use sphinx_model::config::LlamaConfig;
use sphinx_model::llama::Llama;
use sphinx_model::weights::{list_tensors, load_files, load_into, WeightsError};
use tch::{nn, Device, Kind, Tensor};

mod common;
use common::Fixtures;

const FIXTURES: Fixtures = Fixtures::new("llama", "scripts/parity/llama.py");

fn gqa_config() -> LlamaConfig {
    FIXTURES.json("gqa/llm.json")
}

fn model_vs(kind: Kind) -> (nn::VarStore, Llama) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Llama::new(vs.root() / "llma", &gqa_config()).unwrap();
    vs.set_kind(kind);
    (vs, model)
}

fn reference_tensors(rel: &str) -> HashMap<String, Tensor> {
    FIXTURES.tensors(rel)
}

#[test]
fn float32_file_loads_every_tensor_exactly() {
    let (mut vs, _m) = model_vs(Kind::Float);
    let report = load_into(&mut vs, &FIXTURES.path("gqa/model.safetensors")).unwrap();
    let reference = reference_tensors("gqa/model.safetensors");
    assert_eq!(report.tensors, reference.len());
    for (name, var) in vs.variables() {
        assert!(var.equal(&reference[&name]), "{name} differs from the file");
    }
}

#[test]
fn half_precision_files_convert_into_a_float32_model() {
    for (file, kind) in [
        ("gqa/model.bf16.safetensors", Kind::BFloat16),
        ("gqa/model.f16.safetensors", Kind::Half),
    ] {
        let (mut vs, _m) = model_vs(Kind::Float);
        load_into(&mut vs, &FIXTURES.path(file)).unwrap();
        let stored = reference_tensors(file);
        for (name, var) in vs.variables() {
            assert_eq!(var.kind(), Kind::Float);
            assert_eq!(stored[&name].kind(), kind);
            assert!(
                var.equal(&stored[&name].to_kind(Kind::Float)),
                "{file}: {name}"
            );
        }
    }
}

#[test]
fn float32_file_converts_into_a_bfloat16_model() {
    let (mut vs, _m) = model_vs(Kind::BFloat16);
    load_into(&mut vs, &FIXTURES.path("gqa/model.safetensors")).unwrap();
    let reference = reference_tensors("gqa/model.safetensors");
    for (name, var) in vs.variables() {
        assert_eq!(var.kind(), Kind::BFloat16);
        assert!(
            var.equal(&reference[&name].to_kind(Kind::BFloat16)),
            "{name}"
        );
    }
}

/// A checkpoint that is wrong in every way at once, written by the test itself.
fn write_wrong_checkpoint(dir: &Path) -> PathBuf {
    let mut tensors: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = Vec::new();
    for (name, shape) in list_tensors(&FIXTURES.path("gqa/model.safetensors")).unwrap() {
        let mut shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        let mut dtype = Dtype::F32;
        match name.as_str() {
            "llma.layers.1.feed_forward.w2.weight" => continue, // missing
            "llma.layers.0.attention.wk.weight" => shape[0] += 16, // mis-shaped
            "llma.norm.weight" => dtype = Dtype::I32,           // unsupported dtype
            _ => {}
        }
        let bytes = vec![0u8; shape.iter().product::<usize>() * 4];
        tensors.push((name, shape, dtype, bytes));
    }
    tensors.push((
        "llma.layers.7.attention.wq.weight".into(),
        vec![2, 2],
        Dtype::F32,
        vec![0u8; 16],
    ));
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let path = dir.join("wrong.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();
    path
}

#[test]
fn wrong_checkpoint_lists_every_problem_in_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_wrong_checkpoint(dir.path());
    let (mut vs, _m) = model_vs(Kind::Float);
    let before: HashMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.copy()))
        .collect();
    let err = load_into(&mut vs, &path).unwrap_err();
    let WeightsError::Mismatch(m) = &err else {
        panic!("expected one Mismatch error, got {err}");
    };
    assert_eq!(m.missing, ["llma.layers.1.feed_forward.w2.weight"]);
    assert_eq!(m.unexpected, ["llma.layers.7.attention.wq.weight"]);
    assert_eq!(m.mis_shaped.len(), 1);
    assert_eq!(m.mis_shaped[0].name, "llma.layers.0.attention.wk.weight");
    assert_eq!(m.mis_shaped[0].expected, [32, 64]);
    assert_eq!(m.mis_shaped[0].found, [48, 64]);
    assert_eq!(
        m.bad_dtype,
        [("llma.norm.weight".to_string(), "I32".to_string())]
    );
    let text = err.to_string();
    for needle in [
        path.display().to_string().as_str(),
        "1 missing, 1 unexpected, 1 mis-shaped, 1 with unsupported dtype",
        "missing:    llma.layers.1.feed_forward.w2.weight",
        "unexpected: llma.layers.7.attention.wq.weight",
        "mis-shaped: llma.layers.0.attention.wk.weight (model [32, 64], checkpoint [48, 64])",
        "bad dtype:  llma.norm.weight (I32",
    ] {
        assert!(text.contains(needle), "error lacks {needle:?}:\n{text}");
    }
    // Nothing was copied: a refused checkpoint leaves the model untouched.
    for (name, var) in vs.variables() {
        assert!(
            var.equal(&before[&name]),
            "{name} changed after a refused load"
        );
    }
}

#[test]
fn checkpoint_of_another_model_is_refused_with_all_shapes() {
    let (mut vs, _m) = model_vs(Kind::Float);
    let err = load_into(&mut vs, &FIXTURES.path("mha_scaled/model.safetensors")).unwrap_err();
    let WeightsError::Mismatch(m) = &err else {
        panic!("expected Mismatch, got {err}");
    };
    // Same names, every tensor a different shape (dim 96 vs 64, vocab 256 vs 320).
    assert!(m.missing.is_empty() && m.unexpected.is_empty());
    assert_eq!(m.mis_shaped.len(), vs.variables().len());
}

#[test]
fn unreadable_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (mut vs, _m) = model_vs(Kind::Float);
    let absent = dir.path().join("absent.safetensors");
    let err = load_into(&mut vs, &absent).unwrap_err();
    assert!(
        matches!(err, WeightsError::Open { .. }) && err.to_string().contains("absent.safetensors"),
        "{err}"
    );
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(
        &garbage,
        b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!",
    )
    .unwrap();
    let err = load_into(&mut vs, &garbage).unwrap_err();
    assert!(
        matches!(err, WeightsError::Format { .. })
            && err.to_string().contains("garbage.safetensors"),
        "{err}"
    );
}

#[test]
fn tensors_may_come_from_several_files_but_not_twice() {
    let (mut vs, _m) = model_vs(Kind::Float);
    let file = FIXTURES.path("gqa/model.safetensors");
    let err = load_files(&mut vs, &[&file, &file]).unwrap_err();
    assert!(matches!(err, WeightsError::Duplicate { .. }), "{err}");
}
