//! Builds the policy components in `plugin/` for wasm32-wasip2, so that the
//! default policy can be embedded in the binary and the others are ready for
//! the tests; and the proxy filters (a policy built with the SDK's
//! `proxy-wasm` or `http-wasm` feature) for wasm32-wasip1. Installs a target
//! when it is missing: rustup does not do so by itself where
//! RUSTUP_AUTO_INSTALL=0.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const TARGET: &str = "wasm32-wasip2";
/// Envoy and Traefik load core modules.
const FILTER_TARGET: &str = "wasm32-wasip1";
/// The filters, by SDK feature: (file, policy crate). The default policy in
/// each ABI; the strict and hostile ones as proxy-wasm, for the tests.
const FILTERS: &[(&str, &[(&str, &str)])] = &[
    (
        "proxy-wasm",
        &[
            ("keyhost_proxy_wasm.wasm", "keyhost-policy-default"),
            ("keyhost_proxy_wasm_strict.wasm", "keyhost-policy-strict"),
            ("keyhost_proxy_wasm_hostile.wasm", "keyhost-policy-hostile"),
        ],
    ),
    (
        "http-wasm",
        &[("keyhost_http_wasm.wasm", "keyhost-policy-default")],
    ),
];
/// The component crates, by package name; each builds `<name with _>.wasm`:
/// the policies, the gates `keyhost gate build` composes, the echo app
/// the gate tests put behind a middleware gate, and the kept 0.1 copy of the
/// default policy that proves keyhost still loads 0.1 policies.
const POLICIES: &[&str] = &[
    "keyhost-policy-default",
    "keyhost-policy-strict",
    "keyhost-policy-hostile",
    "keyhost-policy-example",
    "keyhost-gate-proxy",
    "keyhost-gate-middleware",
    "keyhost-gate-virt",
    "keyhost-echo-app",
    "keyhost-policy-default-v0-1",
    "keyhost-bench-contracts",
    "keyhost-bench-contracts-bump",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();
    for watched in [
        "plugin",
        "wit",
        "core",
        "gate",
        "tests/echo-app",
        "tests/policy-v0_1",
        "bench/contracts",
        "filters",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    println!("cargo:rustc-env=KEYHOST_CONTRACT={}", contract(&workspace));
    // The binary stays position-independent (address randomisation for the
    // program that guards every request). Its tens of thousands of relative
    // relocations, the largest single cost of a `keyhost check` start, are
    // packed as DT_RELR, which the loader applies as a compact bitmap.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    ensure_target(&workspace, TARGET);
    ensure_target(&workspace, FILTER_TARGET);
    let built = build_policies(&workspace);

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("policies");
    std::fs::create_dir_all(&out_dir).expect("create OUT_DIR/policies");
    for package in POLICIES {
        let file = format!("{}.wasm", package.replace('-', "_"));
        std::fs::copy(built.join(&file), out_dir.join(&file))
            .unwrap_or_else(|e| panic!("copy {file} from {}: {e}", built.display()));
    }
    for (feature, filters) in FILTERS {
        let packages: Vec<&str> = filters.iter().map(|(_, package)| *package).collect();
        let built = build_filters(&workspace, &packages, feature);
        for (file, package) in *filters {
            let name = format!("{}.wasm", package.replace('-', "_"));
            std::fs::copy(built.join(&name), out_dir.join(file))
                .unwrap_or_else(|e| panic!("copy {name} from {}: {e}", built.display()));
        }
    }
    println!("cargo:rustc-env=KEYHOST_POLICY_DIR={}", out_dir.display());
    // The embedded default policy's SHA-256 (its compiled-cache key), so a
    // `keyhost check` process does not hash it on every run.
    let default = std::fs::read(out_dir.join("keyhost_policy_default.wasm"))
        .expect("read the default policy");
    let digest: String = Sha256::digest(&default)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    println!("cargo:rustc-env=KEYHOST_DEFAULT_POLICY_SHA256={digest}");
}

/// The `package` line of wit/policy.wit, as `keyhost:policy@VERSION`: the
/// contract the host speaks and checks components against.
fn contract(workspace: &Path) -> String {
    let path = workspace.join("wit").join("policy.wit");
    let wit =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    wit.lines()
        .find_map(|line| line.trim().strip_prefix("package "))
        .and_then(|rest| rest.strip_suffix(';'))
        .map(|package| package.trim().to_string())
        .filter(|package| package.contains('@'))
        .unwrap_or_else(|| panic!("{} has no `package name@version;` line", path.display()))
}

/// A command for the workspace's own toolchain (rust-toolchain.toml), not
/// necessarily the one building the host: `cargo +nightly fuzz` builds the
/// host with nightly, while the components stay on stable.
fn workspace_tool(program: &str, workspace: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(workspace);
    for name in ["RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "CARGO"] {
        command.env_remove(name);
    }
    command
}

/// Adds `target` with rustup when the sysroot lacks it.
fn ensure_target(workspace: &Path, target: &str) {
    let output = workspace_tool("rustc", workspace)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .expect("run rustc --print target-libdir");
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() && Path::new(&libdir).is_dir() {
        return;
    }
    println!("cargo:warning=installing the {target} target with rustup");
    let status = workspace_tool("rustup", workspace)
        .args(["target", "add", target])
        .status().unwrap_or_else(|e| {
        panic!("the {target} target is missing and rustup could not be run ({e}); install it with `rustup target add {target}`")
    });
    assert!(status.success(), "`rustup target add {target}` failed");
}

/// Runs cargo for the policy crates into their own target dir and returns
/// the folder holding the built components.
fn build_policies(workspace: &Path) -> PathBuf {
    let target_dir = workspace.join("target").join("policies");
    let mut command = wasm_cargo(workspace, TARGET, &target_dir);
    for package in POLICIES {
        command.args(["-p", package]);
    }
    run(command, "the policy components");
    target_dir.join(TARGET).join("release")
}

/// Builds the policy crates `packages` as filters with the SDK's
/// `feature`, in a target dir per feature (so that each stays built), and
/// returns the folder holding them. This is the command the README gives
/// for a policy of one's own.
fn build_filters(workspace: &Path, packages: &[&str], feature: &str) -> PathBuf {
    let target_dir = workspace.join("target").join("filters").join(feature);
    let mut command = wasm_cargo(workspace, FILTER_TARGET, &target_dir);
    for package in packages {
        command.args(["-p", package]);
    }
    command.args(["--features", &format!("keyhost-policy-sdk/{feature}")]);
    run(command, &format!("the {feature} filters"));
    target_dir.join(FILTER_TARGET).join("release")
}

/// `cargo build --release` for `target`, into `target_dir`.
fn wasm_cargo(workspace: &Path, target: &str, target_dir: &Path) -> Command {
    let mut command = workspace_tool("cargo", workspace);
    command
        .arg("build")
        .arg("--release")
        .args(["--target", target])
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"));
    // The components sit in the hot path and are small: whole-program
    // optimisation for them only (the host keeps the workspace's profile).
    command
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    // Settings meant for the host build must not leak into the wasm build.
    for name in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(name);
    }
    command
}

fn run(mut command: Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run cargo for {what}: {e}"));
    if !output.status.success() {
        panic!(
            "building {what} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
