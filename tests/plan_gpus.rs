//! `packrun plan` of tests/fixtures/mixed-gpus.yaml (GPU and CPU-only runs)
//! on the 2-socket fixture with four GPUs, two per node: every GPU run's
//! GPUs sit on the node of its CPUs and memory, no GPU is held by two runs
//! at once, the CPU rules (whole cores, one L3) hold, and the machine
//! without GPUs refuses the file with exit 2.

#[path = "fixtures/run_helper.rs"]
mod helper;

use packrun::cpulist::CpuList;
use std::path::Path;
use std::process::Command;

fn plan(topology: &str, format: &str) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    Command::new(env!("CARGO_BIN_EXE_packrun"))
        .args(["plan", "--format", format, "--topology"])
        .arg(root.join(topology))
        .arg(root.join("mixed-gpus.yaml"))
        .output()
        .unwrap()
}

#[test]
fn mixed_gpu_and_cpu_runs_get_local_unshared_gpus_and_whole_cores() {
    let topo = helper::fixture("2socket-4gpu");
    let out = plan("2socket-4gpu", "json");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 9);
    let mut held: Vec<(f64, f64, String)> = Vec::new();
    for r in runs {
        let cpus = CpuList::parse(r["cpus"].as_str().unwrap()).unwrap();
        let mems = CpuList::parse(r["mems"].as_str().unwrap()).unwrap();
        let gpus: Vec<String> = r["gpus"]
            .as_array()
            .map(|a| a.iter().map(|g| g.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        let asked = match r["job"].as_str().unwrap() {
            "train" => r["parameters"]["gpus"].as_str().unwrap().parse().unwrap(),
            "infer" => 1,
            _ => 0,
        };
        assert_eq!(gpus.len(), asked, "{r}");
        for g in &gpus {
            let node = topo.gpus.iter().find(|x| &x.bus_id == g).unwrap().node;
            assert_eq!(mems.ids(), [node], "GPU {g} beside the run's memory: {r}");
            assert!(cpus.is_subset(&topo.node(node).unwrap().cpus), "{r}");
            let (start, end) = (r["start_s"].as_f64().unwrap(), r["end_s"].as_f64().unwrap());
            for (s, e, other) in &held {
                assert!(
                    other != g || *e <= start || end <= *s,
                    "{g} held twice at once"
                );
            }
            held.push((start, end, g.clone()));
        }
        // Whole cores on one L3 group.
        for c in cpus.iter() {
            let cpu = &topo.cpus[c as usize];
            assert!(cpu.siblings.is_subset(&cpus), "{r}");
        }
        let l3: std::collections::BTreeSet<u32> =
            cpus.iter().map(|c| topo.cpus[c as usize].l3).collect();
        assert_eq!(l3.len(), 1, "{r}");
    }
    let table = String::from_utf8(plan("2socket-4gpu", "table").stdout).unwrap();
    println!("{table}");
    assert!(
        table.starts_with("job       parameters  rep  cpus         mems  memory  gpus "),
        "{table}"
    );
}

#[test]
fn the_same_file_on_a_machine_without_gpus_is_exit_2_naming_what_it_has() {
    let out = plan("2socket-smt", "table");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("job `train`: resources.gpus asks for 2 GPUs, but the machine has no GPUs"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}
