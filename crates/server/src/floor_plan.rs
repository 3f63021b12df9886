//! The floor plan, checked: no module of the workspace imports in a circle, and the
//! server's import rules hold (see the crate's documentation and docs/development.md).
//!
//! The check reads the sources as text: every `use` tree and every `crate::`, `super::`
//! and `self::` path outside comments, strings and `#[cfg(test)]` code, each resolved to
//! the file of the longest module it names. A file is a node; an edge is "names something
//! of". Test code is left out: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module as `crate/path/of/module` (e.g. `server/edge/error`).
type Module = String;

/// Every module of the workspace and the modules it imports from.
fn import_graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files: BTreeMap<Module, PathBuf> = BTreeMap::new();
    for krate in ["core", "store", "server"] {
        let src = crates.join(krate).join("src");
        for file in rust_files(&src) {
            let relative = file.strip_prefix(&src).expect("under src");
            // The binary's entry point, and test modules kept in files of their own.
            if relative == Path::new("main.rs") || relative.ends_with("tests.rs") {
                continue;
            }
            files.insert(module_of(krate, relative), file);
        }
    }
    let mut graph = BTreeMap::new();
    for (module, file) in &files {
        let source = std::fs::read_to_string(file).expect("readable source");
        let krate = module.split('/').next().expect("crate").to_owned();
        let own: Vec<&str> = module.split('/').skip(1).collect();
        let code = production_code(&source);
        let children = child_modules(&code);
        let mut targets = BTreeSet::new();
        for path in paths_in(&code, &children) {
            let mut segments: Vec<&str> = path.split("::").collect();
            // `self` is this module; `super` its parent, whether this module is a file
            // (`a/b.rs`) or a folder (`a/b/mod.rs`).
            let mut base: Vec<&str> = match segments.first().copied() {
                Some("crate") => Vec::new(),
                Some("self") => own.clone(),
                Some("super") => own[..own.len().saturating_sub(1)].to_vec(),
                // A path through a child module declared in this file.
                Some(child) if children.contains(child) => {
                    let mut base = own.clone();
                    base.push(child);
                    base
                }
                _ => continue,
            };
            segments.remove(0);
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
            base.extend(segments);
            let target = (0..=base.len()).rev().find_map(|n| {
                let name = std::iter::once(krate.as_str())
                    .chain(base[..n].iter().copied())
                    .collect::<Vec<_>>()
                    .join("/");
                files.contains_key(&name).then_some(name)
            });
            if let Some(target) = target
                && &target != module
            {
                targets.insert(target);
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// `server/edge/error` for `edge/error.rs`; `server/edge` for `edge/mod.rs`; `server` for
/// `lib.rs`.
fn module_of(krate: &str, relative: &Path) -> Module {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "mod" | "main")
    ) {
        parts.pop();
    }
    std::iter::once(krate.to_owned())
        .chain(parts)
        .collect::<Vec<_>>()
        .join("/")
}

/// The source up to its first `#[cfg(test)]`, without comments, string and character
/// literals (whose text is not code).
fn production_code(source: &str) -> String {
    let source = source.split("#[cfg(test)]").next().unwrap_or("");
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('a', '\n', '\u{1F600}'), or a lifetime ('a) left as is.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The modules a file declares (`mod name;`, `pub mod name;`).
fn child_modules(code: &str) -> BTreeSet<String> {
    let words = word_starts(code);
    words
        .windows(2)
        .filter(|pair| pair[0].1 == "mod" && code[pair[1].0 + pair[1].1.len()..].starts_with(';'))
        .map(|pair| pair[1].1.to_owned())
        .collect()
}

/// Every path the code names through `crate`, `super`, `self` or a child module: each leaf
/// of every `use` tree, and every such path written inline.
fn paths_in(code: &str, children: &BTreeSet<String>) -> Vec<String> {
    let mut paths = Vec::new();
    let words: Vec<(usize, &str)> = word_starts(code);
    for (at, word) in &words {
        if *word == "use" {
            let rest = &code[at + 3..];
            if let Some(end) = rest.find(';') {
                let tree = without_aliases(&rest[..end]);
                paths.extend(expand(&tree, ""));
            }
        }
        let through_child = children.contains(*word) && code[at + word.len()..].starts_with("::");
        if matches!(*word, "crate" | "super" | "self") || through_child {
            let mut end = at + word.len();
            let bytes = code.as_bytes();
            while code[end..].starts_with("::") {
                let after = end + 2;
                let len = code[after..]
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
                if len == 0 || !(bytes[after].is_ascii_alphabetic() || bytes[after] == b'_') {
                    break;
                }
                end = after + len;
            }
            // A bare `super` or `crate` (as in `pub(super)`) names no module to import.
            if end > at + word.len() {
                paths.push(code[*at..end].to_owned());
            }
        }
    }
    paths
}

/// The start of every identifier-like word.
fn word_starts(code: &str) -> Vec<(usize, &str)> {
    let bytes = code.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let word = bytes[i].is_ascii_alphabetic() || bytes[i] == b'_';
        // Not the inside of a longer path: `chargegate_core::connector` names no child.
        let boundary = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || (bytes[i - 1] == b':' && i >= 2 && bytes[i - 2] == b':'));
        if word && boundary {
            let len = bytes[i..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            words.push((i, &code[i..i + len]));
            i += len;
        } else {
            i += 1;
        }
    }
    words
}

/// A `use` tree without `as` renamings and without white space.
fn without_aliases(tree: &str) -> String {
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut kept = String::new();
    let mut skip = false;
    for word in words {
        if skip {
            skip = false;
            // `as name,` or `as name}` keeps its punctuation.
            kept.extend(word.chars().filter(|c| matches!(c, ',' | '}')));
            continue;
        }
        if word == "as" {
            skip = true;
            continue;
        }
        kept.push_str(word);
    }
    kept
}

/// The leaves of a `use` tree: `a::{b, c::{d}}` → `a::b`, `a::c::d`.
fn expand(tree: &str, prefix: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else {
        return vec![format!("{prefix}{tree}")];
    };
    let Some(close) = tree.rfind('}') else {
        return Vec::new();
    };
    let head = format!("{prefix}{}", &tree[..open]);
    let mut leaves = Vec::new();
    let mut depth = 0;
    let mut start = open + 1;
    for (i, c) in tree.char_indices().take(close).skip(open + 1) {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                leaves.extend(expand(&tree[start..i], &head));
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < close {
        leaves.extend(expand(&tree[start..close], &head));
    }
    leaves
        .into_iter()
        .filter(|l| !l.ends_with("::") && !l.ends_with("::self"))
        .collect()
}

/// A circle of imports, if any: modules in order, the first repeated at the end.
fn find_circle(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        marks: &mut BTreeMap<Module, Mark>,
        trail: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        marks.insert(node.clone(), Mark::Open);
        trail.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let from = trail.iter().position(|m| m == next).unwrap_or(0);
                    let mut circle = trail[from..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(circle) = visit(next, graph, marks, trail) {
                        return Some(circle);
                    }
                }
            }
        }
        trail.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node)
            && let Some(circle) = visit(node, graph, &mut marks, &mut Vec::new())
        {
            return Some(circle);
        }
    }
    None
}

/// The imports from a module under `from` to a module under `to`.
fn imports_between(
    graph: &BTreeMap<Module, BTreeSet<Module>>,
    from: &str,
    to: &str,
) -> Vec<String> {
    let under = |m: &str, root: &str| m == root || m.starts_with(&format!("{root}/"));
    graph
        .iter()
        .filter(|(m, _)| under(m, from))
        .flat_map(|(m, targets)| {
            targets
                .iter()
                .filter(|t| under(t, to))
                .map(move |t| format!("{m} -> {t}"))
        })
        .collect()
}

#[test]
fn no_module_of_the_workspace_imports_in_a_circle() {
    let graph = import_graph();
    assert!(graph.len() > 60, "the sources were found: {graph:?}");
    assert!(
        graph["server/server"].contains("server/api"),
        "imports are read: {:?}",
        graph["server/server"]
    );
    // Every circle, not just the first: each found one is cut open and the search goes on.
    let mut graph = graph;
    let mut circles = Vec::new();
    while let Some(circle) = find_circle(&graph) {
        if let Some(targets) = graph.get_mut(&circle[0]) {
            targets.remove(&circle[1]);
        }
        circles.push(circle.join(" -> "));
    }
    assert_eq!(circles, Vec::<String>::new(), "import circles");
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        find_circle(&graph),
        Some(
            vec!["a", "b", "c", "a"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
    graph.insert("c".to_owned(), BTreeSet::new());
    assert_eq!(find_circle(&graph), None);
}

#[test]
fn use_trees_are_read_leaf_by_leaf_without_renamings_comments_or_strings() {
    let code = production_code(
        "use super::{a, b::{c as d, e}};\n// use crate::nothing;\nlet s = \"crate::not::a::path\";\n\
         let t = r#\"self::nor\"#; let c = '\\''; crate::x::y(); pub use self::z as w; kid::f(); other::g(); std::kid::h();",
    );
    let mut paths = paths_in(&code, &BTreeSet::from(["kid".to_owned()]));
    paths.sort();
    assert_eq!(
        paths,
        [
            "crate::x::y",
            "kid::f",
            "self::z",
            "self::z",
            "super::a",
            "super::b::c",
            "super::b::e"
        ]
    );
}

#[test]
fn the_edge_imports_no_handler_no_authentication_and_no_state() {
    let graph = import_graph();
    for forbidden in [
        "server/api",
        "server/console",
        "server/auth",
        "server/state",
    ] {
        assert_eq!(
            imports_between(&graph, "server/edge", forbidden),
            Vec::<String>::new()
        );
    }
}

#[test]
fn the_api_and_the_console_never_import_each_other() {
    let graph = import_graph();
    assert_eq!(
        imports_between(&graph, "server/api", "server/console"),
        Vec::<String>::new()
    );
    assert_eq!(
        imports_between(&graph, "server/console", "server/api"),
        Vec::<String>::new()
    );
}

#[test]
fn only_the_composition_root_and_the_command_line_read_the_settings() {
    let graph = import_graph();
    let readers: Vec<&Module> = graph
        .iter()
        .filter(|(_, targets)| targets.contains("server/config"))
        .map(|(m, _)| m)
        .filter(|m| {
            !matches!(
                m.as_str(),
                "server/server" | "server/database" | "server/telemetry" | "server"
            ) && !m.starts_with("server/cli")
        })
        .collect();
    assert_eq!(readers, Vec::<&Module>::new());
}

#[test]
fn only_the_composition_root_knows_both_routers() {
    let graph = import_graph();
    let both: Vec<&Module> = graph
        .iter()
        .filter(|(_, t)| t.contains("server/api") && t.contains("server/console"))
        .map(|(m, _)| m)
        .collect();
    assert_eq!(both, vec!["server/server"]);
}
