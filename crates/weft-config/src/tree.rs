//! Which files of a configuration directory are configuration: `*.yaml`, `*.yml` and
//! `*.json`, recursively, skipping hidden entries and whatever the directory's
//! `.weftignore` lists. One walker for `weft analyze`, `weft control` and `weft up`, so they
//! always agree on what a directory holds.
//!
//! `.weftignore` (in the directory given, not in subdirectories): one path per line,
//! relative to that directory (`scenarios/`, `app`, `drafts/old.yaml`); blank lines and
//! lines starting with `#` are ignored. It keeps files that live beside a mesh's config but
//! are not part of it (overlays a user copies in on purpose, application sources) out of
//! it. A path named on the command line is always read, ignored or not.

use std::fs;
use std::path::{Path, PathBuf};

/// The name of the ignore file.
pub const IGNORE_FILE: &str = ".weftignore";

/// The configuration files under `dir`, sorted. `on_error` hears of unreadable
/// directories (and of an unreadable `.weftignore`).
pub fn config_files(dir: &Path, on_error: &mut dyn FnMut(&Path, std::io::Error)) -> Vec<PathBuf> {
    let ignored = read_ignore(dir, on_error);
    let mut out = Vec::new();
    walk(dir, &ignored, &mut out, on_error);
    out.sort();
    out
}

fn read_ignore(dir: &Path, on_error: &mut dyn FnMut(&Path, std::io::Error)) -> Vec<PathBuf> {
    let file = dir.join(IGNORE_FILE);
    match fs::read_to_string(&file) {
        Ok(text) => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| dir.join(l.trim_start_matches("./").trim_end_matches('/')))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            on_error(&file, e);
            Vec::new()
        }
    }
}

fn walk(
    dir: &Path,
    ignored: &[PathBuf],
    out: &mut Vec<PathBuf>,
    on_error: &mut dyn FnMut(&Path, std::io::Error),
) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return on_error(dir, e),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden || ignored.contains(&path) {
            continue;
        }
        // Follows symlinks, as a user who links a shared config in expects.
        if path.is_dir() {
            walk(&path, ignored, out, on_error);
        } else if is_config_file(&path) {
            out.push(path);
        }
    }
}

/// `*.yaml`, `*.yml` or `*.json`.
pub fn is_config_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weftignore_hides_listed_paths_and_hidden_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for f in [
            "mesh/a.yaml",
            "scenarios/faults.yaml",
            "app/Cargo.json",
            "notes.txt",
            ".hidden/x.yaml",
            "b.yml",
        ] {
            let p = root.join(f);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(&p, "x: 1").expect("write");
        }
        fs::write(root.join(IGNORE_FILE), "# overlays\nscenarios/\n./app\n\n").expect("write");
        let found = config_files(root, &mut |p, e| panic!("{}: {e}", p.display()));
        let names: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(root).expect("under root").to_path_buf())
            .collect();
        assert_eq!(
            names,
            [PathBuf::from("b.yml"), PathBuf::from("mesh/a.yaml")]
        );
    }
}
