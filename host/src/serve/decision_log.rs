//! The optional decision log: one JSON object per line. It never holds a
//! secret.

use std::fs::OpenOptions;
use std::io::{LineWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::check::{CheckRequest, Verdict};
use crate::time::Timestamp;

pub struct DecisionLog {
    out: Mutex<LineWriter<std::fs::File>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    time: String,
    key_id: Option<&'a str>,
    owner: Option<&'a str>,
    service: Option<&'a str>,
    scope: Option<&'a str>,
    ip: Option<&'a str>,
    method: Option<&'a str>,
    path: Option<&'a str>,
    decision: &'static str,
    code: Option<&'static str>,
    latency_us: u128,
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
            service: request.service.as_deref(),
            scope: request.scope.as_deref(),
            ip: request.source_ip.as_deref(),
            method: request.method.as_deref(),
            path: request.path.as_deref(),
            decision: if verdict.is_allow() { "allow" } else { "deny" },
            code: verdict.code(),
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
