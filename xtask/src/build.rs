//! `cargo xtask build`: the wasm components for wasm32-wasip2 and the native binaries, all in
//! the release profile.
//!
//! Release on purpose, also for tests: wasmtime (cranelift) in debug is far too slow, and one
//! release build then serves the binaries and the test executables. Builds go through plain
//! `cargo build -p`, without dev-dependencies, so a feature that only the test build enables
//! cannot hide a broken release (Spin's AGENTS.md).

use std::process::Command;

use crate::project::{self, Project, WASM_TARGET};

/// Components that spin.toml serves; `cargo xtask up` builds only these.
pub const APP_COMPONENTS: &[&str] = &["gyre-registry", "gyre-ingest", "gyre-query"];
/// Components that only the tests and benchmarks load.
pub const TEST_COMPONENTS: &[&str] = &[
    "gyre-test-probe",
    "gyre-test-unsupported",
    "gyre-test-hello",
];
/// Native binaries: the host, the device bridge, and the load generator used by `bench`.
pub const NATIVE_BINARIES: &[&str] = &["gyre-host", "gyre-ingest-bridge", "gyre-loadgen"];

pub fn run(project: &Project) -> anyhow::Result<()> {
    let all_components: Vec<&str> = APP_COMPONENTS
        .iter()
        .chain(TEST_COMPONENTS)
        .copied()
        .collect();
    components(project, &all_components)?;
    native(project)
}

/// Builds `crates` for wasm32-wasip2, adding the target with rustup first if it is missing.
pub fn components(project: &Project, crates: &[&str]) -> anyhow::Result<()> {
    ensure_wasm_target()?;
    let mut cargo = project.cargo();
    cargo.args(["build", "--release", "--target", WASM_TARGET]);
    for crate_name in crates {
        cargo.args(["-p", crate_name]);
    }
    project::run(&mut cargo)
}

pub fn native(project: &Project) -> anyhow::Result<()> {
    let mut cargo = project.cargo();
    cargo.args(["build", "--release"]);
    for crate_name in NATIVE_BINARIES {
        cargo.args(["-p", crate_name]);
    }
    project::run(&mut cargo)
}

fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = project::read(Command::new("rustup").args(["target", "list", "--installed"]));
    match installed {
        Ok(list) if list.lines().any(|line| line.trim() == WASM_TARGET) => Ok(()),
        Ok(_) => project::run(Command::new("rustup").args(["target", "add", WASM_TARGET])),
        // No rustup (a distribution's Rust, say): let cargo say what is missing, if anything.
        Err(err) => {
            eprintln!(
                "xtask: could not list rustup targets ({err:#}); assuming {WASM_TARGET} is there"
            );
            Ok(())
        }
    }
}
