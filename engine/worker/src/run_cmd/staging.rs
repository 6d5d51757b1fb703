//! Inputs placed in `<out>/inbox/` as an S3 upload would place them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sphinx_core::ingest;
use sphinx_core::keys;
use sphinx_core::LocalStore;

/// Links (or copies) each input to `<out>/inbox/<source name>`; returns the source names
/// (keys below `inbox/`).
pub(super) fn stage_inputs(
    files: &[PathBuf],
    roots: &[PathBuf],
    store: &LocalStore,
) -> Result<Vec<String>> {
    let sources = sphinx_cli::inputs::names(files, roots);
    for (file, source) in files.iter().zip(&sources) {
        let key = keys::upload(ingest::DEFAULT_INBOX_PREFIX, source);
        let dest = store.path_of(&key)?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Staged by an earlier run: the same file (a hard link) needs no reading; a copy
        // (inputs on another filesystem) is compared by content.
        let same = std::fs::metadata(&dest)
            .ok()
            .zip(std::fs::metadata(file).ok())
            .is_some_and(|(a, b)| {
                (a.dev() == b.dev() && a.ino() == b.ino())
                    || (a.len() == b.len() && same_bytes(&dest, file).unwrap_or(false))
            });
        if !same {
            let _ = std::fs::remove_file(&dest);
            if std::fs::hard_link(file, &dest).is_err() {
                std::fs::copy(file, &dest).with_context(|| {
                    format!("cannot copy {} to {}", file.display(), dest.display())
                })?;
            }
        }
    }
    Ok(sources)
}

/// Whether two files of one length hold the same bytes, compared a piece at a time: an
/// input may be far larger than memory (it is refused later, by its size).
fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let (mut a, mut b) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(b.read(&mut y)? == 0);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_compared_by_content_across_pieces() {
        let tmp = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (a, b, c) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("c"),
        );
        std::fs::write(&a, &body).unwrap();
        std::fs::write(&b, &body).unwrap();
        let mut other = body.clone();
        other[150_000] ^= 1; // in the third piece
        std::fs::write(&c, &other).unwrap();
        assert!(same_bytes(&a, &b).unwrap());
        assert!(!same_bytes(&a, &c).unwrap());
    }
}
