//! The README and the book hold together: every link and anchor resolves,
//! SUMMARY.md lists every page, every `keyhost` command in a shell block
//! parses, the command reference is the binary's own `--help`, and the
//! pages describe what is, not what was.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{CommandFactory, Parser};

use crate::support::KEYHOST;
use crate::support::docs::{self, Fence, book_pages, fences, pages};
use crate::support::root;

fn read(page: &Path) -> String {
    std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{}: {e}", page.display()))
}

fn shown(page: &Path) -> String {
    page.strip_prefix(root())
        .unwrap_or(page)
        .display()
        .to_string()
}

/// A page's text with its fenced blocks and inline code blanked out, so
/// that links and headings are read only from the prose.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            out.push('\n');
            continue;
        }
        if !in_fence {
            let mut in_code = false;
            for c in line.chars() {
                if c == '`' {
                    in_code = !in_code;
                }
                out.push(if in_code || c == '`' { ' ' } else { c });
            }
        }
        out.push('\n');
    }
    out
}

/// The anchor mdBook and GitHub give a heading: lowercase, spaces become
/// `-`, and everything but letters, digits, `-` and `_` goes.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings (`#` to `######`).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_fence = false;
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence && line.starts_with('#') {
            let heading = line.trim_start_matches('#');
            if heading.starts_with(' ') {
                found.insert(anchor_of(heading));
            }
        }
    }
    found
}

/// The targets of a page's inline links and images, `[text](target)`.
fn link_targets(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut targets = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        let target = rest[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.to_string());
        rest = &rest[end..];
    }
    targets
}

#[test]
fn every_link_and_anchor_in_the_readme_and_the_book_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            if !file.exists() {
                broken.push(format!(
                    "{}: {target}: no file {}",
                    shown(&page),
                    shown(&file)
                ));
                continue;
            }
            if !anchor.is_empty() && !anchors(&read(&file)).contains(anchor) {
                broken.push(format!(
                    "{}: {target}: {} has no heading #{anchor}",
                    shown(&page),
                    shown(&file)
                ));
            }
        }
    }
    assert!(checked > 100, "only {checked} links were read");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_finds_a_missing_page_and_a_missing_anchor() {
    let text = "## A heading\n\nSee [this](#a-heading), [that](#gone), `[code](#no)`.\n\
                ```sh\n[x](#also-no)\n```\n";
    assert_eq!(link_targets(text), ["#a-heading", "#gone"]);
    let found = anchors(text);
    assert!(found.contains("a-heading"), "{found:?}");
    assert!(!found.contains("gone"), "{found:?}");
    assert_eq!(anchor_of(" The call's shape"), "the-calls-shape");
    assert_eq!(
        anchor_of(" `keyhost serve`: the auth service"),
        "keyhost-serve-the-auth-service"
    );
}

#[test]
fn the_summary_lists_every_page_of_the_book_and_no_other() {
    let src = root().join("docs/src");
    let summary = src.join("SUMMARY.md");
    let listed: BTreeSet<PathBuf> = link_targets(&read(&summary))
        .into_iter()
        .map(|target| src.join(target))
        .collect();
    let pages: BTreeSet<PathBuf> = book_pages()
        .into_iter()
        .filter(|page| page != &summary)
        .collect();
    let unlisted: Vec<String> = pages.difference(&listed).map(|p| shown(p)).collect();
    let missing: Vec<String> = listed.difference(&pages).map(|p| shown(p)).collect();
    assert!(
        unlisted.is_empty(),
        "pages SUMMARY.md does not list: {unlisted:?}"
    );
    assert!(
        missing.is_empty(),
        "SUMMARY.md lists pages that do not exist: {missing:?}"
    );
    assert!(pages.len() >= 30, "{} pages", pages.len());
}

#[test]
fn the_readme_is_short_and_the_pages_tell_no_history() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; the book holds the rest"
    );
    // History belongs in CHANGELOG.md.
    let retelling = [
        "the run before",
        "the one before",
        "in the three before",
        "than in the last run",
        "previous run",
    ];
    for page in pages().iter().filter(|p| !p.ends_with("CHANGELOG.md")) {
        let text = read(page).to_lowercase();
        for phrase in retelling {
            assert!(
                !text.contains(phrase),
                "{} retells an earlier run ({phrase:?}); that is CHANGELOG.md's",
                shown(page)
            );
        }
    }
}

/// Replaces each `$(...)` in a shell line with a word, returning the line
/// and the commands inside them (which may hold more).
fn substitutions(line: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut inner = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '$' && line[at + 1..].starts_with('(') {
            chars.next();
            let start = at + 2;
            let mut depth = 1;
            let mut end = line.len();
            for (i, c) in chars.by_ref() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            inner.push(line[start..end].to_string());
            out.push_str("SUBSTITUTED");
        } else {
            out.push(c);
        }
    }
    (out, inner)
}

/// The simple commands of a shell line (with no `$(...)` left), as words:
/// quotes removed, comments, redirections and their files left out.
fn simple_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    let mut word: Option<String> = None;
    let mut skip_next_word = false;
    let mut chars = line.chars().peekable();
    let end_word = |word: &mut Option<String>, commands: &mut Vec<Vec<String>>, skip: &mut bool| {
        if let Some(w) = word.take() {
            if std::mem::take(skip) {
                return;
            }
            commands.last_mut().unwrap().push(w);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let text = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    text.push(q);
                }
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    word.get_or_insert_with(String::new).push(next);
                }
            }
            '#' if word.is_none() => break,
            ' ' | '\t' => end_word(&mut word, &mut commands, &mut skip_next_word),
            '|' | '&' | ';' | '(' | ')' => {
                end_word(&mut word, &mut commands, &mut skip_next_word);
                while chars.peek().is_some_and(|n| matches!(n, '|' | '&')) {
                    chars.next();
                }
                commands.push(Vec::new());
            }
            '<' | '>' => {
                // A descriptor number before it (`2>`) is part of it.
                if word
                    .as_deref()
                    .is_some_and(|w| w.chars().all(|d| d.is_ascii_digit()))
                {
                    word = None;
                }
                end_word(&mut word, &mut commands, &mut skip_next_word);
                while chars.peek().is_some_and(|n| matches!(n, '<' | '>' | '&')) {
                    chars.next();
                }
                // `2>&1` names no file.
                if chars.peek().is_some_and(|n| n.is_ascii_digit()) {
                    chars.next();
                } else {
                    skip_next_word = true;
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    end_word(&mut word, &mut commands, &mut skip_next_word);
    commands.retain(|command| !command.is_empty());
    commands
}

/// The logical lines of a shell block: continuations joined, heredoc
/// bodies left out.
fn shell_lines(block: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    let mut heredoc_end: Option<String> = None;
    for line in block.lines() {
        if let Some(end) = &heredoc_end {
            if line.trim() == end {
                heredoc_end = None;
            }
            continue;
        }
        if let Some(at) = line.find("<<") {
            let tag = line[at + 2..].trim_start_matches('-').trim();
            let tag = tag.split_whitespace().next().unwrap_or("");
            heredoc_end = Some(tag.trim_matches(|c| c == '\'' || c == '"').to_string());
        }
        match line.strip_suffix('\\') {
            Some(start) => pending.push_str(start),
            None => {
                pending.push_str(line);
                lines.push(std::mem::take(&mut pending));
            }
        }
    }
    lines
}

/// The `keyhost` invocations of a shell block, each as its arguments (the
/// words after `keyhost`, or after `cargo run --`).
fn keyhost_invocations(block: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut lines = shell_lines(block);
    while let Some(line) = lines.pop() {
        let (line, inner) = substitutions(&line);
        lines.extend(inner);
        for mut words in simple_commands(&line) {
            // Assignments before the command (`KEYHOST_KEY=... keyhost check`).
            while words.first().is_some_and(|w| {
                w.split_once('=').is_some_and(|(name, _)| {
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                })
            }) {
                words.remove(0);
            }
            let Some(first) = words.first() else { continue };
            if first == "keyhost" || first.ends_with("/keyhost") {
                found.push(words[1..].to_vec());
            } else if words.starts_with(&["cargo".into(), "run".into(), "--".into()]) {
                found.push(words[3..].to_vec());
            }
        }
    }
    found
}

#[test]
fn the_shell_reader_finds_each_keyhost_command() {
    let block = "export KEYHOST_REGISTRY=./keys.toml\n\
                 keyhost create --as user:alice --name \"my laptop\" > key.txt   # the secret\n\
                 KEYHOST_KEY=x keyhost check --service s 2>&1 | tee out\n\
                 curl -H \"Authorization: Bearer $(keyhost token --help | head -1)\" \\\n  http://x/\n\
                 cat > f <<'EOF'\nkeyhost not-a-command\nEOF\n\
                 cargo run -- demo && keyhost serve &\n";
    let mut found = keyhost_invocations(block);
    found.sort();
    let want: Vec<Vec<String>> = [
        &["check", "--service", "s"][..],
        &["create", "--as", "user:alice", "--name", "my laptop"],
        &["demo"],
        &["serve"],
        &["token", "--help"],
    ]
    .iter()
    .map(|words| words.iter().map(|w| w.to_string()).collect())
    .collect();
    assert_eq!(found, want);
}

#[test]
fn the_parse_check_refuses_a_command_or_option_that_does_not_exist() {
    for line in [
        "keyhost creat --as user:alice --name k",
        "keyhost create --as user:alice --nme k",
        "keyhost policy new --lang cobol my-policy",
    ] {
        let args = &keyhost_invocations(line)[0];
        let argv = std::iter::once("keyhost".to_string()).chain(args.iter().cloned());
        let error = keyhost::cli::Cli::try_parse_from(argv).unwrap_err();
        assert!(
            !matches!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ),
            "{line}: {error}"
        );
    }
}

/// The shell blocks of every page, with where they are.
fn shell_blocks() -> Vec<(PathBuf, Fence)> {
    pages()
        .into_iter()
        .flat_map(|page| {
            let text = read(&page);
            fences(&text)
                .into_iter()
                .filter(|fence| matches!(fence.lang.as_str(), "sh" | "bash" | "shell"))
                .map(move |fence| (page.clone(), fence))
        })
        .collect()
}

#[test]
fn every_keyhost_command_in_a_shell_block_parses() {
    let mut refused = Vec::new();
    let mut checked = 0;
    for (page, fence) in shell_blocks() {
        for args in keyhost_invocations(&fence.text) {
            checked += 1;
            let argv = std::iter::once("keyhost".to_string()).chain(args.iter().cloned());
            if let Err(error) = keyhost::cli::Cli::try_parse_from(argv) {
                use clap::error::ErrorKind::*;
                if !matches!(error.kind(), DisplayHelp | DisplayVersion) {
                    refused.push(format!(
                        "{}:{}: keyhost {}\n  {}",
                        shown(&page),
                        fence.line,
                        args.join(" "),
                        error.to_string().lines().next().unwrap_or("")
                    ));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} commands were read");
    assert!(
        refused.is_empty(),
        "commands the CLI refuses:\n{}",
        refused.join("\n")
    );
}

/// Every command's path under `keyhost`, depth first, in clap's order.
fn command_paths() -> Vec<Vec<String>> {
    fn walk(command: &clap::Command, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        for sub in command.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            path.push(sub.get_name().to_string());
            walk(sub, path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(&keyhost::cli::Cli::command(), &mut Vec::new(), &mut out);
    out
}

/// The command reference: each command's `--help`, as the binary prints it.
fn command_reference() -> String {
    let mut page = String::from(
        "# Commands\n\n\
         Every command's `--help`, as `keyhost` prints it. This page is\n\
         generated: a test (`the_command_reference_is_each_commands_help`)\n\
         fails when it differs from the binary, and rewrites it when run with\n\
         `KEYHOST_BLESS=1`. [The CLI](../guides/cli.md) says what the commands\n\
         are for, with examples.\n",
    );
    for path in command_paths() {
        let output = Command::new(KEYHOST)
            .args(&path)
            .arg("--help")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .expect("run keyhost --help");
        assert!(output.status.success(), "keyhost {path:?} --help failed");
        let help = String::from_utf8(output.stdout).expect("help is UTF-8");
        assert!(
            !help.contains("```"),
            "keyhost {path:?} --help holds a fence"
        );
        let name = std::iter::once("keyhost")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        // clap pads some blank lines; the page keeps none of that.
        let help: String = help
            .trim_end()
            .lines()
            .map(|line| line.trim_end().to_string() + "\n")
            .collect();
        page.push_str(&format!("\n## {name}\n\n```text\n{help}```\n"));
    }
    page
}

#[test]
fn the_command_reference_is_each_commands_help() {
    let reference = command_reference();
    assert!(
        reference.contains("\n## keyhost policy new\n"),
        "{reference}"
    );
    docs::keep_in_step(
        "docs/src/reference/commands.md",
        &reference,
        "the binary's --help",
    );
}

#[test]
fn the_book_builds_with_mdbook_when_it_is_installed() {
    let Ok(version) = Command::new("mdbook").arg("--version").output() else {
        eprintln!(
            "mdbook is not installed; the link and summary tests stand in \
             (cargo install mdbook --locked)"
        );
        return;
    };
    assert!(version.status.success());
    let out = tempfile::tempdir().unwrap();
    let build = Command::new("mdbook")
        .args(["build", "--dest-dir"])
        .arg(out.path())
        .arg(root().join("docs"))
        .output()
        .expect("run mdbook");
    assert!(
        build.status.success(),
        "mdbook build docs failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let log = String::from_utf8_lossy(&build.stderr);
    assert!(
        !log.contains("WARN") && !log.contains("ERROR"),
        "mdbook build docs warned:\n{log}"
    );
    assert!(out.path().join("getting-started.html").exists());
}
