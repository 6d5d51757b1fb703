//! The per-document pipeline: what `sphinx tile`, `sphinx run` and the tiler Lambda share.

use std::path::PathBuf;
use std::sync::Arc;

use sphinx_core::document::Document;
use sphinx_core::ErrorRecord;
use sphinx_core::Isolation;
use sphinx_core::Limits;
use sphinx_core::PageBundle;
use sphinx_core::TileConfig;
use sphinx_core::{tile_document, PageOutput, TileOptions};

fn data(rel: &str) -> Arc<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(rel);
    Arc::new(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn run(
    bytes: &Arc<Vec<u8>>,
    opts: &TileOptions,
    pages: Option<std::ops::Range<u32>>,
) -> (sphinx_core::manifest::DocumentManifest, Vec<PageOutput>) {
    let mut out = Vec::new();
    let manifest = tile_document(Arc::clone(bytes), "doc.pdf", opts, pages, &mut |p| {
        out.push(p);
        Ok(())
    })
    .unwrap();
    (manifest, out)
}

#[test]
fn page_ranges_give_the_same_manifest_and_bundles_as_one_call() {
    let bytes = data("corpus/mattsnotes.pdf");
    let opts = TileOptions::default();
    let (whole, pages) = run(&bytes, &opts, None);
    assert_eq!(whole.page_count, 3);
    assert_eq!(pages.len(), 3);
    for range in [0..1, 1..3, 2..3] {
        let (part, part_pages) = run(&bytes, &opts, Some(range.clone()));
        assert_eq!(part, whole, "manifest of range {range:?}");
        let expected: Vec<_> = pages[range.start as usize..range.end as usize]
            .iter()
            .map(|p| (&p.key, &p.bundle))
            .collect();
        let got: Vec<_> = part_pages.iter().map(|p| (&p.key, &p.bundle)).collect();
        assert_eq!(got, expected, "bundles of range {range:?}");
    }
}

#[test]
fn planned_sizes_equal_rendered_sizes() {
    let limits = Limits::default();
    for (file, long_side) in [
        ("corpus/mattsnotes.pdf", 1024),
        ("corpus/small_page_size.pdf", 448),
        ("formats/multipage.tif", 1024),
        ("formats/exif_orient6.jpg", 1024),
        ("formats/flate_rotate_crop.pdf", 1000),
    ] {
        let doc = Document::open(data(file), &limits).unwrap();
        for index in 0..doc.page_count() {
            let page = doc.render(index, long_side).unwrap();
            assert_eq!(
                doc.render_size(index, long_side).unwrap(),
                [page.image.width(), page.image.height()],
                "{file} page {index}"
            );
        }
    }
}

#[test]
fn every_page_output_is_a_valid_bundle_of_its_page() {
    let bytes = data("corpus/mathfuncs.pdf");
    // Rendered in a child process, as the binaries do.
    let opts = TileOptions {
        tile: TileConfig::tiny_448(),
        limits: Limits::default(),
        isolation: Isolation::Child {
            program: env!("CARGO_BIN_EXE_sphinx-render").into(),
        },
    };
    let (manifest, pages) = run(&bytes, &opts, None);
    assert_eq!(manifest.tile_config, TileConfig::tiny_448());
    for page in pages {
        let bundle = PageBundle::decode(page.bundle.clone()).unwrap();
        assert_eq!(bundle.manifest.page_index, page.index);
        assert_eq!(bundle.manifest.doc_id, manifest.doc_id);
        assert_eq!(bundle.manifest.kept_count() as u32, page.views);
        assert_eq!(bundle.manifest.preprocess.canvas, 448);
    }
}

#[test]
fn invalid_documents_are_not_retryable_and_get_a_named_code() {
    let bytes = Arc::new(b"%PDF-1.7 definitely not a pdf".to_vec());
    let err = tile_document(bytes, "bad.pdf", &TileOptions::default(), None, &mut |_| {
        Ok(())
    })
    .unwrap_err();
    assert!(err.is_invalid_input());
    let record = ErrorRecord::from_error("id", "bad.pdf", &err);
    assert_eq!(record.code, "malformed");
    assert!(
        record.message.contains("truncated")
            || record.message.contains("PDF")
            || record.message.contains("Pdf"),
        "{}",
        record.message
    );
}

#[test]
fn a_failing_sink_is_retryable() {
    let err = tile_document(
        data("corpus/small_page_size.pdf"),
        "x.pdf",
        &TileOptions::default(),
        None,
        &mut |_| anyhow::bail!("store down"),
    )
    .unwrap_err();
    assert!(!err.is_invalid_input());
    assert_eq!(err.code(), "store_failed");
}

#[test]
fn every_corpus_page_tiles() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 21, "the corpus has 21 PDFs");
    let opts = TileOptions::default();
    let mut pages = 0;
    for file in &files {
        let bytes = Arc::new(std::fs::read(file).unwrap());
        let (manifest, outputs) = run(&bytes, &opts, None);
        assert_eq!(
            outputs.len() as u32,
            manifest.page_count,
            "{}",
            file.display()
        );
        for out in outputs {
            let bundle = PageBundle::decode(out.bundle).unwrap();
            let corner = bundle
                .cell_image(0)
                .unwrap()
                .expect("cell r0c0 holds the page's corner");
            assert_eq!(
                (corner.width(), corner.height()),
                (512, 512),
                "{}",
                file.display()
            );
            let canvas = bundle.tiled().unwrap().canvas;
            assert_eq!(canvas.dimensions(), (1024, 1024), "{}", file.display());
        }
        pages += manifest.page_count;
    }
    assert_eq!(pages, 23, "the corpus has 23 pages");
}
