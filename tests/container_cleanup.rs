//! Leaves no trace: after containers that succeed, fail at setup, fail in
//! `place`, or are killed, no root directory, mount or process remains.
//! Its own test binary, so nothing else in this process spawns meanwhile.

mod common;

use packrun::container::{spawn, ContainerConfig};
use std::os::fd::OwnedFd;

fn config(argv: &[&str]) -> ContainerConfig {
    let null = || OwnedFd::from(std::fs::File::create("/dev/null").unwrap());
    ContainerConfig {
        hostname: "clean".into(),
        ..ContainerConfig::new(argv.iter().map(|s| s.to_string()).collect(), null(), null())
    }
}

/// Root directories this process made, its mounts and its children.
fn traces() -> (Vec<String>, String, String) {
    let prefix = format!("root-{}-", std::process::id());
    let roots = std::fs::read_dir("/run/packrun")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut children = String::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        children +=
            &std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
    }
    (roots, mounts, children)
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn no_directory_mount_or_process_is_left_after_any_outcome() {
    if !common::privileged("no_directory_mount_or_process_is_left_after_any_outcome") {
        return;
    }
    let before = traces();
    assert!(
        before.0.is_empty() && before.2.trim().is_empty(),
        "{before:?}"
    );

    // While it sets up, a container has no directory of its own on the
    // host: its root is mounted on the runtime directory itself, inside
    // its own mount namespace.
    let mut starting =
        packrun::container::spawn_async(config(&["/bin/true"]), None, &mut |_| Ok(())).unwrap();
    assert_eq!(traces().0, Vec::<String>::new(), "a root directory per run");
    starting.wait_setup().unwrap();
    starting.wait().unwrap();
    spawn(config(&["/bin/true"]), None, &mut |_| Ok(()))
        .unwrap()
        .wait()
        .unwrap();
    spawn(config(&["/nonexistent"]), None, &mut |_| Ok(())).unwrap_err();
    spawn(config(&["/bin/true"]), None, &mut |_| {
        Err(std::io::Error::other("no"))
    })
    .unwrap_err();
    let mut bad_workdir = config(&["/bin/true"]);
    bad_workdir.workdir = Some("/nowhere".into());
    spawn(bad_workdir, None, &mut |_| Ok(())).unwrap_err();
    let running = spawn(config(&["sleep", "100"]), None, &mut |_| Ok(())).unwrap();
    drop(running); // kills and reaps
    let killed = spawn(
        config(&["/bin/sh", "-c", "sleep 100 & sleep 100"]),
        None,
        &mut |_| Ok(()),
    )
    .unwrap();
    killed.signal(libc::SIGKILL).unwrap();
    assert_eq!(killed.wait().unwrap().signal, Some(libc::SIGKILL));

    let after = traces();
    assert_eq!(after.0, Vec::<String>::new(), "root directories left");
    assert_eq!(after.1, before.1, "mount table changed");
    assert_eq!(after.2.trim(), "", "child processes left");
}
