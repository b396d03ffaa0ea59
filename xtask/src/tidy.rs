//! Tidy checks, run as ordinary tests by `cargo test -p xtask` (so `cargo xtask test` runs them):
//! every Rust file starts with a `//!` doc saying what it owns.
//!
//! Only the trees listed in `CHECKED_DIRS` are checked; a crate joins when its owner has made it
//! pass, so that one crate's missing doc never breaks another's test run.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    const CHECKED_DIRS: &[&str] = &["xtask", "tests/loadgen"];

    #[test]
    fn every_rust_file_starts_with_a_module_doc() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask is in the workspace");
        let mut undocumented = Vec::new();
        for dir in CHECKED_DIRS {
            for file in rust_files(&root.join(dir)) {
                let text = std::fs::read_to_string(&file).expect("readable source file");
                if !text.trim_start().starts_with("//!") {
                    undocumented.push(
                        file.strip_prefix(root)
                            .unwrap_or(&file)
                            .display()
                            .to_string(),
                    );
                }
            }
        }
        assert!(
            undocumented.is_empty(),
            "files without a leading `//!` doc: {undocumented:?}"
        );
    }

    fn rust_files(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return files;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && path.file_name().is_some_and(|name| name != "target") {
                files.extend(rust_files(&path));
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
        files
    }
}
