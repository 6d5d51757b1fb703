//! `sphinx` is a front without libtorch that becomes `sphinx-engine` for model commands:
//! the front starts with no libtorch to load, every other command line reaches the
//! engine unchanged (arguments, exit status, help), and a missing engine is a clear error.

use std::path::Path;
use std::process::{Command, Output};

const FRONT: &str = env!("CARGO_BIN_EXE_sphinx");
const ENGINE: &str = env!("CARGO_BIN_EXE_sphinx-engine");

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that a process's output stream says `needle`, showing the stream when not.
fn assert_says(stream: &[u8], needle: &str) {
    let said = text(stream);
    assert!(said.contains(needle), "no {needle:?} in\n{said}");
}

/// libtorch is found through LD_LIBRARY_PATH (scripts/env.sh): without it, a binary that
/// links libtorch does not start at all.
fn without_libtorch_path(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap()
}

#[test]
fn the_front_links_no_libtorch_and_the_engine_does() {
    let front = without_libtorch_path(FRONT, &["tile", "--help"]);
    assert!(front.status.success(), "{}", text(&front.stderr));
    assert_says(&front.stdout, "Usage: sphinx tile");
    let synth = without_libtorch_path(FRONT, &["-v", "synth", "--help"]);
    assert!(synth.status.success(), "{}", text(&synth.stderr));
    // The control: the engine needs libtorch, so the check above can fail.
    let engine = without_libtorch_path(ENGINE, &["--version"]);
    assert!(!engine.status.success());
    assert_says(&engine.stderr, "libtorch");
}

#[test]
fn the_front_renders_documents_itself() {
    let out = tempfile::tempdir().unwrap();
    let pdf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/earnings.pdf");
    let (out_dir, pdf) = (out.path().to_str().unwrap(), pdf.to_str().unwrap());
    let tiled = without_libtorch_path(
        FRONT,
        &["tile", "--quiet", "--threads", "1", "--out", out_dir, pdf],
    );
    assert!(tiled.status.success(), "{}", text(&tiled.stderr));
    assert_says(&tiled.stdout, "errors: 0");
}

#[test]
fn other_command_lines_reach_the_engine_unchanged() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["eval", "--help"],
        &["help", "tile"],
    ] {
        let (front, engine) = (run(FRONT, args), run(ENGINE, args));
        assert_eq!(front.status.code(), engine.status.code(), "{args:?}");
        // The engine calls itself `sphinx` in its help and errors.
        assert_eq!(text(&front.stdout), text(&engine.stdout), "{args:?}");
        assert!(!text(&front.stdout).contains("sphinx-engine"), "{args:?}");
    }
    let help = text(&run(FRONT, &["--help"]).stdout);
    for command in ["tile", "synth", "infer", "run", "serve", "train", "eval"] {
        assert!(
            help.contains(&format!("  {command} ")),
            "{command} in\n{help}"
        );
    }
    // An engine error and its exit status come back as they are.
    let missing = run(
        FRONT,
        &["eval", "--cpu", "--model", "/nonexistent", "--data", "/x"],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert_says(&missing.stderr, "/nonexistent");
}

#[test]
fn a_front_without_its_engine_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("sphinx");
    std::fs::copy(FRONT, &alone).unwrap();
    let out = run(alone.to_str().unwrap(), &["run", "docs", "--out", "o"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let expected = dir.path().join("sphinx-engine");
    assert!(err.contains("`sphinx run` runs in sphinx-engine"), "{err}");
    assert!(err.contains(&expected.display().to_string()), "{err}");
    // Local commands still work there.
    assert!(run(alone.to_str().unwrap(), &["tile", "--help"])
        .status
        .success());
}
