//! Expands the command line's files and folders into the list of documents to process.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Every regular file named directly, plus every regular file under a named folder
/// (recursively, hidden entries skipped, symbolic links followed, each folder once), in a
/// stable sorted order. Types are not guessed from names here: each file's bytes decide
/// later, so a bad file becomes an error record instead of being silently left out.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            walk(path, &mut files, &mut seen)?;
        } else if meta.is_file() {
            files.push(path.clone());
        } else {
            bail!("{} is neither a file nor a folder", path.display());
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// Adds the files under `dir`; `seen` holds the folders walked (as canonical paths), so a
/// link back up the tree ends instead of looping.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, seen: &mut HashSet<PathBuf>) -> Result<()> {
    let real = dir
        .canonicalize()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    if !seen.insert(real) {
        return Ok(());
    }
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let mut kind = entry
            .file_type()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if kind.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(target) => kind = target.file_type(),
                Err(e) => {
                    eprintln!("skipped {}: a link to nothing ({e})", path.display());
                    continue;
                }
            }
        }
        if kind.is_dir() {
            walk(&path, out, seen)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_expand_recursively_and_hidden_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/two.pdf"), b"x").unwrap();
        std::fs::write(dir.path().join("a/one.png"), b"x").unwrap();
        std::fs::write(dir.path().join("a/.hidden"), b"x").unwrap();
        let single = dir.path().join("single.bin");
        std::fs::write(&single, b"x").unwrap();
        let got = collect(&[dir.path().join("a"), single.clone(), single.clone()]).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["a/b/two.pdf", "a/one.png", "single.bin"]);
    }

    #[test]
    fn links_are_followed_once_and_broken_ones_skipped() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let (docs, elsewhere) = (dir.path().join("docs"), dir.path().join("elsewhere"));
        std::fs::create_dir_all(docs.join("sub")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("scan.pdf"), b"x").unwrap();
        std::fs::write(docs.join("sub/page.png"), b"x").unwrap();
        symlink(elsewhere.join("scan.pdf"), docs.join("linked.pdf")).unwrap();
        symlink(&elsewhere, docs.join("more")).unwrap();
        symlink(&docs, docs.join("sub/loop")).unwrap();
        symlink(dir.path().join("gone.pdf"), docs.join("broken.pdf")).unwrap();
        let got = collect(std::slice::from_ref(&docs)).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| {
                p.strip_prefix(&docs)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["linked.pdf", "more/scan.pdf", "sub/page.png"]);
    }

    #[test]
    fn a_missing_path_is_an_error_naming_it() {
        let err = collect(&[PathBuf::from("/definitely/not/here.pdf")]).unwrap_err();
        assert!(format!("{err:#}").contains("/definitely/not/here.pdf"));
    }
}
