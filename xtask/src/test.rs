//! `cargo xtask test`: build everything, install the device SDKs the end-to-end tests drive
//! (`sdks`), then the unit tests, then the end-to-end tests.
//!
//! All in the release profile, so the wasmtime that the host binary was just built with also
//! serves the test executables (debug cranelift makes the e2e tests crawl). A failing test step
//! does not stop the later ones, so one run shows every failure; a failing build does.
//! The libtest summaries are added up into one closing line, `xtask: N passed, M failed`.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;

use crate::build;
use crate::project::{self, Project};

mod sdks;

/// One `cargo test` invocation and what it is for.
struct Step {
    name: &'static str,
    command: Command,
}

/// Tests counted from libtest's `test result:` lines.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    passed: u64,
    failed: u64,
}

pub fn run(project: &Project) -> anyhow::Result<ExitCode> {
    build::run(project)?;

    let mut failed_steps = Vec::new();
    // A failed install fails the run but not the other tests: only the SDK tests need it, and
    // they say what is missing.
    eprintln!("xtask: == device SDKs for the end-to-end tests ==");
    let sdks = match sdks::install(project) {
        Ok(installed) => Some(installed),
        Err(err) => {
            eprintln!("xtask: {err:#}");
            failed_steps.push("install the device SDKs");
            None
        }
    };

    // gyre-domain's tests run its SQL on rusqlite: its dev-dependency on itself turns the
    // `rusqlite` feature on, so no flag is needed here.
    let mut domain = project.cargo();
    domain.args([
        "test",
        "--release",
        "-p",
        "gyre-domain",
        "-p",
        "gyre-component",
    ]);
    let mut host_and_tools = project.cargo();
    host_and_tools.args(["test", "--release"]);
    host_and_tools.args([
        "-p",
        "gyre-host",
        "-p",
        "gyre-ingest-bridge",
        "-p",
        "xtask",
        "-p",
        "gyre-loadgen",
    ]);
    let mut end_to_end = project.cargo();
    end_to_end.args(["test", "--release", "-p", "gyre-tests"]);
    if let Some(sdks) = &sdks {
        sdks.apply(&mut end_to_end);
    }
    let steps = [
        Step {
            name: "unit tests: gyre-domain, gyre-component",
            command: domain,
        },
        Step {
            name: "unit tests: gyre-host, gyre-ingest-bridge, xtask, gyre-loadgen",
            command: host_and_tools,
        },
        Step {
            name: "end-to-end tests: gyre-tests",
            command: end_to_end,
        },
    ];

    let mut total = Tally::default();
    for mut step in steps {
        eprintln!("xtask: == {} ==", step.name);
        match run_counting(&mut step.command) {
            Ok((tally, true)) => add(&mut total, &tally),
            Ok((tally, false)) => {
                add(&mut total, &tally);
                failed_steps.push(step.name);
            }
            Err(err) => {
                eprintln!("xtask: {err:#}");
                failed_steps.push(step.name);
            }
        }
    }

    if failed_steps.is_empty() {
        println!("xtask: {} passed, {} failed", total.passed, total.failed);
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "xtask: FAILED: {} ({} tests passed, {} failed)",
            failed_steps.join("; "),
            total.passed,
            total.failed
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Runs a `cargo test`, echoing its stdout while counting libtest's summary lines.
/// Returns the tally and whether the command succeeded.
fn run_counting(command: &mut Command) -> anyhow::Result<(Tally, bool)> {
    let shown = project::show(command);
    eprintln!("$ {shown}");
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let stdout = child
        .stdout
        .take()
        .context("child stdout was not captured")?;
    let mut tally = Tally::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.with_context(|| format!("reading the output of `{shown}`"))?;
        println!("{line}");
        if let Some(line_tally) = parse_test_result(&line) {
            add(&mut tally, &line_tally);
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{shown}`"))?;
    if !status.success() {
        eprintln!("xtask: `{shown}` failed ({status})");
    }
    Ok((tally, status.success()))
}

/// Reads `test result: ok. 12 passed; 0 failed; 0 ignored; ...`.
fn parse_test_result(line: &str) -> Option<Tally> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let mut tally = Tally::default();
    for part in rest.split(';') {
        let mut words = part.split_whitespace().rev();
        let (Some(label), Some(number)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(count) = number.parse::<u64>() else {
            continue;
        };
        match label {
            "passed" => tally.passed = count,
            "failed" => tally.failed = count,
            _ => {}
        }
    }
    Some(tally)
}

fn add(total: &mut Tally, tally: &Tally) {
    total.passed += tally.passed;
    total.failed += tally.failed;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summaries_are_counted() {
        let ok = "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(
            parse_test_result(ok),
            Some(Tally {
                passed: 12,
                failed: 0
            })
        );
        let failed =
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(
            parse_test_result(failed),
            Some(Tally {
                passed: 3,
                failed: 2
            })
        );
        assert_eq!(parse_test_result("running 12 tests"), None);
    }
}
