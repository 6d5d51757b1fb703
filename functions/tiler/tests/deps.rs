//! The Lambda must never link libtorch: its dependency tree has no tch/torch-sys.

use std::process::Command;

/// Crates that would pull libtorch into the zip.
const FORBIDDEN: &[&str] = &["tch", "torch-sys"];

#[test]
fn tiler_dependency_tree_has_no_libtorch() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "sphinx-tiler",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"sphinx-core") && crates.contains(&"aws-sdk-s3"),
        "unexpected tree:\n{tree}"
    );
    for name in FORBIDDEN {
        assert!(
            !crates.contains(name),
            "{name} is in the tiler's dependency tree:\n{tree}"
        );
    }
}
