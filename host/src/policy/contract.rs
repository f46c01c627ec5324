//! What a component declares about itself: the version of the keyhost:policy
//! contract it was built against, its imports and its exports. keyhost reads
//! this before linking, so a component of another major version is refused
//! with that reason rather than a type mismatch, and `keyhost policy inspect`
//! prints it.

use anyhow::{Result, bail};
use semver::{Version, VersionReq};
use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::{ComponentExtern, ComponentItem};

/// The contract this keyhost speaks, from `wit/policy.wit` (set by build.rs).
pub const CONTRACT: &str = env!("KEYHOST_CONTRACT");

/// The WIT package of the contract, without a version.
pub const CONTRACT_PACKAGE: &str = "keyhost:policy";

/// The version part of [`CONTRACT`].
pub fn contract_version() -> Version {
    let (_, version) = CONTRACT
        .split_once('@')
        .expect("KEYHOST_CONTRACT is package@version");
    Version::parse(version).expect("wit/policy.wit has a semver version")
}

/// One import or export of a component.
#[derive(Clone, Debug, Serialize)]
pub struct Item {
    /// Its name.
    pub name: String,
    /// `func`, `instance`, `type`, `resource`, `module`, `component` or `core-func`.
    pub kind: &'static str,
    /// For an instance, the names it holds; for a function, its parameters.
    pub members: Vec<String>,
}

/// The outside of a component: everything a host sees before running it.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The keyhost:policy version its imports and exports name, if any.
    pub contract_version: Option<String>,
    /// What the component exports.
    pub exports: Vec<Item>,
    /// What it imports.
    pub imports: Vec<Item>,
}

impl Summary {
    /// The outside of `component`.
    pub fn of(engine: &Engine, component: &Component) -> Summary {
        let ty = component.component_type();
        let exports: Vec<Item> = ty
            .exports(engine)
            .map(|(name, item)| describe(engine, name, &item))
            .collect();
        let imports: Vec<Item> = ty
            .imports(engine)
            .map(|(name, item)| describe(engine, name, &item))
            .collect();
        let contract_version = imports
            .iter()
            .chain(&exports)
            .find_map(|item| contract_version_of(&item.name))
            .map(str::to_string);
        Summary {
            contract_version,
            exports,
            imports,
        }
    }

    /// The contract version the component speaks, among those this keyhost
    /// loads; `None` when it names none (a component whose types are all
    /// its own), which is then matched against each by its exports.
    /// Refuses a component built against a version keyhost does not speak:
    /// semver, so another major version, or another minor while the major
    /// is 0.
    pub fn spoken_version(&self) -> Result<Option<Spoken>> {
        let Some(text) = &self.contract_version else {
            return Ok(None);
        };
        let theirs = Version::parse(text).map_err(|e| {
            anyhow::anyhow!(
                "it names {CONTRACT_PACKAGE}@{text}, which is not a semver version: {e}"
            )
        })?;
        let compatible = |ours: &Version| {
            let caret = |version: &Version| {
                VersionReq::parse(&format!("^{version}"))
                    .expect("a version is a valid caret requirement")
            };
            caret(ours).matches(&theirs) || caret(&theirs).matches(ours)
        };
        if compatible(&contract_version()) {
            return Ok(Some(Spoken::V0_2));
        }
        if compatible(&Version::new(0, 1, 0)) {
            return Ok(Some(Spoken::V0_1));
        }
        bail!(
            "it is built against {CONTRACT_PACKAGE}@{theirs}, a major version of the contract \
             this keyhost does not speak (it speaks {CONTRACT} and loads 0.1); rebuild it \
             against keyhost's wit/"
        );
    }
}

/// The contract versions this keyhost loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spoken {
    /// `keyhost:policy@0.1`: `configure` and `validate` are world exports.
    V0_1,
    /// `keyhost:policy@0.2`, the current one: they are the `validator`
    /// interface's.
    V0_2,
}

/// Refuses bytes that are not a WebAssembly component with a plain reason,
/// before wasmtime's parser would print the header bytes it expected.
pub fn check_format(wasm: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    /// The version and layer fields of a component, and of a core module.
    const COMPONENT: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
    const CORE_MODULE: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
    if !wasm.starts_with(MAGIC) {
        bail!("the file is not WebAssembly (it does not begin with \\0asm)");
    }
    match wasm.get(4..8) {
        Some(header) if header == COMPONENT => Ok(()),
        Some(header) if header == CORE_MODULE => bail!(
            "the file is a core WebAssembly module, not a component: build the policy for \
             wasm32-wasip2 (or turn the module into a component with `wasm-tools component new`)"
        ),
        _ => bail!("the file is not a WebAssembly component this keyhost can read"),
    }
}

/// The version in a name such as `keyhost:policy/types@0.1.0`.
fn contract_version_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(CONTRACT_PACKAGE)?.strip_prefix('/')?;
    rest.split_once('@').map(|(_, version)| version)
}

fn describe(engine: &Engine, name: &str, item: &ComponentExtern<'_>) -> Item {
    let (kind, members) = match &item.ty {
        ComponentItem::ComponentFunc(func) => (
            "func",
            func.params().map(|(param, _)| param.to_string()).collect(),
        ),
        ComponentItem::ComponentInstance(instance) => (
            "instance",
            instance
                .exports(engine)
                .map(|(member, _)| member.to_string())
                .collect(),
        ),
        ComponentItem::Type(_) => ("type", Vec::new()),
        ComponentItem::Resource(_) => ("resource", Vec::new()),
        ComponentItem::Module(_) => ("module", Vec::new()),
        ComponentItem::Component(_) => ("component", Vec::new()),
        ComponentItem::CoreFunc(_) => ("core-func", Vec::new()),
    };
    Item {
        name: name.to_string(),
        kind,
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(version: &str) -> Summary {
        Summary {
            contract_version: Some(version.to_string()),
            exports: Vec::new(),
            imports: Vec::new(),
        }
    }

    #[test]
    fn files_that_are_not_components_get_a_plain_reason() {
        let text = check_format(b"#!/bin/sh\necho hi\n")
            .unwrap_err()
            .to_string();
        assert!(text.contains("not WebAssembly"), "{text}");
        let module = check_format(b"\0asm\x01\0\0\0").unwrap_err().to_string();
        assert!(module.contains("core WebAssembly module"), "{module}");
        assert!(check_format(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn versions_in_names() {
        assert_eq!(
            contract_version_of("keyhost:policy/types@0.1.0"),
            Some("0.1.0")
        );
        assert_eq!(contract_version_of("keyhost:policyx/types@0.1.0"), None);
        assert_eq!(contract_version_of("wasi:cli/environment@0.2.0"), None);
    }

    #[test]
    fn semver_decides_compatibility() {
        let ours = contract_version();
        let patch = Version::new(ours.major, ours.minor, ours.patch + 1);
        assert_eq!(
            summary(&patch.to_string()).spoken_version().unwrap(),
            Some(Spoken::V0_2)
        );
        assert_eq!(
            summary("0.1.3").spoken_version().unwrap(),
            Some(Spoken::V0_1)
        );
        for other in [Version::new(ours.major + 1, 0, 0), Version::new(0, 3, 0)] {
            let error = summary(&other.to_string()).spoken_version().unwrap_err();
            assert!(error.to_string().contains("does not speak"), "{error}");
        }
        assert!(summary("not-a-version").spoken_version().is_err());
    }
}
