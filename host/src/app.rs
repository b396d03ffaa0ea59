//! Loading an application: manifest → variables → stores → compiled, linked components.
//!
//! Every problem found on the way is collected, so one failed start lists all of them, each
//! naming the component and what to fix (Spin's load-time validation, on a smaller scale).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::Engine;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::engine::{self, PoolLimits};
use crate::kv::KeyValueStores;
use crate::manifest::AppManifest;
use crate::metrics::Metrics;
use crate::outbound::AllowedHosts;
use crate::routes::{RoutePattern, RouteSpec, Router};
use crate::runtime_config::StorePaths;
use crate::sqlite::Databases;
use crate::state::InstanceState;
use crate::variables::{self, ComponentVariables};

/// What `gyre-host` was asked to run, and how.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Path of `spin.toml`.
    pub manifest: PathBuf,
    /// Spin's state directory; `None` is `.spin` beside the manifest.
    pub state_dir: Option<PathBuf>,
    pub runtime_config: Option<PathBuf>,
    /// `--sqlite`: statements, or `@file`, run against the `default` database before serving.
    pub sqlite_statements: Vec<String>,
    /// A request still running after this answers 500 and its instance is stopped.
    pub request_timeout: Duration,
    pub pool: PoolLimits,
}

/// Interfaces the host links, for naming what a refused component imports instead.
const PROVIDED_IMPORTS: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:http/types@0.2",
    "wasi:http/outgoing-handler@0.2",
    "fermyon:spin/key-value@2.0.0",
    "fermyon:spin/sqlite@2.0.0",
    "fermyon:spin/variables@2.0.0",
];

/// A loaded application, ready to serve. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<AppInner>,
}

pub(crate) struct AppInner {
    pub name: String,
    pub engine: Engine,
    pub components: Vec<LoadedComponent>,
    pub by_id: HashMap<String, usize>,
    pub router: Router<usize>,
    pub kv: Arc<KeyValueStores>,
    pub sqlite: Arc<Databases>,
    pub request_timeout: Duration,
    pub metrics: Metrics,
    pub state_dir: PathBuf,
}

pub(crate) struct LoadedComponent {
    pub id: Arc<str>,
    pub pre: ProxyPre<InstanceState>,
    /// The public route, if any; `None` for private components.
    pub route: Option<RoutePattern>,
    pub allowed_hosts: Arc<AllowedHosts>,
    pub kv_labels: Arc<HashSet<String>>,
    pub sqlite_labels: Arc<HashSet<String>>,
    pub variables: Arc<ComponentVariables>,
    pub environment: Vec<(String, String)>,
}

/// Everything that kept an application from loading.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s) loading {manifest}:\n{}", .problems.len(), .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct LoadError {
    pub manifest: String,
    pub problems: Vec<String>,
}

impl App {
    /// Loads the application described by `options`; see the module docs.
    pub fn load(options: &HostOptions) -> Result<App, LoadError> {
        let fail = |problems: Vec<String>| LoadError {
            manifest: options.manifest.display().to_string(),
            problems,
        };
        let (manifest, mut problems) =
            AppManifest::from_file(&options.manifest).map_err(|err| fail(err.problems))?;
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| manifest.base_dir.join(".spin"));

        let app_values = variables::resolve_app(&manifest.variables, variables::from_environment)
            .unwrap_or_else(|mut why| {
                problems.append(&mut why);
                BTreeMap::new()
            });
        let store_paths = StorePaths::load(&state_dir, options.runtime_config.as_deref())
            .unwrap_or_else(|mut why| {
                problems.append(&mut why);
                StorePaths {
                    key_value: BTreeMap::new(),
                    sqlite: BTreeMap::new(),
                }
            });
        for component in manifest.components.values() {
            let declared = [
                (
                    "key_value_stores",
                    "key_value_store",
                    &component.key_value_stores,
                    &store_paths.key_value,
                ),
                (
                    "sqlite_databases",
                    "sqlite_database",
                    &component.sqlite_databases,
                    &store_paths.sqlite,
                ),
            ];
            for (field, section, labels, defined) in declared {
                for label in labels.iter().filter(|label| !defined.contains_key(*label)) {
                    problems.push(format!(
                        "component `{}`: {field} label `{label}` is not defined: only `default` exists \
                         unless a runtime config file defines [{section}.{label}]",
                        component.id
                    ));
                }
            }
        }

        let engine = engine::build(&options.pool).map_err(|err| fail(vec![format!("{err:#}")]))?;
        let linker = match build_linker(&engine) {
            Ok(linker) => linker,
            Err(err) => return Err(fail(vec![format!("linking host interfaces: {err:#}")])),
        };

        let mut components = Vec::new();
        let mut by_id = HashMap::new();
        for decl in manifest.components.values() {
            let rendered: Vec<String> = decl
                .allowed_outbound_hosts
                .iter()
                .map(|h| variables::render(h, &app_values))
                .collect();
            let allowed_hosts = AllowedHosts::parse(&rendered).unwrap_or_else(|why| {
                problems.extend(
                    why.into_iter()
                        .map(|p| format!("component `{}`: {p}", decl.id)),
                );
                AllowedHosts::default()
            });
            let pre = match prepare_component(&engine, &linker, &decl.id, &decl.source) {
                Ok(pre) => pre,
                Err(why) => {
                    problems.push(why);
                    continue;
                }
            };
            let route = manifest
                .triggers
                .iter()
                .find(|t| t.component == decl.id)
                .and_then(|t| match &t.route {
                    RouteSpec::Pattern(p) => Some(p.clone()),
                    RouteSpec::Private => None,
                });
            by_id.insert(decl.id.clone(), components.len());
            components.push(LoadedComponent {
                id: Arc::from(decl.id.as_str()),
                pre,
                route,
                allowed_hosts: Arc::new(allowed_hosts),
                kv_labels: Arc::new(decl.key_value_stores.iter().cloned().collect()),
                sqlite_labels: Arc::new(decl.sqlite_databases.iter().cloned().collect()),
                variables: Arc::new(ComponentVariables::resolve(&decl.variables, &app_values)),
                environment: decl.environment.clone().into_iter().collect(),
            });
        }
        if !problems.is_empty() {
            return Err(fail(problems));
        }

        // Stores are opened only once everything else is known to be right, so that a failed
        // start leaves no new files behind.
        let kv = KeyValueStores::open(&store_paths.key_value).map_err(&fail)?;
        let sqlite = Databases::open(&store_paths.sqlite).map_err(&fail)?;
        for statement in &options.sqlite_statements {
            let sql = match statement.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file).map_err(|err| {
                    fail(vec![format!(
                        "--sqlite @{file}: cannot read the file: {err}"
                    )])
                })?,
                None => statement.clone(),
            };
            sqlite
                .execute_batch("default", &sql)
                .map_err(|err| fail(vec![format!("--sqlite `{statement}`: {err}")]))?;
        }

        let routes = manifest
            .triggers
            .iter()
            .filter_map(|t| match &t.route {
                RouteSpec::Pattern(pattern) => {
                    by_id.get(&t.component).map(|idx| (pattern.clone(), *idx))
                }
                RouteSpec::Private => None,
            })
            .collect();
        Ok(App {
            inner: Arc::new(AppInner {
                name: manifest.name,
                engine,
                components,
                by_id,
                router: Router::new(routes),
                kv: Arc::new(kv),
                sqlite: Arc::new(sqlite),
                request_timeout: options.request_timeout,
                metrics: Metrics::default(),
                state_dir,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn state_dir(&self) -> &std::path::Path {
        &self.inner.state_dir
    }

    /// `(component id, route as written, is wildcard)` for every public route, in manifest order.
    pub fn routes(&self) -> Vec<(String, String, bool)> {
        self.inner
            .router
            .iter()
            .map(|(pattern, idx)| {
                (
                    self.inner.components[*idx].id.to_string(),
                    pattern.raw().to_string(),
                    pattern.is_wildcard(),
                )
            })
            .collect()
    }

    /// The Prometheus text of the request metrics.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render()
    }
}

fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::bindings::GyreHost::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |state| {
        state
    })?;
    Ok(linker)
}

/// Compiles and links one component; the error names the component and the fix.
fn prepare_component(
    engine: &Engine,
    linker: &Linker<InstanceState>,
    id: &str,
    source: &std::path::Path,
) -> Result<ProxyPre<InstanceState>, String> {
    if !source.is_file() {
        return Err(format!(
            "component `{id}`: source {} does not exist: build it first (`cargo xtask build` or the component's \
             build command)",
            source.display()
        ));
    }
    let component = Component::from_file(engine, source).map_err(|err| {
        format!(
            "component `{id}`: {} is not a valid Wasm component: {err:#}",
            source.display()
        )
    })?;
    let instance_pre = linker.instantiate_pre(&component).map_err(|err| {
        let unsupported: Vec<String> = component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .filter(|name| !PROVIDED_IMPORTS.iter().any(|provided| name.starts_with(provided)))
            .collect();
        if unsupported.is_empty() {
            format!("component `{id}`: cannot be linked: {err:#}")
        } else {
            format!(
                "component `{id}` imports {}, which gyre-host does not provide (it provides WASI 0.2, \
                 wasi:http outgoing requests and fermyon:spin key-value, sqlite and variables @2.0.0); \
                 remove that use or run the app on Spin",
                unsupported.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            )
        }
    })?;
    ProxyPre::new(instance_pre).map_err(|err| {
        format!("component `{id}` is not an HTTP component: it must export `wasi:http/incoming-handler@0.2.x` ({err:#})")
    })
}
