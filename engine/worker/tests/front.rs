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

/// Runs `program` without scripts/env.sh's LD_LIBRARY_PATH, as from a new shell.
fn without_libtorch_path(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap()
}

/// The shared libraries `program` asks the loader for (its ELF `NEEDED` entries), by
/// binutils' `readelf`, which the C toolchain the build needs brings along.
fn needed(program: &str) -> Vec<String> {
    let out = Command::new("readelf")
        .args(["--dynamic", "--wide", program])
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.trim_end_matches(']').to_owned()))
        .collect()
}

#[test]
fn the_front_links_no_libtorch_and_the_engine_does() {
    let is_torch = |lib: &String| lib.starts_with("libtorch") || lib.starts_with("libc10");
    let (front, engine) = (needed(FRONT), needed(ENGINE));
    assert!(!front.iter().any(is_torch), "the front asks for {front:?}");
    // The control: the same check finds the engine's libtorch, so the one above can fail.
    assert!(
        engine.iter().any(is_torch),
        "the engine asks for {engine:?}"
    );
    let tile = without_libtorch_path(FRONT, &["tile", "--help"]);
    assert!(tile.status.success(), "{}", text(&tile.stderr));
    assert_says(&tile.stdout, "Usage: sphinx tile");
    let synth = without_libtorch_path(FRONT, &["-v", "synth", "--help"]);
    assert!(synth.status.success(), "{}", text(&synth.stderr));
}

/// The engine records where libtorch was at build time (build.rs), so `sphinx` and its
/// model commands start from a shell that never sourced scripts/env.sh.
#[test]
fn the_engine_finds_libtorch_without_the_environment() {
    for program in [ENGINE, FRONT] {
        let version = without_libtorch_path(program, &["--version"]);
        assert!(
            version.status.success(),
            "{program}: {}",
            text(&version.stderr)
        );
        assert_says(&version.stdout, "sphinx ");
    }
    let help = without_libtorch_path(FRONT, &["eval", "--help"]);
    assert!(help.status.success(), "{}", text(&help.stderr));
    assert_says(&help.stdout, "Usage: sphinx eval");
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

    // A job sidecar beside a document is no document to tile, and no error.
    let docs = out.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::copy(pdf, docs.join("a.pdf")).unwrap();
    std::fs::write(
        docs.join("a.pdf.job.json"),
        br#"{"schema_version":1,"tasks":[]}"#,
    )
    .unwrap();
    let tiled = without_libtorch_path(
        FRONT,
        &["tile", "--quiet", "--out", out_dir, docs.to_str().unwrap()],
    );
    assert!(tiled.status.success(), "{}", text(&tiled.stderr));
    assert_says(&tiled.stdout, "documents: 1 ");
    assert_says(&tiled.stdout, "errors: 0");
    assert_says(&tiled.stderr, "left out 1 job sidecar(s)");
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
        &[
            "eval",
            "--cpu",
            "--model",
            "/nonexistent",
            "--data",
            "/no-data.jsonl",
        ],
    );
    assert_eq!(missing.status.code(), Some(1));
    // (The data is looked at before the model is loaded.)
    assert_says(&missing.stderr, "cannot read dataset /no-data.jsonl");
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

/// Runs `sphinx` with its stdout a pipe nobody reads (`sphinx run ... | head` after head
/// exited), so every write to it fails with EPIPE.
fn with_stdout_closed(args: &[String]) -> Output {
    let mut child = Command::new(FRONT)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

/// `sphinx tile` of `input` into `tiled`, then `sphinx run` of it into `ran` (the nano,
/// on the CPU, a few tokens): the front's own command, then the engine's.
fn tile_then_run(input: &str, tiled: &Path, ran: &Path) -> [Vec<String>; 2] {
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (tiled, ran) = (tiled.to_str().unwrap(), ran.to_str().unwrap());
    [
        words(&["tile", "--quiet", "--out", tiled, input]),
        words(&[
            "run",
            "--quiet",
            "--cpu",
            "--max-new-tokens",
            "4",
            "--out",
            ran,
            input,
        ]),
    ]
}

#[test]
fn a_closed_stdout_ends_the_output_not_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let image = repo.join("samples/synthetic/images/2000000.png");
    let (tiled, ran) = (tmp.path().join("tiled"), tmp.path().join("ran"));
    for args in &tile_then_run(image.to_str().unwrap(), &tiled, &ran) {
        let done = with_stdout_closed(args);
        let stderr = text(&done.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(done.status.code(), Some(0), "{args:?}: {stderr}");
    }
    // The work was done and stored all the same.
    assert!(tiled.join("work").is_dir());
    let results = std::fs::read_dir(ran.join("results")).unwrap().count();
    assert!(
        results >= 2,
        "a page folder and a merged result, got {results} entries"
    );
}

/// The processes whose process group is `pgid`, from `/proc` (a zombie counts: it is
/// a child nobody reaped).
fn group_members(pgid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces, so split after its ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            found.push(format!("{head}) {}", fields[0]));
        }
    }
    found
}

#[test]
fn no_render_child_outlives_its_command() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let pdf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/earnings.pdf");
    let (tiled, ran) = (tmp.path().join("tiled"), tmp.path().join("ran"));
    for args in &tile_then_run(pdf.to_str().unwrap(), &tiled, &ran) {
        // Its own process group, which its render children join.
        let child = Command::new(FRONT)
            .args(args)
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pgid = child.id();
        let done = child.wait_with_output().unwrap();
        assert!(done.status.success(), "{args:?}: {}", text(&done.stderr));
        let left = group_members(pgid);
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
}
