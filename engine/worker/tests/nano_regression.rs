//! The committed nano (`models/sphinx-nano/`) still reads: `sphinx eval` on the 200
//! held-out pages `scripts/train-nano.sh` scores it on (seed 7 from index 1,000,000, the
//! script's PAGE_FLAGS) must give a CER within 2 points of the figure recorded when it
//! was trained (`eval-heldout.json`, the figure the README quotes), so the model, the
//! page path or the decoder cannot silently regress; and its answers' confidence must
//! still rank its wrong pages below its right ones.

use std::path::PathBuf;

use sphinx_core::synth::{self, SynthConfig, TextBounds};
use sphinx_worker::eval_cmd::{evaluate, EvalArgs};

/// This harness is no render child: pages render in `sphinx` child processes.
fn render_in_sphinx_children() {
    std::env::set_var(
        sphinx_core::isolate::ENV_RENDER_PROGRAM,
        env!("CARGO_BIN_EXE_sphinx"),
    );
}

#[test]
fn committed_nano_reads_held_out_pages_as_well_as_recorded() {
    render_in_sphinx_children();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = root.join("models/sphinx-nano");
    assert!(
        model.join("model.safetensors").is_file(),
        "{} is committed with the checkout",
        model.display()
    );
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("eval-heldout.json")).unwrap()).unwrap();
    let figure = recorded["cer"].as_f64().unwrap();
    assert_eq!(recorded["pages"], 200);
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let quoted = format!("CER {:.1}%", 100.0 * figure);
    assert!(readme.contains(&quoted), "README quotes {quoted}");

    let data = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        seed: 7,
        first_index: 1_000_000,
        count: 200,
        noise: false,
        // scripts/train-nano.sh PAGE_FLAGS.
        bounds: TextBounds::nano(),
    };
    synth::generate(&cfg, data.path(), |_| {}).unwrap();
    let summary = evaluate(&EvalArgs {
        model,
        data: data.path().join(synth::CONVERSATIONS_FILE),
        limit: None,
        max_new_tokens: 64,
        batch: 50,
        cpu: true,
        predictions: None,
        quiet: true,
        models: Default::default(),
    })
    .unwrap();
    let cer = summary["cer"].as_f64().unwrap();
    assert_eq!(summary["pages"], 200);
    assert!(
        cer <= figure + 0.02,
        "held-out CER {cer:.4} regressed past the recorded {figure:.4} + 2 points: {summary}"
    );
    // Its confidence tells its wrong pages from its right ones far better than chance
    // (0.5): 0.86 measured on 2026-12-06 (docs/nano.md).
    let auroc = summary["confidence_auroc"].as_f64().unwrap();
    assert!(auroc >= 0.75, "confidence AUROC {auroc:.3}: {summary}");
}
