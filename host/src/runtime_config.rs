//! Spin's runtime configuration file (`--runtime-config-file`): where store labels live.
//!
//! Supported: `[key_value_store.<label>]` with `type = "spin"` and an optional `path`, and
//! `[sqlite_database.<label>]` with `type = "spin"` and a `path` (relative paths start at the
//! file's folder; Spin keeps a database without a path in memory, so gyre-host refuses one). Without the file, or for a
//! label it does not name, `default` maps to Spin's files under the state directory:
//! `sqlite_key_value.db` and `sqlite_db.db`. Everything else is refused with a message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where each store label's file is.
#[derive(Debug, Clone)]
pub struct StorePaths {
    pub key_value: BTreeMap<String, PathBuf>,
    pub sqlite: BTreeMap<String, PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawStore>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, RawStore>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(rename = "type")]
    kind: String,
    path: Option<PathBuf>,
}

impl StorePaths {
    /// Spin's defaults, overridden by the runtime configuration file if one is given.
    pub fn load(
        state_dir: &Path,
        runtime_config: Option<&Path>,
    ) -> Result<StorePaths, Vec<String>> {
        let mut paths = StorePaths {
            key_value: BTreeMap::from([(
                "default".to_string(),
                state_dir.join("sqlite_key_value.db"),
            )]),
            sqlite: BTreeMap::from([("default".to_string(), state_dir.join("sqlite_db.db"))]),
        };
        let Some(file) = runtime_config else {
            return Ok(paths);
        };
        let text = std::fs::read_to_string(file).map_err(|err| {
            vec![format!(
                "cannot read runtime config {}: {err}",
                file.display()
            )]
        })?;
        let raw: RawRuntimeConfig = toml::from_str(&text).map_err(|err| {
            vec![format!(
                "runtime config {}: {} (gyre-host supports [key_value_store.<label>] and [sqlite_database.<label>] \
                 with type = \"spin\")",
                file.display(),
                err.message().trim()
            )]
        })?;
        let base = file.parent().unwrap_or(Path::new("."));
        let mut problems = Vec::new();
        // `default_file`: where a store without a `path` lives; `None` when it needs one.
        let mut resolve = |section: &str,
                           label: &str,
                           store: RawStore,
                           default_file: Option<PathBuf>| {
            if store.kind != "spin" {
                problems.push(format!(
                        "runtime config [{section}.{label}]: type = \"{}\" is not supported by gyre-host; use type = \"spin\"",
                        store.kind
                    ));
                return None;
            }
            match (store.path, default_file) {
                (Some(path), _) => Some(base.join(path)),
                (None, Some(default_file)) => Some(default_file),
                (None, None) => {
                    problems.push(format!(
                        "runtime config [{section}.{label}]: give it a `path`: without one \
                             Spin keeps the database in memory, which gyre-host does not support"
                    ));
                    None
                }
            }
        };
        for (label, store) in raw.key_value_store {
            let default_file = state_dir.join(format!("{label}.db"));
            if let Some(path) = resolve("key_value_store", &label, store, Some(default_file)) {
                paths.key_value.insert(label, path);
            }
        }
        for (label, store) in raw.sqlite_database {
            // Spin keeps a database without a path in memory; gyre-host keeps every store in a
            // file, so it refuses the entry rather than behave differently.
            if let Some(path) = resolve("sqlite_database", &label, store, None) {
                paths.sqlite.insert(label, path);
            }
        }
        if problems.is_empty() {
            Ok(paths)
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_live_in_the_state_directory() {
        let paths = StorePaths::load(Path::new("/s"), None).unwrap();
        assert_eq!(
            paths.key_value["default"],
            Path::new("/s/sqlite_key_value.db")
        );
        assert_eq!(paths.sqlite["default"], Path::new("/s/sqlite_db.db"));
    }

    #[test]
    fn the_runtime_config_adds_and_overrides_labels() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runtime-config.toml");
        std::fs::write(
            &file,
            "[key_value_store.cache]\ntype = \"spin\"\npath = \"cache.db\"\n\
             [sqlite_database.default]\ntype = \"spin\"\npath = \"/data/main.db\"\n",
        )
        .unwrap();
        let paths = StorePaths::load(Path::new("/s"), Some(&file)).unwrap();
        assert_eq!(paths.key_value["cache"], dir.path().join("cache.db"));
        assert_eq!(
            paths.key_value["default"],
            Path::new("/s/sqlite_key_value.db")
        );
        assert_eq!(paths.sqlite["default"], Path::new("/data/main.db"));
    }

    #[test]
    fn unsupported_backends_and_sections_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rc.toml");
        std::fs::write(
            &file,
            "[key_value_store.a]\ntype = \"redis\"\n[sqlite_database.b]\ntype = \"libsql\"\n",
        )
        .unwrap();
        assert_eq!(
            StorePaths::load(Path::new("/s"), Some(&file))
                .unwrap_err()
                .len(),
            2
        );
        std::fs::write(&file, "[llm_compute]\ntype = \"remote_http\"\n").unwrap();
        assert!(StorePaths::load(Path::new("/s"), Some(&file)).is_err());
    }

    #[test]
    fn a_database_without_a_path_is_refused_as_spin_would_keep_it_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rc.toml");
        std::fs::write(&file, "[sqlite_database.journal]\ntype = \"spin\"\n").unwrap();
        let problems = StorePaths::load(Path::new("/s"), Some(&file)).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("[sqlite_database.journal]"),
            "{problems:?}"
        );
        assert!(problems[0].contains("path"), "{problems:?}");
    }
}
