//! The official Azure IoT device SDKs that the end-to-end tests drive (`tests/registry/sdk.rs`
//! runs `tests/sdk/device.py` and `tests/sdk/device.js`), installed from their pinned lists:
//! - Python: `tests/sdk/requirements.txt` with `pip install --no-deps --target target/sdk/python`
//!   (the list pins every dependency, so it installs exactly that);
//! - Node: `tests/sdk/package-lock.json` with `npm ci` in `target/sdk/node`.
//!
//! Under `target/` because CI keeps that directory between runs (see `.ci/run`), and nothing
//! lands in the source tree. Each install is keyed by a stamp file holding what it was made from
//! (the interpreter's version and the pinned list): with a matching stamp nothing runs, so a
//! warm `cargo xtask test` spends milliseconds here. A changed list or interpreter reinstalls
//! from scratch, into a staging directory that replaces the old install only once complete, so
//! an interrupted install leaves the old one (or none) and is redone next time. Both installs
//! are relocatable (pure Python packages, plain `node_modules`), so a CI cache shared by clones
//! in different folders serves them all.
//!
//! Not owned here: the tests' side, which reads `GYRE_SDK_PYTHONPATH` and `GYRE_SDK_NODE_PATH`
//! (set by [`Installed::apply`]) and falls back to the same `target/sdk/` paths.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::project::{self, Project};

/// The stamp file in an install directory.
const STAMP: &str = ".gyre-installed-from";

/// Where the SDKs are, for the test processes.
pub struct Installed {
    /// `PYTHONPATH` for `python3` to import `azure.iot.device`.
    python_path: PathBuf,
    /// `NODE_PATH` for `node` to require the `azure-iot-*` packages.
    node_path: PathBuf,
}

impl Installed {
    /// Tells the test processes `command` starts where the SDKs are.
    pub fn apply(&self, command: &mut Command) {
        command.env("GYRE_SDK_PYTHONPATH", &self.python_path);
        command.env("GYRE_SDK_NODE_PATH", &self.node_path);
    }
}

/// Installs both SDKs unless their stamps say they are current.
pub fn install(project: &Project) -> anyhow::Result<Installed> {
    let sources = project.path("tests/sdk");
    let target = project.target_dir.join("sdk");
    let python_path = install_python(&sources, &target.join("python"))?;
    let node_path = install_node(&sources, &target.join("node"))?;
    Ok(Installed {
        python_path,
        node_path,
    })
}

fn install_python(sources: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let requirements = sources.join("requirements.txt");
    let version = tool_version(Command::new("python3").arg("--version"), "python3")?;
    let stamp = format!("{version}\n{}", read(&requirements)?);
    if is_current(dir, &stamp) && dir.join("azure").is_dir() {
        eprintln!("xtask: Python device SDK up to date in {}", dir.display());
        return Ok(dir.to_path_buf());
    }
    let staging = start_staging(dir)?;
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "--no-deps",
        "--target",
    ])
    .arg(&staging)
    .arg("--requirement")
    .arg(&requirements)
    // CI runs as root; the target directory is ours, so pip's warning about root is noise.
    .env("PIP_ROOT_USER_ACTION", "ignore");
    project::run(&mut pip).context("installing the Python device SDK")?;
    finish_staging(&staging, dir, &stamp)?;
    Ok(dir.to_path_buf())
}

fn install_node(sources: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let version = tool_version(Command::new("node").arg("--version"), "node")?;
    let manifest = read(&sources.join("package.json"))?;
    let lock = read(&sources.join("package-lock.json"))?;
    let stamp = format!("{version}\n{manifest}\n{lock}");
    let node_modules = dir.join("node_modules");
    if is_current(dir, &stamp) && node_modules.join("azure-iot-device").is_dir() {
        eprintln!("xtask: Node device SDKs up to date in {}", dir.display());
        return Ok(node_modules);
    }
    let staging = start_staging(dir)?;
    write(&staging.join("package.json"), &manifest)?;
    write(&staging.join("package-lock.json"), &lock)?;
    let mut npm = Command::new("npm");
    // No install scripts: none of these packages needs one to work, and the tests should not
    // run code at install time that they do not run themselves.
    npm.args([
        "ci",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ])
    .current_dir(&staging);
    project::run(&mut npm).context("installing the Node device SDKs")?;
    finish_staging(&staging, dir, &stamp)?;
    Ok(node_modules)
}

/// The first line a `--version` command prints, or an error saying the tool is needed.
fn tool_version(command: &mut Command, tool: &str) -> anyhow::Result<String> {
    let output = project::read(command).with_context(|| {
        format!("`{tool}` is needed to install the device SDKs the end-to-end tests use")
    })?;
    Ok(output.lines().next().unwrap_or_default().trim().to_owned())
}

fn is_current(dir: &Path, stamp: &str) -> bool {
    std::fs::read_to_string(dir.join(STAMP)).is_ok_and(|found| found == stamp)
}

/// An empty directory beside `dir` to install into (this process's own, so that two runs
/// installing at once do not mix their files).
fn start_staging(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    let staging = dir.with_file_name(name);
    remove_if_present(&staging)?;
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    Ok(staging)
}

/// Stamps the finished install in `staging` and puts it in place of `dir`.
fn finish_staging(staging: &Path, dir: &Path, stamp: &str) -> anyhow::Result<()> {
    write(&staging.join(STAMP), stamp)?;
    remove_if_present(dir)?;
    std::fs::rename(staging, dir)
        .with_context(|| format!("moving {} to {}", staging.display(), dir.display()))
}

fn remove_if_present(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_install_replaces_the_old_one_and_is_current_only_with_its_stamp() {
        let stamp = "Python 3.11.7\nazure-iot-device==2.14.0\n";
        let root = std::env::temp_dir().join(format!("xtask-sdk-{}", std::process::id()));
        let dir = root.join("python");
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir.join("old.py"), "").unwrap();
        assert!(!is_current(&dir, stamp));

        let staging = start_staging(&dir).unwrap();
        write(&staging.join("new.py"), "").unwrap();
        assert!(
            !is_current(&dir, stamp),
            "not current before it is finished"
        );
        finish_staging(&staging, &dir, stamp).unwrap();

        assert!(is_current(&dir, stamp));
        assert!(!is_current(
            &dir,
            "Python 3.12.1\nazure-iot-device==2.14.0\n"
        ));
        assert!(dir.join("new.py").exists() && !dir.join("old.py").exists());
        assert!(!staging.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
