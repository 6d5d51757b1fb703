//! Hostile and broken inputs: each must be refused with its typed error and a
//! message naming the reason, never a panic, a hang or an unbounded allocation.
//! Samples are made by scripts/make_hostile_samples.py (see tests/data/README.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sphinx_core::document::{renders_past_deadline, sniff, Document, SourceKind};
use sphinx_core::DocError;
use sphinx_core::Limits;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(rel)
}

fn bytes(rel: &str) -> Arc<Vec<u8>> {
    let path = data(rel);
    Arc::new(std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
}

fn refuse(rel: &str, limits: &Limits) -> DocError {
    match Document::open(bytes(rel), limits) {
        Ok(doc) => panic!(
            "{rel} opened as {:?} with {} pages; expected an error",
            doc.kind(),
            doc.page_count()
        ),
        Err(e) => e,
    }
}

fn assert_message(err: &DocError, needle: &str) {
    let msg = err.to_string();
    assert!(
        msg.contains(needle),
        "message {msg:?} should contain {needle:?}"
    );
}

#[test]
fn empty_file() {
    let err = refuse("hostile/empty.bin", &Limits::default());
    assert!(matches!(err, DocError::Empty), "{err:?}");
    assert_eq!(err.code(), "empty");
    assert_message(&err, "empty");
}

#[test]
fn random_bytes() {
    let err = refuse("hostile/random.bin", &Limits::default());
    let DocError::UnknownFormat { magic } = &err else {
        panic!("{err:?}")
    };
    let raw = bytes("hostile/random.bin");
    assert_eq!(
        magic,
        &raw[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_eq!(err.code(), "unknown_format");
    assert_message(&err, "unknown document format");
}

#[test]
fn truncated_pdf() {
    let err = refuse("hostile/truncated.pdf", &Limits::default());
    assert!(matches!(err, DocError::Malformed { .. }), "{err:?}");
    assert_eq!(err.code(), "malformed");
    assert_message(&err, "truncated");
}

#[test]
fn pdf_without_pages() {
    let err = refuse("hostile/no_pages.pdf", &Limits::default());
    assert!(matches!(err, DocError::NoPages), "{err:?}");
    assert_eq!(err.code(), "no_pages");
    assert_message(&err, "no pages");
}

#[test]
fn password_protected_pdf() {
    let err = refuse("hostile/encrypted.pdf", &Limits::default());
    assert!(matches!(err, DocError::Encrypted), "{err:?}");
    assert_eq!(err.code(), "encrypted");
    assert_message(&err, "password");
}

#[test]
fn png_header_of_60000_squared_pixels() {
    let started = Instant::now();
    let err = refuse("hostile/huge_header.png", &Limits::default());
    let DocError::TooManyPixels {
        width,
        height,
        limit,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (width, height, limit),
        (60_000, 60_000, Limits::default().max_pixels)
    );
    assert_eq!(err_code(width, height, limit), "too_many_pixels");
    assert_message(
        &DocError::TooManyPixels {
            width,
            height,
            limit,
        },
        "60000 x 60000",
    );
    // Refused from the header: no 10.8 GB buffer, no decoding time.
    assert!(started.elapsed() < Duration::from_secs(1));
}

fn err_code(width: u64, height: u64, limit: u64) -> &'static str {
    DocError::TooManyPixels {
        width,
        height,
        limit,
    }
    .code()
    .as_str()
}

#[test]
fn pdf_declaring_100000_pages() {
    let err = refuse("hostile/many_pages.pdf", &Limits::default());
    let DocError::TooManyPages { pages, limit } = err else {
        panic!("{err:?}")
    };
    assert_eq!((pages, limit), (100_000, 2_000));
    let err = DocError::TooManyPages { pages, limit };
    assert_eq!(err.code(), "too_many_pages");
    assert_message(&err, "100000 pages");
}

#[test]
fn tiff_page_and_pixel_limits() {
    let limits = Limits {
        max_pages: 2,
        ..Limits::default()
    };
    let err = refuse("formats/multipage.tif", &limits);
    assert!(
        matches!(err, DocError::TooManyPages { pages: 3, limit: 2 }),
        "{err:?}"
    );
    let limits = Limits {
        max_pixels: 1000,
        ..Limits::default()
    };
    let err = refuse("formats/multipage.tif", &limits);
    assert!(
        matches!(
            err,
            DocError::TooManyPixels {
                width: 64,
                height: 48,
                limit: 1000
            }
        ),
        "{err:?}"
    );
}

#[test]
fn byte_limit_is_checked_first() {
    let limits = Limits {
        max_bytes: 100,
        ..Limits::default()
    };
    let err = refuse("corpus/earnings.pdf", &limits);
    let DocError::TooLarge { bytes: size, limit } = err else {
        panic!("{err:?}")
    };
    assert_eq!(limit, 100);
    assert_eq!(size, bytes("corpus/earnings.pdf").len() as u64);
    assert_message(
        &DocError::TooLarge { bytes: size, limit },
        "over the limit of 100 bytes",
    );
}

#[test]
fn bad_page_requests() {
    let doc = Document::open(bytes("corpus/earnings.pdf"), &Limits::default()).unwrap();
    let err = doc.render(1, 512).unwrap_err();
    assert!(
        matches!(err, DocError::PageOutOfRange { index: 1, count: 1 }),
        "{err:?}"
    );
    assert_message(&err, "out of range");
    assert!(matches!(
        doc.page_size_points(7),
        Err(DocError::PageOutOfRange { index: 7, count: 1 })
    ));
    let err = doc.render(0, 0).unwrap_err();
    assert!(
        matches!(err, DocError::InvalidRenderSize { long_side: 0 }),
        "{err:?}"
    );
}

/// A million fill operations (seconds of work): the render thread is abandoned at the deadline, the
/// caller gets `RenderTimeout` promptly, and the abandoned thread is counted until
/// it finishes on its own.
#[test]
fn page_that_never_finishes_rendering() {
    let timeout = Duration::from_millis(200);
    let limits = Limits {
        page_timeout: timeout,
        ..Limits::default()
    };
    let doc = Document::open(bytes("hostile/slow_page.pdf"), &limits).unwrap();
    assert_eq!(doc.kind(), SourceKind::Pdf);
    let started = Instant::now();
    let err = doc.render(0, 1024).unwrap_err();
    let waited = started.elapsed();
    let DocError::RenderTimeout { page, seconds } = err else {
        panic!("{err:?}")
    };
    assert_eq!(page, 0);
    assert!((seconds - 0.2).abs() < 1e-9);
    // The deadline, plus scheduling slack on a loaded 2-core machine.
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(2),
        "waited {waited:?}"
    );
    let err = DocError::RenderTimeout { page, seconds };
    assert_eq!(err.code(), "render_timeout");
    assert_message(&err, "did not finish rendering within 0.2 s");
    assert!(
        renders_past_deadline() >= 1,
        "the abandoned render must be counted"
    );
    // The abandoned thread finishes the page by itself and is uncounted.
    let give_up = Instant::now() + Duration::from_secs(600);
    while renders_past_deadline() > 0 {
        assert!(
            Instant::now() < give_up,
            "abandoned render still running after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sniff_never_trusts_names_and_rejects_unknown() {
    assert!(matches!(
        sniff(&bytes("hostile/random.bin")),
        Err(DocError::UnknownFormat { .. })
    ));
    assert_eq!(
        sniff(&bytes("formats/lossy.webp")).unwrap(),
        SourceKind::Webp
    );
    assert_eq!(
        sniff(&bytes("formats/fax_g4.tif")).unwrap(),
        SourceKind::Tiff
    );
}

/// Truncations and byte flips of every sample: any outcome but a panic is fine,
/// and an error always has a code.
#[test]
fn mutated_samples_never_panic() {
    let samples = [
        "formats/multipage.tif",
        "formats/fax_g4.tif",
        "formats/rgb16.png",
        "formats/palette.png",
        "formats/exif_orient6.jpg",
        "formats/cmyk.jpg",
        "formats/lossless_alpha.webp",
        "formats/lossy.webp",
        "formats/dct.pdf",
        "formats/jpx.pdf",
        "formats/ccitt.pdf",
        "formats/flate_rotate_crop.pdf",
    ];
    let limits = Limits {
        page_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    // A fixed xorshift sequence: reproducible without a seed file.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for rel in samples {
        let original = bytes(rel);
        for round in 0..24 {
            let mut b = original.as_ref().clone();
            if round % 2 == 0 {
                b.truncate((next() % b.len() as u64) as usize);
            } else {
                for _ in 0..4 {
                    let i = (next() % b.len() as u64) as usize;
                    b[i] = next() as u8;
                }
            }
            match Document::open(Arc::new(b), &limits) {
                Ok(doc) => {
                    for i in 0..doc.page_count() {
                        if let Err(e) = doc.render(i, 64) {
                            assert!(!e.code().as_str().is_empty());
                        }
                    }
                }
                Err(e) => assert!(!e.code().as_str().is_empty()),
            }
        }
    }
}
