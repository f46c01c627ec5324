//! The README and the book (docs/src) as the tests read them: their pages,
//! their fenced blocks, and the copies of generated text they keep.

use std::path::PathBuf;

use super::root;

/// The book's pages under docs/src, sorted.
pub fn book_pages() -> Vec<PathBuf> {
    let mut pages = Vec::new();
    let mut folders = vec![root().join("docs/src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("docs/src") {
            let path = entry.expect("a docs entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                pages.push(path);
            }
        }
    }
    pages.sort();
    pages
}

/// Every page a reader is sent to: the README, the CHANGELOG and the book.
pub fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md"), root().join("CHANGELOG.md")];
    pages.extend(book_pages());
    pages
}

/// A fenced block of a page.
pub struct Fence {
    /// Its info string (`sh`, `nginx`, `text`), empty when it has none.
    pub lang: String,
    /// Its text, with a newline after each line.
    pub text: String,
    /// The `<!-- marker -->` on the line right before it, if any.
    pub marker: Option<String>,
    /// Its first line's number in the page, from 1.
    pub line: usize,
}

/// The fenced blocks of a page's text, in order.
pub fn fences(text: &str) -> Vec<Fence> {
    let mut fences = Vec::new();
    let mut previous = "";
    let mut open: Option<Fence> = None;
    for (index, line) in text.lines().enumerate() {
        match open.as_mut() {
            Some(_) if line.trim_start() == "```" => fences.push(open.take().unwrap()),
            Some(fence) => {
                fence.text.push_str(line);
                fence.text.push('\n');
            }
            None => {
                if let Some(lang) = line.trim_start().strip_prefix("```") {
                    let marker = previous
                        .trim()
                        .strip_prefix("<!--")
                        .and_then(|rest| rest.strip_suffix("-->"))
                        .map(|name| name.trim().to_string());
                    open = Some(Fence {
                        lang: lang.trim().to_string(),
                        text: String::new(),
                        marker,
                        line: index + 1,
                    });
                }
            }
        }
        previous = line;
    }
    fences
}

/// The fenced `lang` block right after the line `<!-- marker -->` in the
/// README or a page of the book: the configuration a guide gives, which
/// the tests run word for word (but for ports and paths).
pub fn block(marker: &str, lang: &str) -> String {
    let mut found = pages().into_iter().flat_map(|page| {
        let text = std::fs::read_to_string(&page).expect("a docs page");
        fences(&text)
            .into_iter()
            .filter(|fence| fence.marker.as_deref() == Some(marker))
            .map(move |fence| (page.clone(), fence))
    });
    let (page, fence) = found
        .next()
        .unwrap_or_else(|| panic!("no page marks a snippet {marker}"));
    assert!(
        found.next().is_none(),
        "two blocks are marked {marker}; a marker names one"
    );
    assert_eq!(
        fence.lang,
        lang,
        "the block marked {marker} in {} is not {lang}",
        page.display()
    );
    fence.text
}

/// Holds a generated text and the copy of it the repository keeps at
/// `relative` equal; with `KEYHOST_BLESS=1` the copy is written again.
pub fn keep_in_step(relative: &str, generated: &str, generated_by: &str) {
    let path = root().join(relative);
    if std::env::var_os("KEYHOST_BLESS").is_some() {
        std::fs::write(&path, generated).unwrap();
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        kept == generated,
        "{relative} differs from {generated_by}; run this test with KEYHOST_BLESS=1 to write it again"
    );
}
