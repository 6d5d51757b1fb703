//! `sphinx run` end to end in-process with a tiny random model: a multi-page PDF, an
//! image and a corrupt file give page results, merged results and an error record
//! under the cloud's keys; the exit status says something failed; a rerun computes
//! nothing again and leaves every result untouched.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sphinx_core::keys;
use sphinx_core::LimitArgs;
use sphinx_core::OutputFormat;
use sphinx_core::{DocumentResult, PageResult};
use sphinx_model::char_tokenizer;
use sphinx_model::ModelConfig;
use sphinx_model::Sphinx;
use sphinx_worker::run_cmd::{self, RunArgs};
use tch::{nn, Device, Tensor};

/// This harness is no render child: documents render in `sphinx` child processes.
fn render_in_sphinx_children() {
    std::env::set_var(
        sphinx_core::isolate::ENV_RENDER_PROGRAM,
        env!("CARGO_BIN_EXE_sphinx"),
    );
}

/// A one-page image document.
const PALETTE: &str = "tests/data/formats/palette.png";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A random tiny model folder laid out like an exported one.
fn tiny_model(dir: &Path) {
    tiny_model_with(dir, true)
}

/// ... with or without a skip token (a converted release has none).
fn tiny_model_with(dir: &Path, skip_tokens: bool) {
    let mut cfg = ModelConfig::named("tiny-train").unwrap();
    cfg.sphinx.skip_tokens = skip_tokens;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), char_tokenizer::tokenizer_json()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    sphinx_model::seeded::with_seed(11, || {
        Sphinx::build(&vs.root(), &cfg.sphinx.llm, &cfg.vision(), skip_tokens)
    })
    .unwrap();
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    Tensor::write_safetensors(&named, dir.join("model.safetensors")).unwrap();
}

fn args(inputs: &Path, out: &Path, model: &Path) -> RunArgs {
    RunArgs {
        inputs: vec![inputs.to_path_buf()],
        out: out.to_path_buf(),
        model: Some(model.to_path_buf()),
        tasks: vec!["ocr".parse().unwrap(), "caption:short".parse().unwrap()],
        max_batch_pages: 3,
        decode_slots: 2,
        max_new_tokens: 4,
        // Asked for on the CPU: refused with a warning, and the run decodes eagerly.
        cuda_graphs: true,
        overlays: true,
        formats: "all".parse().unwrap(),
        limits: LimitArgs::default(),
        tile_threads: Some(2),
        quiet: true,
        cpu: true,
        devices: Default::default(),
        models: Default::default(),
    }
}

/// A temporary folder whose `docs/` holds copies of `files` (path in the repository, name).
fn docs_folder(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for (from, name) in files {
        std::fs::copy(repo().join(from), docs.join(name)).unwrap();
    }
    (tmp, docs)
}

fn mtimes(dir: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(mtimes(&path));
        } else {
            out.push((path.clone(), path.metadata().unwrap().modified().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn run_writes_cloud_keys_and_a_rerun_skips_finished_pages() {
    render_in_sphinx_children();
    let (tmp, docs) = docs_folder(&[
        ("samples/mattsnotes.pdf", "notes.pdf"),
        (PALETTE, "palette.png"),
    ]);
    std::fs::write(docs.join("broken.pdf"), b"%PDF-1.4\nnot really").unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model);
    let out = tmp.path().join("out");

    let code = run_cmd::run(args(&docs, &out, &model)).unwrap();
    assert_eq!(
        code,
        ExitCode::from(2),
        "a failed document makes the exit status 2"
    );

    let pdf_id = keys::doc_id(&std::fs::read(docs.join("notes.pdf")).unwrap());
    let png_id = keys::doc_id(&std::fs::read(docs.join("palette.png")).unwrap());
    let bad_id = keys::doc_id(b"%PDF-1.4\nnot really");
    for (doc_id, pages) in [(&pdf_id, 3), (&png_id, 1)] {
        for page in 0..pages {
            let r = PageResult::from_json(
                &std::fs::read(out.join(keys::page_result(doc_id, page))).unwrap(),
            )
            .unwrap();
            assert_eq!((r.page_index, r.page_count), (page, pages));
            assert_eq!(r.tasks.len(), 2, "both tasks ran");
            assert!(r.tasks.iter().all(|t| t.tokens.generated <= 4));
            assert!(out
                .join(format!("overlays/{doc_id}/page-{page:04}.png"))
                .exists());
        }
        let merged = DocumentResult::from_json(
            &std::fs::read(out.join(keys::document_result(doc_id))).unwrap(),
        )
        .unwrap();
        assert!(merged.missing_pages.is_empty());
        assert_eq!(merged.pages.len(), pages as usize);
        // --formats all: every other result file, each recorded in the JSON.
        let formats: Vec<OutputFormat> = merged.outputs.iter().map(|o| o.format).collect();
        assert_eq!(
            formats,
            [
                OutputFormat::Txt,
                OutputFormat::Hocr,
                OutputFormat::Alto,
                OutputFormat::Pdf
            ]
        );
        for o in &merged.outputs {
            assert_eq!(o.reason, None, "{:?}", o.format);
            let key = o.key.clone().unwrap();
            assert_eq!(key, keys::document_output(doc_id, o.format));
            assert!(out.join(&key).is_file(), "{key}");
        }
        let text =
            std::fs::read_to_string(out.join(keys::document_output(doc_id, OutputFormat::Txt)))
                .unwrap();
        assert_eq!(
            text.matches('\u{c}').count(),
            pages as usize - 1,
            "pages split by form feeds"
        );
        let pdf =
            std::fs::read(out.join(keys::document_output(doc_id, OutputFormat::Pdf))).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        if pages == 3 {
            let original = std::fs::read(docs.join("notes.pdf")).unwrap();
            assert!(
                pdf.starts_with(&original),
                "the original PDF is kept byte for byte"
            );
        }
    }
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(keys::error_record(&bad_id))).unwrap())
            .unwrap();
    assert_eq!(record["source"], "broken.pdf");
    assert!(!out.join(keys::document_result(&bad_id)).exists());

    // documents.jsonl maps each input, in input order, to its result or its failure.
    let index: Vec<serde_json::Value> = std::fs::read_to_string(out.join("documents.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sources: Vec<&str> = index
        .iter()
        .map(|d| d["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["broken.pdf", "notes.pdf", "palette.png"]);
    for line in &index {
        let source = line["source"].as_str().unwrap();
        assert_eq!(line["input"], docs.join(source).display().to_string());
    }
    assert_eq!(index[0]["status"], "failed");
    assert_eq!(index[0]["code"], record["code"]);
    assert_eq!(index[0]["error"], record["message"]);
    assert!(index[0].get("result").is_none());
    for (line, doc_id, pages) in [(&index[1], &pdf_id, 3), (&index[2], &png_id, 1)] {
        assert_eq!(line["status"], "ok");
        assert_eq!(line["doc_id"], doc_id.as_str());
        assert_eq!(
            (line["pages"].as_u64(), line["pages_done"].as_u64()),
            (Some(pages), Some(pages))
        );
        assert_eq!(line["result"], keys::document_result(doc_id));
        assert_eq!(line["outputs"].as_array().unwrap().len(), 4);
        let merged: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(keys::document_result(doc_id))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            merged["source"], line["source"],
            "the merged result names its input"
        );
        // The index gives the lowest confidence of the document's answers.
        let lowest = merged["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["confidence"].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        let said = line["confidence"].as_f64().unwrap();
        assert!(
            (said - lowest).abs() < 1e-6 && said > 0.0 && said <= 1.0,
            "{line}"
        );
    }

    // A rerun: every page is already done, so nothing is written again.
    let before = mtimes(&out.join("results"));
    let code = run_cmd::run(args(&docs, &out, &model)).unwrap();
    assert_eq!(code, ExitCode::from(2));
    assert_eq!(
        mtimes(&out.join("results")),
        before,
        "results untouched by a rerun"
    );

    // A lost page result is recomputed by the next run, and only that one.
    std::fs::remove_file(out.join(keys::page_result(&pdf_id, 1))).unwrap();
    std::fs::remove_file(out.join(keys::document_result(&pdf_id))).unwrap();
    run_cmd::run(args(&docs, &out, &model)).unwrap();
    assert!(out.join(keys::page_result(&pdf_id, 1)).exists());
    assert!(out.join(keys::document_result(&pdf_id)).exists());
    let after = mtimes(&out.join(format!("results/{png_id}")));
    let png_before: Vec<_> = before
        .iter()
        .filter(|(p, _)| p.starts_with(out.join(format!("results/{png_id}"))))
        .cloned()
        .collect();
    assert_eq!(after, png_before, "other documents untouched");
}

#[test]
fn skip_token_and_released_models_both_run_and_say_what_a_page_cost() {
    render_in_sphinx_children();
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    // A wide page: the bottom row of the 2x2 grid is padding.
    let page = image::RgbImage::from_fn(1200, 300, |x, y| {
        let ink = (x / 40 + y / 30) % 3 == 0;
        image::Rgb(if ink { [0, 0, 0] } else { [250, 250, 250] })
    });
    page.save(docs.join("wide.png")).unwrap();
    let doc_id = keys::doc_id(&std::fs::read(docs.join("wide.png")).unwrap());
    let mut visual = Vec::new();
    for skip_tokens in [true, false] {
        let model = tmp.path().join(format!("model-{skip_tokens}"));
        tiny_model_with(&model, skip_tokens);
        let out = tmp.path().join(format!("out-{skip_tokens}"));
        let code = run_cmd::run(args(&docs, &out, &model)).unwrap();
        assert_eq!(code, ExitCode::SUCCESS, "skip_tokens {skip_tokens}");
        let r =
            PageResult::from_json(&std::fs::read(out.join(keys::page_result(&doc_id, 0))).unwrap())
                .unwrap();
        assert_eq!(r.tasks.len(), 2);
        let v = r.tasks[0].tokens.visual;
        assert!(r.tasks.iter().all(|t| t.tokens.visual == v));
        visual.push(v);
    }
    // tiny-train: 17 tokens per view + start/end. The skip-token model encodes the global
    // view and the top row (3 blocks) plus 2 skip tokens; the released layout all 5 blocks.
    assert_eq!(visual, [3 * 19 + 2, 5 * 19]);
}

#[test]
fn text_formats_without_the_ocr_task_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // No model folder and no input exist: the refusal must come first.
    let mut a = args(&tmp.path().join("docs"), &out, &tmp.path().join("no-model"));
    a.tasks = vec![
        "caption".parse().unwrap(),
        "grounding:the title".parse().unwrap(),
    ];
    a.formats = "txt,pdf".parse().unwrap();
    let err = format!("{:#}", run_cmd::run(a.clone()).unwrap_err());
    assert!(
        err.contains("--formats txt,pdf needs the ocr task"),
        "{err}"
    );
    assert!(err.contains("caption --task grounding:the title"), "{err}");
    assert!(!out.exists(), "nothing may be written for a refused run");
    // JSON alone needs no OCR: the run gets as far as the inputs, which are looked at
    // before a model (minutes of loading for a large one) is.
    a.formats = "json".parse().unwrap();
    let err = format!("{:#}", run_cmd::run(a.clone()).unwrap_err());
    assert!(err.contains("cannot read") && err.contains("docs"), "{err}");
    assert!(!err.contains("no-model"), "{err}");
    std::fs::create_dir_all(tmp.path().join("docs")).unwrap();
    let err = format!("{:#}", run_cmd::run(a.clone()).unwrap_err());
    assert_eq!(err, "no files found in the given inputs");
    // With something to read, the run gets as far as the missing model.
    std::fs::write(tmp.path().join("docs/a.png"), b"not read").unwrap();
    let err = format!("{:#}", run_cmd::run(a).unwrap_err());
    assert!(err.contains("no-model"), "{err}");
    assert!(!out.exists(), "nothing may be written for a refused run");
}

/// `sphinx tile` (1024 px, 2x2 by default) and then `sphinx run` with a model that needs
/// another layout, into the same folder: the run tiles the document again for its model
/// instead of failing every page on bundles it cannot read.
#[test]
fn a_document_tiled_for_another_layout_is_tiled_again() {
    render_in_sphinx_children();
    let (tmp, docs) = docs_folder(&[(PALETTE, "palette.png")]);
    let out = tmp.path().join("out");
    let tiled = std::process::Command::new(env!("CARGO_BIN_EXE_sphinx"))
        .args(["tile", "--quiet", "--out"])
        .args([&out, &docs])
        .output()
        .unwrap();
    assert!(
        tiled.status.success(),
        "{}",
        String::from_utf8_lossy(&tiled.stderr)
    );
    let manifest = |out: &Path| -> sphinx_core::DocumentManifest {
        let work = out.join("work");
        let doc = std::fs::read_dir(&work)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        sphinx_core::DocumentManifest::from_json(&std::fs::read(doc.join("manifest.json")).unwrap())
            .unwrap()
    };
    assert_eq!(manifest(&out).tile_config.canvas, 1024);

    let model = tmp.path().join("model");
    tiny_model(&model);
    let mut a = args(&docs, &out, &model);
    a.formats = "json".parse().unwrap();
    a.overlays = false;
    assert_eq!(run_cmd::run(a).unwrap(), ExitCode::SUCCESS);
    let now = manifest(&out);
    assert_eq!((now.tile_config.canvas, now.tile_config.grid), (256, 2));
    let result = out.join("results").join(format!("{}.json", now.doc_id));
    let merged = DocumentResult::from_json(&std::fs::read(result).unwrap()).unwrap();
    assert_eq!(merged.pages.len(), 1);
    assert!(!out.join("errors").exists(), "no page may fail");
}

/// A rerun into the same `--out` keeps finished pages, so one with another model, other
/// tasks or other formats is refused up front, naming both runs; the same run again
/// (its tasks in any order) goes ahead.
#[test]
fn a_rerun_with_other_settings_is_refused() {
    render_in_sphinx_children();
    let (tmp, docs) = docs_folder(&[(PALETTE, "palette.png")]);
    let model = tmp.path().join("model");
    tiny_model(&model);
    let out = tmp.path().join("out");
    let first = args(&docs, &out, &model);
    assert_eq!(run_cmd::run(first.clone()).unwrap(), ExitCode::SUCCESS);

    let mut same = first.clone();
    same.tasks.reverse();
    assert_eq!(run_cmd::run(same).unwrap(), ExitCode::SUCCESS);

    let refused = |a: RunArgs| format!("{:#}", run_cmd::run(a).unwrap_err());
    let mut tasks = first.clone();
    tasks.tasks = vec!["caption".parse().unwrap()];
    tasks.formats = "json".parse().unwrap();
    let err = refused(tasks);
    assert!(
        err.contains("tasks caption:short ocr, formats txt,hocr,alto,pdf,json")
            && err.contains("this run asks for model model, tasks caption, formats json"),
        "{err}"
    );
    // Refused before any weights are read: this folder does not even exist.
    let mut model_b = first.clone();
    model_b.model = Some(tmp.path().join("other"));
    let err = refused(model_b);
    assert!(
        err.contains("with model model,") && err.contains("for model other,"),
        "{err}"
    );
    let mut formats = first;
    formats.formats = "txt".parse().unwrap();
    assert!(refused(formats).contains("formats txt,json"));
}

/// Two different files with one name (`a/x.pdf`, `b/x.pdf` given directly) are two
/// documents: neither takes the other's place in `inbox/`, and each has its result.
#[test]
fn files_sharing_a_name_are_each_run() {
    render_in_sphinx_children();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::copy(repo().join("samples/mattsnotes.pdf"), a.join("x.pdf")).unwrap();
    std::fs::copy(repo().join(PALETTE), b.join("x.pdf")).unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model);
    let out = tmp.path().join("out");
    let mut run = args(&a, &out, &model);
    run.inputs = vec![a.join("x.pdf"), b.join("x.pdf")];
    run.formats = "json".parse().unwrap();
    run.overlays = false;
    assert_eq!(run_cmd::run(run).unwrap(), ExitCode::SUCCESS);
    for (file, source, pages) in [
        (a.join("x.pdf"), "a/x.pdf", 3),
        (b.join("x.pdf"), "b/x.pdf", 1),
    ] {
        let doc_id = keys::doc_id(&std::fs::read(&file).unwrap());
        let merged = DocumentResult::from_json(
            &std::fs::read(out.join(keys::document_result(&doc_id))).unwrap(),
        )
        .unwrap();
        assert_eq!(merged.source.as_deref(), Some(source));
        assert_eq!(merged.pages.len(), pages);
        assert_eq!(
            std::fs::read(out.join("inbox").join(source)).unwrap(),
            std::fs::read(&file).unwrap()
        );
    }
}

/// `x.pdf.job.json` beside `x.pdf` names x.pdf's tasks, as it does in the inbox: it is
/// read with its document and is no failed document itself.
#[test]
fn a_job_sidecar_sets_its_documents_tasks_and_is_no_document() {
    render_in_sphinx_children();
    let (tmp, docs) = docs_folder(&[(PALETTE, "palette.png")]);
    std::fs::write(
        docs.join("palette.png.job.json"),
        br#"{"schema_version":1,"tasks":[{"task":"caption","detail":"short"}]}"#,
    )
    .unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model);
    let out = tmp.path().join("out");
    let mut run = args(&docs, &out, &model);
    run.formats = "json".parse().unwrap();
    run.overlays = false;
    assert_eq!(run_cmd::run(run).unwrap(), ExitCode::SUCCESS);
    let doc_id = keys::doc_id(&std::fs::read(docs.join("palette.png")).unwrap());
    let merged = DocumentResult::from_json(
        &std::fs::read(out.join(keys::document_result(&doc_id))).unwrap(),
    )
    .unwrap();
    let tasks: Vec<String> = merged.tasks.iter().map(|t| t.task.to_string()).collect();
    assert_eq!(
        tasks,
        ["caption:short"],
        "the sidecar's tasks, not --task's"
    );
    let index = std::fs::read_to_string(out.join("documents.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = index
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["source"], "palette.png");
    assert_eq!(lines[0]["status"], "ok");
    assert_eq!(lines[1]["source"], "palette.png.job.json");
    assert_eq!(lines[1]["status"], "skipped");
}
