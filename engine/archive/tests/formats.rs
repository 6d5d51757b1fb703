//! The archive formats, checked by tools nobody here wrote (scripts/check_archives.py:
//! poppler's pdftotext and pdffonts, qpdf, PyMuPDF, hocr-tools, hocr-spec, xmlschema with
//! the published ALTO v4.4 XSD), on corpus PDFs, a multi-page TIFF and a JPEG, with
//! results whose lines and boxes are known: fixed OCR answers mapped through the real
//! answer-to-page path (`TaskResult::from_answer`), one page of each multi-page upload
//! marked failed; even pages carry line confidences (`TaskResult::score`), which hOCR
//! (`x_wconf`) and ALTO (`WC`) must give back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Value};
use sphinx_archive::{make, Request, Upload};
use sphinx_core::boxes::PageFrame;
use sphinx_core::document::{sniff, Document};
use sphinx_core::result::{
    DocumentResult, ModelInfo, PageResult, StopReason, TaskResult, Timings, TokenCounts, TokenScore,
};
use sphinx_core::tiling::{plan, TileConfig};
use sphinx_core::Isolation;
use sphinx_core::Limits;
use sphinx_core::Task;
use sphinx_core::{OutputFormat, OutputFormats};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A real PDF of the corpus the project ships (tests/data/corpus).
fn corpus(name: &str) -> PathBuf {
    root().join("tests/data/corpus").join(name)
}

fn fixture(name: &str) -> PathBuf {
    let p = root().join("target/fixtures/archive").join(name);
    assert!(
        p.is_file(),
        "missing fixture {}: run bash scripts/fixtures.d/formats.sh",
        p.display()
    );
    p
}

/// A fixed OCR answer for page `index`: lines of known text spread down the page, in the
/// reference's `<p>text</p>[x1,y1,x2,y2]` form (canvas-normalised, two decimals).
fn answer(index: u32, frame: &PageFrame) -> String {
    let p = &frame.placement;
    let c = f64::from(frame.canvas);
    let (x0, y0) = (f64::from(p.x) / c, f64::from(p.y) / c);
    let (w, h) = (f64::from(p.width) / c, f64::from(p.height) / c);
    let texts = [
        format!("Page {} heading", index + 1),
        "The quick brown fox jumps".to_string(),
        format!("Total: 1,234.{index:02} EUR (net)"),
        "Ünïcödé straße – ‘quotes’".to_string(),
    ];
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let top = y0 + h * (0.1 + 0.2 * i as f64);
            let (l, r) = (
                x0 + w * (0.08 + 0.04 * i as f64),
                x0 + w * (0.6 + 0.08 * i as f64),
            );
            format!("<p>{t}</p>[{l:.2},{top:.2},{r:.2},{:.2}]", top + h * 0.03)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Case {
    upload: PathBuf,
    failed: Vec<u32>,
}

fn run_case(case: &Case, formats: &OutputFormats) -> (DocumentResult, Value) {
    let bytes = Arc::new(std::fs::read(&case.upload).unwrap());
    let limits = Limits::default();
    let doc = Document::open(bytes.clone(), &limits).unwrap();
    let tile = TileConfig::default();
    let doc_id = sphinx_core::keys::doc_id(&bytes);
    let mut pages = Vec::new();
    let mut failed = BTreeMap::new();
    for index in 0..doc.page_count() {
        if case.failed.contains(&index) {
            failed.insert(index, "model_failed: out of memory (test)".to_string());
            continue;
        }
        let size_pixels = doc.render_size(index, tile.canvas).unwrap();
        let (placement, _) = plan(size_pixels[0], size_pixels[1], &tile).unwrap();
        let frame = PageFrame::new(
            tile.canvas,
            placement,
            size_pixels,
            doc.page_size_points(index).unwrap(),
        )
        .unwrap();
        let mut ocr = TaskResult::from_answer(
            Task::Ocr,
            "ocr".into(),
            answer(index, &frame),
            &frame,
            StopReason::Eos,
            TokenCounts::default(),
            Timings::default(),
        );
        if index % 2 == 0 {
            // One token per line, of probability 0.50, 0.61, 0.72, ...
            let sources = sphinx_core::boxes::parse(&ocr.raw_text).sources;
            let tokens: Vec<TokenScore> = sources
                .into_iter()
                .enumerate()
                .map(|(i, bytes)| TokenScore {
                    bytes,
                    logprob: (0.5 + 0.11 * (i % 5) as f32).ln(),
                })
                .collect();
            ocr.score(&tokens);
        }
        assert!(ocr.warnings.is_empty(), "{:?}", ocr.warnings);
        pages.push(PageResult::new(
            doc_id.clone(),
            index,
            doc.page_count(),
            ModelInfo { id: "test".into() },
            frame,
            vec![ocr],
        ));
    }
    let result = DocumentResult::merge(pages).unwrap();
    let name = case
        .upload
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let upload = Upload {
        bytes: &bytes,
        kind: sniff(&bytes).unwrap(),
        isolation: &Isolation::InProcess,
        limits: &limits,
    };
    let archives = make(&Request {
        result: &result,
        failed_pages: &failed,
        source_name: &name,
        upload: Ok(upload),
        formats,
        system: "sphinx-x test",
    });
    for r in &archives.records {
        assert!(
            r.reason.is_none(),
            "{name}: {:?} not made: {:?}",
            r.format,
            r.reason
        );
        assert_eq!(r.pages_without_text, case.failed, "{name}: {:?}", r.format);
    }
    let dir = tempfile::tempdir().unwrap().keep();
    let kind = serde_json::to_value(sniff(&bytes).unwrap()).unwrap();
    let mut spec = json!({
        "original": case.upload,
        "kind": kind,
        "xsd": fixture("alto-4-4.xsd"),
        "pages": (0..doc.page_count()).map(|index| {
            match result.pages.iter().find(|p| p.page_index == index) {
                Some(p) => {
                    let ocr = &p.tasks[0];
                    json!({
                        "index": index, "failed": false, "text": ocr.text,
                        "size_pixels": p.frame.size_pixels, "size_points": p.frame.size_points,
                        "lines": ocr.spans.iter().map(|s| json!({
                            "text": s.text, "points": s.boxes[0].points, "pixels": s.boxes[0].pixels,
                            "confidence": s.confidence,
                        })).collect::<Vec<_>>(),
                    })
                }
                None => json!({
                    "index": index, "failed": true, "lines": [],
                    "size_pixels": doc.render_size(index, tile.canvas).unwrap(),
                    "size_points": doc.page_size_points(index).unwrap(),
                }),
            }
        }).collect::<Vec<_>>(),
    });
    for file in &archives.files {
        let path = dir.join(file.key.rsplit('/').next().unwrap());
        std::fs::write(&path, &file.bytes).unwrap();
        spec[file.format.name()] = json!(path);
    }
    let case_file = dir.join("case.json");
    std::fs::write(&case_file, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    let out = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("scripts/check_archives.py"))
        .arg(&case_file)
        .env(
            "PATH",
            format!(
                "{}:{}",
                root().join(".venv/bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("run scripts/check_archives.py (scripts/setup.sh installs its tools)");
    assert!(
        out.status.success(),
        "{name}: the checks failed (case {}):\n{}{}",
        case_file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (result, spec)
}

#[test]
fn corpus_pdfs_get_a_searchable_pdf_hocr_alto_and_text_that_third_party_tools_accept() {
    for (name, failed) in [
        // born-digital, three pages, one failed
        ("mattsnotes.pdf", vec![1]),
        ("earnings.pdf", vec![]),
        ("small_page_size.pdf", vec![]),
        // scans: image-only pages
        ("lincoln_letter.pdf", vec![]),
        ("buildingnotes.pdf", vec![]),
        ("blank_book_pg1.pdf", vec![]),
    ] {
        run_case(
            &Case {
                upload: corpus(name),
                failed,
            },
            &OutputFormats::all(),
        );
    }
}

#[test]
fn a_multi_page_tiff_and_a_jpeg_become_one_pdf_page_per_image() {
    run_case(
        &Case {
            upload: fixture("scan.tiff"),
            failed: vec![2],
        },
        &OutputFormats::all(),
    );
    run_case(
        &Case {
            upload: fixture("photo.jpg"),
            failed: vec![],
        },
        &OutputFormats::all(),
    );
}

#[test]
fn a_document_without_the_ocr_task_gets_no_text_formats_and_says_why() {
    let path = corpus("earnings.pdf");
    let bytes = Arc::new(std::fs::read(&path).unwrap());
    let limits = Limits::default();
    let doc = Document::open(bytes.clone(), &limits).unwrap();
    let tile = TileConfig::default();
    let size_pixels = doc.render_size(0, tile.canvas).unwrap();
    let (placement, _) = plan(size_pixels[0], size_pixels[1], &tile).unwrap();
    let frame = PageFrame::new(
        tile.canvas,
        placement,
        size_pixels,
        doc.page_size_points(0).unwrap(),
    )
    .unwrap();
    let caption = TaskResult::from_answer(
        Task::Caption {
            detail: sphinx_core::job::CaptionDetail::Short,
        },
        "caption".into(),
        "A table of figures.".into(),
        &frame,
        StopReason::Eos,
        TokenCounts::default(),
        Timings::default(),
    );
    let result = DocumentResult::merge(vec![PageResult::new(
        "d".into(),
        0,
        1,
        ModelInfo { id: "test".into() },
        frame,
        vec![caption],
    )])
    .unwrap();
    let archives = make(&Request {
        result: &result,
        failed_pages: &BTreeMap::new(),
        source_name: "earnings.pdf",
        upload: Ok(Upload {
            bytes: &bytes,
            kind: sniff(&bytes).unwrap(),
            isolation: &Isolation::InProcess,
            limits: &limits,
        }),
        formats: &"txt,pdf".parse().unwrap(),
        system: "test",
    });
    assert!(archives.files.is_empty());
    let formats: Vec<OutputFormat> = archives.records.iter().map(|r| r.format).collect();
    assert_eq!(formats, [OutputFormat::Txt, OutputFormat::Pdf]);
    for r in &archives.records {
        let reason = r.reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains("OCR task did not run") && reason.contains("caption"),
            "{reason}"
        );
    }
}
