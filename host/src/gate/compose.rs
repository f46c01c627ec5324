//! The composition, with wac-graph: the support component feeds the policy
//! and the gate; the policy's `configure` and `validate` feed the gate; the
//! gate's `wasi:http/incoming-handler` is the one export. Whatever else
//! they import (`wasi:http`, `wasi:io`, clocks, random, stdout) is left to
//! the proxy host.

use anyhow::{Context, Result, anyhow, bail};
use wac_graph::types::{ItemKind, Package, are_semver_compatible};
use wac_graph::{CompositionGraph, EncodeOptions, NodeId, PackageId};

/// The gate's export, which the composed component exports.
pub const HANDLER: &str = "wasi:http/incoming-handler@0.2.12";
/// The contract's types, which the support component exports.
const POLICY_TYPES: &str = "keyhost:policy/types@0.1.0";
/// The contract functions the gate imports from the policy.
const POLICY_FUNCTIONS: [&str; 2] = ["configure", "validate"];

/// The three components, composed into one.
pub fn compose(support: &[u8], policy: &[u8], gate: &[u8]) -> Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let support = register(&mut graph, "keyhost:support", support)?;
    let policy_package = register(&mut graph, "keyhost:policy", policy)
        .context("the policy is not a WebAssembly component")?;
    let gate = register(&mut graph, "keyhost:gate", gate)?;

    let policy_exports: Vec<String> = graph.types()[graph[policy_package].ty()]
        .exports
        .keys()
        .cloned()
        .collect();
    for name in POLICY_FUNCTIONS {
        if !policy_exports.iter().any(|export| export == name) {
            bail!(
                "the policy does not export `{name}`: it is not a keyhost:policy@0.1.0 component (it exports {})",
                policy_exports.join(", ")
            );
        }
    }

    let support_instance = graph.instantiate(support);
    let policy = graph.instantiate(policy_package);
    let gate_instance = graph.instantiate(gate);
    for instance in [policy, gate_instance] {
        plug(&mut graph, support, support_instance, instance)?;
    }
    for name in POLICY_FUNCTIONS {
        let export = graph.alias_instance_export(policy, name)?;
        graph
            .set_instantiation_argument(gate_instance, name, export)
            .map_err(|e| {
                anyhow!("the policy's `{name}` does not match keyhost:policy@0.1.0: {e}")
            })?;
    }
    let handler = graph.alias_instance_export(gate_instance, HANDLER)?;
    graph.export(handler, HANDLER)?;
    graph
        .encode(EncodeOptions::default())
        .context("encoding the composed gate")
}

fn register(graph: &mut CompositionGraph, name: &str, bytes: &[u8]) -> Result<PackageId> {
    let package = Package::from_bytes(name, None, bytes.to_vec(), graph.types_mut())?;
    Ok(graph.register_package(package)?)
}

/// Every import of `instance` that an export of `support` satisfies (by
/// name, or by a semver-compatible version of it: a policy built against
/// `wasi:cli@0.2.6` takes the support's `0.2.12`).
fn plug(
    graph: &mut CompositionGraph,
    support: PackageId,
    support_instance: NodeId,
    instance: NodeId,
) -> Result<()> {
    let package = graph[instance].package().expect("an instantiation");
    let exports: Vec<String> = graph.types()[graph[support].ty()]
        .exports
        .keys()
        .cloned()
        .collect();
    let imports: Vec<(String, ItemKind)> = graph.types()[graph[package].ty()]
        .imports
        .iter()
        .map(|(name, kind)| (name.clone(), *kind))
        .collect();
    for (import, kind) in &imports {
        // A world-level `use` of the contract's types (`identity`,
        // `decision`, ...) is a type import of its own: it is given the
        // support's types too, or the proxy host would be asked for it.
        if let ItemKind::Type(_) = kind {
            let types = graph.alias_instance_export(support_instance, POLICY_TYPES)?;
            let node = graph
                .alias_instance_export(types, import)
                .with_context(|| format!("the contract has no type `{import}`"))?;
            graph.set_instantiation_argument(instance, import, node)?;
            continue;
        }
        let Some(export) = exports
            .iter()
            .find(|export| *export == import || are_semver_compatible(export, import))
        else {
            continue;
        };
        let node = graph.alias_instance_export(support_instance, export)?;
        graph
            .set_instantiation_argument(instance, import, node)
            .with_context(|| format!("plugging `{export}` into `{import}`"))?;
    }
    Ok(())
}
