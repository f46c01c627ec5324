//! Progress of long work: a bar on a terminal (indicatif, drawn on stderr
//! and hidden when stderr is not a terminal) and a line in the log when it
//! starts and ends. Only large work reports: a registry of more than
//! [`LARGE`] keys.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The number of keys from which building a snapshot reports progress.
pub const LARGE: usize = 100_000;

/// Whether bars may be drawn: not in a process that logs as it serves, where
/// a bar would be drawn over the log lines.
static BARS: AtomicBool = AtomicBool::new(true);

/// Draws no bar from now on; the log lines stay.
pub fn without_bars() {
    BARS.store(false, Ordering::Relaxed);
}

/// A bar drawn on stderr when it is a terminal and bars are drawn at all.
fn bar(bar: ProgressBar) -> ProgressBar {
    if !BARS.load(Ordering::Relaxed) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// One piece of work counted in keys.
pub struct Progress {
    what: &'static str,
    bar: ProgressBar,
    /// Whether the work is large enough to report.
    reports: bool,
    started: Instant,
}

impl Progress {
    /// Work on `total` keys, described by `what` ("making the registry
    /// snapshot"); reports nothing when `total` is not more than [`LARGE`].
    pub fn keys(what: &'static str, total: usize) -> Progress {
        let shown = (total > LARGE).then(|| {
            tracing::info!(keys = total, "{what}");
            let bar = bar(ProgressBar::new(total as u64));
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {human_pos}/{human_len} keys ({eta})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(what);
            bar
        });
        Progress::start(what, shown)
    }

    /// A spinner for work whose end cannot be counted (reading a file of
    /// `bytes` bytes), shown when the file is as large as a registry of
    /// [`LARGE`] keys usually is.
    pub fn reading(what: &'static str, bytes: u64) -> Progress {
        // About 400 bytes of TOML a key.
        let shown = (bytes > (LARGE as u64) * 400).then(|| {
            tracing::info!(bytes, "{what}");
            let bar = bar(ProgressBar::new_spinner());
            bar.set_message(format!("{what} ({} MB)", bytes >> 20));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress::start(what, shown)
    }

    /// Work that reports with `shown`, or silently without it.
    fn start(what: &'static str, shown: Option<ProgressBar>) -> Progress {
        Progress {
            what,
            reports: shown.is_some(),
            bar: shown.unwrap_or_else(ProgressBar::hidden),
            started: Instant::now(),
        }
    }

    /// How many keys are done.
    pub fn set(&self, done: usize) {
        self.bar.set_position(done as u64);
    }

    /// Ends the bar, and logs how long the work took when it reported.
    pub fn finish(self) {
        if self.reports {
            tracing::info!(
                seconds = format!("{:.1}", self.started.elapsed().as_secs_f64()),
                "{}: done",
                self.what
            );
        }
        self.bar.finish_and_clear();
    }
}
