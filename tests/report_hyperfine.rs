//! `packrun report --format hyperfine-json` against hyperfine's export
//! schema: the fields and JSON types of `BenchmarkResult` as hyperfine
//! serializes it (sharkdp/hyperfine src/benchmark/benchmark_result.rs,
//! src/export/json.rs), so hyperfine's scripts read packrun's results.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn sample() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/results-sample")
        .display()
        .to_string()
}

fn is_u64(v: &Value) -> bool {
    v.as_u64().is_some()
}

/// Every problem with `doc` as a hyperfine export, empty when it conforms.
fn hyperfine_schema_problems(doc: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let Some(top) = doc.as_object() else {
        return vec!["top level is not an object".into()];
    };
    if top.keys().collect::<Vec<_>>() != ["results"] {
        p.push(format!(
            "top-level keys {:?}, expected [\"results\"]",
            top.keys().collect::<Vec<_>>()
        ));
    }
    let Some(results) = top.get("results").and_then(Value::as_array) else {
        p.push("results is not an array".into());
        return p;
    };
    for (i, r) in results.iter().enumerate() {
        let Some(o) = r.as_object() else {
            p.push(format!("results[{i}] is not an object"));
            continue;
        };
        let mut need = |k: &str, ok: &dyn Fn(&Value) -> bool, what: &str| match o.get(k) {
            None => p.push(format!("results[{i}].{k} missing")),
            Some(v) if !ok(v) => p.push(format!("results[{i}].{k} = {v}, expected {what}")),
            _ => {}
        };
        need("command", &|v| v.is_string(), "a string");
        for k in ["mean", "median", "user", "system", "min", "max"] {
            need(k, &|v| v.is_f64() || v.is_u64(), "a number");
        }
        need(
            "stddev",
            &|v| v.is_null() || v.is_number(),
            "a number or null",
        );
        need(
            "times",
            &|v| v.as_array().is_some_and(|a| a.iter().all(Value::is_number)),
            "an array of numbers",
        );
        need(
            "memory_usage_byte",
            &|v| v.as_array().is_some_and(|a| a.iter().all(is_u64)),
            "an array of unsigned integers",
        );
        need(
            "exit_codes",
            &|v| {
                v.as_array().is_some_and(|a| {
                    a.iter().all(|c| {
                        c.is_null() || c.as_i64().is_some_and(|c| i32::try_from(c).is_ok())
                    })
                })
            },
            "an array of i32 or null",
        );
        if let Some(params) = o.get("parameters") {
            let ok = params
                .as_object()
                .is_some_and(|m| !m.is_empty() && m.values().all(Value::is_string));
            if !ok {
                p.push(format!(
                    "results[{i}].parameters = {params}, expected a non-empty object of strings"
                ));
            }
        }
        for k in o.keys() {
            if ![
                "command",
                "mean",
                "stddev",
                "median",
                "user",
                "system",
                "min",
                "max",
                "times",
                "memory_usage_byte",
                "exit_codes",
                "parameters",
            ]
            .contains(&k.as_str())
            {
                p.push(format!("results[{i}].{k} is not a hyperfine field"));
            }
        }
        let len = |k: &str| o.get(k).and_then(Value::as_array).map(Vec::len);
        if len("times") != len("exit_codes") || len("times") != len("memory_usage_byte") {
            p.push(format!(
                "results[{i}]: times, exit_codes and memory_usage_byte differ in length"
            ));
        }
    }
    p
}

fn export() -> (Value, String) {
    let (out, _) = packrun(&["report", "--format", "hyperfine-json", &sample()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = serde_json::from_slice(&out.stdout).expect("hyperfine-json is JSON");
    (doc, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn hyperfine_json_has_hyperfines_field_names_and_types() {
    let (doc, _) = export();
    let problems = hyperfine_schema_problems(&doc);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        doc["results"].as_array().unwrap().len(),
        7,
        "one result per job and parameter set"
    );
}

#[test]
fn the_schema_check_rejects_what_hyperfine_would_not_write() {
    let bad = serde_json::json!({"results": [{"command": 1, "mean": "4", "stddev": null, "median": 1.0,
        "user": 1.0, "system": 0.1, "min": 1.0, "max": 1.0, "times": [1.0],
        "memory_usage_byte": [-1], "exit_codes": [0], "extra": true}]});
    let p = hyperfine_schema_problems(&bad);
    for needle in ["command", "mean", "memory_usage_byte", "extra"] {
        assert!(
            p.iter().any(|x| x.contains(needle)),
            "{needle} not reported: {p:?}"
        );
    }
}

#[test]
fn hyperfine_json_numbers_match_the_runs_and_failures_are_announced() {
    let (doc, err) = export();
    let sort10 = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["command"] == "sort size=10M")
        .unwrap();
    assert_eq!(sort10["parameters"], serde_json::json!({"size": "10M"}));
    assert_eq!(
        sort10["times"],
        serde_json::json!([3.2, 3.12, 3.25, 6.9]),
        "the outlier is kept"
    );
    assert!((sort10["median"].as_f64().unwrap() - 3.225).abs() < 1e-9);
    assert!((sort10["mean"].as_f64().unwrap() - 4.1175).abs() < 1e-9);
    let hog = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["command"] == "hog")
        .unwrap();
    assert!(
        hog.get("parameters").is_none(),
        "hyperfine leaves out empty parameters"
    );
    assert_eq!(
        hog["stddev"],
        Value::Null,
        "one completed run: no stddev, as hyperfine writes it"
    );
    assert!(err.contains("3 run(s) that did not complete"), "{err}");
}
