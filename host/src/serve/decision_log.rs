//! The optional decision log: one JSON object per line, for every decision,
//! with or without a key. It never holds a secret: anything shaped like a key
//! in what the client sent (a path with `?api_key=…`, say) is redacted.

use std::fs::OpenOptions;
use std::io::{LineWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::check::CheckRequest;
use crate::key_format;
use crate::time::Timestamp;
use crate::verdict::Verdict;

pub struct DecisionLog {
    out: Mutex<LineWriter<std::fs::File>>,
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
        Ok(DecisionLog {
            out: Mutex::new(LineWriter::new(file)),
        })
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
        let mut out = self.out.lock().expect("decision log lock");
        if let Err(e) = out.write_all(&line) {
            tracing::warn!("cannot write the decision log: {e}");
        }
    }
}
