//! What keyhost's proxy filters share, whatever their host's ABI
//! (proxy-wasm for Envoy, http-wasm for Traefik): their configuration, the
//! snapshot and policy they hold, and one request checked. Those hosts load
//! core modules, not components, so the policy is compiled in: a Rust
//! policy built against `plugin/sdk` with the SDK's filter feature.
//!
//! - `config`: the filter's JSON configuration, refused with a clear error
//!   that never quotes it;
//! - `policy`: what the filter asks about a key;
//! - `held`: the snapshot in force and the policy configured for it;
//! - `live`: fetching snapshots from `keyhost serve`.

pub mod config;
pub mod held;
pub mod live;
pub mod policy;

pub use config::{FilterConfig, RegistrySource};
pub use held::{Held, Outcome};
pub use policy::Policy;
