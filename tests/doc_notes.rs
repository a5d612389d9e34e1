//! The notes in the code stay true to the repository: every Markdown file a
//! comment in src/ cites exists, at the repository's root or beside the file.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `*.md` names in `text`: runs of path characters ending in `.md`.
fn cited_markdown(text: &str) -> Vec<&str> {
    let path_char = |c: char| c.is_ascii_alphanumeric() || "_-./".contains(c);
    text.split(|c: char| !path_char(c))
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| w.len() > 3 && w.ends_with(".md"))
        .collect()
}

#[test]
fn every_markdown_file_a_comment_in_src_cites_is_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let Some(comment) = line.trim_start().strip_prefix("//") else {
                continue;
            };
            for cited in cited_markdown(comment) {
                let beside = file.parent().unwrap().join(cited);
                if !root.join(cited).is_file() && !beside.is_file() {
                    missing.push(format!(
                        "{}:{}: {cited}",
                        file.strip_prefix(root).unwrap().display(),
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "comments cite Markdown files the repository does not have:\n{}",
        missing.join("\n")
    );
}

#[test]
fn cited_markdown_finds_paths_and_bare_names_but_not_other_words() {
    assert_eq!(
        cited_markdown("Rules (DESIGN.md, \"Placement\"); see docs/jobfile.md. Not md or x.mdx"),
        ["DESIGN.md", "docs/jobfile.md"]
    );
}
