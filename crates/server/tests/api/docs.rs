//! The README and the manual under docs/ link to one another: every relative link must
//! reach a file that exists, and a link with a `#fragment` a heading that exists (as
//! GitHub names headings), and no link may leave the repository.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// README.md and every `.md` file under docs/, in a stable order.
fn pages(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|x| x == "md") {
                found.push(path);
            }
        }
    }
    let mut found = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut found);
    found
}

/// The lines of a page outside fenced code blocks, with their line numbers.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match fence {
            Some(marker) if trimmed.starts_with(marker) => fence = None,
            Some(_) => {}
            None if trimmed.starts_with("```") => fence = Some("```"),
            None if trimmed.starts_with("~~~") => fence = Some("~~~"),
            None => lines.push((i + 1, line)),
        }
    }
    lines
}

/// A line without its code spans (`…`, ``…``), which hold text, not links.
fn without_code(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].len() - rest[start..].trim_start_matches('`').len();
        let fence = &rest[start..start + ticks];
        let after = &rest[start + ticks..];
        match after.find(fence) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The targets of a line's inline links and images, `[text](target "title")`, and of a
/// reference definition, `[id]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code(line);
    let mut targets = Vec::new();
    let trimmed = line.trim_start();
    if trimmed.starts_with('[')
        && let Some((label, target)) = trimmed.split_once("]:")
        && !label.contains('(')
        && let Some(target) = target.split_whitespace().next()
    {
        targets.push(target.trim_matches(['<', '>']).to_owned());
    }
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = i;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let inside = after[..end].trim();
        let target = inside.split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(['<', '>']).to_owned());
        rest = &after[end.min(after.len())..];
    }
    targets
}

/// A heading's anchor as GitHub makes it: the heading's text (links as their text),
/// lower case, without anything but letters, digits, `_`, `-` and spaces, each space a
/// `-`.
fn slug(heading: &str) -> String {
    // `[text](target)` reads as `text`.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(at) = rest.find("](") {
        text.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        rest = after.find(')').map_or("", |end| &after[end + 1..]);
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings; a repeated heading gets `-1`, `-2`, … as on GitHub.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    for (_, line) in prose(text) {
        let hashes = line.len() - line.trim_start_matches('#').len();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let heading = line[hashes..].trim().trim_end_matches('#').trim();
        let base = slug(heading);
        let mut anchor = base.clone();
        let mut n = 0;
        while anchors.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        anchors.insert(anchor);
    }
    anchors
}

/// `path` with `.` and `..` folded away, without touching the file system; `None` when it
/// climbs above where it starts.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// Every broken relative link of `files` (paths relative to `root`), as
/// `FILE:LINE: TARGET: what is wrong`.
fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut problems = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        let here = file
            .strip_prefix(root)
            .expect("pages are in the repository")
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        for (number, line) in prose(&text) {
            for target in link_targets(line) {
                let external = target.contains("://") || target.starts_with("mailto:");
                if external || target.is_empty() {
                    continue;
                }
                let mut problem = |why: String| {
                    problems.push(format!("{name}:{number}: {target}: {why}"));
                };
                let (path, fragment) = match target.split_once('#') {
                    Some((path, fragment)) => (path, Some(fragment)),
                    None => (target.as_str(), None),
                };
                if path.starts_with('/') {
                    problem("an absolute path; link relative to the page".into());
                    continue;
                }
                let Some(relative) = normalise(&here.join(path)) else {
                    problem("leaves the repository".into());
                    continue;
                };
                let resolved = root.join(&relative);
                if !resolved.exists() {
                    problem(format!("no file {}", relative.display()));
                    continue;
                }
                let Some(fragment) = fragment else { continue };
                if resolved.is_dir() || resolved.extension().is_none_or(|x| x != "md") {
                    continue;
                }
                let target_text = std::fs::read_to_string(&resolved).expect("a readable page");
                if !anchors(&target_text).contains(fragment) {
                    problem(format!("no heading #{fragment} in {}", relative.display()));
                }
            }
        }
    }
    problems
}

#[test]
fn every_relative_link_in_the_readme_and_the_manual_reaches_a_file_and_heading() {
    let root = root();
    let pages = pages(&root);
    assert!(
        pages.len() > 10,
        "README.md and docs/ were not found: {pages:?}"
    );
    let problems = broken_links(&root, &pages);
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_link_to_a_missing_file_heading_or_outside_the_repository_is_reported() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path();
    std::fs::create_dir_all(root.join("docs/guide")).expect("docs/guide");
    std::fs::write(
        root.join("README.md"),
        "# Title\n\n## Two `commands` → here\n\n[ok](docs/guide/a.md#the-heading) \
         [ok](#two-commands--here) `[not a link](nowhere.md)`\n\n```\n[nor](here.md)\n```\n",
    )
    .expect("README.md");
    std::fs::write(
        root.join("docs/guide/a.md"),
        "# A\n\n## The heading\n\n[gone](b.md) [no heading](../../README.md#nothing) \
         [outside](../../../shared/x.md) [absolute](/work/x.md) [ok](../../README.md#title)\n",
    )
    .expect("a.md");
    let problems = broken_links(root, &pages(root));
    assert_eq!(
        problems,
        [
            "docs/guide/a.md:5: b.md: no file docs/guide/b.md",
            "docs/guide/a.md:5: ../../README.md#nothing: no heading #nothing in README.md",
            "docs/guide/a.md:5: ../../../shared/x.md: leaves the repository",
            "docs/guide/a.md:5: /work/x.md: an absolute path; link relative to the page",
        ]
    );
}

#[test]
fn headings_are_named_as_github_names_them() {
    assert_eq!(slug("Moving from CRM.COM"), "moving-from-crmcom");
    assert_eq!(slug("Which `http_errors`"), "which-http_errors");
    assert_eq!(
        slug("13.1 POST charges: charges Netflix raised"),
        "131-post-charges-charges-netflix-raised"
    );
    assert_eq!(slug("Tokens *(decision)*"), "tokens-decision");
    assert_eq!(slug("SQLite → PostgreSQL"), "sqlite--postgresql");
    let twice = anchors("## PostgreSQL\n\n```\n## not a heading\n```\n### PostgreSQL\n");
    assert_eq!(
        twice,
        BTreeSet::from(["postgresql".to_owned(), "postgresql-1".to_owned()])
    );
}
