//! Result schema: a model answer becomes page boxes, results round-trip through JSON,
//! other major versions are refused, and page results merge per document.

use sphinx_core::boxes::{PageFrame, WarningKind};
use sphinx_core::job::{CaptionDetail, Task};
use sphinx_core::prompts;
use sphinx_core::result::{
    DocumentResult, ModelInfo, PageResult, ResultError, StopReason, TaskResult, Timings,
    TokenCounts, TokenScore, RESULT_SCHEMA_VERSION,
};
use sphinx_core::tiling::{plan, TileConfig};

/// A US-letter page rendered at 150 dpi: 1275 x 1650 px, 612 x 792 pt.
fn letter_frame() -> PageFrame {
    let (placement, _) = plan(1275, 1650, &TileConfig::tiny_1k()).unwrap();
    PageFrame::new(1024, placement, [1275, 1650], [612.0, 792.0]).unwrap()
}

fn ocr_result(raw: &str) -> TaskResult {
    TaskResult::from_answer(
        Task::Ocr,
        prompts::ocr(),
        raw.to_owned(),
        &letter_frame(),
        StopReason::Separator,
        TokenCounts {
            prompt: 40,
            visual: 1034,
            generated: 30,
        },
        Timings {
            encode_ms: 1.0,
            prefill_ms: 2.0,
            decode_ms: 3.0,
            total_ms: 6.5,
        },
    )
}

fn page(index: u32, count: u32, tasks: Vec<TaskResult>) -> PageResult {
    PageResult::new(
        "ab".repeat(32),
        index,
        count,
        ModelInfo {
            id: "sphinx-tiny-1k".into(),
        },
        letter_frame(),
        tasks,
    )
}

#[test]
fn ocr_answer_maps_to_page_pixels_and_points() {
    // 1650 px tall page: the canvas side is 1650 px, so 0.5 -> 825 px; x 0.5 -> 825 px.
    let r = ocr_result("<p>INVOICE</p>[0.10,0.20,0.50,0.50]");
    assert!(r.warnings.is_empty());
    assert_eq!(r.text, "INVOICE");
    assert_eq!(r.prompt_version, prompts::PROMPT_VERSION);
    let b = r.spans[0].boxes[0];
    let expect_px = [165.0, 330.0, 825.0, 825.0];
    for ((px, pt), want) in b.pixels.iter().zip(&b.points).zip(expect_px) {
        assert!((px - want).abs() < 1e-9, "{:?}", b.pixels);
        // 612 pt / 1275 px = 0.48 pt per px in both axes.
        assert!((pt - want * 0.48).abs() < 1e-6, "{:?}", b.points);
    }
    assert!(!b.adjusted);
    // x = 0.9 of the square lies right of the page (page spans 0 .. 1275/1650 = 0.773).
    let r = ocr_result("[0.70,0.10,0.90,0.20]");
    assert!(r.spans[0].boxes[0].adjusted);
    assert_eq!(r.spans[0].boxes[0].pixels[2], 1275.0);
}

#[test]
fn malformed_answer_keeps_raw_text_and_warns() {
    let raw = "<p>Tot</p>[0.1,0.2,0.3;";
    let r = ocr_result(raw);
    assert_eq!(r.raw_text, raw);
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].kind, WarningKind::TruncatedBoxList);
}

#[test]
fn page_result_round_trips_and_refuses_other_majors() {
    let p = page(0, 1, vec![ocr_result("<p>A</p>[0.1,0.1,0.2,0.2]")]);
    assert_eq!(p.schema_version, RESULT_SCHEMA_VERSION);
    let json = p.to_json().unwrap();
    assert_eq!(PageResult::from_json(&json).unwrap(), p);
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["tasks"][0]["task"]["task"], "ocr");
    assert_eq!(v["tasks"][0]["spans"][0]["boxes"][0]["norm"][0], 0.1);
    let newer = String::from_utf8(json).unwrap().replace(
        &format!("\"schema_version\": \"{RESULT_SCHEMA_VERSION}\""),
        "\"schema_version\": \"2.0\"",
    );
    assert!(matches!(
        PageResult::from_json(newer.as_bytes()),
        Err(ResultError::UnsupportedVersion { found }) if found == "2.0"
    ));
    assert!(matches!(
        PageResult::from_json(b"{"),
        Err(ResultError::Json(_))
    ));
}

#[test]
fn pages_merge_in_order_with_missing_pages_listed() {
    let caption = |text: &str| {
        TaskResult::from_answer(
            Task::Caption {
                detail: CaptionDetail::Short,
            },
            prompts::caption(CaptionDetail::Short),
            text.to_owned(),
            &letter_frame(),
            StopReason::Eos,
            TokenCounts {
                prompt: 10,
                visual: 5,
                generated: 7,
            },
            Timings::default(),
        )
    };
    let pages = vec![
        page(
            2,
            4,
            vec![ocr_result("<p>C</p>[0.1,0.1,0.2,0.2]"), caption("third")],
        ),
        page(
            0,
            4,
            vec![ocr_result("<p>A</p>[0.1,0.1,0.2,0.2"), caption("first")],
        ),
    ];
    let doc = DocumentResult::merge(pages).unwrap();
    assert_eq!(doc.missing_pages, vec![1, 3]);
    assert_eq!(
        doc.pages.iter().map(|p| p.page_index).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert_eq!(doc.tasks.len(), 2);
    assert_eq!(doc.tasks[0].task, Task::Ocr);
    assert_eq!(doc.tasks[0].text, "A\n\nC");
    assert_eq!(doc.tasks[0].pages_with_warnings, vec![0]);
    assert_eq!(
        doc.tasks[0]
            .spans
            .iter()
            .map(|s| s.page_index)
            .collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert_eq!(doc.tasks[1].text, "first\n\nthird");
    assert_eq!(doc.tasks[1].tokens.generated, 14);
    assert_eq!(
        DocumentResult::from_json(&doc.to_json().unwrap()).unwrap(),
        doc
    );

    let dup = DocumentResult::merge(vec![page(1, 2, vec![]), page(1, 2, vec![])]);
    assert!(matches!(
        dup,
        Err(ResultError::DuplicatePage { page_index: 1 })
    ));
    let out = DocumentResult::merge(vec![page(5, 2, vec![])]);
    assert!(matches!(
        out,
        Err(ResultError::PageOutOfRange { page_index: 5, .. })
    ));
    let mut other = page(0, 2, vec![]);
    other.doc_id = "cd".repeat(32);
    let mixed = DocumentResult::merge(vec![page(1, 2, vec![]), other]);
    assert!(matches!(mixed, Err(ResultError::OtherDocument { .. })));
    assert!(matches!(
        DocumentResult::merge(vec![]),
        Err(ResultError::NoPages)
    ));
}

/// Schema 1.2 names the upload a document result came from; a 1.1 result (without the
/// field) still reads, and a merge alone does not know the name.
#[test]
fn document_results_name_their_upload_and_older_minors_still_read() {
    let mut doc = DocumentResult::merge(vec![page(0, 1, vec![ocr_result("<p>A</p>")])]).unwrap();
    assert_eq!(doc.source, None);
    doc.source = Some("scans/2026/invoice 7.pdf".to_string());
    let json = doc.to_json().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["source"], "scans/2026/invoice 7.pdf");
    assert_eq!(v["schema_version"], RESULT_SCHEMA_VERSION);
    assert_eq!(DocumentResult::from_json(&json).unwrap(), doc);

    let mut older = v.clone();
    older["schema_version"] = "1.1".into();
    older.as_object_mut().unwrap().remove("source");
    let read = DocumentResult::from_json(&serde_json::to_vec(&older).unwrap()).unwrap();
    assert_eq!(read.source, None);
    assert_eq!(read.tasks, doc.tasks);
}

#[test]
fn measured_timings_round_trip_bit_exactly() {
    // Values that serde_json's fast float parser reads back one ulp off unless
    // `float_roundtrip` is on (seen in CI with real decode timings).
    let mut r = ocr_result("<p>A</p>");
    r.timings = Timings {
        encode_ms: 24.163428,
        prefill_ms: 9.250091,
        decode_ms: 14.539224,
        total_ms: 80.478106,
    };
    for ms in [0.1 + 0.2, 1.0 / 3.0, 14.539224, 8.881784197001252e-16] {
        r.timings.decode_ms = ms;
        let p = page(0, 1, vec![r.clone()]);
        let back = PageResult::from_json(&p.to_json().unwrap()).unwrap();
        assert_eq!(back.tasks[0].timings.decode_ms.to_bits(), ms.to_bits());
        assert_eq!(back, p);
    }
}

/// Token scores become the answer's confidence (the geometric mean probability of its
/// tokens, the end signal's left out) and each span's (its phrase's tokens only, or a
/// bare list's); they travel through JSON and the merge, where a task's is its least sure
/// page's. Results without them (before 1.3) read as `None`.
#[test]
fn token_scores_become_answer_and_span_confidences() {
    let raw = "<p>Hi</p>[0.1,0.1,0.2,0.2] [0.3,0.3,0.4,0.4]";
    let mut task = ocr_result(raw);
    assert_eq!(task.confidence, None);
    // Bytes: "<p>" 0..3, "Hi" 3..5, "</p>" 5..9, the first list 9..26, " " 26, the second
    // list 27..44; then the end signal, after the answer.
    let (hi, list, other, end) = (0.5f32.ln(), 0.8f32.ln(), 0.2f32.ln(), 0.01f32.ln());
    let t = |bytes: std::ops::Range<usize>, logprob| TokenScore { bytes, logprob };
    let tokens = [
        t(0..3, 0f32),
        t(3..4, hi),
        t(4..5, hi),
        t(5..9, 0f32),
        t(9..26, list),
        t(26..27, 0f32),
        t(27..44, other),
        t(44..48, end),
    ];
    task.score(&tokens);
    let close = |a: Option<f32>, b: f32| (a.unwrap() - b).abs() < 1e-6;
    let all = ((2.0 * hi + list + other) / 7.0).exp();
    assert!(
        close(task.confidence, all),
        "{:?} vs {all}",
        task.confidence
    );
    assert!(close(task.spans[0].confidence, 0.5), "{:?}", task.spans[0]);
    assert!(close(task.spans[1].confidence, 0.2), "{:?}", task.spans[1]);

    let json = serde_json::to_value(&task).unwrap();
    assert!(json["spans"][0]["confidence"].is_number());
    let back: TaskResult = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, task);
    let mut before = json;
    before.as_object_mut().unwrap().remove("confidence");
    let old: TaskResult = serde_json::from_value(before).unwrap();
    assert_eq!(old.confidence, None);

    let mut sure = ocr_result("<p>Yes</p>[0.1,0.1,0.2,0.2]");
    sure.score(&[t(0..27, 0.9f32.ln())]);
    let doc = DocumentResult::merge(vec![page(0, 2, vec![sure]), page(1, 2, vec![task])]).unwrap();
    assert!(close(doc.tasks[0].confidence, all), "{:?}", doc.tasks[0]);
    assert!(close(doc.tasks[0].spans[0].confidence, 0.9));
}
