//! The job file: YAML model, defaults, units, matrix expansion, validation
//! into typed `Run`s. Touches no system state; only reads the job file.

mod expand;
mod raw;
pub mod types;
mod units;
mod validate;
mod yaml;

pub use types::*;

use std::path::{Path, PathBuf};

/// Every problem found in a job file, each with its location.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.render())]
pub struct SpecErrors {
    pub problems: Vec<Problem>,
}

/// One problem: where (file, line:column or YAML path), what was found, what was expected.
#[derive(Debug, Clone)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// YAML path like `jobs.xz.resources.memory`.
    pub path: String,
    pub message: String,
}

impl SpecErrors {
    pub fn render(&self) -> String {
        self.problems
            .iter()
            .map(|p| {
                let at = match (p.line, p.column) {
                    (Some(l), Some(c)) => format!("{}:{}:{}", p.file, l, c),
                    _ => p.file.clone(),
                };
                match p.path.is_empty() {
                    true => format!("{at}: {}", p.message),
                    false => format!("{at}: {}: {}", p.path, p.message),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads, validates and expands a job file. Relative paths in it (mount
/// sources, rootfs, io device) are taken relative to its directory.
pub fn load(path: &Path) -> Result<Batch, SpecErrors> {
    let file = path.display().to_string();
    let text = crate::fsx::read_to_string(path).map_err(|e| SpecErrors {
        problems: vec![Problem {
            file: file.clone(),
            line: None,
            column: None,
            path: String::new(),
            message: crate::fsx::chain(&e),
        }],
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut batch = parse_with_base(&file, &text, &base)?;
    batch.file = path.to_path_buf();
    Ok(batch)
}

/// Validates and expands job file text (`file` names it in messages; its
/// directory is the base of relative paths).
pub fn parse(file: &str, text: &str) -> Result<Batch, SpecErrors> {
    let dir = Path::new(file)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parse_with_base(file, text, dir)
}

fn parse_with_base(file: &str, text: &str, base: &Path) -> Result<Batch, SpecErrors> {
    let problem = |path: &[yaml::Seg], at: yaml::At, message: String| {
        let loc = yaml::locate(text, path, at);
        Problem {
            file: file.to_string(),
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            path: yaml::render(path),
            message,
        }
    };
    let tree = yaml::parse_tree(text).map_err(|e| SpecErrors {
        problems: vec![Problem {
            file: file.to_string(),
            line: e.line,
            column: e.column,
            path: String::new(),
            message: format!("invalid YAML: {}", e.message),
        }],
    })?;
    if !matches!(tree, yaml::Tree::Map(_)) {
        return Err(SpecErrors {
            problems: vec![problem(
                &[],
                yaml::At::Value,
                "expected a map with version, name and jobs at the top level".into(),
            )],
        });
    }
    let mut dups = Vec::new();
    let mut root = yaml::to_value(&tree, &mut Vec::new(), &mut dups);
    let mut problems: Vec<Problem> = dups
        .iter()
        .map(|d| {
            let key = match d.path.last() {
                Some(yaml::Seg::Key(k)) => k.clone(),
                _ => String::new(),
            };
            let what = if d.path.len() == 2 && d.path[0] == yaml::Seg::Key("jobs".into()) {
                "job name"
            } else {
                "key"
            };
            problem(
                &d.path,
                yaml::At::Key(d.occurrence),
                format!("duplicate {what} `{key}`: each key may appear only once in a map"),
            )
        })
        .collect();

    // Type errors, each at the smallest subtree; then drop those subtrees so
    // that the rest can still be checked.
    let mut pruned: Vec<Vec<yaml::Seg>> = Vec::new();
    for (path, message) in yaml::type_errors(&root) {
        let at = if message.starts_with("unknown field") {
            yaml::At::Key(0)
        } else {
            yaml::At::Value
        };
        problems.push(problem(&path, at, message));
        // Prune the nearest map entry at or above the bad node.
        let cut = path
            .iter()
            .rposition(|s| matches!(s, yaml::Seg::Key(_)))
            .map(|i| path[..=i].to_vec())
            .unwrap_or_default();
        yaml::remove(&mut root, &cut);
        pruned.push(cut);
    }
    let raw = match yaml::raw_file(&root) {
        Ok(r) => r,
        Err(e) => {
            problems.push(problem(&[], yaml::At::Value, e));
            return Err(sorted(problems));
        }
    };
    let (out, issues) = validate::validate(raw, &root, &pruned, base);
    problems.extend(
        issues
            .into_iter()
            .map(|i| problem(&i.path, i.at, i.message)),
    );
    if !problems.is_empty() {
        return Err(sorted(problems));
    }
    Ok(Batch {
        name: out.name,
        file: PathBuf::from(file),
        source: text.to_string(),
        jobs: out.jobs,
        groups: out.groups,
        runs: out.runs,
    })
}

/// File order: by line, then column; problems without a line last.
fn sorted(mut problems: Vec<Problem>) -> SpecErrors {
    problems.sort_by_key(|p| (p.line.is_none(), p.line, p.column));
    SpecErrors { problems }
}

/// The JSON Schema (draft-07) of the job file, pretty-printed.
pub fn schema_json() -> String {
    let schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<raw::RawFile>();
    let mut value = schema.to_value();
    drop_null(&mut value);
    serde_json::to_string_pretty(&value).expect("a JSON Schema serializes")
}

/// The raw structs are all `Option` so that validation sees every field, but
/// a job file never needs to write `null`: drop the null alternatives that
/// `Option` adds, so that editors flag an empty `memory:`.
fn drop_null(v: &mut serde_json::Value) {
    use serde_json::Value as J;
    let J::Object(map) = v else {
        if let J::Array(items) = v {
            items.iter_mut().for_each(drop_null);
        }
        return;
    };
    if let Some(J::Array(types)) = map.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types[0].clone();
            map.insert("type".into(), only);
        }
    }
    if let Some(J::Array(alts)) = map.get_mut("anyOf") {
        alts.retain(|a| a.get("type").is_none_or(|t| t != "null"));
        if alts.len() == 1 {
            let only = alts.remove(0);
            map.remove("anyOf");
            match only {
                // Draft-07 ignores keywords next to `$ref`: keep the description outside.
                J::Object(o) if o.contains_key("$ref") => {
                    map.insert("allOf".into(), J::Array(vec![J::Object(o)]));
                }
                J::Object(o) => {
                    for (k, x) in o {
                        map.entry(k).or_insert(x);
                    }
                }
                other => {
                    map.insert("allOf".into(), J::Array(vec![other]));
                }
            }
        }
    }
    map.values_mut().for_each(drop_null);
}
