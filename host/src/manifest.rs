//! `spin.toml` (manifest version 2): the TOML schema, and its validation into [`AppManifest`].
//!
//! Owns: reading the file, refusing what the embedded host does not support with a message that
//! names the component and the field, and collecting every such problem instead of stopping at
//! the first. Does not own: what the fields mean at run time (routes, variables, outbound hosts
//! and stores each have their own module), nor loading the Wasm files (`app`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::routes::RouteSpec;

/// A validated manifest: every component referenced by an HTTP trigger, in manifest order.
#[derive(Debug)]
pub struct AppManifest {
    /// `[application] name`.
    pub name: String,
    /// The folder holding `spin.toml`: relative `source` paths start here.
    pub base_dir: PathBuf,
    /// `[variables]`, by name.
    pub variables: BTreeMap<String, VariableDecl>,
    /// One entry a `[[trigger.http]]`.
    pub triggers: Vec<HttpTrigger>,
    /// `[component.<id>]`, by id.
    pub components: BTreeMap<String, ComponentDecl>,
}

/// An application variable as declared under `[variables]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
}

/// An HTTP trigger: which component serves which route.
#[derive(Debug, Clone)]
pub struct HttpTrigger {
    pub component: String,
    pub route: RouteSpec,
}

/// A component as the host needs it.
#[derive(Debug, Clone)]
pub struct ComponentDecl {
    pub id: String,
    /// Absolute path of the Wasm component.
    pub source: PathBuf,
    /// `allowed_outbound_hosts`, still holding `{{ variable }}` templates.
    pub allowed_outbound_hosts: Vec<String>,
    pub key_value_stores: Vec<String>,
    pub sqlite_databases: Vec<String>,
    /// `[component.<id>.variables]`: name to template.
    pub variables: BTreeMap<String, String>,
    /// `environment`: set in the guest's WASI environment.
    pub environment: BTreeMap<String, String>,
}

/// Everything wrong with a manifest, reported together.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ManifestError {
    pub problems: Vec<String>,
}

impl AppManifest {
    /// Reads and validates `spin.toml` at `path`. See [`AppManifest::parse`].
    pub fn from_file(path: &Path) -> Result<(AppManifest, Vec<String>), ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|err| ManifestError {
            problems: vec![format!("cannot read manifest {}: {err}", path.display())],
        })?;
        let base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
        AppManifest::parse(&text, &base_dir)
    }

    /// Validates manifest text; `base_dir` resolves relative `source` paths.
    ///
    /// Fails only when the text cannot be read as a version 2 manifest at all. Otherwise it
    /// returns what could be validated (components with problems left out) together with every
    /// problem found, so that the caller can go on checking and report everything at once.
    pub fn parse(text: &str, base_dir: &Path) -> Result<(AppManifest, Vec<String>), ManifestError> {
        let version: VersionProbe = toml::from_str(text).map_err(|err| ManifestError {
            problems: vec![format!(
                "spin.toml is not valid TOML: {}",
                err.message().trim()
            )],
        })?;
        match version.spin_manifest_version {
            Some(toml::Value::Integer(2)) => {}
            Some(other) => {
                return Err(ManifestError {
                    problems: vec![format!(
                        "spin_manifest_version = {other} is not supported: gyre-host reads manifest version 2 \
                         (`spin_manifest_version = 2`); run `spin doctor` to upgrade a version 1 manifest"
                    )],
                })
            }
            None => {
                return Err(ManifestError {
                    problems: vec!["spin.toml has no `spin_manifest_version`; set `spin_manifest_version = 2`".into()],
                })
            }
        }
        let raw: RawManifest = toml::from_str(text).map_err(|err| ManifestError {
            problems: vec![format!("spin.toml: {}", err.message().trim())],
        })?;
        raw.validate(base_dir)
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    spin_manifest_version: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[allow(dead_code)] // checked by `VersionProbe`
    spin_manifest_version: toml::Value,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: BTreeMap<String, toml::Value>,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: String,
    #[allow(dead_code)]
    version: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    #[allow(dead_code)]
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    trigger: BTreeMap<String, toml::Value>,
    #[allow(dead_code)]
    #[serde(default)]
    tool: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTrigger {
    #[allow(dead_code)]
    id: Option<String>,
    route: toml::Value,
    component: toml::Value,
    executor: Option<toml::Value>,
    #[allow(dead_code)]
    #[serde(default)]
    components: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: toml::Value,
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    files: Vec<toml::Value>,
    #[allow(dead_code)]
    #[serde(default)]
    exclude_files: Vec<String>,
    #[serde(default)]
    allowed_http_hosts: Vec<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    ai_models: Vec<String>,
    #[allow(dead_code)]
    build: Option<toml::Value>,
    #[allow(dead_code)]
    #[serde(default)]
    tool: BTreeMap<String, toml::Value>,
    #[serde(default)]
    dependencies: BTreeMap<String, toml::Value>,
    #[allow(dead_code)]
    #[serde(default)]
    dependencies_inherit_configuration: bool,
}

impl RawManifest {
    fn validate(self, base_dir: &Path) -> Result<(AppManifest, Vec<String>), ManifestError> {
        let mut problems = Vec::new();

        for (name, decl) in &self.variables {
            if let Err(why) = crate::variables::check_name(name) {
                problems.push(format!("[variables] `{name}`: {why}"));
            }
            if decl.required && decl.default.is_some() {
                problems.push(format!(
                    "[variables] `{name}`: a variable is either `required = true` or has a `default`, not both"
                ));
            }
            if !decl.required && decl.default.is_none() {
                problems.push(format!(
                    "[variables] `{name}`: give it a `default` or mark it `required = true`"
                ));
            }
        }
        if let Some(base) = self
            .application
            .trigger
            .get("http")
            .and_then(|t| t.get("base"))
        {
            if base.as_str() != Some("/") {
                problems.push(format!(
                    "[application.trigger.http] base = {base} is not supported: manifest version 2 serves from `/`"
                ));
            }
        }

        let mut triggers = Vec::new();
        for (kind, value) in &self.trigger {
            if kind != "http" {
                problems.push(format!(
                    "[[trigger.{kind}]]: gyre-host serves only HTTP triggers; run this app on Spin for `{kind}` triggers"
                ));
                continue;
            }
            let Some(entries) = value.as_array() else {
                problems.push(
                    "`trigger.http` must be an array of tables: write `[[trigger.http]]`".into(),
                );
                continue;
            };
            for (idx, entry) in entries.iter().enumerate() {
                let raw: RawHttpTrigger = match entry.clone().try_into() {
                    Ok(raw) => raw,
                    Err(err) => {
                        problems.push(format!(
                            "[[trigger.http]] #{}: {}",
                            idx + 1,
                            err.message().trim()
                        ));
                        continue;
                    }
                };
                match raw.into_trigger(&self.component) {
                    Ok(trigger) => triggers.push(trigger),
                    Err(why) => problems.push(format!("[[trigger.http]] #{}: {why}", idx + 1)),
                }
            }
        }

        let mut components = BTreeMap::new();
        for (id, raw) in self.component {
            if !triggers.iter().any(|t| t.component == id) {
                // Spin ignores components no trigger uses; so does the host.
                continue;
            }
            match raw.into_decl(&id, base_dir, &self.variables) {
                Ok(decl) => {
                    components.insert(id, decl);
                }
                Err(mut why) => problems.append(&mut why),
            }
        }
        if let Err(mut why) = crate::routes::check_conflicts(&triggers) {
            problems.append(&mut why);
        }

        // Triggers of components that failed validation go too: nothing can serve them.
        triggers.retain(|trigger| components.contains_key(&trigger.component));
        let manifest = AppManifest {
            name: self.application.name,
            base_dir: base_dir.to_path_buf(),
            variables: self.variables,
            triggers,
            components,
        };
        Ok((manifest, problems))
    }
}

impl RawHttpTrigger {
    fn into_trigger(
        self,
        components: &BTreeMap<String, RawComponent>,
    ) -> Result<HttpTrigger, String> {
        if let Some(executor) = &self.executor {
            let kind = executor.get("type").and_then(|t| t.as_str()).unwrap_or("");
            if kind != "spin" {
                return Err(format!(
                    "executor type `{kind}` is not supported; gyre-host runs Spin (wasi:http) components only"
                ));
            }
        }
        let component = match self.component {
            toml::Value::String(id) => id,
            _ => {
                return Err("inline `component = { ... }` tables are not supported; declare `[component.<id>]` \
                            and write `component = \"<id>\"`"
                    .into())
            }
        };
        if !components.contains_key(&component) {
            return Err(format!(
                "component `{component}` is not declared: add a `[component.{component}]` table"
            ));
        }
        let route = RouteSpec::from_toml(&self.route)
            .map_err(|why| format!("component `{component}`: {why}"))?;
        Ok(HttpTrigger { component, route })
    }
}

impl RawComponent {
    fn into_decl(
        self,
        id: &str,
        base_dir: &Path,
        app_variables: &BTreeMap<String, VariableDecl>,
    ) -> Result<ComponentDecl, Vec<String>> {
        let mut problems = Vec::new();
        let mut refuse =
            |field: &str, why: &str| problems.push(format!("component `{id}`: `{field}` {why}"));
        if let Err(why) = check_component_id(id) {
            refuse("id", &why);
        }
        let source = match &self.source {
            toml::Value::String(path) => Some(base_dir.join(path)),
            toml::Value::Table(_) => {
                refuse(
                    "source",
                    "from a URL or registry is not supported by gyre-host: give a local path to the .wasm file",
                );
                None
            }
            _ => {
                refuse("source", "must be a path to a .wasm file");
                None
            }
        };
        if !self.files.is_empty() {
            refuse(
                "files",
                "is not supported by gyre-host: components get no preopened files",
            );
        }
        if !self.allowed_http_hosts.is_empty() {
            refuse(
                "allowed_http_hosts",
                "is the manifest version 1 field: use `allowed_outbound_hosts`",
            );
        }
        if !self.ai_models.is_empty() {
            refuse(
                "ai_models",
                "is not supported by gyre-host (no LLM interface)",
            );
        }
        if !self.dependencies.is_empty() {
            refuse(
                "dependencies",
                "(component composition) is not supported by gyre-host",
            );
        }
        for name in self.variables.keys() {
            if let Err(why) = crate::variables::check_name(name) {
                problems.push(format!("component `{id}`: variable `{name}`: {why}"));
            }
        }
        for (name, template) in &self.variables {
            if let Err(why) = crate::variables::check_template(template, app_variables) {
                problems.push(format!("component `{id}`: variable `{name}`: {why}"));
            }
        }
        for host in &self.allowed_outbound_hosts {
            if let Err(why) = crate::variables::check_template(host, app_variables) {
                problems.push(format!(
                    "component `{id}`: allowed_outbound_hosts `{host}`: {why}"
                ));
            }
        }
        match source {
            Some(source) if problems.is_empty() => Ok(ComponentDecl {
                id: id.to_string(),
                source,
                allowed_outbound_hosts: self.allowed_outbound_hosts,
                key_value_stores: self.key_value_stores,
                sqlite_databases: self.sqlite_databases,
                variables: self.variables,
                environment: self.environment,
            }),
            _ => Err(problems),
        }
    }
}

/// Spin's rule for component ids: kebab-case, lower-case ASCII letters and digits, starting with
/// a letter.
fn check_component_id(id: &str) -> Result<(), String> {
    let ok = id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.split('-').all(|part| !part.is_empty())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("`{id}` is not a valid id: use kebab-case (lower-case letters, digits and single dashes)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every problem, fatal or not, as one `Err`.
    fn parse(text: &str) -> Result<AppManifest, Vec<String>> {
        match AppManifest::parse(text, Path::new("/app")) {
            Ok((manifest, problems)) if problems.is_empty() => Ok(manifest),
            Ok((_, problems)) => Err(problems),
            Err(err) => Err(err.problems),
        }
    }

    const MINIMAL: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[[trigger.http]]
route = "/api/..."
component = "api"
[component.api]
source = "target/api.wasm"
key_value_stores = ["default"]
"#;

    #[test]
    fn a_minimal_manifest_resolves_sources_against_its_folder() {
        let manifest = parse(MINIMAL).unwrap();
        assert_eq!(manifest.name, "demo");
        assert_eq!(
            manifest.components["api"].source,
            Path::new("/app/target/api.wasm")
        );
        assert_eq!(
            manifest.components["api"].key_value_stores,
            vec!["default".to_string()]
        );
        assert_eq!(manifest.triggers.len(), 1);
    }

    #[test]
    fn version_1_and_missing_version_are_refused_with_a_fix() {
        let problems = parse("spin_manifest_version = \"1\"\nname = \"x\"").unwrap_err();
        assert!(problems[0].contains("version 2"), "{problems:?}");
        let problems = parse("[application]\nname = \"x\"").unwrap_err();
        assert!(
            problems[0].contains("spin_manifest_version = 2"),
            "{problems:?}"
        );
    }

    #[test]
    fn toml_syntax_errors_are_reported() {
        let problems = parse("spin_manifest_version = 2\n[application\n").unwrap_err();
        assert!(problems[0].contains("not valid TOML"), "{problems:?}");
    }

    #[test]
    fn every_unsupported_field_is_reported_at_once() {
        let text = r#"
spin_manifest_version = 2
[application]
name = "demo"
[[trigger.http]]
route = "/a"
component = "a"
[[trigger.redis]]
channel = "x"
component = "a"
[component.a]
source = { url = "https://example.com/a.wasm", digest = "sha256:0" }
files = ["static/**"]
ai_models = ["llama2-chat"]
allowed_outbound_hosts = ["http://{{ missing }}"]
"#;
        let problems = parse(text).unwrap_err();
        let all = problems.join("\n");
        for needle in [
            "trigger.redis",
            "`source`",
            "`files`",
            "`ai_models`",
            "missing",
        ] {
            assert!(all.contains(needle), "{needle} not in {all}");
        }
    }

    #[test]
    fn a_trigger_naming_an_undeclared_component_is_refused() {
        let text = MINIMAL.replace("component = \"api\"", "component = \"nope\"");
        let problems = parse(&text).unwrap_err();
        assert!(
            problems[0].contains("`nope` is not declared"),
            "{problems:?}"
        );
    }

    #[test]
    fn variables_need_a_default_or_required_but_not_both() {
        let text = format!(
            "{MINIMAL}\n[variables]\na = {{ default = \"x\", required = true }}\nb = {{}}\n"
        );
        let problems = parse(&text).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
