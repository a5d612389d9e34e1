//! The module layering of docs/architecture.md, checked on the sources:
//! no module imports one above it in that table, `cli` is imported by
//! `cmd` alone, and no two files of a folder import each other (through
//! `super::`, `crate::<folder>::`, or an item the folder's mod.rs
//! re-exports from one of them). Text, not a compiler: it reads every
//! `crate::…`, `super::…` path outside comments and unit-test modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The table of docs/architecture.md, top to bottom: a module may import
/// only modules below it.
fn layers() -> Vec<&'static str> {
    let doc = include_str!("../docs/architecture.md");
    let mut out = Vec::new();
    let mut in_table = false;
    for line in doc.lines() {
        if line.starts_with("<!-- layers -->") {
            in_table = true;
            continue;
        }
        if line.starts_with("<!-- /layers -->") {
            break;
        }
        if in_table && line.starts_with("| `") {
            let name = line[3..].split('`').next().unwrap();
            out.push(name.trim_end_matches('/'));
        }
    }
    assert!(
        out.len() > 10,
        "docs/architecture.md lost its table of layers between <!-- layers --> and <!-- /layers -->"
    );
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file's code: its unit-test module (`#[cfg(test)] mod …` at the
/// top level) and comment lines left out.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "#[cfg(test)]" && lines.peek().is_some_and(|n| n.starts_with("mod ")) {
            break;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths that follow `prefix` (`crate::`, `super::`): each as its
/// first two segments, expanding one brace group (`crate::{a, b::c}`).
fn paths_after(code: &str, prefix: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(j, _)| j)
                .unwrap_or(group.len());
            let inner = &group[..end];
            let mut depth = 0;
            let mut start = 0;
            let mut items = Vec::new();
            for (j, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(&inner[start..j]);
                        start = j + 1;
                    }
                    _ => {}
                }
            }
            items.push(&inner[start..]);
            for item in items {
                out.push(segments(item.trim()));
            }
        } else {
            out.push(segments(rest));
        }
    }
    out.retain(|(first, _)| !first.is_empty() && first != "self");
    out
}

fn segments(s: &str) -> (String, Option<String>) {
    let first: String = s.chars().take_while(|&c| is_ident(c)).collect();
    let second = s[first.len()..]
        .strip_prefix("::")
        .map(|r| r.chars().take_while(|&c| is_ident(c)).collect::<String>())
        .filter(|s| !s.is_empty());
    (first, second)
}

/// The module a file belongs to: the first component below src/.
fn module_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn no_module_imports_one_above_it_in_docs_architecture() {
    let order = layers();
    let rank: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(src()).unwrap();
        let module = module_of(rel);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(&mine) = rank.get(module.as_str()) else {
            wrong.push(format!(
                "{}: module `{module}` is not in the table of docs/architecture.md",
                rel.display()
            ));
            continue;
        };
        let used: BTreeSet<String> = paths_after(&code(f), "crate::")
            .into_iter()
            .map(|(m, _)| m)
            .filter(|m| *m != module && rank.contains_key(m.as_str()))
            .collect();
        for m in used {
            if m == "cli" && module != "cmd" {
                wrong.push(format!(
                    "{}: imports cli, which only cmd may",
                    rel.display()
                ));
            } else if rank[m.as_str()] <= mine {
                wrong.push(format!(
                    "{}: `{module}` imports `{m}`, which is above it (docs/architecture.md)",
                    rel.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_two_files_of_a_folder_import_each_other() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut folders: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        folders
            .entry(f.parent().unwrap().to_path_buf())
            .or_default()
            .push(f);
    }
    let mut wrong = Vec::new();
    for (dir, files) in folders {
        if dir == src() {
            continue;
        }
        let folder = dir
            .strip_prefix(src())
            .unwrap()
            .to_str()
            .unwrap()
            .replace('/', "::");
        let stem = |p: &Path| p.file_stem().unwrap().to_str().unwrap().to_string();
        let siblings: BTreeSet<String> = files
            .iter()
            .map(|p| stem(p))
            .filter(|s| s != "mod")
            .collect();
        // Items mod.rs re-exports from a sibling: `pub use x::{A, B}` / `pub use x::A`.
        let mut reexported: BTreeMap<String, String> = BTreeMap::new();
        if let Some(m) = files.iter().find(|p| stem(p) == "mod") {
            for line in code(m).lines() {
                let Some(rest) = line.trim().strip_prefix("pub use ") else {
                    continue;
                };
                let rest = rest.trim_start_matches("self::");
                let (from, items) = rest.split_once("::").unwrap_or((rest, ""));
                if !siblings.contains(from) {
                    continue;
                }
                for item in items
                    .trim_matches(|c| c == '{' || c == '}' || c == ';')
                    .split(',')
                {
                    let name = item
                        .trim()
                        .split(" as ")
                        .last()
                        .unwrap_or("")
                        .trim_end_matches(';');
                    if !name.is_empty() {
                        reexported.insert(name.to_string(), from.to_string());
                    }
                }
            }
        }
        let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
        for f in &files {
            let me = stem(f);
            if me == "mod" {
                continue;
            }
            let code = code(f);
            let mut targets: Vec<String> = Vec::new();
            for (first, _) in paths_after(&code, "super::") {
                targets.push(first);
            }
            let own = format!("crate::{folder}::");
            for (first, _) in paths_after(&code, &own) {
                targets.push(first);
            }
            for t in targets {
                let to = if siblings.contains(&t) {
                    t
                } else if let Some(from) = reexported.get(&t) {
                    from.clone()
                } else {
                    continue;
                };
                if to != me {
                    edges.insert((me.clone(), to));
                }
            }
        }
        // A cycle of any length among the folder's files.
        for (a, b) in &edges {
            if reaches(&edges, b, a) {
                wrong.push(format!(
                    "src/{}/: {a}.rs imports {b}.rs, and {b}.rs reaches back to {a}.rs",
                    folder.replace("::", "/")
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "files that import each other:\n{}",
        wrong.join("\n")
    );
}

fn reaches(edges: &BTreeSet<(String, String)>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(n) = todo.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n.clone()) {
            todo.extend(
                edges
                    .iter()
                    .filter(|(a, _)| *a == n)
                    .map(|(_, b)| b.clone()),
            );
        }
    }
    false
}

#[test]
fn the_path_reader_sees_braced_and_nested_imports() {
    let code = "use crate::{a::X, b::{Y, Z}, c};\nlet v = crate::d::f();\nfoo::crate::e;\n";
    let got: Vec<String> = paths_after(code, "crate::")
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert_eq!(got, ["a", "b", "c", "d"]);
    let got = paths_after("use super::{spawn::Plan, Fds};", "super::");
    assert_eq!(got[0], ("spawn".to_string(), Some("Plan".to_string())));
    assert_eq!(got[1].0, "Fds");
}
