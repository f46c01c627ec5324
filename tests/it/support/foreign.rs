//! The Python and npm tools that `tests/foreign/setup.sh` installs, for the
//! tests that run keyhost's output in hosts and libraries that are not its own.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::root;

/// Where the tools are installed.
pub fn foreign() -> PathBuf {
    root().join("target").join("foreign")
}

/// Runs a set-up or build step, failing the test with its output.
pub fn step(command: &mut Command) -> std::process::Output {
    let output = command.output().expect("start a set-up step");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Installs the Python and npm tools, once per test process.
pub fn tools() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        step(&mut Command::new(root().join("tests/foreign/setup.sh")));
    });
}

/// The venv's Python.
pub fn python() -> Command {
    tools();
    Command::new(foreign().join("venv/bin/python"))
}
