//! `sphinx eval` end to end on held-out synthetic pages with the random-weight nano
//! model: every page gets a prediction row whose reference is the page's OCR answer
//! without tags and boxes, whose edits are the Levenshtein distance, and the summary's
//! CER is exactly the rows' totals.

use sphinx_core::synth::{self, SynthConfig, TextBounds};
use sphinx_worker::eval_cmd::{evaluate, levenshtein, plain_text, EvalArgs};
use sphinx_worker::random_model;

/// This harness is no render child: documents render in `sphinx` child processes.
fn render_in_sphinx_children() {
    std::env::set_var(
        sphinx_core::isolate::ENV_RENDER_PROGRAM,
        env!("CARGO_BIN_EXE_sphinx"),
    );
}

/// The error `sphinx eval` gives on `data` with a model folder that does not exist (so
/// an error about the data must come before any model is looked for).
fn refusal(data: &std::path::Path, no_model: &std::path::Path) -> String {
    let args = EvalArgs {
        model: no_model.to_path_buf(),
        data: data.to_path_buf(),
        limit: None,
        max_new_tokens: 4,
        batch: 1,
        cpu: true,
        predictions: None,
        quiet: true,
        models: Default::default(),
    };
    format!("{:#}", evaluate(&args).unwrap_err())
}

#[test]
fn eval_scores_every_page_and_the_summary_adds_up() {
    render_in_sphinx_children();
    let data = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        seed: 5,
        first_index: 1000,
        count: 3,
        noise: false,
        bounds: TextBounds {
            max_lines: Some(2),
            min_em_px: Some(24),
            ..Default::default()
        },
    };
    synth::generate(&cfg, data.path(), |_| {}).unwrap();
    let model = tempfile::tempdir().unwrap();
    random_model::ensure(model.path()).unwrap();
    let predictions = data.path().join("predictions.jsonl");
    let args = EvalArgs {
        model: model.path().to_path_buf(),
        data: data.path().join(synth::CONVERSATIONS_FILE),
        limit: None,
        max_new_tokens: 12,
        batch: 2,
        cpu: true,
        predictions: Some(predictions.clone()),
        quiet: true,
        models: Default::default(),
    };
    let summary = evaluate(&args).unwrap();

    // The references, straight from the conversations file.
    let references: Vec<String> = std::fs::read_to_string(&args.data)
        .unwrap()
        .lines()
        .map(|l| {
            let rec: synth::ConversationRecord = serde_json::from_str(l).unwrap();
            plain_text(&rec.conversations[1].value)
        })
        .collect();
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&predictions)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "one row per page");
    let (mut edits, mut chars) = (0u64, 0u64);
    for (row, reference) in rows.iter().zip(&references) {
        assert_eq!(row["reference"], reference.as_str());
        assert!(!reference.is_empty() && !reference.contains("<p>"));
        let hypothesis = row["hypothesis"].as_str().unwrap();
        assert!(hypothesis.chars().count() <= 12, "{hypothesis:?}");
        let e = levenshtein(hypothesis, reference) as u64;
        assert_eq!(row["edits"], e);
        let confidence = row["confidence"].as_f64().unwrap();
        assert!(confidence > 0.0 && confidence <= 1.0, "{row}");
        edits += e;
        chars += reference.chars().count() as u64;
    }
    assert_eq!(summary["pages"], 3);
    assert_eq!(summary["edits"], edits);
    assert_eq!(summary["reference_chars"], chars);
    let cer = summary["cer"].as_f64().unwrap();
    assert!(
        (cer - edits as f64 / chars as f64).abs() < 1e-12,
        "{summary}"
    );
    assert!(summary["pages_per_s"].as_f64().unwrap() > 0.0);
    // A random model reads every page wrong: no right page to rank against.
    assert!(rows.iter().all(|r| r["edits"] != 0));
    assert!(summary["confidence_auroc"].is_null(), "{summary}");
}

/// A wrong data path is said before a model is loaded (the model is missing too).
#[test]
fn a_wrong_data_path_is_said_before_the_model_is_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let err = refusal(
        &tmp.path().join("no-data.jsonl"),
        &tmp.path().join("no-model"),
    );
    assert!(err.contains("no-data.jsonl"), "{err}");
    assert!(!err.contains("no-model"), "{err}");
}

/// Images the data names but that are gone are all said at once, before a model is
/// loaded (the model is missing too), not one by one after minutes of scoring.
#[test]
fn missing_images_are_said_before_the_model_is_loaded() {
    let data = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        seed: 5,
        first_index: 0,
        count: 4,
        noise: false,
        bounds: TextBounds::nano(),
    };
    synth::generate(&cfg, data.path(), |_| {}).unwrap();
    let mut gone: Vec<std::path::PathBuf> = std::fs::read_dir(data.path().join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    gone.sort();
    for image in &gone[1..3] {
        std::fs::remove_file(image).unwrap();
    }
    let err = refusal(
        &data.path().join(synth::CONVERSATIONS_FILE),
        &data.path().join("no-model"),
    );
    assert!(err.contains("2 of the 4 pages"), "{err}");
    for image in &gone[1..3] {
        assert!(err.contains(&image.display().to_string()), "{err}");
    }
    assert!(!err.contains("no-model"), "{err}");
}

/// Data with no OCR record is refused, not scored as a perfect CER of 0 over 0 pages.
#[test]
fn data_without_an_ocr_record_is_refused_not_scored_perfect() {
    let data = tempfile::tempdir().unwrap();
    let jsonl = data.path().join("captions.jsonl");
    let record = serde_json::json!({
        "id": "c1",
        "image": "page.png",
        "conversations": [
            {"from": "human", "value": "<image>\nDescribe the page."},
            {"from": "gpt", "value": "A page."}
        ]
    });
    std::fs::write(&jsonl, format!("{record}\n")).unwrap();
    let err = refusal(&jsonl, &data.path().join("no-model"));
    assert!(
        err.contains("nothing to score") && err.contains(&jsonl.display().to_string()),
        "{err}"
    );
}
