//! The committed JSON Schema is current, documents every property, and every
//! example job file passes both the schema and packrun's own validation.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schema() -> serde_json::Value {
    serde_json::from_str(&packrun::jobfile::schema_json()).expect("schema is JSON")
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("jobs"))
        .expect("jobs/ exists")
        .map(|e| e.expect("readable jobs/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn committed_schema_matches_the_rust_types() {
    let committed = std::fs::read_to_string(root().join("schemas/jobfile.schema.json"))
        .expect("schema is committed");
    assert!(
        committed.trim_end() == packrun::jobfile::schema_json().trim_end(),
        "schemas/jobfile.schema.json is stale; regenerate it with\n    cargo run -- schema > schemas/jobfile.schema.json"
    );
}

#[test]
fn schema_is_draft_07_and_a_valid_schema() {
    let s = schema();
    assert_eq!(s["$schema"], "http://json-schema.org/draft-07/schema#");
    jsonschema::draft7::new(&s).expect("the schema compiles as draft-07");
    assert_eq!(
        s["required"],
        serde_json::json!(["version", "name", "jobs"])
    );
}

/// Every entry of every `properties` map, anywhere in the schema.
fn collect_properties<'a>(
    v: &'a serde_json::Value,
    at: String,
    out: &mut Vec<(String, &'a serde_json::Value)>,
) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::Object(props)) = m.get("properties") {
                for (k, p) in props {
                    out.push((format!("{at}.{k}"), p));
                }
            }
            for (k, x) in m {
                collect_properties(x, format!("{at}/{k}"), out);
            }
        }
        serde_json::Value::Array(a) => a
            .iter()
            .for_each(|x| collect_properties(x, at.clone(), out)),
        _ => {}
    }
}

#[test]
fn every_property_in_the_schema_has_a_description() {
    let s = schema();
    let mut props = Vec::new();
    collect_properties(&s, String::new(), &mut props);
    assert!(props.len() > 40, "only {} properties found", props.len());
    let missing: Vec<&String> = props
        .iter()
        .filter(|(_, p)| {
            p.get("description")
                .and_then(|d| d.as_str())
                .is_none_or(str::is_empty)
        })
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty(),
        "properties without description: {missing:?}"
    );
}

#[test]
fn every_example_names_the_schema_and_passes_it_and_validation() {
    let files = examples();
    assert!(
        files.len() >= 3,
        "expected at least 3 examples in jobs/, found {files:?}"
    );
    let validator = jsonschema::draft7::new(&schema()).expect("schema compiles");
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable example");
        assert_eq!(
            text.lines().next(),
            Some("# yaml-language-server: $schema=../schemas/jobfile.schema.json"),
            "{} must start with the schema line",
            f.display()
        );
        let doc: serde_json::Value = serde_yaml::from_str(&text).expect("example is YAML");
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{} fails the schema: {errors:#?}",
            f.display()
        );
        let batch = packrun::jobfile::load(&f)
            .unwrap_or_else(|e| panic!("{} is invalid:\n{e}", f.display()));
        assert!(!batch.runs.is_empty());
    }
}

#[test]
fn schema_rejects_what_validation_rejects_for_keys_and_types() {
    let validator = jsonschema::draft7::new(&schema()).expect("schema compiles");
    let bad = serde_json::json!({
        "version": 1, "name": "t",
        "jobs": {"a": {"command": ["x"], "resources": {"memroy": "1G"}, "repetitions": "many"}}
    });
    assert_eq!(validator.iter_errors(&bad).count(), 2);
    let good = serde_json::json!({
        "version": 1, "name": "t",
        "jobs": {"a": {"command": ["xz", "-T{t}", 9], "matrix": {"t": [1, 2], "exclude": [{"t": 2}]},
                       "resources": {"cpus": "{t}", "memory": 1073741824, "cpuset": [0, 1]}, "time_limit": 30}}
    });
    let errors: Vec<String> = validator
        .iter_errors(&good)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}
