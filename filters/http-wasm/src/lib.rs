//! keyhost's check inside an http-wasm host (Traefik). The snapshot comes
//! inline in the middleware's configuration (`keyhost export traefik`
//! writes it); Traefik reloads that file when it changes, and so a new
//! plugin instance takes the new snapshot.
//!
//! A policy crate becomes a plugin through the SDK: `plugin/sdk`'s
//! `http-wasm` feature turns its `export!` into [`export!`].

use std::cell::RefCell;
use std::rc::Rc;

use http_wasm_guest::host::{Request, Response, admin, log};
use http_wasm_guest::{Guest, register};
use keyhost_core::http;
use keyhost_core::request::{self, Checking, Seen};
use keyhost_filter::config::inline_snapshot;
use keyhost_filter::{FilterConfig, Held, Outcome, Policy, RegistrySource};

pub use http_wasm_guest;

/// http-wasm's log levels.
const WARN: i32 = 1;
const ERROR: i32 = 2;

/// The plugin: its configuration, or why it has none.
struct Plugin<P> {
    configured: Result<Configured<P>, String>,
}

/// A plugin's settings and what it holds.
struct Configured<P> {
    checking: Checking,
    /// Whether Traefik's word for the peer (the connection's) is the
    /// client's address; yes unless the settings say otherwise.
    trust_source_address: bool,
    held: RefCell<Held<P>>,
}

/// Starts the plugin around policy `P`: reads the configuration and the
/// snapshot in it once, at instantiation. A configuration that cannot be
/// used is logged, and every request fails closed.
pub fn start<P: Policy + Default + 'static>() {
    let configured = configure::<P>(&admin::config());
    if let Err(why) = &configured {
        log::write(ERROR, format!("keyhost: {why}").as_bytes());
    }
    register(Plugin { configured });
}

fn configure<P: Policy + Default>(bytes: &[u8]) -> Result<Configured<P>, String> {
    let config = FilterConfig::parse(bytes)?;
    let RegistrySource::Inline(base64) = config.registry else {
        return Err("`registry.live` is for proxy-wasm hosts; give an http-wasm plugin `registry.inline` (`keyhost export traefik`)".into());
    };
    let snapshot = inline_snapshot(&base64).map_err(|e| format!("`registry.inline`: {e}"))?;
    let mut held = Held::new(P::default());
    held.replace(snapshot);
    Ok(Configured {
        checking: config.checking,
        trust_source_address: config.trust_source_address.unwrap_or(true),
        held: RefCell::new(held),
    })
}

impl<P: Policy> Guest for Plugin<P> {
    fn handle_request(&self, request: &Request, response: &Response) -> (bool, i32) {
        let outcome = match &self.configured {
            Err(_) => Outcome::Deny {
                refusal: Rc::new(request::cannot_decide()),
                log: None,
            },
            Ok(Configured {
                checking,
                trust_source_address,
                held,
            }) => {
                // The headers that matter to the check, and no others:
                // every line (as bytes) of those it reads (the key's and
                // the client address's), and the names of those it removes
                // (keyhost's and a key's, in any spelling). A value costs
                // Traefik a call, and the other headers are not copied at
                // all. A value that is not UTF-8 is not read.
                let mut headers = Vec::new();
                for name in request.header.names() {
                    let name = String::from_utf8_lossy(&name);
                    let reads = checking.reads(&name);
                    if !reads && !http::is_identity_header(&name) && !checking.is_key_header(&name)
                    {
                        continue;
                    }
                    let name = name.into_owned();
                    if !reads {
                        headers.push((name, Vec::new()));
                        continue;
                    }
                    for value in request.header.values(name.as_bytes()) {
                        headers.push((name.clone(), value.to_vec()));
                    }
                }
                let text =
                    |bytes: http_wasm_guest::host::Bytes| String::from_utf8(bytes.to_vec()).ok();
                let method = text(request.method());
                let uri = text(request.uri());
                // The peer Traefik took the request from.
                let peer = trust_source_address
                    .then(|| text(request.source_addr()))
                    .flatten();
                let seen = Seen {
                    headers: &headers,
                    method: method.as_deref(),
                    path: uri.as_deref(),
                    peer: peer.as_deref(),
                    now: None,
                };
                held.borrow_mut().check(checking, seen)
            }
        };
        match outcome {
            Outcome::Allow { remove, add } => {
                for name in &remove {
                    request.header.remove(name.as_bytes());
                }
                for (name, value) in add.iter() {
                    request.header.set(name.as_bytes(), value.as_bytes());
                }
                (true, 0)
            }
            Outcome::Deny { refusal, log: why } => {
                if let Some(why) = why {
                    log::write(WARN, format!("keyhost: {why}").as_bytes());
                }
                for (name, value) in &refusal.headers {
                    response.header.set(name.as_bytes(), value.as_bytes());
                }
                response.set_status(i32::from(refusal.status));
                response.body.write(refusal.body.as_bytes());
                (false, 0)
            }
        }
    }
}

/// Makes this module an http-wasm plugin around policy `$policy`: its
/// `_initialize` (which Traefik runs at instantiation) starts it.
#[macro_export]
macro_rules! export {
    ($policy:ty) => {
        #[cfg(target_os = "wasi")]
        unsafe extern "C" {
            fn __wasm_call_ctors();
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn _initialize() {
            #[cfg(target_os = "wasi")]
            unsafe {
                __wasm_call_ctors();
            }
            $crate::start::<$policy>();
        }
    };
}
