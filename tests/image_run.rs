//! Runs whose root is an OCI image, through the real binary as root: the
//! merged tree, the image's config applied, its digest in the manifest,
//! and one cache entry for two jobs.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

/// Builds a two-layer image with jobs/images/make-oci.py: dash and the
/// libraries it needs, /etc/passwd with `bench` (1000:1000), /data/old and
/// /work; the second layer deletes /data/old (a whiteout) and adds
/// /data/new. Returns the manifest digest the script printed.
fn build_image(dir: &Path) -> String {
    let files = dir.join("files");
    std::fs::create_dir_all(files.join("work")).unwrap();
    std::fs::create_dir_all(files.join("data")).unwrap();
    std::fs::write(
        files.join("passwd"),
        "root:x:0:0::/root:/bin/sh\nbench:x:1000:1000::/work:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(files.join("data/old"), "old\n").unwrap();
    std::fs::write(files.join("new"), "new\n").unwrap();
    let f = |p: &str| files.join(p).display().to_string();
    let base = format!(
        "/bin/dash:bin/sh,/lib/x86_64-linux-gnu/libc.so.6:lib/x86_64-linux-gnu/libc.so.6,/lib64/ld-linux-x86-64.so.2:lib64/ld-linux-x86-64.so.2,{}:etc/passwd,{}:data,{}:work",
        f("passwd"),
        f("data"),
        f("work")
    );
    let top = format!("--layer=-:data/.wh.old,{}:data/new", f("new"));
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/images/make-oci.py"))
        .arg(dir.join("image"))
        .args(["--tag", "v1", "--env", "GREETING=from-image", "--env", "PATH=/bin"])
        .args(["--workdir", "/work", "--user", "bench"])
        .args(["--entrypoint", r#"["/bin/sh", "-c"]"#])
        .args([
            "--cmd",
            r#"["echo $GREETING $(pwd); for f in /data/*; do echo $f; done; while read k v rest; do case $k in Uid:) echo uid $v;; esac; done < /proc/self/status"]"#,
        ])
        .args(["--layer", &base, &top])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn a_run_in_an_oci_image_sees_its_merged_tree_and_config_and_the_manifest_names_its_digest() {
    if !privileged("image runs") {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let digest = build_image(dir.path());
    let job = dir.path().join("job.yaml");
    std::fs::write(
        &job,
        "version: 1\nname: img\ndefaults:\n  container: {rootfs: 'oci:image:v1'}\njobs:\n  default:\n    repetitions: 1\n  own:\n    shell: 'echo $GREETING mine; read l < /etc/passwd; echo $l'\n    env: {GREETING: from-job}\n    workdir: /data\n    container: {user: '0:0'}\n",
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let out_dir = dir.path().join("out");
    let (out, pid) = packrun(&[
        "run",
        "--quiet",
        "--cache",
        cache.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        job.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(cgroups_of(pid).is_empty());
    let rows = csv_rows(&out_dir.join("runs.csv"));
    let log = |job: &str| {
        let r = rows.iter().find(|r| r["job"] == job).unwrap();
        std::fs::read_to_string(&r["stdout"]).unwrap()
    };
    // The image's Entrypoint and Cmd, Env and WorkingDir; its User (bench,
    // from the image's /etc/passwd) maps to a host id of the run's own; the
    // whiteout removed /data/old.
    let default = log("default");
    let lines: Vec<&str> = default.lines().collect();
    assert_eq!(
        lines,
        ["from-image /work", "/data/new", "uid 1000"],
        "{default}"
    );
    // The job's own command, env, workdir and user win.
    assert_eq!(log("own"), "from-job mine\nroot:x:0:0::/root:/bin/sh\n");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("manifest.json")).unwrap())
            .unwrap();
    let images = manifest["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{manifest}");
    assert!(
        images.iter().all(|i| i["digest"] == digest.as_str()),
        "{manifest}"
    );
    // Two jobs, one cache entry.
    assert_eq!(packrun::image::list(&cache).unwrap().len(), 1);
}
