//! `keyhost gate build`: keyhost's whole check as one component for
//! `wasi:http/proxy` hosts (`wasmtime serve`, `jco serve`, Spin,
//! wasmCloud). A gate (gate/, built with keyhost and embedded in it) is
//! composed with a policy and a generated support component holding the
//! registry snapshot and the gate's settings; in middleware mode, also
//! with the app and the virtual HTTP types between them.
//!
//! - `support`: the generated support component;
//! - `compose`: the composition, with wac-graph;
//! - this file: what a build takes, and the label it leaves in the result
//!   for `keyhost policy inspect`.

mod compose;
mod support;

use anyhow::{Context, Result};
use keyhost_core::gate::{GateMode, GateSettings};
use serde::{Deserialize, Serialize};
use wasm_encoder::{ComponentSection, CustomSection, Encode};

use keyhost_core::snapshot::Snapshot;

pub use compose::{Behind, HANDLER, compose_floor};

/// The custom section that says what a built gate is.
pub const LABEL_SECTION: &str = "keyhost-gate";

/// What a built gate says about itself (`keyhost policy inspect`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GateLabel {
    /// The policy contract the gate speaks.
    pub contract: String,
    /// `reverse-proxy` or `middleware`.
    pub mode: String,
    /// The upstream, in reverse-proxy mode.
    pub upstream: Option<String>,
    /// The registry revision of its snapshot.
    pub revision: u64,
    /// How many keys its snapshot holds.
    pub keys: u64,
    /// The snapshot's size in bytes.
    pub snapshot_bytes: u64,
    /// The settings it was built with.
    pub settings: GateSettings,
}

/// A built gate.
pub struct BuiltGate {
    /// The composed component.
    pub wasm: Vec<u8>,
    /// What it says about itself.
    pub label: GateLabel,
}

/// Builds a gate around `snapshot` (a registry snapshot, as
/// `registry::snapshot_bytes` gives it) with `settings`, deciding with
/// `policy`, in front of `behind`.
pub fn build(
    snapshot: Vec<u8>,
    policy: &[u8],
    settings: GateSettings,
    behind: Behind<'_>,
) -> Result<BuiltGate> {
    let header = Snapshot::open(snapshot.as_slice())
        .context("the registry snapshot")?
        .header()
        .clone();
    let settings_json = serde_json::to_vec(&settings).expect("settings serialize");
    let support = support::component(&settings_json, &snapshot)?;
    let mut wasm = compose::compose(&support, policy, behind)?;
    let label = GateLabel {
        contract: crate::policy::contract::CONTRACT.to_string(),
        mode: match &settings.mode {
            GateMode::ReverseProxy(_) => "reverse-proxy".into(),
            GateMode::Middleware => "middleware".into(),
        },
        upstream: match &settings.mode {
            GateMode::ReverseProxy(upstream) => Some(upstream.url()),
            GateMode::Middleware => None,
        },
        revision: header.revision,
        keys: header.keys,
        snapshot_bytes: snapshot.len() as u64,
        settings,
    };
    let label_json = serde_json::to_vec(&label).expect("a label serializes");
    let section = CustomSection {
        name: LABEL_SECTION.into(),
        data: label_json.into(),
    };
    wasm.push(ComponentSection::id(&section));
    section.encode(&mut wasm);
    Ok(BuiltGate { wasm, label })
}

/// The label of a built gate, if `wasm` is one. Anything else, a file
/// that is not a component included, is not a gate: the policy checks say
/// what it is.
pub fn label_of(wasm: &[u8]) -> Result<Option<GateLabel>> {
    if !wasmparser::Parser::is_component(wasm) {
        return Ok(None);
    }
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else {
            return Ok(None);
        };
        if let wasmparser::Payload::CustomSection(section) = payload
            && section.name() == LABEL_SECTION
        {
            return Ok(Some(
                serde_json::from_slice(section.data()).context("a corrupt gate label")?,
            ));
        }
    }
    Ok(None)
}

/// The names a component imports and exports, read without compiling it.
pub fn outside_of(wasm: &[u8]) -> Result<(Vec<String>, Vec<String>)> {
    let mut types = wac_graph::types::Types::default();
    let package =
        wac_graph::types::Package::from_bytes("component", None, wasm.to_vec(), &mut types)?;
    let world = &types[package.ty()];
    Ok((
        world.imports.keys().cloned().collect(),
        world.exports.keys().cloned().collect(),
    ))
}
