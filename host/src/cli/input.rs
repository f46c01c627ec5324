//! Reading the presented key: from `KEYHOST_KEY`, else one line of stdin.
//! Never from the command line, where other users could read it.

use std::io::{BufRead, Read};

use anyhow::{Result, bail};
use zeroize::Zeroizing;

/// Longer input than this is not a key.
const MAX_KEY_BYTES: usize = 4096;

/// The presented key. Surrounding whitespace (a trailing newline, spaces) is
/// trimmed.
pub fn read_presented_key() -> Result<Zeroizing<String>> {
    let raw = match std::env::var_os("KEYHOST_KEY") {
        Some(value) => {
            let Some(text) = value.to_str() else {
                bail!("KEYHOST_KEY is not valid UTF-8");
            };
            Zeroizing::new(text.to_string())
        }
        None => read_stdin_line()?,
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        bail!("no key given: pass it on stdin (one line) or in KEYHOST_KEY");
    }
    Ok(Zeroizing::new(trimmed.to_string()))
}

/// The first line of stdin, read up to its newline and no further: a
/// terminal or a pipe that stays open is not waited on past it.
fn read_stdin_line() -> Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(256));
    std::io::stdin()
        .lock()
        .take(MAX_KEY_BYTES as u64 + 1)
        .read_until(b'\n', &mut bytes)?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if bytes.len() > MAX_KEY_BYTES {
        bail!("the key on stdin (its first line) is longer than {MAX_KEY_BYTES} bytes");
    }
    match std::str::from_utf8(&bytes) {
        Ok(line) => Ok(Zeroizing::new(line.to_string())),
        Err(_) => bail!("the key on stdin is not valid UTF-8"),
    }
}
