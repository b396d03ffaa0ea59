//! Where things are: the repository root, the target directory, cargo, built artifacts; and
//! `run`, which executes one step and turns its failure into an error naming the command.
//!
//! Paths are found the cargo-xtask way (the root is the parent of xtask's `CARGO_MANIFEST_DIR`,
//! cargo is `$CARGO`) so that xtask works from any directory and with any toolchain proxy.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

pub const WASM_TARGET: &str = "wasm32-wasip2";

pub struct Project {
    pub root: PathBuf,
    /// `$CARGO_TARGET_DIR`, else `<root>/target` (which `.ci/run` may make a symlink to a cache).
    pub target_dir: PathBuf,
    cargo: OsString,
}

impl Project {
    pub fn locate() -> anyhow::Result<Project> {
        // `cargo run` sets CARGO_MANIFEST_DIR for the process; the compile-time value is the
        // fallback for running target/debug/xtask directly.
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = manifest_dir
            .parent()
            .with_context(|| format!("{} has no parent directory", manifest_dir.display()))?
            .to_path_buf();
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        Ok(Project {
            root,
            target_dir,
            cargo,
        })
    }

    /// A cargo command run from the repository root.
    pub fn cargo(&self) -> Command {
        let mut command = Command::new(&self.cargo);
        command.current_dir(&self.root);
        command
    }

    /// `target/release/<name>`, a native binary built by `build::native`.
    pub fn release_binary(&self, name: &str) -> PathBuf {
        self.target_dir.join("release").join(name)
    }

    /// `target/wasm32-wasip2/release/<crate_name with _>.wasm`, the file spin.toml points at.
    pub fn wasm_component(&self, crate_name: &str) -> PathBuf {
        let file_name = format!("{}.wasm", crate_name.replace('-', "_"));
        self.target_dir
            .join(WASM_TARGET)
            .join("release")
            .join(file_name)
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }
}

/// Runs `command` to completion with inherited stdio; a non-zero exit is an error.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = show(command);
    eprintln!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` and returns its stdout; a non-zero exit is an error.
pub fn read(command: &mut Command) -> anyhow::Result<String> {
    let shown = show(command);
    let output = command
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("`{shown}` failed ({}): {}", output.status, stderr.trim());
    }
    String::from_utf8(output.stdout).with_context(|| format!("`{shown}` printed non-UTF-8"))
}

/// The command as a user would type it, for logs and errors.
pub fn show(command: &Command) -> String {
    let program = Path::new(command.get_program());
    // `$CARGO` is an absolute path into the toolchain; `cargo` reads better and is what ran.
    let program = match program.file_name() {
        Some(name) if name == "cargo" => "cargo".to_string(),
        _ => program.display().to_string(),
    };
    let args = command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned());
    std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}
