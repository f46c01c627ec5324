//! The composition, with wac-graph: the support component feeds the policy
//! and the gate; the policy's `validator` interface feeds the gate; the
//! gate's `wasi:http/incoming-handler` is the one export. Whatever else
//! they import (`wasi:http`, `wasi:io`, clocks, random, stdout) is left to
//! the proxy host.

use anyhow::{Context, Result, anyhow, bail};
use wac_graph::types::{ItemKind, Package, are_semver_compatible};
use wac_graph::{CompositionGraph, EncodeOptions, NodeId, PackageId};

/// The gate's export, which the composed component exports.
pub const HANDLER: &str = "wasi:http/incoming-handler@0.2.12";
/// The gates, as built with this keyhost (gate/).
const PROXY_GATE: &[u8] = include_bytes!(concat!(
    env!("KEYHOST_POLICY_DIR"),
    "/keyhost_gate_proxy.wasm"
));
const MIDDLEWARE_GATE: &[u8] = include_bytes!(concat!(
    env!("KEYHOST_POLICY_DIR"),
    "/keyhost_gate_middleware.wasm"
));
/// The virtual HTTP types for the app behind a middleware gate.
const VIRT: &[u8] = include_bytes!(concat!(
    env!("KEYHOST_POLICY_DIR"),
    "/keyhost_gate_virt.wasm"
));
/// What the virt component exports to the app, and to the gate.
const APP_TYPES: &str = "keyhost:app-http/types@0.2.0";
const APP_OUTGOING: &str = "keyhost:app-http/outgoing-handler@0.2.0";
const HAND_ON: &str = "keyhost:gate/hand-on@0.1.0";
/// The app's handler, as the middleware gate imports it.
const APP_HANDLER: &str = "keyhost:app-http/incoming-handler@0.2.0";
/// What the app exports and imports, in any `wasi:http` 0.2 version.
const APP_EXPORT: &str = "wasi:http/incoming-handler@0.2";
const APP_IMPORTS: [(&str, &str); 2] = [
    ("wasi:http/types@0.2", APP_TYPES),
    ("wasi:http/outgoing-handler@0.2", APP_OUTGOING),
];

/// The snapshot and settings, which the support component exports.
const DATA: &str = "keyhost:gate/data@0.1.0";
/// What a policy may import: what keyhost's own sandbox gives it (WASI's
/// streams, clocks, randomness, stdio) and what the support component
/// stands in for (the rest of `wasi:cli`, files and sockets, which trap).
/// No network, and not the gate's data.
const POLICY_MAY_IMPORT: [&str; 7] = [
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "keyhost:policy/types@",
];
/// The `wasi:http/proxy` world, which every proxy host provides: all a
/// built gate may import.
pub const PROXY_WORLD: [&str; 11] = [
    "wasi:io/poll",
    "wasi:io/error",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// The contract's types, which the support component exports.
const POLICY_TYPES: &str = "keyhost:policy/types@0.2.0";
/// The contract's interface, which the policy exports and the gate imports.
const POLICY_VALIDATOR: &str = "keyhost:policy/validator@0.2.0";

/// What a gate hands allowed requests on to.
pub enum Behind<'a> {
    /// The upstream in its settings: the reverse-proxy gate alone.
    Upstream,
    /// This app component, behind the middleware gate and the virtual
    /// HTTP types.
    App(&'a [u8]),
}

/// The gate for `behind`, the support component and the policy, composed
/// into one component.
pub fn compose(support: &[u8], policy: &[u8], behind: Behind<'_>) -> Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let support = register(&mut graph, "keyhost:support", support)?;
    let policy_package = register(&mut graph, "keyhost:policy", policy)
        .context("the policy is not a WebAssembly component")?;
    let validator = check_contract(&graph, policy_package)?;
    let gate_wasm = match behind {
        Behind::Upstream => PROXY_GATE,
        Behind::App(_) => MIDDLEWARE_GATE,
    };
    let gate = register(&mut graph, "keyhost:gate", gate_wasm)?;

    let support_instance = graph.instantiate(support);
    let policy = graph.instantiate(policy_package);
    let gate_instance = graph.instantiate(gate);
    for instance in [policy, gate_instance] {
        plug(&mut graph, support, support_instance, instance)?;
    }
    let export = graph.alias_instance_export(policy, &validator)?;
    graph
        .set_instantiation_argument(gate_instance, POLICY_VALIDATOR, export)
        .map_err(|e| {
            anyhow!("the policy's `{validator}` does not match {POLICY_VALIDATOR}: {e}")
        })?;
    if let Behind::App(app) = behind {
        put_app_behind(
            &mut graph,
            Some((support, support_instance)),
            gate_instance,
            app,
        )?;
    }
    let handler = graph.alias_instance_export(gate_instance, HANDLER)?;
    graph.export(handler, HANDLER)?;
    let composed = graph
        .encode(EncodeOptions::default())
        .context("encoding the composed gate")?;
    // What any proxy host runs: refuse a gate that would need more.
    let (imports, _) = super::outside_of(&composed)?;
    if let Some(outside) = imports
        .iter()
        .find(|name| !PROXY_WORLD.contains(&name.split('@').next().unwrap_or(name)))
    {
        bail!(
            "the composed gate would import {outside}, outside the wasi:http/proxy world that proxy hosts provide (the app or the policy asks for it)"
        );
    }
    Ok(composed)
}

/// `middleware`, a component that checks nothing, in front of `app`, with
/// no support component, policy or snapshot: the floor of the gate's speed
/// rows (`bench/run.sh gate`). A middleware of the gate's `middleware`
/// world reaches the app through the same virtual HTTP types (what any gate
/// that adds headers costs its host); one that imports
/// `wasi:http/incoming-handler` itself is handed the app's handler
/// directly (what composing anything in front of an app costs). What they
/// leave unsatisfied (Rust std's `wasi:cli`) is the host's to give
/// (`wasmtime serve -S cli`).
pub fn compose_floor(middleware: &[u8], app: &[u8]) -> Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let package = register(&mut graph, "keyhost:gate", middleware)
        .context("the middleware is not a WebAssembly component")?;
    let gate = graph.instantiate(package);
    let direct = graph.types()[graph[package].ty()]
        .imports
        .keys()
        .find(|name| is_version_of(name, APP_EXPORT))
        .cloned();
    match direct {
        None => put_app_behind(&mut graph, None, gate, app)?,
        Some(import) => {
            let app = register(&mut graph, "keyhost:app", app)?;
            let export = graph.types()[graph[app].ty()]
                .exports
                .keys()
                .find(|name| is_version_of(name, APP_EXPORT))
                .cloned()
                .context("the app does not export wasi:http/incoming-handler@0.2")?;
            let app = graph.instantiate(app);
            let handler = graph.alias_instance_export(app, &export)?;
            graph.set_instantiation_argument(gate, &import, handler)?;
        }
    }
    let handler = graph.alias_instance_export(gate, HANDLER)?;
    graph.export(handler, HANDLER)?;
    graph
        .encode(EncodeOptions::default())
        .context("encoding the composed floor")
}

/// The policy's contract: what it imports, the version of the types it
/// speaks, and the name of its `validator` export, which the gate imports.
fn check_contract(graph: &CompositionGraph, policy: PackageId) -> Result<String> {
    let world = &graph.types()[graph[policy].ty()];
    if let Some((import, _)) = world.imports.iter().find(|(name, kind)| {
        !matches!(kind, ItemKind::Type(_))
            && !POLICY_MAY_IMPORT
                .iter()
                .any(|allowed| name.starts_with(allowed))
    }) {
        bail!(
            "the policy imports {import}, which a gate does not give a policy (a policy gets no network and no data but its arguments)"
        );
    }
    if let Some(other) = world.imports.keys().find(|name| {
        name.starts_with("keyhost:policy/") && !are_semver_compatible(name, POLICY_TYPES)
    }) {
        bail!(
            "the policy speaks another contract ({other}); a gate composes keyhost:policy@0.2 policies: rebuild it against keyhost's wit/ (keyhost check and serve still load it)"
        );
    }
    let exports = || world.exports.keys().cloned().collect::<Vec<_>>().join(", ");
    match world
        .exports
        .keys()
        .find(|name| are_semver_compatible(name, POLICY_VALIDATOR))
    {
        Some(validator) => Ok(validator.clone()),
        None if world.exports.contains_key("validate") => bail!(
            "the policy exports `configure` and `validate` as keyhost:policy@0.1 did; a gate composes keyhost:policy@0.2 policies, which export {POLICY_VALIDATOR}: rebuild it against keyhost's wit/ (keyhost check and serve still load it)"
        ),
        None => bail!(
            "the policy does not export {POLICY_VALIDATOR}: it is not a keyhost:policy@0.2 component (it exports {})",
            exports()
        ),
    }
}

/// The virtual HTTP types between the gate and `app`: the gate hands
/// requests on through them, and the app takes its HTTP types from them.
/// What the support component (when there is one) exports is plugged into
/// both.
fn put_app_behind(
    graph: &mut CompositionGraph,
    support: Option<(PackageId, NodeId)>,
    gate: NodeId,
    app: &[u8],
) -> Result<()> {
    let app_package =
        register(graph, "keyhost:app", app).context("the app is not a WebAssembly component")?;
    let app_world = &graph.types()[graph[app_package].ty()];
    let Some(app_handler) = app_world
        .exports
        .keys()
        .find(|name| is_version_of(name, APP_EXPORT))
        .cloned()
    else {
        bail!(
            "the app does not export wasi:http/incoming-handler@0.2 (it exports {})",
            app_world
                .exports
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let app_http_imports: Vec<String> = app_world
        .imports
        .keys()
        .filter(|name| name.starts_with("wasi:http/"))
        .cloned()
        .collect();

    let virt_package = register(graph, "keyhost:virt", VIRT)?;
    let virt = graph.instantiate(virt_package);
    let app = graph.instantiate(app_package);
    if let Some((support, support_instance)) = support {
        for instance in [virt, app] {
            plug(graph, support, support_instance, instance)?;
        }
    }
    for import in &app_http_imports {
        let Some((_, export)) = APP_IMPORTS
            .into_iter()
            .find(|(wasi, _)| is_version_of(import, wasi))
        else {
            bail!("the app imports {import}, which a gate cannot give it");
        };
        let node = graph.alias_instance_export(virt, export)?;
        graph
            .set_instantiation_argument(app, import, node)
            .with_context(|| format!("giving the app its {import}"))?;
    }
    // The gate reaches the app's types through `hand-on`; it imports them
    // by name only if its build kept that import.
    let gate_package = graph[gate].package().expect("an instantiation");
    for name in [HAND_ON, APP_TYPES] {
        if graph.types()[graph[gate_package].ty()]
            .imports
            .contains_key(name)
        {
            let node = graph.alias_instance_export(virt, name)?;
            graph.set_instantiation_argument(gate, name, node)?;
        }
    }
    let handler = graph.alias_instance_export(app, &app_handler)?;
    graph
        .set_instantiation_argument(gate, APP_HANDLER, handler)
        .context("the app's wasi:http/incoming-handler does not match the gate's")?;
    Ok(())
}

/// Whether `name` is `prefix` (`...@0.2`) in some version: `...@0.2.6`.
fn is_version_of(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
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
    // The snapshot and settings are the gate's alone: a policy or an app
    // that asks for them is left unsatisfied, and the build refuses it.
    let is_gate = graph[instance].package()
        == graph
            .get_package_by_name("keyhost:gate", None)
            .map(|(id, _)| id);
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
            .filter(|export| is_gate || export.as_str() != DATA)
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

#[cfg(test)]
mod tests {
    use super::*;
    use wac_graph::PlugError;

    const V0_1_POLICY: &[u8] = include_bytes!(concat!(
        env!("KEYHOST_POLICY_DIR"),
        "/keyhost_policy_default_v0_1.wasm"
    ));

    /// `wac plug POLICY GATE`, as wac's own CLI does it: every export of
    /// the policy that a gate import takes by name.
    fn plug(policy: &[u8]) -> Result<Vec<String>, PlugError> {
        let mut graph = CompositionGraph::new();
        let policy = register(&mut graph, "keyhost:policy", policy).unwrap();
        let gate = register(&mut graph, "keyhost:gate", PROXY_GATE).unwrap();
        wac_graph::plug(&mut graph, vec![policy], gate)?;
        let composed = graph.encode(EncodeOptions::default()).unwrap();
        Ok(super::super::outside_of(&composed).unwrap().0)
    }

    #[test]
    fn wac_plug_wires_a_0_2_policy_into_a_component_that_imports_the_validator() {
        let imports = plug(crate::policy::DEFAULT_POLICY).expect("the validator plugs in");
        assert!(
            !imports
                .iter()
                .any(|name| name.starts_with("keyhost:policy/validator")),
            "the gate still imports the validator: {imports:?}"
        );
        // 0.1 exported bare functions, which no interface import takes.
        assert!(matches!(plug(V0_1_POLICY), Err(PlugError::NoPlugHappened)));
    }
}
