//! Resampling parity with PIL: the canvas the tiler makes IS PIL's BICUBIC canvas of the
//! same page bitmap (pad to a top-left square, resize), byte for byte, and the blank
//! padding cells are exactly PIL's all-padding crops.
//!
//! Fixtures: `.venv/bin/python scripts/make_resize_fixtures.py` (writes
//! `target/fixtures/resize/`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use image::RgbImage;
use serde::Deserialize;
use sphinx_core::tiling::{tile_page, TileConfig, PAD_RGB};

const GENERATOR: &str = ".venv/bin/python scripts/make_resize_fixtures.py";

#[derive(Deserialize)]
struct Index {
    pad_rgb: [u8; 3],
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    page_size: [u32; 2],
    canvas: u32,
    grid: u32,
    all_padding_cells: Vec<[u32; 2]>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures/resize")
}

fn load(name: &str) -> RgbImage {
    let path = fixtures().join(name);
    image::open(&path)
        .unwrap_or_else(|e| {
            panic!(
                "cannot read fixture {} ({e}); run `{GENERATOR}`",
                path.display()
            )
        })
        .to_rgb8()
}

/// (mean, max) absolute difference over all samples.
fn diff(ours: &RgbImage, theirs: &RgbImage) -> (f64, u8) {
    assert_eq!(ours.dimensions(), theirs.dimensions());
    let mut sum = 0u64;
    let mut max = 0u8;
    for (a, b) in ours.as_raw().iter().zip(theirs.as_raw()) {
        let d = a.abs_diff(*b);
        sum += u64::from(d);
        max = max.max(d);
    }
    (sum as f64 / ours.as_raw().len() as f64, max)
}

#[test]
fn views_match_pil_bicubic() {
    let index_path = fixtures().join("cases.json");
    let text = std::fs::read_to_string(&index_path).unwrap_or_else(|e| {
        panic!(
            "missing resize fixtures {} ({e}); run `{GENERATOR}`",
            index_path.display()
        )
    });
    let index: Index = serde_json::from_str(&text).expect("cases.json parses");
    assert_eq!(
        index.pad_rgb, PAD_RGB,
        "PIL-side pad colour differs from ours"
    );
    assert!(
        index.cases.len() >= 8,
        "too few cases in {}",
        index_path.display()
    );
    let mut compared = 0;
    let mut skips_seen = 0;
    for case in &index.cases {
        let page = load(&format!("{}.page.png", case.name));
        assert_eq!(page.dimensions(), (case.page_size[0], case.page_size[1]));
        let cfg = TileConfig::new(case.canvas, case.grid);
        let tiled = tile_page(&page, &cfg).unwrap();

        let (mean, max) = diff(&tiled.canvas, &load(&format!("{}.canvas.png", case.name)));
        println!("{} canvas: mean {mean:.4} max {max}", case.name);
        // Byte for byte: released models saw exactly PIL's pixels.
        assert!(max == 0, "{} canvas: mean {mean} max {max}", case.name);
        compared += 1;

        let pil_padding: BTreeSet<(u32, u32)> = case
            .all_padding_cells
            .iter()
            .map(|&[r, c]| (r, c))
            .collect();
        let mut our_skips = BTreeSet::new();
        let mut our_blank = BTreeSet::new();
        for row in 0..case.grid {
            for col in 0..case.grid {
                if tiled.plan.is_skipped(row, col) {
                    our_skips.insert((row, col));
                }
                if tiled.cell_is_blank(row, col) {
                    our_blank.insert((row, col));
                }
            }
        }
        assert_eq!(
            our_blank, pil_padding,
            "{}: blank cells differ from PIL's all-padding crops",
            case.name
        );
        assert_eq!(
            our_skips, pil_padding,
            "{}: skipped cells differ from PIL's all-padding crops",
            case.name
        );
        skips_seen += our_skips.len();
    }
    // The fixture set must exercise both kept and skipped cells.
    assert!(
        compared >= 8 && skips_seen >= 4,
        "compared {compared}, skips {skips_seen}"
    );
}
