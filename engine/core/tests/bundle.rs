//! Page bundles: round trip, strict decoding, extraction, and decode never panicking on
//! random or mutated bytes.

use image::RgbImage;
use proptest::prelude::*;
use sphinx_core::bundle::{self, BundleError, PageBundle, FORMAT_VERSION, MAGIC, PREAMBLE_LEN};
use sphinx_core::manifest::{
    DocumentManifest, ManifestError, PageManifest, SourceInfo, SCHEMA_VERSION,
};
use sphinx_core::tiling::{tile_page, TileConfig, TiledPage};

fn page(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = ((x * 7 + y * 13) % 256) as u8;
        let ink = if (x / 5 + y / 3) % 4 == 0 { 0 } else { 255 };
        image::Rgb([v, ink, v ^ ink])
    })
}

fn source() -> SourceInfo {
    SourceInfo {
        name: "scans/letter.pdf".into(),
        kind: "pdf".into(),
        bytes: 12345,
    }
}

fn tiled(w: u32, h: u32, cfg: &TileConfig) -> (DocumentManifest, TiledPage) {
    let doc = DocumentManifest::new(&"ab".repeat(32), source(), 3, cfg);
    (doc, tile_page(&page(w, h), cfg).unwrap())
}

fn built(w: u32, h: u32, cfg: &TileConfig) -> (PageBundle, TiledPage) {
    let (doc, t) = tiled(w, h, cfg);
    let manifest = doc.page_manifest(1, [612.0, 792.0], &t);
    (PageBundle::build(manifest, &t).unwrap(), t)
}

/// Re-encodes a bundle with a replaced header.
fn with_header(bytes: &[u8], header: &[u8]) -> Vec<u8> {
    let old = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut out = bytes[..12].to_vec();
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(&bytes[PREAMBLE_LEN + old..]);
    out
}

#[test]
fn round_trip_is_lossless_and_skips_carry_no_pixels() {
    let cfg = TileConfig::tiny_448();
    let (bundle, t) = built(900, 300, &cfg);
    let decoded = PageBundle::decode(bundle.as_bytes().to_vec()).unwrap();
    assert_eq!(decoded.manifest, bundle.manifest);
    let m = &decoded.manifest;
    assert_eq!(m.schema_version, SCHEMA_VERSION);
    assert_eq!(m.size_pixels, [900, 300]);
    assert_eq!((m.page_index, m.page_count), (1, 3));
    assert_eq!(m.cells.len(), 4);
    let keys: Vec<_> = m.cells.iter().map(|v| v.key.as_str()).collect();
    assert_eq!(keys, ["r0c0.png", "r0c1.png", "r1c0.png", "r1c1.png"]);
    let padding: Vec<_> = m.cells.iter().map(|v| v.padding).collect();
    assert_eq!(padding, [false, false, true, true]);
    for i in 0..4 {
        let (row, col) = (i as u32 / 2, i as u32 % 2);
        let got = decoded.cell_image(i).unwrap();
        if t.cell_is_blank(row, col) {
            assert!(got.is_none() && decoded.cell_png(i).is_none(), "cell {i}");
        } else {
            assert_eq!(got, Some(t.cell(row, col)), "cell {i}");
        }
    }
    assert!(decoded.cell_png(2).is_none() && decoded.cell_png(3).is_none());
    // The canvas comes back bit for bit.
    assert_eq!(decoded.tiled().unwrap(), t);
    assert!(decoded.cell_image(4).is_err());
    assert!(decoded.cell_png(99).is_none());
    assert_eq!(
        bundle::encode(bundle.manifest.clone(), &t).unwrap(),
        bundle.as_bytes()
    );
}

#[test]
fn layout_matches_the_documented_preamble() {
    let (bundle, _) = built(100, 100, &TileConfig::tiny_448());
    let b = bundle.as_bytes();
    assert_eq!(&b[..8], &MAGIC);
    assert_eq!(
        u32::from_le_bytes(b[8..12].try_into().unwrap()),
        FORMAT_VERSION
    );
    let header_len = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&b[16..16 + header_len]).unwrap();
    assert_eq!(header["schema_version"], SCHEMA_VERSION);
    // The first PNG starts right after the header.
    assert_eq!(
        &b[16 + header_len..16 + header_len + 8],
        b"\x89PNG\r\n\x1a\n"
    );
}

#[test]
fn document_manifest_records_pages() {
    let cfg = TileConfig::tiny_1k();
    let (mut doc, t) = tiled(900, 300, &cfg);
    let m = doc.page_manifest(2, [1.0, 1.0], &t);
    doc.record_page(&m);
    let m0 = doc.page_manifest(0, [1.0, 1.0], &t);
    doc.record_page(&m0);
    doc.record_page(&m0);
    let idx: Vec<_> = doc.pages.iter().map(|p| p.index).collect();
    assert_eq!(idx, [0, 2]);
    assert_eq!((doc.pages[1].views, doc.pages[1].skipped), (3, 2));
    assert_eq!(
        doc.pages[1].key,
        sphinx_core::keys::page_bundle(&"ab".repeat(32), 2)
    );
    let back = DocumentManifest::from_json(&doc.to_json()).unwrap();
    assert_eq!(back, doc);
}

#[test]
fn unknown_major_versions_are_rejected() {
    let (bundle, _) = built(50, 80, &TileConfig::tiny_448());
    let mut value: serde_json::Value = serde_json::to_value(&bundle.manifest).unwrap();
    value["schema_version"] = "3.0".into();
    let header = serde_json::to_vec(&value).unwrap();
    let err = PageBundle::decode(with_header(bundle.as_bytes(), &header)).unwrap_err();
    assert!(
        matches!(&err, BundleError::Manifest(ManifestError::UnsupportedVersion { found }) if found == "3.0"),
        "{err}"
    );
    // A newer minor of the same major is read.
    value["schema_version"] = "2.7".into();
    let header = serde_json::to_vec(&value).unwrap();
    assert!(PageBundle::decode(with_header(bundle.as_bytes(), &header)).is_ok());

    let mut doc = serde_json::to_value(DocumentManifest::new(
        "x",
        source(),
        1,
        &TileConfig::tiny_1k(),
    ))
    .unwrap();
    doc["schema_version"] = "0.9".into();
    assert!(matches!(
        DocumentManifest::from_json(&serde_json::to_vec(&doc).unwrap()),
        Err(ManifestError::UnsupportedVersion { .. })
    ));

    // An old (version 1) bundle is refused by name, never read as something else.
    let mut b = bundle.as_bytes().to_vec();
    b[8] = 1;
    let err = PageBundle::decode(b).unwrap_err();
    assert!(
        matches!(err, BundleError::UnsupportedVersion { found: 1 }),
        "{err}"
    );
    assert!(err.to_string().contains("version 1"), "{err}");
}

#[test]
fn corrupt_bundles_give_typed_errors() {
    let (bundle, _) = built(300, 120, &TileConfig::tiny_448());
    let good = bundle.as_bytes().to_vec();
    assert!(matches!(
        PageBundle::decode(good[..10].to_vec()),
        Err(BundleError::Truncated { len: 10 })
    ));
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(
        PageBundle::decode(bad),
        Err(BundleError::BadMagic)
    ));
    // The message shows the magic as the text it is.
    let said = BundleError::BadMagic.to_string();
    assert!(
        said.contains(std::str::from_utf8(&MAGIC).unwrap()),
        "{said}"
    );
    let mut bad = good.clone();
    bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        PageBundle::decode(bad),
        Err(BundleError::HeaderLength { .. })
    ));
    // A truncated payload no longer covers the views.
    assert!(matches!(
        PageBundle::decode(good[..good.len() - 1].to_vec()),
        Err(BundleError::View { .. })
    ));
    // Trailing bytes are refused too.
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        PageBundle::decode(long),
        Err(BundleError::PayloadLength { .. })
    ));
    // A view range pointing elsewhere.
    let mut m: PageManifest = bundle.manifest.clone();
    m.cells[1].range.as_mut().unwrap().offset += 1;
    let bad = with_header(&good, &serde_json::to_vec(&m).unwrap());
    assert!(matches!(
        PageBundle::decode(bad),
        Err(BundleError::View { index: 1, .. })
    ));
    // A renamed view (would escape the extract dir) is not a valid manifest.
    let mut m = bundle.manifest.clone();
    m.cells[1].key = "../evil.png".into();
    let bad = with_header(&good, &serde_json::to_vec(&m).unwrap());
    assert!(matches!(
        PageBundle::decode(bad),
        Err(BundleError::Manifest(ManifestError::Invalid(_)))
    ));
    // Corrupt PNG bytes decode as a typed view error.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 40..n - 20].fill(0xAB);
    let b = PageBundle::decode(bad).unwrap();
    let last = b
        .manifest
        .cells
        .iter()
        .rposition(|v| v.range.is_some())
        .unwrap();
    assert!(matches!(b.cell_image(last), Err(BundleError::View { .. })));
    assert!(matches!(b.tiled(), Err(BundleError::View { .. })));
    // A page cell without pixels is refused.
    let mut m = bundle.manifest.clone();
    let second = m.cells[1].range.take().unwrap();
    m.cells[0].range.as_mut().unwrap().len += second.len;
    let bad = with_header(&good, &serde_json::to_vec(&m).unwrap());
    assert!(matches!(
        PageBundle::decode(bad),
        Err(BundleError::View { index: 1, .. })
    ));
}

#[test]
fn build_rejects_a_manifest_that_does_not_match_the_page() {
    let cfg = TileConfig::tiny_448();
    let (doc, wide) = tiled(900, 300, &cfg);
    let (_, square) = tiled(300, 300, &cfg);
    let m = doc.page_manifest(0, [1.0, 1.0], &wide);
    assert!(matches!(
        PageBundle::build(m, &square),
        Err(BundleError::Mismatch(_))
    ));
}

#[test]
fn extract_writes_viewable_pngs_and_the_manifest() {
    let (bundle, t) = built(200, 500, &TileConfig::tiny_448());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("page-0001.bundle");
    std::fs::write(&file, bundle.as_bytes()).unwrap();
    let out = dir.path().join("views");
    let summary = bundle::extract_to_dir(&file, &out).unwrap();
    assert_eq!(summary.cells, ["r0c0.png", "r1c0.png"]);
    assert_eq!(summary.blank, ["r0c1.png", "r1c1.png"]);
    let canvas = image::open(out.join("canvas.png")).unwrap().to_rgb8();
    assert_eq!(canvas, t.canvas);
    let r1c0 = image::open(out.join("r1c0.png")).unwrap().to_rgb8();
    assert_eq!(r1c0, t.cell(1, 0));
    assert!(!out.join("r0c1.png").exists());
    let manifest =
        PageManifest::from_json(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest, bundle.manifest);
    assert!(summary.to_string().contains("2 cells"), "{summary}");
    // A missing file is an Io error naming the path.
    let err = bundle::extract_to_dir(dir.path().join("nope"), &out).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

fn small_bundle() -> Vec<u8> {
    let (bundle, _) = built(70, 40, &TileConfig::new(42, 3));
    bundle.into_bytes()
}

/// Decoding, then reading every view, must never panic.
fn exercise(bytes: Vec<u8>) {
    if let Ok(b) = PageBundle::decode(bytes) {
        for i in 0..b.manifest.cells.len() + 1 {
            let _ = b.cell_image(i);
        }
        let _ = b.tiled();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), magic in any::<bool>()) {
        let mut bytes = bytes;
        if magic && bytes.len() >= 16 {
            bytes[..8].copy_from_slice(&MAGIC);
            bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
            let len = (bytes.len() - 16) as u32;
            bytes[12..16].copy_from_slice(&len.to_le_bytes());
        }
        prop_assert!(PageBundle::decode(bytes).is_err());
    }

    #[test]
    fn mutated_bundles_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = small_bundle();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            let n = cut.index(bytes.len());
            bytes.truncate(n);
        }
        exercise(bytes);
    }
}

#[test]
fn non_finite_sizes_are_rejected_before_they_reach_json() {
    let cfg = TileConfig::tiny_448();
    let (doc, t) = tiled(120, 90, &cfg);
    let m = doc.page_manifest(0, [f32::NAN, 792.0], &t);
    assert!(matches!(
        PageBundle::build(m, &t),
        Err(BundleError::Manifest(ManifestError::Invalid(_)))
    ));
}

#[test]
fn a_tampered_public_manifest_cannot_make_view_access_panic() {
    let (mut bundle, _) = built(120, 90, &TileConfig::tiny_448());
    bundle.manifest.cells[0].range = Some(sphinx_core::manifest::ByteRange {
        offset: u64::MAX,
        len: u64::MAX,
    });
    assert!(bundle.cell_png(0).is_none());
    assert!(matches!(
        bundle.cell_image(0),
        Err(BundleError::View { index: 0, .. })
    ));
}
