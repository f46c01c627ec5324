//! The `keyhost` command: parses arguments, runs a command, prints its
//! report as text or as one JSON object, and exits 0, 1 or 2.

mod args;
mod check;
mod commands;
mod export;
mod gate;
mod input;
mod policy;
mod policy_config;
mod policy_new;
mod snapshot;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use serde_json::{Value, json};
use tracing::Level;

pub use args::Cli;

use crate::key_format;
use crate::lifecycle::LifecycleError;

/// Success, or an allow.
pub const EXIT_OK: u8 = 0;
/// A denial, or a refusal by a rule.
pub const EXIT_DENIED: u8 = 1;
/// An error: bad usage, a bad registry, an unknown id, a bad policy.
pub const EXIT_ERROR: u8 = 2;

/// What a command has to say.
pub struct Report {
    /// The `--json` output.
    pub json: Value,
    /// The text output, for stdout.
    pub text: String,
    /// A note for people, for stderr in text mode.
    pub note: Option<String>,
    /// The process's exit code.
    pub exit: u8,
}

impl Report {
    /// A report printed as `text`, or as `json` with `--json`; exit 0.
    pub fn new(json: Value, text: impl Into<String>) -> Report {
        Report {
            json,
            text: text.into(),
            note: None,
            exit: EXIT_OK,
        }
    }

    /// Adds a line for stderr (not part of the JSON).
    pub fn with_note(mut self, note: impl Into<String>) -> Report {
        self.note = Some(note.into());
        self
    }

    /// Sets the exit code.
    pub fn with_exit(mut self, exit: u8) -> Report {
        self.exit = exit;
        self
    }
}

/// Runs keyhost with the process's arguments.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    init_logging(if matches!(cli.command, args::Command::Serve(_)) {
        Level::INFO
    } else {
        Level::WARN
    });
    let json = cli.json;
    let report = commands::run(cli).unwrap_or_else(|error| error_report(&error));
    let mut stdout = std::io::stdout().lock();
    let printed = if json {
        writeln!(stdout, "{}", report.json)
    } else if report.text.is_empty() {
        Ok(())
    } else {
        writeln!(stdout, "{}", report.text)
    };
    if let Some(note) = &report.note {
        eprintln!("{note}");
    }
    if printed.is_err() {
        return ExitCode::from(EXIT_ERROR);
    }
    ExitCode::from(report.exit)
}

/// clap's own message, with anything shaped like a key redacted: a key put
/// on the command line by mistake must not be echoed into logs.
fn usage_error(error: clap::Error) -> ExitCode {
    let rendered = key_format::redact(&error.render().to_string());
    let code = if error.use_stderr() {
        eprint!("{rendered}");
        if rendered.contains("<redacted key>") {
            eprintln!(
                "keyhost never takes a key as an argument: pass it on stdin or in KEYHOST_KEY."
            );
        }
        // As OS strings: an argument that is not UTF-8 is what clap is
        // refusing here, and `env::args` would panic on it.
        if std::env::args_os().any(|arg| arg == "--json") {
            // The message and its details (which argument, which value), up
            // to the usage line that follows a blank line.
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            println!(
                "{}",
                json!({ "error": { "kind": "usage", "message": message.join(" ") } })
            );
        }
        EXIT_ERROR
    } else {
        print!("{rendered}");
        EXIT_OK
    };
    ExitCode::from(code)
}

/// Errors go to stderr; with `--json` they are also the one JSON object.
fn error_report(error: &anyhow::Error) -> Report {
    let (kind, exit) = match error.downcast_ref::<LifecycleError>() {
        Some(LifecycleError::Refused(_)) => ("refused", EXIT_DENIED),
        // Another writer changed the record first: refused like a rule.
        Some(LifecycleError::Stale { .. }) => ("stale", EXIT_DENIED),
        _ => ("error", EXIT_ERROR),
    };
    // An id or a field may be a secret pasted in the wrong place.
    let message = key_format::redact(&format!("{error:#}"));
    Report {
        json: json!({ "error": { "kind": kind, "message": message } }),
        text: String::new(),
        note: Some(format!("keyhost: {kind}: {message}")),
        exit,
    }
}

/// Logs go to stderr; `KEYHOST_LOG` sets the filter (default `warn`, or
/// `info` for `serve`).
fn init_logging(default: Level) {
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match tracing_subscriber::EnvFilter::try_from_env("KEYHOST_LOG") {
        Ok(filter) => logs.with_env_filter(filter).init(),
        // A plain level: the directive parser compiles regular expressions,
        // about 0.1 ms of every short command's start.
        Err(_) => logs.with_max_level(default).init(),
    }
}
