//! Expands the command line's files and folders into the list of documents to process.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Every regular file named directly, plus every regular file under a named folder
/// (recursively, hidden entries skipped, symbolic links followed, each folder once), in a
/// stable sorted order. Types are not guessed from names here: each file's bytes decide
/// later, so a bad file becomes an error record instead of being silently left out.
///
/// `out`, the command's output folder, is never walked: `sphinx run . --out results`
/// would otherwise take its own results, bundles and copies for new documents on a rerun.
/// An `out` that exists must be a folder.
pub fn collect(paths: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>> {
    if out.exists() && !out.is_dir() {
        bail!(
            "--out {} is a file; give a folder (it is made if missing)",
            out.display()
        );
    }
    let mut files = Vec::new();
    // Folders already walked, as canonical paths; the output folder counts as walked.
    let mut seen: HashSet<PathBuf> = out.canonicalize().into_iter().collect();
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
/// link back up the tree ends instead of looping (and a folder in it is not walked).
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

/// The name each file is known by in manifests, results and `inbox/`, one per distinct
/// file: its path relative to the folder it was found in, or its file name when given
/// directly (the Lambda uses the key under `inbox/`), so the same upload gets the same
/// manifest locally and in the cloud. Two different files that would share a name
/// (`a/x.pdf` and `b/x.pdf` given directly) are each named by their path below the
/// folder they share (`a/x.pdf`, `b/x.pdf`) instead of one taking the other's place.
pub fn names(files: &[PathBuf], roots: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = files
        .iter()
        .map(|f| key_safe(&plain_name(f, roots)))
        .collect();
    // Which files are the same file, whatever path names them.
    let identity: Vec<PathBuf> = files
        .iter()
        .map(|f| f.canonicalize().unwrap_or_else(|_| absolute(f)))
        .collect();
    // A lengthened name can meet a third file's name: a few rounds settle real inputs.
    for _ in 0..4 {
        let clashes = clashes(&names, &identity);
        if clashes.is_empty() {
            return names;
        }
        for group in clashes {
            let paths: Vec<PathBuf> = group.iter().map(|&i| absolute(&files[i])).collect();
            let shared = common_folder(&paths);
            for (&i, path) in group.iter().zip(&paths) {
                let rel = path.strip_prefix(&shared).unwrap_or(path);
                names[i] = key_safe(&rel.to_string_lossy());
            }
        }
    }
    // What paths cannot part (names alike once made readable, such as two that differ
    // only in bytes that are not UTF-8): a number after the stem, `scan~2.pdf`.
    let mut taken: HashSet<String> = names.iter().cloned().collect();
    for group in clashes(&names, &identity) {
        let first = &identity[group[0]];
        let mut renamed: HashMap<&PathBuf, String> = HashMap::new();
        for &i in group.iter().filter(|&&i| identity[i] != *first) {
            let name = renamed.entry(&identity[i]).or_insert_with(|| {
                let (stem, ext) = match names[i].rsplit_once('.') {
                    Some((stem, ext)) if !stem.is_empty() && !ext.contains('/') => {
                        (stem.to_string(), format!(".{ext}"))
                    }
                    _ => (names[i].clone(), String::new()),
                };
                let free = (2..)
                    .map(|n| format!("{stem}~{n}{ext}"))
                    .find(|name| !taken.contains(name))
                    .expect("some number is free");
                taken.insert(free.clone());
                free
            });
            names[i] = name.clone();
        }
    }
    names
}

/// Groups of indices whose names are equal while their files differ.
fn clashes(names: &[String], identity: &[PathBuf]) -> Vec<Vec<usize>> {
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        by_name.entry(name).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = by_name
        .into_values()
        .filter(|group| group.iter().any(|&i| identity[i] != identity[group[0]]))
        .collect();
    groups.sort();
    groups
}

/// A name the local store takes as a key: a backslash (a path separator to Windows, so
/// no part of a key that names a file) becomes `_`.
fn key_safe(name: &str) -> String {
    name.replace('\\', "_")
}

/// A file's name before clashes are looked at.
fn plain_name(file: &Path, roots: &[PathBuf]) -> String {
    roots
        .iter()
        .filter(|root| root.is_dir())
        .find_map(|root| file.strip_prefix(root).ok())
        .map(|rel| rel.to_string_lossy().into_owned())
        .unwrap_or_else(|| {
            file.file_name().map_or_else(
                || file.to_string_lossy().into_owned(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
}

/// `path` from the root, links not resolved (a name should read as the user wrote it).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The deepest folder holding every path.
fn common_folder(paths: &[PathBuf]) -> PathBuf {
    let mut shared: PathBuf = paths[0].parent().map(Path::to_path_buf).unwrap_or_default();
    while !paths.iter().all(|p| p.starts_with(&shared)) {
        if !shared.pop() {
            break;
        }
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output folder that does not exist: nothing to leave out.
    const NO_OUT: &str = "/definitely/no/output";

    #[test]
    fn an_output_that_is_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, b"x").unwrap();
        let err = collect(&[dir.path().to_path_buf()], &file).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "--out {} is a file; give a folder (it is made if missing)",
                file.display()
            )
        );
    }

    #[test]
    fn the_output_folder_is_not_an_input() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        std::fs::create_dir_all(out.join("inbox")).unwrap();
        std::fs::write(out.join("inbox/scan.pdf"), b"x").unwrap();
        std::fs::write(out.join("documents.jsonl"), b"{}").unwrap();
        std::fs::write(dir.path().join("scan.pdf"), b"x").unwrap();
        // The same folder however it is written: `.`, relative, through a link.
        std::os::unix::fs::symlink(&out, dir.path().join("linked-results")).unwrap();
        let roots = vec![dir.path().to_path_buf()];
        let got = collect(&roots, &dir.path().join("./results")).unwrap();
        assert_eq!(got, [dir.path().join("scan.pdf")]);
        // Without it, the output's files would have been inputs (the link once).
        assert_eq!(collect(&roots, NO_OUT.as_ref()).unwrap().len(), 3);
    }

    #[test]
    fn folders_expand_recursively_and_hidden_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/two.pdf"), b"x").unwrap();
        std::fs::write(dir.path().join("a/one.png"), b"x").unwrap();
        std::fs::write(dir.path().join("a/.hidden"), b"x").unwrap();
        let single = dir.path().join("single.bin");
        std::fs::write(&single, b"x").unwrap();
        let got = collect(
            &[dir.path().join("a"), single.clone(), single.clone()],
            NO_OUT.as_ref(),
        )
        .unwrap();
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
        let got = collect(std::slice::from_ref(&docs), NO_OUT.as_ref()).unwrap();
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
        let err = collect(
            &[PathBuf::from("/definitely/not/here.pdf")],
            NO_OUT.as_ref(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("/definitely/not/here.pdf"));
    }

    #[test]
    fn different_files_never_share_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, docs) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("docs"),
        );
        for folder in [&a, &b, &docs.join("a")] {
            std::fs::create_dir_all(folder).unwrap();
        }
        std::fs::write(a.join("x.pdf"), b"one").unwrap();
        std::fs::write(b.join("x.pdf"), b"two").unwrap();
        std::fs::write(docs.join("a/x.pdf"), b"three").unwrap();
        std::fs::write(docs.join("y.pdf"), b"four").unwrap();

        // Alone, or with files of other names, a file keeps its short name.
        let files = vec![a.join("x.pdf"), docs.join("y.pdf")];
        assert_eq!(names(&files, &files), ["x.pdf", "y.pdf"]);
        let roots = vec![docs.clone()];
        let files = collect(&roots, NO_OUT.as_ref()).unwrap();
        assert_eq!(names(&files, &roots), ["a/x.pdf", "y.pdf"]);

        // Two files called x.pdf: each by its path below the folder they share.
        let files = vec![a.join("x.pdf"), b.join("x.pdf")];
        assert_eq!(names(&files, &files), ["a/x.pdf", "b/x.pdf"]);

        // ... and when that meets a third file's name, again until all differ.
        let roots = vec![docs.clone(), a.join("x.pdf"), b.join("x.pdf")];
        let files = collect(&roots, NO_OUT.as_ref()).unwrap();
        let got = names(&files, &roots);
        let unique: HashSet<&String> = got.iter().collect();
        assert_eq!(unique.len(), files.len(), "{got:?}");
        assert!(got.contains(&"b/x.pdf".to_string()), "{got:?}");
        assert!(got.contains(&"y.pdf".to_string()), "{got:?}");

        // A backslash cannot be in a key; names that stay alike get a number.
        std::fs::write(dir.path().join("scan\\1.pdf"), b"five").unwrap();
        std::fs::write(dir.path().join("scan_1.pdf"), b"six").unwrap();
        let files = vec![
            dir.path().join("scan\\1.pdf"),
            dir.path().join("scan_1.pdf"),
        ];
        assert_eq!(names(&files, &files), ["scan_1.pdf", "scan_1~2.pdf"]);

        // One file named twice (a path and its link) is one name: the same bytes.
        std::os::unix::fs::symlink(a.join("x.pdf"), dir.path().join("x.pdf")).unwrap();
        let files = vec![a.join("x.pdf"), dir.path().join("x.pdf")];
        assert_eq!(names(&files, &files), ["x.pdf", "x.pdf"]);
    }
}
