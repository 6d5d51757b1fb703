//! Box parsing and coordinate mapping: the parser never panics (property-tested on
//! arbitrary strings and on soups of the format's own tokens), agrees with the reference's
//! box reader on well-formed answers, and canvas <-> page mapping round-trips.

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::Value;
use sphinx_core::boxes::{parse, Grounded, NormBox, PageFrame, WarningKind};
use sphinx_core::tiling::{plan, TileConfig};

const GENERATOR: &str = ".venv/bin/python scripts/make_conversation_fixtures.py";
/// Inputs per never-panics property (two properties: 2 x this many strings).
const FUZZ_CASES: u32 = 20_000;

fn check_invariants(raw: &str) {
    let p = parse(raw);
    for w in &p.warnings {
        assert!(
            w.offset <= raw.len() && raw.is_char_boundary(w.offset),
            "{w:?}"
        );
    }
    for g in &p.spans {
        for b in &g.boxes {
            assert!(b.0.iter().all(|v| v.is_finite()), "{b:?}");
        }
    }
    assert!(p.plain_text.len() <= raw.len());
}

fn token_soup() -> impl Strategy<Value = String> {
    let tok = prop_oneof![
        Just("<p>"),
        Just("</p>"),
        Just("["),
        Just("]"),
        Just(","),
        Just(";"),
        Just("."),
        Just(" "),
        Just("\n"),
        Just("0"),
        Just("0.25"),
        Just("1.00"),
        Just("99"),
        Just("é"),
        Just("中"),
        Just("<"),
        Just("p>"),
        Just("###"),
    ];
    prop::collection::vec(tok, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(FUZZ_CASES))]

    #[test]
    fn parser_never_panics_on_arbitrary_strings(raw in any::<String>()) {
        check_invariants(&raw);
    }

    #[test]
    fn parser_never_panics_on_format_token_soup(raw in token_soup()) {
        check_invariants(&raw);
    }
}

fn two_decimals() -> impl Strategy<Value = f64> {
    (0u32..=100).prop_map(|c| f64::from(c) / 100.0)
}

fn well_formed_box() -> impl Strategy<Value = [f64; 4]> {
    (
        two_decimals(),
        two_decimals(),
        two_decimals(),
        two_decimals(),
    )
        .prop_map(|(a, b, c, d)| [a.min(c), b.min(d), a.max(c), b.max(d)])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Rendering spans the way SPHINX writes them and parsing them back is the identity.
    #[test]
    fn rendered_spans_parse_back(
        spans in prop::collection::vec(
            ("[a-zA-Z0-9 ,:$éü]{0,12}", prop::collection::vec(well_formed_box(), 1..4)),
            0..6,
        )
    ) {
        let mut raw = String::from("Here:");
        for (text, boxes) in &spans {
            let list: Vec<String> = boxes
                .iter()
                .map(|b| format!("{:.2},{:.2},{:.2},{:.2}", b[0], b[1], b[2], b[3]))
                .collect();
            raw.push_str(&format!(" <p>{text}</p>[{}]", list.join(";")));
        }
        let p = parse(&raw);
        prop_assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let expected: Vec<Grounded<NormBox>> = spans
            .iter()
            .map(|(t, b)| Grounded { text: t.clone(), boxes: b.iter().map(|&x| NormBox(x)).collect(), confidence: None })
            .collect();
        prop_assert_eq!(p.spans, expected);
    }

    /// canvas -> page -> canvas is the identity for boxes on the page; page -> canvas ->
    /// page is the identity for any page box; anything maps inside the page.
    #[test]
    fn canvas_page_canvas_round_trip(
        w in 1u32..6000,
        h in 1u32..6000,
        cfg in prop_oneof![Just(TileConfig::tiny_1k()), Just(TileConfig::tiny_448())],
        f in prop::array::uniform4(0.0f64..=1.0),
        wild in prop::array::uniform4(-2.0f64..3.0),
        dpi in 36.0f32..600.0,
    ) {
        let (placement, _) = plan(w, h, &cfg).unwrap();
        let points = [w as f32 * 72.0 / dpi, h as f32 * 72.0 / dpi];
        let frame = PageFrame::new(cfg.canvas, placement, [w, h], points).unwrap();
        // A box inside the page, as normalised canvas coordinates.
        let px = [
            f[0].min(f[2]) * f64::from(w),
            f[1].min(f[3]) * f64::from(h),
            f[0].max(f[2]) * f64::from(w),
            f[1].max(f[3]) * f64::from(h),
        ];
        let norm = frame.to_norm(px);
        let page = frame.to_page(norm);
        for i in 0..4 {
            prop_assert!((page.pixels[i] - px[i]).abs() <= 1e-9 * f64::from(w.max(h)), "{page:?} vs {px:?}");
        }
        let back = frame.to_norm(page.pixels);
        for i in 0..4 {
            prop_assert!((back.0[i] - norm.0[i]).abs() <= 1e-12, "{back:?} vs {norm:?}");
        }
        prop_assert!(norm.0.iter().all(|v| (0.0..=1.0 + 1e-12).contains(v)));
        // Points are pixels scaled by the page's points-per-pixel.
        prop_assert!((page.points[2] - page.pixels[2] * f64::from(points[0]) / f64::from(w)).abs() < 1e-6);
        // Anything the model says lands inside the page, corners ordered.
        let any = frame.to_page(NormBox(wild));
        prop_assert!(any.pixels[0] <= any.pixels[2] && any.pixels[1] <= any.pixels[3]);
        prop_assert!(any.pixels[0] >= 0.0 && any.pixels[2] <= f64::from(w));
        prop_assert!(any.pixels[1] >= 0.0 && any.pixels[3] <= f64::from(h));
    }
}

fn fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/fixtures/conversation/boxes.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "missing fixture {} ({e}); generate it with `{GENERATOR}`",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("boxes.json is valid JSON")
}

/// Canonical, order-free form of spans for comparison.
fn canonical(spans: impl Iterator<Item = (String, Vec<Vec<f64>>)>) -> Vec<String> {
    let mut v: Vec<String> = spans.map(|(t, b)| format!("{t:?} {b:?}")).collect();
    v.sort();
    v
}

#[test]
fn well_formed_answers_parse_like_the_reference_reader() {
    let fx = fixture();
    let cases = fx["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    for case in cases {
        let answer = case["answer"].as_str().unwrap();
        let p = parse(answer);
        assert!(p.warnings.is_empty(), "{answer:?}: {:?}", p.warnings);
        let ours = canonical(p.spans.iter().map(|g| {
            (
                g.text.clone(),
                g.boxes.iter().map(|b| b.0.to_vec()).collect(),
            )
        }));
        let reference = canonical(case["spans"].as_array().unwrap().iter().map(|s| {
            let boxes = s["boxes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    b.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect()
                })
                .collect();
            (s["text"].as_str().unwrap().to_owned(), boxes)
        }));
        assert_eq!(ours, reference, "spans of {answer:?}");
    }
}

#[test]
fn truncated_generation_is_flagged() {
    let p = parse("<p>Total</p>[0.55,0.80,0.9");
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(p.warnings[0].kind, WarningKind::TruncatedBoxList);
    assert_eq!(p.spans.len(), 1);
    assert!(p.spans[0].boxes.is_empty());
}
