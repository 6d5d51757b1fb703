//! Documents -> pages on real inputs: every page of the PDF corpus against
//! MuPDF's renders, and one sample per raster format / PDF image filter against
//! PIL's decode (samples and expected images: tests/data/README.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use sphinx_core::document::{Document, SourceKind};
use sphinx_core::DocError;
use sphinx_core::Limits;

const FIXTURE_COMMAND: &str = ".venv/bin/python scripts/make_document_fixtures.py";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data(rel: &str) -> PathBuf {
    workspace().join("tests/data").join(rel)
}

fn open_path(path: &Path, limits: &Limits) -> Result<Document, DocError> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Document::open(Arc::new(bytes), limits)
}

fn open(rel: &str) -> Document {
    open_path(&data(rel), &Limits::default()).unwrap_or_else(|e| panic!("open {rel}: {e}"))
}

fn load_png(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_rgb8()
}

fn expected(name: &str) -> RgbImage {
    load_png(&data(&format!("formats/{name}.expected.png")))
}

/// Mean and max absolute difference over the common area of two RGB images.
fn diff(a: &RgbImage, b: &RgbImage) -> (f64, u8) {
    let (w, h) = (a.width().min(b.width()), a.height().min(b.height()));
    let (mut sum, mut max, mut n) = (0u64, 0u8, 0u64);
    for y in 0..h {
        for x in 0..w {
            for (p, q) in a.get_pixel(x, y).0.iter().zip(b.get_pixel(x, y).0) {
                let d = p.abs_diff(q);
                sum += u64::from(d);
                max = max.max(d);
                n += 1;
            }
        }
    }
    (sum as f64 / n.max(1) as f64, max)
}

/// Asserts `got` has `want`'s size and differs by at most `mean`/`max` per channel.
fn assert_close(name: &str, got: &RgbImage, want: &RgbImage, mean: f64, max: u8) {
    assert_eq!(got.dimensions(), want.dimensions(), "{name}: size");
    let (m, x) = diff(got, want);
    assert!(
        m <= mean && x <= max,
        "{name}: mean abs diff {m:.3} (allowed {mean}), max {x} (allowed {max})"
    );
}

fn assert_size_points(name: &str, got: [f32; 2], want: [f32; 2]) {
    for i in 0..2 {
        assert!(
            (got[i] - want[i]).abs() < 0.01,
            "{name}: size {got:?} pt, expected {want:?} pt"
        );
    }
}

#[test]
fn every_corpus_page_renders_like_mupdf() {
    let dir = workspace().join("target/fixtures/documents");
    let index = std::fs::read_to_string(dir.join("corpus.json")).unwrap_or_else(|e| {
        panic!("missing MuPDF reference fixtures ({e}); run: {FIXTURE_COMMAND}")
    });
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    let long_side = index["long_side"].as_u64().unwrap() as u32;
    let files = index["files"].as_object().unwrap();
    let corpus: Vec<_> = std::fs::read_dir(data("corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        corpus.len(),
        21,
        "tests/data/corpus should hold the 21 corpus PDFs"
    );
    assert_eq!(
        files.len(),
        21,
        "reference fixtures are stale; run: {FIXTURE_COMMAND}"
    );
    let mut pages_seen = 0;
    for path in &corpus {
        let name = path.file_name().unwrap().to_str().unwrap();
        let reference = files[name]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no reference; run: {FIXTURE_COMMAND}"));
        let doc = open_path(path, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(doc.kind(), SourceKind::Pdf);
        assert_eq!(
            doc.page_count() as usize,
            reference.len(),
            "{name}: page count"
        );
        for (i, page_ref) in reference.iter().enumerate() {
            let want_pt = page_ref["size_points"].as_array().unwrap();
            let want_pt = [
                want_pt[0].as_f64().unwrap() as f32,
                want_pt[1].as_f64().unwrap() as f32,
            ];
            assert_size_points(name, doc.page_size_points(i as u32).unwrap(), want_pt);
            let page = doc
                .render(i as u32, long_side)
                .unwrap_or_else(|e| panic!("{name} p{i}: {e}"));
            let (w, h) = page.image.dimensions();
            assert_eq!(w.max(h), long_side, "{name} p{i}: long side");
            let mupdf = load_png(&dir.join(format!("{name}.p{i}.png")));
            // Same page, same scale: sizes agree within the rounding of either renderer.
            assert!(
                w.abs_diff(mupdf.width()) <= 1 && h.abs_diff(mupdf.height()) <= 1,
                "{name} p{i}: {w}x{h} vs MuPDF {}x{}",
                mupdf.width(),
                mupdf.height()
            );
            // Anti-aliasing, hinting and font substitution differ along every edge, so
            // compare block averages: a missing image, a shifted or rotated page or a
            // blank render changes them, renderer nuances do not.
            let blank = RgbImage::from_pixel(mupdf.width(), mupdf.height(), image::Rgb([255; 3]));
            let (got, blank_diff) = (
                coarse_diff(&page.image, &mupdf),
                coarse_diff(&blank, &mupdf),
            );
            assert!(
                got < MAX_COARSE_DIFF && got < MAX_FRACTION_OF_BLANK * blank_diff,
                "{name} p{i}: block-mean diff vs MuPDF {got:.2} (a blank page scores {blank_diff:.2})"
            );
            pages_seen += 1;
        }
    }
    assert_eq!(pages_seen, 23);
}

/// Side of the square blocks averaged before comparing hayro with MuPDF (px at 256 px pages).
const COARSE_BLOCK: u32 = 8;
/// Largest block-mean difference (0-255) tolerated vs MuPDF. Measured worst on this
/// corpus: 6.2 (mattsnotes.pdf, handwriting scan); most pages are under 1.5.
const MAX_COARSE_DIFF: f64 = 8.0;
/// A render must be at least twice as close to MuPDF's as a blank page is (measured
/// worst ratio: 0.34, discoverworld_crazy_table4.pdf).
const MAX_FRACTION_OF_BLANK: f64 = 0.5;

/// Mean absolute difference of `COARSE_BLOCK`-px block averages of two renders.
fn coarse_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    use image::imageops::{resize, FilterType};
    let small = |img: &RgbImage| {
        resize(
            img,
            b.width() / COARSE_BLOCK,
            b.height() / COARSE_BLOCK,
            FilterType::Triangle,
        )
    };
    diff(&small(a), &small(b)).0
}

#[test]
fn pdf_long_side_is_capped_by_limits() {
    let limits = Limits {
        max_render_side: 300,
        ..Limits::default()
    };
    let doc = open_path(&data("corpus/earnings.pdf"), &limits).unwrap();
    let page = doc.render(0, 10_000).unwrap();
    // 612 x 792 pt portrait: 300 px high, 612 * 300 / 792 = 231.8 -> 232 px wide.
    assert_eq!(page.image.dimensions(), (232, 300));
    assert_size_points("earnings", page.size_points, [612.0, 792.0]);
}

/// Each PDF sample is one image drawn 1 pt per pixel; rendering at its pixel size
/// must reproduce PIL's decode of the embedded image (and PyMuPDF agreed when the
/// sample was made).
#[test]
fn pdf_image_filters_decode() {
    // (sample, mean, max): DCT and JPX go through hayro's own decoders, so allow
    // decoder rounding; CCITT, JBIG2 and Flate are lossless and must match exactly.
    for (name, mean, max) in [
        ("dct", 1.0, 12),
        ("jpx", 0.5, 4),
        ("ccitt", 0.0, 0),
        ("jbig2", 0.0, 0),
        ("flate_rotate_crop", 0.0, 0),
    ] {
        let doc = open(&format!("formats/{name}.pdf"));
        let want = expected(name);
        let page = doc.render(0, want.width().max(want.height())).unwrap();
        assert_close(name, &page.image, &want, mean, max);
        assert_size_points(
            name,
            page.size_points,
            [want.width() as f32, want.height() as f32],
        );
    }
}

#[test]
fn multipage_tiff_pages_decode() {
    let doc = open("formats/multipage.tif");
    assert_eq!(doc.kind(), SourceKind::Tiff);
    assert_eq!(doc.page_count(), 3);
    for i in 0..3 {
        let want = expected(&format!("multipage.p{i}"));
        let page = doc.render(i, 1).unwrap();
        // Page 2 has alpha: PIL and we round the composite differently by at most 1.
        assert_close(&format!("multipage p{i}"), &page.image, &want, 0.5, 1);
        // Saved at 150 dpi.
        let pt = |px: u32| px as f32 * 72.0 / 150.0;
        assert_size_points(
            "multipage",
            page.size_points,
            [pt(want.width()), pt(want.height())],
        );
    }
}

#[test]
fn g4_fax_tiff_pages_decode() {
    let doc = open("formats/fax_g4.tif");
    assert_eq!(doc.page_count(), 2);
    for i in 0..2 {
        let want = expected(&format!("fax_g4.p{i}"));
        let page = doc.render(i, 1).unwrap();
        assert_close(&format!("fax p{i}"), &page.image, &want, 0.0, 0);
        // Fine-mode fax: 204 x 196 dpi.
        let size = [
            want.width() as f32 * 72.0 / 204.0,
            want.height() as f32 * 72.0 / 196.0,
        ];
        assert_size_points("fax", page.size_points, size);
    }
}

#[test]
fn png_variants_end_as_rgb() {
    // 16-bit: PIL keeps the high byte, we round; palette and gray+alpha: composite rounding.
    for name in ["rgb16", "palette", "gray_alpha"] {
        let doc = open(&format!("formats/{name}.png"));
        assert_eq!(doc.kind(), SourceKind::Png);
        assert_eq!(doc.page_count(), 1);
        let page = doc.render(0, 1).unwrap();
        assert_close(name, &page.image, &expected(name), 0.6, 1);
    }
    // gray_alpha.png is 30 x 20 px at 300 dpi (pHYs 11811 px/m).
    let doc = open("formats/gray_alpha.png");
    let dpi = 11811.0 * 0.0254;
    assert_size_points(
        "gray_alpha",
        doc.page_size_points(0).unwrap(),
        [30.0 * 72.0 / dpi, 20.0 * 72.0 / dpi],
    );
    // No density recorded: one point per pixel.
    assert_size_points(
        "rgb16",
        open("formats/rgb16.png").page_size_points(0).unwrap(),
        [30.0, 20.0],
    );
}

#[test]
fn jpeg_exif_orientation_is_applied() {
    let doc = open("formats/exif_orient6.jpg");
    assert_eq!(doc.kind(), SourceKind::Jpeg);
    let page = doc.render(0, 1).unwrap();
    // Stored 64 x 32; orientation 6 displays it rotated 90 degrees clockwise.
    assert_eq!(page.image.dimensions(), (32, 64));
    assert_size_points("exif", page.size_points, [32.0, 64.0]);
    // Different JPEG decoders (zune-jpeg vs libjpeg-turbo) round the IDCT and chroma
    // upsampling differently; a wrong rotation would differ by ~100 on average.
    assert_close(
        "exif_orient6",
        &page.image,
        &expected("exif_orient6"),
        3.0,
        60,
    );
}

#[test]
fn cmyk_jpeg_ends_as_rgb() {
    let page = open("formats/cmyk.jpg").render(0, 1).unwrap();
    assert_close("cmyk", &page.image, &expected("cmyk"), 3.0, 60);
}

#[test]
fn webp_decodes() {
    let doc = open("formats/lossless_alpha.webp");
    assert_eq!(doc.kind(), SourceKind::Webp);
    let page = doc.render(0, 1).unwrap();
    assert_close(
        "lossless_alpha",
        &page.image,
        &expected("lossless_alpha"),
        0.6,
        1,
    );
    let page = open("formats/lossy.webp").render(0, 1).unwrap();
    assert_close("lossy", &page.image, &expected("lossy"), 3.0, 60);
}

#[test]
fn type_comes_from_bytes_not_names() {
    // A PNG under a PDF-looking name is still a PNG (Document never sees names,
    // and sniff only reads bytes).
    let bytes = std::fs::read(data("formats/palette.png")).unwrap();
    let doc = Document::open(Arc::new(bytes), &Limits::default()).unwrap();
    assert_eq!(doc.kind(), SourceKind::Png);
}
