//! An overlay of parsed boxes on a real corpus page: the PNG has the page's size, every
//! box lies inside the page, outlines carry their span's colour, and pixels away from the
//! boxes and labels are the page's own. The PNG is kept in `target/overlays/` to look at.

use std::path::PathBuf;
use std::sync::Arc;

use sphinx_core::boxes::{parse, PageFrame};
use sphinx_core::document::Document;
use sphinx_core::tiling::{plan, TileConfig};
use sphinx_core::Limits;
use sphinx_worker::overlay;

/// Long side the corpus page is rendered at (the tiler's default scale for a 1k canvas).
const RENDER_LONG_SIDE: u32 = 1024;

#[test]
fn overlay_on_a_corpus_page() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let pdf = repo.join("tests/data/corpus/earnings.pdf");
    let bytes =
        std::fs::read(&pdf).unwrap_or_else(|e| panic!("corpus page {}: {e}", pdf.display()));
    let doc = Document::open(Arc::new(bytes), &Limits::default()).unwrap();
    let page = doc.render(0, RENDER_LONG_SIDE).unwrap();
    let (w, h) = page.image.dimensions();
    let cfg = TileConfig::tiny_1k();
    let (placement, _) = plan(w, h, &cfg).unwrap();
    let frame = PageFrame::new(cfg.canvas, placement, [w, h], page.size_points).unwrap();

    // An answer in SPHINX's format; the last box runs past the page and is clamped.
    let answer = "<p>Earnings</p>[0.10,0.05,0.40,0.09]<p>Total revenue</p>[0.10,0.40,0.30,0.44;0.35,0.40,0.55,0.44] \
                  [0.20,0.70,0.60,0.78] <p>margin</p>[0.60,0.85,0.99,0.99]";
    let parsed = parse(answer);
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let spans = frame.map_spans(&parsed.spans);
    assert_eq!(spans.iter().map(|s| s.boxes.len()).sum::<usize>(), 5);

    let img = overlay::draw(&page.image, [w, h], &spans).unwrap();
    let out = repo.join("target/overlays");
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("earnings_p0_overlay.png");
    overlay::write_png(&img, &path).unwrap();
    let back = image::open(&path).unwrap().to_rgb8();
    assert_eq!(
        back.dimensions(),
        (w, h),
        "overlay must have the page's size"
    );
    assert_eq!(back, img, "PNG round trip is lossless");

    let mut changed_near = 0usize;
    for (i, span) in spans.iter().enumerate() {
        let colour = image::Rgb(overlay::PALETTE[i % overlay::PALETTE.len()]);
        for b in &span.boxes {
            let [x1, y1, x2, y2] = b.pixels;
            assert!(
                0.0 <= x1 && x1 <= x2 && x2 <= f64::from(w),
                "{b:?} inside the page width {w}"
            );
            assert!(
                0.0 <= y1 && y1 <= y2 && y2 <= f64::from(h),
                "{b:?} inside the page height {h}"
            );
            let r = overlay::Rect::clamped(x1, y1, x2, y2, w, h);
            // The left edge at mid-height is outline: the span's colour.
            assert_eq!(
                *back.get_pixel(r.x0, (r.y0 + r.y1) / 2),
                colour,
                "outline of span {i}"
            );
            // The box's interior (away from the outline and the label inside it) is the page.
            for y in (r.y0 + 40).min(r.y1)..r.y1.saturating_sub(8) {
                for x in r.x0 + 8..r.x1.saturating_sub(8) {
                    if back.get_pixel(x, y) != page.image.get_pixel(x, y) {
                        changed_near += 1;
                    }
                }
            }
        }
    }
    assert_eq!(changed_near, 0, "box interiors must be left as they are");
    // Far from every box and label band (above each box), the page is untouched.
    let band = 48.0;
    let far = |x: u32, y: u32| {
        spans.iter().flat_map(|s| &s.boxes).all(|b| {
            let [x1, y1, x2, y2] = b.pixels;
            let (x, y) = (f64::from(x), f64::from(y));
            x + 2.0 < x1 || y + band < y1 || y > y2 + 2.0 || x > x2.max(x1 + 600.0)
        })
    };
    let mut untouched = 0usize;
    for y in (0..h).step_by(3) {
        for x in (0..w).step_by(3) {
            if far(x, y) {
                assert_eq!(
                    back.get_pixel(x, y),
                    page.image.get_pixel(x, y),
                    "({x}, {y}) changed"
                );
                untouched += 1;
            }
        }
    }
    assert!(untouched > 1000);
    assert!(back != page.image, "something was drawn");
}

#[test]
fn empty_image_is_a_typed_error() {
    let img = image::RgbImage::new(0, 0);
    assert!(matches!(
        overlay::draw(&img, [10, 10], &[]),
        Err(overlay::OverlayError::EmptyImage { .. })
    ));
}
