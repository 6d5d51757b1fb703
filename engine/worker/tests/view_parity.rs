//! The pixels the encoders see, from document bytes through the tiler's bundle and the
//! worker's batch preparation, equal those of the reference code on the same page image:
//! a peer written with PIL + torchvision + `F.interpolate` exactly as LLaMA2-Accessory's
//! `T_padded_resize` + `encode_image` (`scripts/reference_views.py`), on real corpus pages of
//! both aspect ratios and an upload with padding cells, for both released layouts. The
//! released checkpoints (no skip token) get the page centred, as `PadToSquare` pastes it;
//! models with a skip token get it top-left (the peer with `--align top-left`).
//! The peer gets the page bitmap the engine rasterised (the reference takes images).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sphinx_core::document::Document;
use sphinx_core::Isolation;
use sphinx_core::Limits;
use sphinx_core::PageBundle;
use sphinx_core::{tile_document, TileOptions};
use sphinx_core::{PageJob, Task};
use sphinx_model::MovConfig;
use sphinx_worker::batch::PreparedPage;
use tch::{Device, Kind, Tensor};

/// The bound on view pixels (normalized units).
const MAX_ABS_ERR: f64 = 1e-6;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus(name: &str) -> Vec<u8> {
    let path = workspace().join("tests/data/corpus").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A wide upload (PNG) cut from a corpus page rendered larger than any canvas, so the
/// canvas is a real (antialiased) PIL resize and its bottom row of cells is padding.
fn wide_png() -> Vec<u8> {
    let doc = Document::open(Arc::new(corpus("lincoln_letter.pdf")), &Limits::default()).unwrap();
    let page = doc.render(0, 1800).unwrap().image;
    let strip = image::imageops::crop_imm(&page, 60, 200, 1500, 520).to_image();
    let mut png = Vec::new();
    strip
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

/// Runs the peer on `page_png`; returns its (ConvNeXt views, DINOv2 views, canvas).
fn reference_views(
    page_png: &Path,
    layout: &str,
    align: &str,
    dir: &Path,
) -> (Tensor, Tensor, Tensor) {
    let out = dir.join(format!("{layout}-{align}.safetensors"));
    let py = workspace().join(".venv/bin/python");
    let o = Command::new(&py)
        .arg(workspace().join("scripts/reference_views.py"))
        .arg(page_png)
        .args(["--layout", layout, "--align", align, "--out"])
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", py.display()));
    assert!(
        o.status.success(),
        "views.py failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut t: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&out)
        .unwrap()
        .into_iter()
        .collect();
    (
        t.remove("convnext").unwrap(),
        t.remove("dinov2").unwrap(),
        t.remove("canvas").unwrap(),
    )
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// One document through the tiler and the worker's preparation, against the peer, for a
/// model with (or without) a skip token; returns the cells it skipped.
fn check(name: &str, bytes: &[u8], vision: &MovConfig, layout: &str, skip_tokens: bool) -> usize {
    let tile = vision.tiling(skip_tokens);
    let align = if skip_tokens { "top-left" } else { "center" };
    let bytes = Arc::new(bytes.to_vec());
    // The page is rendered where the binaries render it: in a `sphinx` child process.
    let opts = TileOptions {
        tile: tile.clone(),
        limits: Limits::default(),
        isolation: Isolation::Child {
            program: env!("CARGO_BIN_EXE_sphinx").into(),
        },
    };
    let mut bundles = Vec::new();
    let manifest = tile_document(Arc::clone(&bytes), name, &opts, Some(0..1), &mut |p| {
        bundles.push(p.bundle);
        Ok(())
    })
    .unwrap();
    let bundle = PageBundle::decode(bundles.remove(0)).unwrap();
    let job = PageJob::new(
        &manifest.doc_id,
        name,
        0,
        manifest.page_count,
        vec![Task::Ocr],
    );
    let prepared = PreparedPage::from_bundle(&bundle, &job, &tile, "parity").unwrap();

    // The page bitmap the tiler rasterised, as the reference's input image.
    let dir = tempfile::tempdir().unwrap();
    let page = Document::open(Arc::clone(&bytes), &Limits::default())
        .unwrap()
        .render(0, tile.canvas)
        .unwrap()
        .image;
    let page_png = dir.path().join("page.png");
    page.save(&page_png).unwrap();
    let (conv, dino, canvas) = reference_views(&page_png, layout, align, dir.path());

    let ours = tch::Tensor::from_slice(prepared.tiled.canvas.as_raw())
        .view([i64::from(tile.canvas), i64::from(tile.canvas), 3])
        .permute([2, 0, 1]);
    assert_eq!(canvas.kind(), Kind::Uint8);
    assert!(
        ours.equal(&canvas),
        "{name} {layout} {align}: canvas differs from PIL's"
    );
    if !skip_tokens {
        // A released model (no skip token) sees every view, as the reference.
        let all = prepared.views_for(vision, false, Device::Cpu).unwrap();
        let (ec, ed) = (
            max_abs(&all.views.convnext, &conv),
            max_abs(&all.views.dinov2, &dino),
        );
        println!(
            "{name} {layout} centred: {} views, max abs err ConvNeXt {ec:e}, DINOv2 {ed:e}",
            conv.size()[0]
        );
        assert!(
            ec <= MAX_ABS_ERR && ed <= MAX_ABS_ERR,
            "{name} {layout}: {ec:e} / {ed:e}"
        );
        return 0;
    }
    // A skip-token model sees the same pixels for the cells it keeps.
    let skip = prepared.views_for(vision, true, Device::Cpu).unwrap();
    let kept: Vec<i64> = std::iter::once(0)
        .chain(
            skip.skipped
                .iter()
                .enumerate()
                .filter(|(_, &s)| !s)
                .map(|(i, _)| 1 + i as i64),
        )
        .collect();
    let kept_t = Tensor::from_slice(&kept);
    let ec = max_abs(&skip.views.convnext, &conv.index_select(0, &kept_t));
    let ed = max_abs(&skip.views.dinov2, &dino.index_select(0, &kept_t));
    println!(
        "{name} {layout} top-left: {} of {} views, max abs err ConvNeXt {ec:e}, DINOv2 {ed:e}",
        kept.len(),
        conv.size()[0]
    );
    assert!(ec <= MAX_ABS_ERR && ed <= MAX_ABS_ERR, "{name} {layout}");
    skip.skipped.iter().filter(|&&s| s).count()
}

#[test]
fn encoder_views_equal_the_reference_code_on_real_pages() {
    tch::set_num_threads(1);
    let layouts = [
        (MovConfig::sphinx_tiny_1k(), "llama_ens5_light"),
        (MovConfig::sphinx_tiny(), "llama_ens_light"),
    ];
    let mut skipped = 0;
    let docs = [
        // Portrait, landscape, and a wide upload (bottom cells padding when top-left).
        ("earnings.pdf", corpus("earnings.pdf")),
        ("mathfuncs.pdf", corpus("mathfuncs.pdf")),
        ("wide.png", wide_png()),
    ];
    for (vision, layout) in &layouts {
        for (name, bytes) in &docs {
            for skip_tokens in [false, true] {
                skipped += check(name, bytes, vision, layout, skip_tokens);
            }
        }
    }
    assert_eq!(
        skipped, 2,
        "the wide upload's bottom row is padding in the 2x2 top-left layout"
    );
}
