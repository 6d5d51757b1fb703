//! Inputs placed in `<out>/inbox/` as an S3 upload would place them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sphinx_core::error_record::describe;
use sphinx_core::ingest;
use sphinx_core::keys;
use sphinx_core::LocalStore;

/// An input as `inbox/` holds it: its source name (its key below `inbox/`), or why it
/// could not be put there (it vanished, cannot be read): that input fails, not the run.
#[derive(Debug, Clone)]
pub(super) struct Staged {
    pub(super) source: String,
    pub(super) problem: Option<String>,
}

/// Links (or copies) each input to `<out>/inbox/<source name>`, as an S3 upload would
/// place it.
pub(super) fn stage_inputs(
    files: &[PathBuf],
    roots: &[PathBuf],
    store: &LocalStore,
) -> Vec<Staged> {
    let sources = sphinx_cli::inputs::names(files, roots);
    files
        .iter()
        .zip(sources)
        .map(|(file, source)| Staged {
            problem: stage(file, &source, store)
                .err()
                .map(|e| format!("cannot stage it in inbox/: {}", describe(&e))),
            source,
        })
        .collect()
}

/// Puts one input at `inbox/<source>`, unless an earlier run put it there already.
fn stage(file: &Path, source: &str, store: &LocalStore) -> Result<()> {
    let key = keys::upload(ingest::DEFAULT_INBOX_PREFIX, source);
    let dest = store.path_of(&key)?;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
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
            std::fs::copy(file, &dest)
                .with_context(|| format!("cannot copy {} to {}", file.display(), dest.display()))?;
        }
    }
    Ok(())
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

    /// An input that cannot be staged (here: gone since it was listed) fails alone.
    #[test]
    fn an_input_that_cannot_be_staged_fails_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalStore::new(tmp.path().join("out")).unwrap();
        let (here, gone) = (tmp.path().join("here.pdf"), tmp.path().join("gone.pdf"));
        std::fs::write(&here, b"%PDF-").unwrap();
        let staged = stage_inputs(&[gone.clone(), here.clone()], &[gone, here], &store);
        let problem = staged[0].problem.as_deref().unwrap();
        assert!(problem.contains("gone.pdf"), "{problem}");
        assert_eq!(
            (staged[1].source.as_str(), &staged[1].problem),
            ("here.pdf", &None)
        );
        assert_eq!(
            std::fs::read(tmp.path().join("out/inbox/here.pdf")).unwrap(),
            b"%PDF-"
        );
    }
}
