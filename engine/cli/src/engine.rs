//! The hand-off from the front to `sphinx-engine`, the binary that links libtorch.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{anyhow, Context, Result};

/// The engine's file name; it sits beside `sphinx` (same build, same install folder).
pub const ENGINE_BINARY: &str = "sphinx-engine";

/// Where the engine of the running binary is: beside it, after symlinks are resolved.
pub fn program() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running binary")?;
    Ok(exe.with_file_name(ENGINE_BINARY))
}

/// Replaces this process by the engine, given the same arguments (`args[0]` included, so
/// its help and errors still say `sphinx`), environment and standard streams; signals to
/// this process id reach the engine. Returns only when the engine cannot be started.
pub fn exec(args: &[OsString]) -> anyhow::Error {
    let program = match program() {
        Ok(program) => program,
        Err(e) => return e,
    };
    let command = args
        .iter()
        .skip(1)
        .find(|a| !a.to_string_lossy().starts_with('-'))
        .map_or_else(
            || "sphinx".to_owned(),
            |c| format!("sphinx {}", c.to_string_lossy()),
        );
    if !program.is_file() {
        return anyhow!(
            "`{command}` runs in {ENGINE_BINARY} (the half of sphinx that links libtorch), \
             expected at {}: not found; build both with `cargo build --release -p \
             sphinx-worker` and install them side by side",
            program.display()
        );
    }
    let mut engine = Command::new(&program);
    engine.args(args.iter().skip(1));
    if let Some(arg0) = args.first() {
        engine.arg0(arg0);
    }
    let err = engine.exec();
    anyhow!("cannot start {} for `{command}`: {err}", program.display())
}
