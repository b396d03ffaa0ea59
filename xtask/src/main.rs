//! `cargo xtask`: the project's automation, written in Rust and run by cargo.
//!
//! Code map:
//! - `flags`: the command line, parsed into one `Task` value; nothing else reads `env::args`.
//! - `project`: where the repository, the target directory and cargo are; running a step.
//! - `process`: children xtask supervises (the host, load generators) and signal forwarding.
//! - `build`, `up`, `test`, `bench`: one module per task, each with a `run` function.
//! - `tidy`: repository checks that run as `#[test]`s.
//!
//! This file only dispatches. xtask deliberately has no async runtime and no HTTP stack, so that
//! it compiles in seconds on a cold checkout; HTTP load comes from the `gyre-loadgen` binary.

mod bench;
mod bootstrap;
mod build;
mod flags;
mod process;
mod project;
mod test;
mod tidy;
mod up;

use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(exit_code) => exit_code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = flags::parse(&args)?;
    if let flags::Task::Help = task {
        print!("{}", flags::HELP);
        return Ok(ExitCode::SUCCESS);
    }
    let project = project::Project::locate()?;
    match task {
        flags::Task::Help => unreachable!("handled above, before locating the project"),
        flags::Task::Build => build::run(&project).map(|()| ExitCode::SUCCESS),
        flags::Task::Up { host_args } => up::run(&project, &host_args),
        flags::Task::Test => test::run(&project),
        flags::Task::Bench(bench_flags) => bench::run(&project, &bench_flags),
    }
}
