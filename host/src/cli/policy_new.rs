//! `keyhost policy new DIR [--lang rust|js|python]`: a policy project to
//! start from, outside any repository. Each holds the contract
//! (`wit/policy.wit`), keyhost's default rules in its language (a copy of
//! `plugin/rules`, `plugin/js/policy.js` or `plugin/python/policy.py`), its
//! build, with the tool versions keyhost's own policies are built with, and
//! the default policy's conformance vectors; it needs nothing but its
//! language's package registry, and passes `keyhost policy test` as written.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::Report;
use super::args::PolicyLanguage;

/// One file of a new project: its path in the folder and its text, with
/// `{{name}}`-style placeholders.
type File = (&'static str, &'static str);

/// Every language's copy of the contract and the default vectors.
const SHARED_FILES: &[File] = &[
    ("wit/policy.wit", include_str!("../../../wit/policy.wit")),
    (
        "vectors/default-policy.json",
        include_str!("../../../tests/vectors/default-policy.json"),
    ),
];

const RUST_FILES: &[File] = &[
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
    (".gitignore", "/target\n"),
];

const JS_FILES: &[File] = &[
    (
        "package.json",
        include_str!("../../templates/js-policy/package.json"),
    ),
    (
        "build.sh",
        include_str!("../../templates/js-policy/build.sh"),
    ),
    ("build.mjs", include_str!("../../../plugin/js/build.mjs")),
    ("policy.js", include_str!("../../../plugin/js/policy.js")),
    (".gitignore", "/node_modules\n/policy.wasm\n"),
];

const PYTHON_FILES: &[File] = &[
    (
        "requirements.txt",
        include_str!("../../templates/python-policy/requirements.txt"),
    ),
    (
        "build.sh",
        include_str!("../../templates/python-policy/build.sh"),
    ),
    (
        "policy.py",
        include_str!("../../../plugin/python/policy.py"),
    ),
    (".gitignore", "/.venv\n/policy.wasm\n__pycache__/\n"),
];

/// The tools keyhost's own JavaScript and Python policies are built with:
/// a new project pins the same versions.
const NPM_TOOLS: &str = include_str!("../../../tests/foreign/package.json");
const PYTHON_TOOLS: &str = include_str!("../../../tests/foreign/requirements.txt");

pub fn run(dir: &Path, lang: PolicyLanguage) -> Result<Report> {
    if dir.exists() {
        bail!(
            "{} already exists; keyhost policy new makes a new folder",
            dir.display()
        );
    }
    let name = crate_name(dir);
    let file = name.replace('-', "_");
    let (files, placeholders, build, component): (_, Vec<(&str, String)>, _, PathBuf) = match lang {
        PolicyLanguage::Rust => (
            RUST_FILES,
            vec![("file", file.clone())],
            "cargo build --release --target wasm32-wasip2",
            format!("target/wasm32-wasip2/release/{file}.wasm").into(),
        ),
        PolicyLanguage::Js => (
            JS_FILES,
            vec![
                (
                    "componentize_js",
                    npm_pin("@bytecodealliance/componentize-js"),
                ),
                ("preview2_shim", npm_pin("@bytecodealliance/preview2-shim")),
            ],
            "./build.sh",
            "policy.wasm".into(),
        ),
        PolicyLanguage::Python => (
            PYTHON_FILES,
            vec![("componentize_py", pip_pin("componentize-py"))],
            "./build.sh",
            "policy.wasm".into(),
        ),
    };
    for (path, text) in files.iter().chain(SHARED_FILES) {
        let target = dir.join(path);
        let folder = crate::durable::folder_of(&target);
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let mut text = text.replace("{{name}}", &name);
        for (placeholder, value) in &placeholders {
            text = text.replace(&format!("{{{{{placeholder}}}}}"), value);
        }
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
        if path.ends_with(".sh") {
            make_executable(&target)?;
        }
    }
    let component = dir.join(component);
    let text = format!(
        "created the {lang} policy {name} in {dir}\n\
         build it:  cd {dir} && {build}\n\
         test it:   keyhost policy test {component} {dir}/vectors/default-policy.json",
        lang = lang.name(),
        dir = dir.display(),
        component = component.display(),
    );
    Ok(Report::new(
        json!({ "created": dir, "language": lang.name(), "crate": name, "component": component }),
        text,
    ))
}

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

/// The version tests/foreign/package.json pins for an npm package.
fn npm_pin(package: &str) -> String {
    let tools: serde_json::Value = serde_json::from_str(NPM_TOOLS).expect("package.json is JSON");
    tools["devDependencies"][package]
        .as_str()
        .unwrap_or_else(|| panic!("tests/foreign/package.json pins {package}"))
        .to_string()
}

/// The `NAME==VERSION` line tests/foreign/requirements.txt pins a package with.
fn pip_pin(package: &str) -> String {
    PYTHON_TOOLS
        .lines()
        .find(|line| {
            line.strip_prefix(package)
                .is_some_and(|rest| rest.starts_with("=="))
        })
        .unwrap_or_else(|| panic!("tests/foreign/requirements.txt pins {package}"))
        .to_string()
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
    fn the_js_and_python_projects_pin_the_tools_keyhost_builds_with() {
        assert!(npm_pin("@bytecodealliance/componentize-js").starts_with("0."));
        assert!(npm_pin("@bytecodealliance/preview2-shim").starts_with("0."));
        assert!(pip_pin("componentize-py").starts_with("componentize-py==0."));
    }

    #[test]
    fn crate_names_come_from_the_folder() {
        assert_eq!(crate_name(Path::new("/tmp/My Policy")), "my-policy");
        assert_eq!(crate_name(Path::new("2fa")), "policy-2fa");
        assert_eq!(crate_name(Path::new("/")), "policy");
    }
}
