//! A checkpoint in the released layout (LLaMA2-Accessory `consolidated.00-of-01.model.pth`
//! holding `{"model": {"llma.*": ...}}`, `config.json`, `meta.json`; no skip token), converted
//! by `scripts/convert_checkpoint.py` and loaded by the loader `sphinx infer` uses, gives
//! the logits of the public code's composition on a page whose bottom row of cells is
//! padding: every cell encoded, `[start_img, tokens, end_img] x 5`. Malformed releases fail
//! with one error naming the file and the tensor.
//! Fixtures: `.venv/bin/python scripts/parity/sphinx.py` (target/fixtures/sphinx-release/).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sphinx_model::char_tokenizer;
use sphinx_model::model_folder;
use sphinx_model::PageInput;
use tch::{Device, Tensor};

/// The float32 parity bound on logits.
const MAX_ABS_ERR: f64 = 1e-4;
const GENERATOR: &str = ".venv/bin/python scripts/parity/sphinx.py";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(rel: &str) -> PathBuf {
    let p = workspace().join("target/fixtures/sphinx-release").join(rel);
    assert!(
        p.exists(),
        "missing fixture {}: run `{GENERATOR}` from the workspace root",
        p.display()
    );
    p
}

/// Runs the converter; returns (success, stdout + stderr).
fn convert(src: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let py = workspace().join(".venv/bin/python");
    let o = Command::new(&py)
        .arg(workspace().join("scripts/convert_checkpoint.py"))
        .arg(src)
        .arg("--out-dir")
        .arg(out)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", py.display()));
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

/// A converted release folder, ready for `sphinx infer`.
fn converted(extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (ok, log) = convert(&fixture("src"), dir.path(), extra);
    assert!(ok, "conversion failed: {log}");
    assert!(log.contains("without a skip token"), "{log}");
    std::fs::write(
        dir.path().join("tokenizer.json"),
        char_tokenizer::tokenizer_json(),
    )
    .unwrap();
    dir
}

/// The error `sphinx infer`'s loader refuses the folder with.
fn refusal(dir: &Path) -> String {
    format!(
        "{:#}",
        model_folder::load(dir, Device::Cpu)
            .err()
            .expect("the loader must refuse this folder")
    )
}

fn io() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture("io.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

#[test]
fn a_converted_release_encodes_every_cell_like_the_public_code() {
    let dir = converted(&[]);
    let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    assert!(config.contains("\"skip_tokens\": false"), "{config}");
    let loaded = model_folder::load(dir.path(), Device::Cpu).unwrap();
    assert!(!loaded.model.has_skip_token());
    let io = io();
    let padding: Vec<bool> = Vec::<i64>::try_from(&io["padding"])
        .unwrap()
        .into_iter()
        .map(|p| p != 0)
        .collect();
    assert_eq!(padding, [false, false, true, true], "the fixture's page");
    let logits = tch::no_grad(|| {
        let page = loaded.model.page_input(&io["canvas"], &padding).unwrap();
        assert_eq!(page.views.len(), 5, "padded cells are encoded too");
        assert_eq!(page.skipped, [false; 4]);
        loaded
            .model
            .forward(&PageInput {
                views: &page.views,
                skipped: &page.skipped,
                ids: &io["ids"],
            })
            .unwrap()
    });
    let want = &io["logits"];
    assert_eq!(logits.size(), want.size());
    let err = (&logits - want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]);
    println!("released-layout logits: max abs err {err:e} (scale {scale:.3})");
    assert!(scale > 0.1, "degenerate reference logits");
    assert!(
        err <= MAX_ABS_ERR,
        "logits differ from the reference composition by {err:e}"
    );
}

#[test]
fn released_dtypes_convert_and_load() {
    for dtype in ["bfloat16", "float16"] {
        let dir = converted(&["--dtype", dtype]);
        let loaded = model_folder::load(dir.path(), Device::Cpu)
            .unwrap_or_else(|e| panic!("{dtype}: {e:#}"));
        assert!(!loaded.model.has_skip_token(), "{dtype}");
    }
}

#[test]
fn malformed_releases_fail_naming_the_file_and_tensor() {
    let out = tempfile::tempdir().unwrap();
    let (ok, log) = convert(&fixture("bad/missing_shard"), out.path(), &[]);
    assert!(!ok, "{log}");
    assert!(
        log.contains("missing_shard") && log.contains("consolidated.01-of-02.model.pth"),
        "{log}"
    );
    let (ok, log) = convert(&fixture("bad/int_dtype"), out.path(), &[]);
    assert!(!ok, "{log}");
    assert!(
        log.contains("int_dtype/consolidated.00-of-01.model.pth")
            && log.contains("llma.visual_proj.1.weight")
            && log.contains("int32"),
        "{log}"
    );
    assert!(!out.path().join("model.safetensors").exists());

    // config.json claiming a skip token the weights do not have.
    let dir = converted(&[]);
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"skip_tokens\": false", "\"skip_tokens\": true"),
    )
    .unwrap();
    let err = refusal(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("llma.skip_token"),
        "{err}"
    );

    // A tokenizer larger than the model's vocabulary (another model's) is refused by name.
    let dir = converted(&[]);
    let big = workspace().join("target/fixtures/tokenizer/tokenizer.json");
    assert!(
        big.exists(),
        "missing {}: run `.venv/bin/python scripts/parity/tokenizer.py`",
        big.display()
    );
    std::fs::copy(&big, dir.path().join("tokenizer.json")).unwrap();
    let err = refusal(dir.path());
    assert!(
        err.contains("tokenizer.json") && err.contains("vocab_size"),
        "{err}"
    );
}
