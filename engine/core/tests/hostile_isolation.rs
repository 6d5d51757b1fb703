//! Decoder bombs and pathological documents (`scripts/make_hostile_corpus.py`, into
//! target/hostile/) opened and rendered in a child process under a memory and time limit:
//! each gives a typed error or a render, never an abort of this process; the child's peak
//! memory stays within its limit and each file within its time budget; then a good
//! document in the same process still tiles.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sphinx_core::isolate::{Isolation, Renderer};
use sphinx_core::Limits;
use sphinx_core::TileConfig;
use sphinx_core::{tile_document, TileOptions};

const GENERATOR: &str = ".venv/bin/python scripts/make_hostile_corpus.py";
/// The child's heap in this test: far below the machine, far above any real page.
const MEMORY: u64 = 1 << 30;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn child() -> Isolation {
    Isolation::Child {
        program: env!("CARGO_BIN_EXE_sphinx-render").into(),
    }
}

/// Runs every hostile file in a fresh child; returns (name, outcome code or pages).
fn run_corpus(limits: &Limits) -> Vec<(String, Result<u32, &'static str>)> {
    let dir = workspace().join("target/hostile");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("missing {} ({e}): run `{GENERATOR}`", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x != "tmp"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 14,
        "the hostile corpus is incomplete: run `{GENERATOR}`"
    );
    // Open + render, plus the grace the parent gives the child, plus process start.
    let budget = limits.page_timeout * 2 + Duration::from_secs(15);
    println!(
        "{:<24} {:>10} {:>9} {:>7}  outcome",
        "file", "bytes", "peak MB", "s"
    );
    let mut outcomes = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = Arc::new(std::fs::read(path).unwrap());
        let mut renderer = Renderer::new(child(), MEMORY);
        let started = Instant::now();
        let outcome = renderer.open(&bytes, limits, 1024).and_then(|info| {
            for i in 0..info.page_count.min(2) {
                renderer.render(i, limits)?;
            }
            Ok(info.page_count)
        });
        let seconds = started.elapsed();
        let peak = renderer.child_peak_rss_bytes();
        let shown = match &outcome {
            Ok(pages) => format!("rendered {pages} page(s)"),
            Err(e) => format!("{}: {e}", e.code()),
        };
        println!(
            "{name:<24} {:>10} {:>9} {:>7.2}  {shown}",
            bytes.len(),
            peak.map_or("-".into(), |p| format!("{:.0}", p as f64 / 1048576.0)),
            seconds.as_secs_f64()
        );
        assert!(seconds <= budget, "{name}: {seconds:?} over {budget:?}");
        if let Some(peak) = peak {
            // RSS also counts the binary's own pages; the heap is what the limit bounds.
            assert!(
                peak <= MEMORY + (256 << 20),
                "{name}: peak RSS {peak} over the limit"
            );
        }
        if let Err(e) = &outcome {
            assert!(
                [
                    "too_many_pixels",
                    "render_memory",
                    "render_timeout",
                    "render_crashed",
                    "malformed",
                    "unsupported",
                    "no_pages",
                ]
                .contains(&e.code().as_str()),
                "{name}: unexpected error {e}"
            );
        }
        outcomes.push((name, outcome.map_err(|e| e.code().as_str())));
    }
    outcomes
}

fn of(outcomes: &[(String, Result<u32, &'static str>)], n: &str) -> Result<u32, &'static str> {
    outcomes.iter().find(|(name, _)| name == n).unwrap().1
}

#[test]
fn hostile_documents_fail_typed_within_their_limits() {
    let limits = Limits {
        page_timeout: Duration::from_secs(10),
        render_memory: MEMORY,
        ..Limits::default()
    };
    // Declared image sizes over the pixel budget are refused before any decoding.
    println!("-- default limits: declared sizes checked before decoding");
    let checked = run_corpus(&limits);
    for bomb in [
        "flate_bomb_100k.pdf",
        "lzw_bomb_40k.pdf",
        "runlength_bomb_20k.pdf",
        "jpx_huge.pdf",
        "jbig2_huge.pdf",
        "tiff_huge.tif",
    ] {
        assert_eq!(of(&checked, bomb), Err("too_many_pixels"), "{bomb}");
    }
    // Without that check (a budget nobody would set), the child's memory limit stops them.
    println!("-- no pixel budget: only the render child's limits");
    let unchecked = run_corpus(&Limits {
        max_pixels: u64::MAX,
        ..limits.clone()
    });
    for bomb in [
        "flate_bomb_100k.pdf",
        "flate_bomb_40k.pdf",
        "lzw_bomb_40k.pdf",
        "inline_bomb.pdf",
    ] {
        assert_eq!(of(&unchecked, bomb), Err("render_memory"), "{bomb}");
    }

    // The same process goes on: a good document still tiles, through the same isolation.
    let good = Arc::new(std::fs::read(workspace().join("tests/data/corpus/earnings.pdf")).unwrap());
    let opts = TileOptions {
        tile: TileConfig::tiny_1k(),
        limits,
        isolation: child(),
    };
    let mut bundles = 0;
    let manifest = tile_document(good, "earnings.pdf", &opts, None, &mut |_| {
        bundles += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!((manifest.page_count, bundles), (1, 1));
}

#[test]
fn a_child_that_dies_is_replaced_for_the_next_document() {
    let bomb = Arc::new(
        std::fs::read(workspace().join("target/hostile/inline_bomb.pdf"))
            .unwrap_or_else(|e| panic!("{e}: run `{GENERATOR}`")),
    );
    let limits = Limits {
        render_memory: 256 << 20,
        ..Limits::default()
    };
    let opts = TileOptions {
        tile: TileConfig::tiny_1k(),
        limits,
        isolation: child(),
    };
    let err = tile_document(bomb, "bomb.pdf", &opts, None, &mut |_| Ok(())).unwrap_err();
    let code = sphinx_core::error_record::ErrorRecord::from_error("x", "bomb.pdf", &err).code;
    assert_eq!(code, "render_memory", "{err}");
    assert!(err.to_string().contains("page 0"), "{err}");
    let good =
        Arc::new(std::fs::read(workspace().join("tests/data/corpus/mathfuncs.pdf")).unwrap());
    let manifest = tile_document(good, "good.pdf", &opts, None, &mut |_| Ok(())).unwrap();
    assert_eq!(manifest.page_count, 1);
}
