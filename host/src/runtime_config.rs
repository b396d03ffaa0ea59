//! Spin's runtime configuration file (`--runtime-config-file`): where store labels live.
//!
//! Supported: `[key_value_store.<label>]` and `[sqlite_database.<label>]` with `type = "spin"`
//! and an optional `path` (relative paths start at the file's folder). Without the file, or for a
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
        let mut resolve = |section: &str, label: &str, store: RawStore, default_file: PathBuf| {
            if store.kind != "spin" {
                problems.push(format!(
                    "runtime config [{section}.{label}]: type = \"{}\" is not supported by gyre-host; use type = \"spin\"",
                    store.kind
                ));
                return None;
            }
            Some(store.path.map(|p| base.join(p)).unwrap_or(default_file))
        };
        for (label, store) in raw.key_value_store {
            let default_file = state_dir.join(format!("{label}.db"));
            if let Some(path) = resolve("key_value_store", &label, store, default_file) {
                paths.key_value.insert(label, path);
            }
        }
        for (label, store) in raw.sqlite_database {
            let default_file = state_dir.join(format!("{label}.db"));
            if let Some(path) = resolve("sqlite_database", &label, store, default_file) {
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
}
