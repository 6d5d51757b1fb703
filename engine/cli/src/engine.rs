//! The hand-off from the front to `sphinx-engine`, the binary that links libtorch.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{anyhow, Context, Result};

/// The engine's file name; it sits beside `sphinx` (same build, same install folder).
pub const ENGINE_BINARY: &str = "sphinx-engine";

/// How long libtorch's OpenMP threads (GNU libgomp) spin, waiting for work, before they
/// sleep, unless the user set it (or `OMP_WAIT_POLICY`). libgomp's default, 300,000
/// spins, assumes the process has the cores to itself; two model commands on one machine
/// then spin against each other: two `sphinx run` on a 2-core machine took 45.7 s
/// instead of 17.3 s with 1,000 spins, while one alone is as fast (A/B 1.03, within the
/// noise; docs/performance.md).
pub const OMP_SPIN: (&str, &str) = ("GOMP_SPINCOUNT", "1000");

/// The environment the engine gets beyond this process's: [`OMP_SPIN`] unless the user
/// chose how OpenMP threads wait.
pub fn engine_env(get: impl Fn(&str) -> Option<OsString>) -> Vec<(&'static str, &'static str)> {
    let chosen = get(OMP_SPIN.0).is_some() || get("OMP_WAIT_POLICY").is_some();
    if chosen {
        Vec::new()
    } else {
        vec![OMP_SPIN]
    }
}

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
    engine.envs(engine_env(|k| std::env::var_os(k)));
    if let Some(arg0) = args.first() {
        engine.arg0(arg0);
    }
    let err = engine.exec();
    anyhow!("cannot start {} for `{command}`: {err}", program.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spin count is set only where the user chose nothing about OpenMP waiting.
    #[test]
    fn openmp_waiting_is_set_unless_the_user_chose() {
        assert_eq!(engine_env(|_| None), vec![OMP_SPIN]);
        let user =
            |name: &'static str| move |k: &str| (k == name).then(|| OsString::from("PASSIVE"));
        assert!(engine_env(user("OMP_WAIT_POLICY")).is_empty());
        assert!(engine_env(user("GOMP_SPINCOUNT")).is_empty());
    }
}
