//! The optional decision log: one JSON object per line, for every decision,
//! with or without a key. It never holds a secret: anything shaped like a key
//! in what the client sent (a path with `?api_key=…`, say) is redacted.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use crate::check::CheckRequest;
use crate::key_format;
use crate::time::Timestamp;
use crate::verdict::Verdict;

/// The most bytes of lines waiting for the writer; past it, lines are
/// dropped and counted rather than letting memory grow while the disk
/// lags.
const MAX_PENDING: usize = 16 << 20;
/// How often the writer writes what is waiting.
const WRITE_EVERY: Duration = Duration::from_millis(10);

/// Lines wait in a buffer that a writer thread empties every
/// [`WRITE_EVERY`]. A write under a lock per check held serve /auth with
/// the log on at 88% of the rate without it, and a writer woken per line
/// (a channel) at 72%; appending to a buffer costs a check no system call.
pub struct DecisionLog {
    pending: Arc<Mutex<Vec<u8>>>,
    /// Lines dropped because the writer was that far behind.
    dropped: Counter,
    /// Told to write what is left, and stop.
    writer: Mutex<Option<(SyncSender<()>, JoinHandle<()>)>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    time: String,
    key_id: Option<&'a str>,
    owner: Option<&'a str>,
    service: Option<String>,
    scope: Option<String>,
    ip: Option<String>,
    method: Option<String>,
    path: Option<String>,
    decision: &'static str,
    code: Option<&'static str>,
    /// What the policy added to an allow.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    info: &'a [(String, String)],
    latency_us: u128,
}

/// A client-sent value as the log may hold it.
fn redacted(value: &Option<String>) -> Option<String> {
    value.as_deref().map(key_format::redact)
}

impl DecisionLog {
    pub fn open(path: &Path) -> Result<DecisionLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot open decision log {}", path.display()))?;
        let pending = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = sync_channel(1);
        let taken = pending.clone();
        let writer = std::thread::Builder::new()
            .name("keyhost-decisions".into())
            .spawn(move || write_lines(BufWriter::new(file), &taken, &stopped))
            .context("cannot start the decision log's writer")?;
        Ok(DecisionLog {
            pending,
            dropped: Counter::default(),
            writer: Mutex::new(Some((stop, writer))),
        })
    }

    /// Counts the lines dropped under overload, for `/metrics`.
    pub fn dropped(&self) -> Counter {
        self.dropped.clone()
    }

    /// Writes every line queued so far and stops the writer; at shutdown,
    /// so that no decision made is lost.
    pub fn close(&self) {
        let Some((stop, writer)) = self.writer.lock().expect("writer lock").take() else {
            return;
        };
        if stop.send(()).is_ok() {
            let _ = writer.join();
        }
        let dropped = self.dropped.get();
        if dropped > 0 {
            tracing::warn!("the decision log dropped {dropped} lines while its writer was behind");
        }
    }

    pub fn record(&self, request: &CheckRequest, verdict: &Verdict, took: Duration) {
        let key = verdict.key();
        let entry = Entry {
            time: Timestamp::now().to_string(),
            key_id: key.map(|k| k.key_id.as_str()),
            owner: key.map(|k| k.owner.as_str()),
            service: redacted(&request.service),
            scope: redacted(&request.scope),
            ip: redacted(&request.source_ip),
            method: redacted(&request.method),
            path: redacted(&request.path),
            decision: if verdict.is_allow() { "allow" } else { "deny" },
            code: verdict.code(),
            info: verdict.info(),
            latency_us: took.as_micros(),
        };
        let mut line = serde_json::to_vec(&entry).expect("entries serialize");
        line.push(b'\n');
        let mut pending = self.pending.lock().expect("decision log lock");
        if pending.len() + line.len() > MAX_PENDING {
            drop(pending);
            self.dropped.inc();
            return;
        }
        pending.extend_from_slice(&line);
    }
}

/// The writer: every [`WRITE_EVERY`], and once more when told to stop,
/// writes the lines waiting.
fn write_lines(mut out: BufWriter<std::fs::File>, pending: &Mutex<Vec<u8>>, stop: &Receiver<()>) {
    let mut taken = Vec::new();
    loop {
        let stopping = !matches!(
            stop.recv_timeout(WRITE_EVERY),
            Err(RecvTimeoutError::Timeout)
        );
        std::mem::swap(&mut taken, &mut *pending.lock().expect("decision log lock"));
        if !taken.is_empty() {
            if let Err(e) = out.write_all(&taken).and_then(|()| out.flush()) {
                tracing::warn!("cannot write the decision log: {e}");
            }
            taken.clear();
        }
        if stopping {
            return;
        }
    }
}
