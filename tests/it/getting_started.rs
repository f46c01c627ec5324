//! The getting-started page, followed word for word: its shell blocks run
//! in order in one bash, in a fresh folder, with a real nginx and the
//! keyhost under test (the page's build block is what this test run did),
//! and each block's output is the `text` block the page shows after it.

use std::path::Path;
use std::process::Command;

use crate::support::docs::{Fence, fences};
use crate::support::{KEYHOST, free_port, root};

/// Whether `line` is what the page shows, where `…` stands for any text.
fn matches_shown(line: &str, shown: &str) -> bool {
    let mut parts = shown.split('…');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (index, part) in parts.iter().enumerate() {
        if index + 1 == parts.len() {
            return rest.ends_with(part) && rest.len() >= part.len();
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

#[test]
fn shown_output_matches_with_ellipses_only_where_the_page_puts_them() {
    assert!(matches_shown(
        "allow kid_abc user:alice",
        "allow kid_… user:alice"
    ));
    assert!(!matches_shown("deny disabled", "allow kid_… user:alice"));
    assert!(!matches_shown(
        "allow kid_abc user:bob",
        "allow kid_… user:alice"
    ));
    assert!(matches_shown("401", "401"));
    assert!(!matches_shown("4011", "401"));
}

/// Stops what the page started if the run fails midway.
struct Stop<'a>(&'a Path);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        let folder = self.0.join("keyhost-start");
        if folder.join("nginx.pid").exists() {
            let _ = Command::new(crate::support::nginx::binary())
                .args([
                    "-p",
                    folder.to_str().unwrap(),
                    "-c",
                    "nginx.conf",
                    "-s",
                    "stop",
                ])
                .output();
        }
    }
}

#[test]
fn the_getting_started_page_puts_a_key_check_in_front_of_a_static_site() {
    let page = std::fs::read_to_string(root().join("docs/src/getting-started.md")).unwrap();
    let blocks = fences(&page);
    let serve = format!("127.0.0.1:{}", free_port());
    let site = format!("127.0.0.1:{}", free_port());
    let ported = |text: &str| {
        text.replace("127.0.0.1:8080", &serve)
            .replace("127.0.0.1:8081", &site)
    };

    // Each shell block, and the text block right after it if there is one.
    let mut steps: Vec<(&Fence, Option<&Fence>)> = Vec::new();
    let mut built = false;
    for (index, fence) in blocks.iter().enumerate() {
        if fence.lang != "sh" {
            continue;
        }
        if fence.marker.as_deref() == Some("getting-started-build") {
            built = true;
            continue;
        }
        let shown = blocks.get(index + 1).filter(|next| next.lang == "text");
        steps.push((fence, shown));
    }
    assert!(
        built,
        "the page's build block is marked getting-started-build"
    );
    assert!(steps.len() >= 5, "the page has {} steps", steps.len());

    let work = tempfile::tempdir().unwrap();
    // nginx's workers read the site as another user when the test runs as
    // root: let them into the folder, as a home folder would.
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let _stop = Stop(work.path());
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let bin = Path::new(KEYHOST).parent().unwrap();
    let nginx_dir = Path::new(&crate::support::nginx::binary())
        .parent()
        .unwrap()
        .to_path_buf();
    let mut script = format!(
        "set -euo pipefail\n\
         trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n\
         export PATH='{}:{}':\"$PATH\"\n",
        bin.display(),
        nginx_dir.display()
    );
    for (index, (fence, _)) in steps.iter().enumerate() {
        script.push_str(&format!(
            "{{\n{}}} > '{o}/{index}.out' 2> '{o}/{index}.err'\n",
            ported(&fence.text),
            o = out.display()
        ));
    }
    let mut bash = Command::new("bash");
    bash.arg("-c").arg(&script).current_dir(work.path());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYHOST_") {
            bash.env_remove(name);
        }
    }
    let run = bash.output().expect("run bash");

    let folder = work.path().join("keyhost-start");
    let log = |name: &str| std::fs::read_to_string(folder.join(name)).unwrap_or_default();
    let step_output = |index: usize, what: &str| {
        std::fs::read_to_string(out.join(format!("{index}.{what}"))).unwrap_or_default()
    };
    let everything = || {
        let mut all = String::new();
        for (index, (fence, _)) in steps.iter().enumerate() {
            all.push_str(&format!(
                "--- step {} (line {}): stdout\n{}--- stderr\n{}",
                index + 1,
                fence.line,
                step_output(index, "out"),
                step_output(index, "err")
            ));
        }
        format!(
            "{all}--- bash\n{}--- nginx error.log\n{}--- serve.log\n{}",
            String::from_utf8_lossy(&run.stderr),
            log("error.log"),
            log("serve.log")
        )
    };
    assert!(
        run.status.success(),
        "the page's steps failed:\n{}",
        everything()
    );

    let mut compared = 0;
    for (index, (fence, shown)) in steps.iter().enumerate() {
        let Some(shown) = shown else { continue };
        compared += 1;
        let printed = step_output(index, "out");
        let printed: Vec<&str> = printed.lines().collect();
        let shown: Vec<&str> = shown.text.lines().collect();
        assert!(
            printed.len() == shown.len()
                && printed
                    .iter()
                    .zip(&shown)
                    .all(|(line, want)| matches_shown(line, want)),
            "the step at line {} printed {printed:?}; the page shows {shown:?}\n{}",
            fence.line,
            everything()
        );
    }
    assert!(
        compared >= 2,
        "the page shows the output of {compared} steps"
    );
    // The last step stopped nginx.
    assert!(!folder.join("nginx.pid").exists(), "{}", everything());
}
