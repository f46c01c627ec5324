//! `keyhost policy new DIR`: a policy crate to start from, outside any
//! repository. It holds the contract (`wit/policy.wit`), keyhost's default
//! rules (`src/rules.rs`, a copy of `plugin/rules`), a `lib.rs` that binds
//! them with wit-bindgen, and the default policy's conformance vectors; it
//! needs nothing but crates.io, and passes `keyhost policy test` as written.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::Report;
use super::args::PolicyLanguage;

/// The files of a Rust policy, by path in the new folder.
const RUST_FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust-policy/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust-policy/src/lib.rs"),
    ),
    (
        "src/rules.rs",
        include_str!("../../../plugin/rules/src/lib.rs"),
    ),
    ("wit/policy.wit", include_str!("../../../wit/policy.wit")),
    (
        "vectors/default-policy.json",
        include_str!("../../../tests/vectors/default-policy.json"),
    ),
    (".gitignore", "/target\n"),
];

pub fn run(dir: &Path, lang: PolicyLanguage) -> Result<Report> {
    let PolicyLanguage::Rust = lang;
    if dir.exists() {
        bail!(
            "{} already exists; keyhost policy new makes a new folder",
            dir.display()
        );
    }
    let name = crate_name(dir);
    let file = name.replace('-', "_");
    for (path, text) in RUST_FILES {
        let target = dir.join(path);
        let folder = crate::durable::folder_of(&target);
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let text = text.replace("{{name}}", &name).replace("{{file}}", &file);
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    let wasm = format!("target/wasm32-wasip2/release/{file}.wasm");
    let text = format!(
        "created the policy crate {name} in {dir}\n\
         build it:  cd {dir} && cargo build --release --target wasm32-wasip2\n\
         test it:   keyhost policy test {dir}/{wasm} {dir}/vectors/default-policy.json",
        dir = dir.display()
    );
    Ok(Report::new(
        json!({ "created": dir, "crate": name, "component": dir.join(wasm) }),
        text,
    ))
}

/// A crate name from the folder's name: lowercase letters, digits and `-`,
/// starting with a letter.
fn crate_name(dir: &Path) -> String {
    let base = dir
        .file_name()
        .map(|name| name.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let cleaned = cleaned.trim_matches('-');
    if cleaned.starts_with(|c: char| c.is_ascii_lowercase()) {
        cleaned.to_string()
    } else {
        format!("policy-{cleaned}")
            .trim_end_matches('-')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names_come_from_the_folder() {
        assert_eq!(crate_name(Path::new("/tmp/My Policy")), "my-policy");
        assert_eq!(crate_name(Path::new("2fa")), "policy-2fa");
        assert_eq!(crate_name(Path::new("/")), "policy");
    }
}
