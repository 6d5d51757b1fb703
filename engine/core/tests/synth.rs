//! The synthetic document generator, checked from its files on disk: boxes against the
//! decoded PNG pixels, byte-identical reruns, the conversation format, and SPHINX box text
//! against Python's own formatting (fixture made by `scripts/make_synth_fixtures.py`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde_json::Value;
use sphinx_core::boxes;
use sphinx_core::synth::conversation::{
    CAPTION_PROMPT, GPT, GROUNDING_PREFIX, HUMAN, IMAGE_TOKEN, OCR_PROMPT,
};
use sphinx_core::synth::noise::{BLUR_RADIUS, NOISE_AMPLITUDE};
use sphinx_core::synth::{
    box_text, generate, ConversationRecord, Face, PageAnnotation, PixelBox, SynthConfig,
    SynthError, TextBounds, TextKind, ANNOTATIONS_FILE, CONVERSATIONS_FILE, LARGEST_EM_PX,
    MAX_MIN_EM_PX, RANDOM_CHARS, RANDOM_GROUP_MAX,
};
use sphinx_core::tiling::{plan, TileConfig};

fn make(
    seed: u64,
    first_index: u64,
    count: u64,
    noise: bool,
) -> (tempfile::TempDir, Vec<PageAnnotation>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        seed,
        first_index,
        count,
        noise,
        bounds: Default::default(),
    };
    let start = std::time::Instant::now();
    let summary = generate(&cfg, dir.path(), |_| {}).unwrap();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{count} pages in {secs:.2} s: {:.0} pages/min",
        count as f64 * 60.0 / secs
    );
    assert_eq!(summary.pages, count);
    let pages = read_jsonl::<PageAnnotation>(&dir.path().join(ANNOTATIONS_FILE));
    assert_eq!(pages.len() as u64, count);
    (dir, pages)
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

fn load(dir: &Path, page: &PageAnnotation) -> RgbImage {
    let img = image::open(dir.join(&page.image)).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (page.width, page.height));
    img
}

/// All boxes of a page, labelled for messages.
fn all_boxes(page: &PageAnnotation) -> Vec<(String, PixelBox)> {
    let lines = page
        .lines
        .iter()
        .map(|l| (format!("line {:?}", l.text), l.bbox));
    let shapes = page
        .shapes
        .iter()
        .map(|s| (format!("shape {:?}", s.label), s.bbox));
    lines.chain(shapes).collect()
}

fn disjoint(a: PixelBox, b: PixelBox) -> bool {
    a.x2 <= b.x1 || b.x2 <= a.x1 || a.y2 <= b.y1 || b.y2 <= a.y1
}

#[test]
fn boxes_are_exactly_the_ink_of_clean_pages() {
    let (dir, pages) = make(11, 0, 24, false);
    let mut shapes_seen = 0;
    for page in &pages {
        let img = load(dir.path(), page);
        // Margins are at least 8 px, so the corner pixel is paper.
        let paper = img.get_pixel(0, 0).0;
        let boxes = all_boxes(page);
        assert!(!page.lines.is_empty(), "{}: no text", page.image);
        shapes_seen += page.shapes.len();
        for (i, (name, a)) in boxes.iter().enumerate() {
            assert!(a.x1 < a.x2 && a.y1 < a.y2 && a.x2 <= page.width && a.y2 <= page.height);
            for (other, b) in &boxes[i + 1..] {
                assert!(disjoint(*a, *b), "{}: {name} overlaps {other}", page.image);
            }
        }
        for w in page.lines.windows(2) {
            assert!(
                w[0].bbox.y2 <= w[1].bbox.y1,
                "{}: lines out of reading order",
                page.image
            );
        }
        // Every pixel that is not paper lies in exactly one box...
        let mut ink_per_box = vec![None::<PixelBox>; boxes.len()];
        for (x, y, p) in img.enumerate_pixels() {
            if p.0 == paper {
                continue;
            }
            let owner = boxes.iter().position(|(_, b)| b.contains(x, y));
            let Some(i) = owner else {
                panic!("{}: ink at ({x}, {y}) is in no box", page.image);
            };
            let px = PixelBox::new(x, y, x + 1, y + 1);
            ink_per_box[i] = Some(ink_per_box[i].map_or(px, |b| b.union(px)));
        }
        // ...and each box is exactly the box of its ink (tight on all four sides).
        for ((name, b), ink) in boxes.iter().zip(&ink_per_box) {
            assert_eq!(Some(*b), *ink, "{}: {name} is not tight", page.image);
        }
    }
    assert!(shapes_seen > 6, "only {shapes_seen} shapes in 24 pages");
}

#[test]
fn noisy_pages_keep_dark_pixels_inside_boxes() {
    let (dir, pages) = make(5, 100, 12, true);
    assert!(pages.iter().any(|p| p.blurred) && pages.iter().any(|p| !p.blurred));
    // Paper estimate error (<= amplitude) plus the noise itself (<= amplitude), with margin.
    let threshold = i32::from(NOISE_AMPLITUDE) * 3;
    for page in &pages {
        assert!(page.noise);
        let img = load(dir.path(), page);
        let mut corner: Vec<[u8; 3]> = (0..8)
            .flat_map(|y| (0..8).map(move |x| (x, y)))
            .map(|(x, y)| img.get_pixel(x, y).0)
            .collect();
        let paper: Vec<i32> = (0..3)
            .map(|c| {
                corner.sort_by_key(|p| p[c]);
                i32::from(corner[corner.len() / 2][c])
            })
            .collect();
        let dark = |x: u32, y: u32| {
            let p = img.get_pixel(x, y).0;
            (0..3).any(|c| (i32::from(p[c]) - paper[c]).abs() > threshold)
        };
        let boxes = all_boxes(page);
        for (x, y, _) in img.enumerate_pixels() {
            if dark(x, y) {
                assert!(
                    boxes.iter().any(|(_, b)| b.contains(x, y)),
                    "{}: dark pixel ({x}, {y}) in no box",
                    page.image
                );
            }
        }
        // Not much larger than the ink: dark pixels reach within a few pixels of each side.
        let slack = BLUR_RADIUS + 2;
        for (name, b) in &boxes {
            let near = |xs: std::ops::Range<u32>, ys: std::ops::Range<u32>| {
                ys.clone().any(|y| xs.clone().any(|x| dark(x, y)))
            };
            let (x1, y1, x2, y2) = (b.x1, b.y1, b.x2, b.y2);
            assert!(
                near(x1..(x1 + slack).min(x2), y1..y2),
                "{}: {name} left",
                page.image
            );
            assert!(
                near(x2.saturating_sub(slack).max(x1)..x2, y1..y2),
                "{}: {name} right",
                page.image
            );
            assert!(
                near(x1..x2, y1..(y1 + slack).min(y2)),
                "{}: {name} top",
                page.image
            );
            assert!(
                near(x1..x2, y2.saturating_sub(slack).max(y1)..y2),
                "{}: {name} bottom",
                page.image
            );
        }
    }
}

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn same_seed_gives_identical_bytes_and_ranges_are_independent() {
    let (a, _) = make(42, 0, 8, true);
    let (b, _) = make(42, 0, 8, true);
    let fa = files(a.path());
    assert_eq!(fa.len(), 8 + 2);
    assert!(fa == files(b.path()), "two runs of seed 42 differ");

    // Pages 5..8 made on their own equal pages 5..8 of the full run.
    let (c, _) = make(42, 5, 3, true);
    let fc = files(c.path());
    for i in 5..8 {
        let name = PathBuf::from(format!("images/{i:06}.png"));
        assert!(
            fc[&name] == fa[&name],
            "{} depends on earlier pages",
            name.display()
        );
    }
    let tail = |m: &BTreeMap<PathBuf, Vec<u8>>, n: usize| -> Vec<String> {
        let text = String::from_utf8(m[Path::new(ANNOTATIONS_FILE)].clone()).unwrap();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        lines[lines.len() - n..].to_vec()
    };
    assert_eq!(tail(&fc, 3), tail(&fa, 3));

    // Another seed gives other pages.
    let (d, _) = make(43, 0, 8, true);
    let fd = files(d.path());
    let differing = (0..8)
        .filter(|i| {
            let name = PathBuf::from(format!("images/{i:06}.png"));
            fd[&name] != fa[&name]
        })
        .count();
    assert_eq!(differing, 8);
    assert!(fd[Path::new(ANNOTATIONS_FILE)] != fa[Path::new(ANNOTATIONS_FILE)]);
}

#[test]
fn pages_vary_in_shape_size_and_face_and_strips_skip_sub_images() {
    let (_dir, pages) = make(3, 0, 40, false);
    let cfg = TileConfig::tiny_1k();
    let mut skipping = 0;
    let (mut wide, mut tall, mut portrait, mut landscape) = (0, 0, 0, 0);
    let mut faces = std::collections::BTreeSet::new();
    let mut sizes = std::collections::BTreeSet::new();
    for p in &pages {
        let aspect = f64::from(p.width) / f64::from(p.height);
        match aspect {
            a if a > 2.0 => wide += 1,
            a if a < 0.5 => tall += 1,
            a if a < 1.0 => portrait += 1,
            a if a > 1.0 => landscape += 1,
            _ => {}
        }
        faces.insert(format!("{:?}", p.font));
        sizes.insert(p.font_px);
        let (_, skip) = plan(p.width, p.height, &cfg).unwrap();
        if skip.skipped_count() > 0 {
            skipping += 1;
        }
    }
    assert!(
        wide > 0 && tall > 0 && portrait > 0 && landscape > 0,
        "{wide} {tall} {portrait} {landscape}"
    );
    assert_eq!(faces.len(), 3, "{faces:?}");
    assert!(sizes.len() >= 8, "{sizes:?}");
    assert!(
        skipping >= wide + tall && skipping > 0,
        "{skipping} pages skip sub-images"
    );
}

#[test]
fn conversations_follow_the_unified_format_and_parse_back_to_the_boxes() {
    let (dir, pages) = make(8, 0, 16, false);
    let records = read_jsonl::<ConversationRecord>(&dir.path().join(CONVERSATIONS_FILE));
    // The raw JSON has exactly the reference's keys.
    let raw: Vec<Value> = read_jsonl(&dir.path().join(CONVERSATIONS_FILE));
    for v in &raw {
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["conversations", "id", "image"]);
    }
    assert_eq!(records.len(), pages.len());
    let mut ids = std::collections::BTreeSet::new();
    for (rec, page) in records.iter().zip(&pages) {
        assert!(ids.insert(rec.id.clone()), "duplicate id {}", rec.id);
        assert_eq!(rec.image, page.image);
        assert!(dir.path().join(&rec.image).is_file());
        let turns = &rec.conversations;
        assert_eq!(turns.len() % 2, 0);
        for (i, t) in turns.iter().enumerate() {
            assert_eq!(
                t.from,
                if i % 2 == 0 { HUMAN } else { GPT },
                "turn {i} of {}",
                rec.id
            );
            assert_eq!(
                t.value.contains(IMAGE_TOKEN),
                i == 0,
                "turn {i} of {}",
                rec.id
            );
        }
        let side = f64::from(page.width.max(page.height));
        let close = |norm: &boxes::NormBox, b: &PixelBox| {
            let px = [b.x1, b.y1, b.x2, b.y2];
            (0..4).all(|k| (norm.0[k] * side - f64::from(px[k])).abs() <= 0.005 * side + 1e-9)
        };
        // OCR: every line, in order, phrase = text, box = its box.
        assert_eq!(turns[0].value, format!("{IMAGE_TOKEN}\n{OCR_PROMPT}"));
        let ocr = boxes::parse(&turns[1].value);
        assert!(ocr.warnings.is_empty(), "{:?}", ocr.warnings);
        assert_eq!(ocr.spans.len(), page.lines.len());
        for (span, line) in ocr.spans.iter().zip(&page.lines) {
            assert_eq!(span.text, line.text);
            assert_eq!(span.boxes.len(), 1);
            assert!(
                close(&span.boxes[0], &line.bbox),
                "{:?} vs {:?}",
                span.boxes[0],
                line.bbox
            );
        }
        // Grounding: one turn per shape (or the middle line), answer = phrase + box.
        let grounding = &turns[2..turns.len() - 2];
        let targets: Vec<(&str, PixelBox)> = if page.shapes.is_empty() {
            let l = &page.lines[page.lines.len() / 2];
            vec![(l.text.as_str(), l.bbox)]
        } else {
            page.shapes
                .iter()
                .map(|s| (s.label.as_str(), s.bbox))
                .collect()
        };
        assert_eq!(grounding.len(), 2 * targets.len());
        for (pair, (phrase, bbox)) in grounding.chunks(2).zip(&targets) {
            assert_eq!(pair[0].value, format!("{GROUNDING_PREFIX}{phrase}"));
            let parsed = boxes::parse(&pair[1].value);
            assert_eq!(parsed.spans.len(), 1);
            assert_eq!(parsed.spans[0].text, *phrase);
            assert!(close(&parsed.spans[0].boxes[0], bbox));
        }
        // Caption last.
        assert_eq!(turns[turns.len() - 2].value, CAPTION_PROMPT);
        assert_eq!(turns[turns.len() - 1].value, page.caption);
        for s in &page.shapes {
            assert!(
                page.caption.contains(&s.label),
                "{} lacks {}",
                page.caption,
                s.label
            );
        }
    }
}

/// `target/fixtures/synth` from `CARGO_MANIFEST_DIR` (= engine/core).
fn fixture(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/fixtures/synth")
        .join(name);
    assert!(
        path.is_file(),
        "missing fixture {}: run `.venv/bin/python scripts/make_synth_fixtures.py` (or bash scripts/fixtures.d/synth.sh)",
        path.display()
    );
    path
}

#[test]
fn box_text_matches_python_formatting() {
    let cases: Vec<Value> =
        serde_json::from_str(&fs::read_to_string(fixture("box_text.json")).unwrap()).unwrap();
    assert!(cases.len() > 100);
    for c in &cases {
        let b: [u32; 4] = serde_json::from_value(c["box"].clone()).unwrap();
        let (w, h) = (
            c["width"].as_u64().unwrap() as u32,
            c["height"].as_u64().unwrap() as u32,
        );
        let phrase = c["phrase"].as_str().unwrap();
        assert_eq!(
            box_text(phrase, &[PixelBox::from(b)], w, h),
            c["text"].as_str().unwrap(),
            "{c}"
        );
    }
}

#[test]
fn bad_configs_and_paths_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |first_index, count| SynthConfig {
        seed: 1,
        first_index,
        count,
        noise: false,
        bounds: Default::default(),
    };
    assert!(matches!(
        generate(&cfg(0, 0), dir.path(), |_| {}),
        Err(SynthError::Config { .. })
    ));
    assert!(matches!(
        generate(&cfg(u64::MAX, 2), dir.path(), |_| {}),
        Err(SynthError::Config { .. })
    ));
    for bounds in [
        TextBounds {
            max_lines: Some(0),
            min_em_px: None,
            ..Default::default()
        },
        TextBounds {
            max_lines: None,
            min_em_px: Some(MAX_MIN_EM_PX + 1),
            ..Default::default()
        },
    ] {
        let bad = SynthConfig {
            bounds,
            ..cfg(0, 1)
        };
        assert!(matches!(
            generate(&bad, dir.path(), |_| {}),
            Err(SynthError::Config { .. })
        ));
    }
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    match generate(&cfg(0, 1), &file, |_| {}) {
        Err(e @ SynthError::Io { .. }) => assert!(e.to_string().contains("not-a-dir"), "{e}"),
        other => panic!("expected an Io error, got {:?}", other.map(|s| s.pages)),
    }
}

#[test]
fn glyph_ink_lands_where_pil_freetype_puts_it() {
    use sphinx_core::synth::fonts::Fonts;
    use sphinx_core::synth::Face;
    // The fixture gives FreeType's outline extents (measured at 8x, see the script); our
    // ink box must be their pixel cover, give or take one pixel for hinting residue and
    // for edge slivers too faint to change an 8-bit pixel.
    const EDGE_TOLERANCE_PX: i64 = 1;
    let cases: Vec<Value> =
        serde_json::from_str(&fs::read_to_string(fixture("ink_extents.json")).unwrap()).unwrap();
    assert!(cases.len() >= 900);
    let fonts = Fonts::shipped().unwrap();
    let mut exact = 0;
    let mut failures = Vec::new();
    for c in &cases {
        let face = match c["face"].as_str().unwrap() {
            "sans" => Face::Sans,
            "serif" => Face::Serif,
            "mono" => Face::Mono,
            other => panic!("unknown face {other}"),
        };
        let size = c["size"].as_u64().unwrap() as u32;
        let text = c["text"].as_str().unwrap();
        let o: [f64; 4] = serde_json::from_value(c["outline"].clone()).unwrap();
        let expected = [o[0].floor(), o[1].floor(), o[2].ceil(), o[3].ceil()].map(|v| v as i64);
        let ours = fonts.ink_extent(face, size, text).unwrap();
        let worst = (0..4).map(|k| (ours[k] - expected[k]).abs()).max().unwrap();
        if worst == 0 {
            exact += 1;
        }
        if worst > EDGE_TOLERANCE_PX {
            failures.push(format!("{c}: ours {ours:?} vs expected {expected:?}"));
        }
    }
    eprintln!(
        "{exact} of {} ink boxes equal PIL/FreeType's exactly",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} cases off:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        exact * 2 > cases.len(),
        "only {exact} of {} exact",
        cases.len()
    );
}

/// Bounded pages (the nano model's training set) hold at most `max_lines` lines of at
/// least `min_em_px` text, and still have OCR, grounding and caption turns.
#[test]
fn text_bounds_cap_lines_and_raise_text_size() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        seed: 3,
        first_index: 0,
        count: 40,
        noise: false,
        bounds: TextBounds {
            max_lines: Some(4),
            min_em_px: Some(20),
            ..Default::default()
        },
    };
    generate(&cfg, dir.path(), |_| {}).unwrap();
    let pages = read_jsonl::<PageAnnotation>(&dir.path().join(ANNOTATIONS_FILE));
    assert_eq!(pages.len(), 40);
    for p in &pages {
        assert!(p.lines.len() <= 4, "{}: {} lines", p.image, p.lines.len());
        assert!(p.font_px >= 20, "{}: em {} px", p.image, p.font_px);
    }
    let lines: usize = pages.iter().map(|p| p.lines.len()).sum();
    assert!(
        lines >= 40 * 2,
        "pages are not empty: {lines} lines on 40 pages"
    );
    assert!(
        pages.iter().any(|p| !p.shapes.is_empty()),
        "some pages keep shapes"
    );
}

/// Fixed-size pages (the nano's kind): every page has the given size, no shapes, text of
/// the given em range, one OCR turn only, and at least one line of text.
#[test]
fn fixed_pages_without_shapes_have_only_the_ocr_turn() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        seed: 5,
        first_index: 100,
        count: 30,
        noise: false,
        bounds: TextBounds {
            max_lines: Some(1),
            min_em_px: Some(36),
            max_em_px: Some(40),
            page_size: Some((320, 80)),
            no_shapes: true,
            ocr_only: true,
            ..Default::default()
        },
    };
    generate(&cfg, dir.path(), |_| {}).unwrap();
    let pages = read_jsonl::<PageAnnotation>(&dir.path().join(ANNOTATIONS_FILE));
    let convs = read_jsonl::<ConversationRecord>(&dir.path().join(CONVERSATIONS_FILE));
    for (p, c) in pages.iter().zip(&convs) {
        assert_eq!((p.width, p.height), (320, 80), "{}", p.image);
        assert!(
            (36..=40).contains(&p.font_px),
            "{}: em {}",
            p.image,
            p.font_px
        );
        assert!(p.shapes.is_empty(), "{}", p.image);
        assert_eq!(p.lines.len(), 1, "{}", p.image);
        assert_eq!(c.conversations.len(), 2, "{}", p.image);
        assert!(c.conversations[1].value.starts_with("<p>"), "{}", p.image);
    }
    let bad = |bounds: TextBounds| {
        let cfg = SynthConfig {
            seed: 5,
            first_index: 0,
            count: 1,
            noise: false,
            bounds,
        };
        generate(&cfg, dir.path(), |_| {}).is_err()
    };
    assert!(bad(TextBounds {
        max_em_px: Some(LARGEST_EM_PX + 1),
        ..Default::default()
    }));
    assert!(bad(TextBounds {
        min_em_px: Some(41),
        max_em_px: Some(40),
        ..Default::default()
    }));
    assert!(bad(TextBounds {
        page_size: Some((8, 80)),
        ..Default::default()
    }));
}

/// `--text random-chars --max-chars N --face mono`: lines of random letters and digits in
/// groups, never longer than N characters, all in the one face; the same pages with words
/// differ only in what the lines say, not in page size, face or text size.
#[test]
fn random_character_lines_in_one_face() {
    let make_pages = |text: TextKind, face: Option<Face>, max_chars: Option<u32>| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            seed: 9,
            first_index: 0,
            count: 60,
            noise: false,
            bounds: TextBounds {
                max_lines: Some(1),
                min_em_px: Some(24),
                max_em_px: Some(28),
                page_size: Some((256, 64)),
                no_shapes: true,
                ocr_only: true,
                text,
                max_chars,
                face,
                line_start_px: None,
            },
        };
        generate(&cfg, dir.path(), |_| {}).unwrap();
        read_jsonl::<PageAnnotation>(&dir.path().join(ANNOTATIONS_FILE))
    };
    let random = make_pages(TextKind::RandomChars, Some(Face::Mono), Some(6));
    let words = make_pages(TextKind::Words, None, None);
    let mut letters = std::collections::BTreeSet::new();
    for (r, w) in random.iter().zip(&words) {
        assert_eq!(r.font, Face::Mono, "{}", r.image);
        assert_eq!(
            r.font_px, w.font_px,
            "{}: the em draw is unchanged",
            r.image
        );
        assert_eq!(r.lines.len(), 1, "{}", r.image);
        let text = &r.lines[0].text;
        assert!(text.chars().count() <= 6, "{}: {text:?}", r.image);
        for group in text.split(' ') {
            assert!(
                (1..=RANDOM_GROUP_MAX as usize).contains(&group.len())
                    && group.chars().all(|c| RANDOM_CHARS.contains(c)),
                "{}: {text:?}",
                r.image
            );
        }
        letters.extend(text.chars().filter(|&c| c != ' '));
    }
    assert!(letters.len() >= 40, "{} distinct characters", letters.len());
    // `--max-chars 1`: every page shows exactly one glyph (no page is left empty).
    for p in make_pages(TextKind::RandomChars, Some(Face::Mono), Some(1)) {
        assert_eq!(p.lines.len(), 1, "{}", p.image);
        assert_eq!(p.lines[0].text.len(), 1, "{}", p.image);
    }
    assert!(
        words.iter().any(|w| w.font != Face::Mono),
        "faces vary by default"
    );
}

/// `--line-start 16 --face mono` at one em size: every line starts at the same pixel, so
/// the first glyph's ink starts within its side bearing of it on every page, and the ink
/// spans as many character advances as the line has characters.
#[test]
fn fixed_line_start_aligns_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        seed: 3,
        first_index: 0,
        count: 80,
        noise: false,
        // Lines of any length: the nano's bounds without its character cap.
        bounds: TextBounds {
            max_chars: None,
            ..TextBounds::nano()
        },
    };
    generate(&cfg, dir.path(), |_| {}).unwrap();
    let pages = read_jsonl::<PageAnnotation>(&dir.path().join(ANNOTATIONS_FILE));
    let mut starts = std::collections::BTreeSet::new();
    for p in &pages {
        for line in &p.lines {
            let (x1, x2) = (line.bbox.x1, line.bbox.x2);
            starts.insert(x1);
            assert!(
                (16..=22).contains(&x1),
                "{}: {:?} starts at {x1}",
                p.image,
                line.text
            );
            // DejaVu Sans Mono advances 1233/2048 em: 16.3 px at 27 px.
            let n = line.text.chars().count() as f64;
            let width = f64::from(x2 - x1);
            assert!(
                width <= n * 16.3 + 1.0,
                "{}: {:?} is {width} px",
                p.image,
                line.text
            );
        }
    }
    assert!(pages.iter().filter(|p| !p.lines.is_empty()).count() >= 70);
    // Unaligned pages start lines at the margin, indented or centred: many places.
    let free = SynthConfig {
        bounds: TextBounds {
            line_start_px: None,
            ..cfg.bounds
        },
        ..cfg.clone()
    };
    let dir2 = tempfile::tempdir().unwrap();
    generate(&free, dir2.path(), |_| {}).unwrap();
    let free_starts: std::collections::BTreeSet<u32> =
        read_jsonl::<PageAnnotation>(&dir2.path().join(ANNOTATIONS_FILE))
            .iter()
            .flat_map(|p| p.lines.iter().map(|l| l.bbox.x1))
            .collect();
    assert!(
        free_starts.len() > starts.len(),
        "{free_starts:?} vs {starts:?}"
    );
    // A start past the middle of the page is refused.
    let bad = SynthConfig {
        bounds: TextBounds {
            line_start_px: Some(128),
            ..cfg.bounds
        },
        ..cfg
    };
    assert!(generate(&bad, tempfile::tempdir().unwrap().path(), |_| {}).is_err());
}
