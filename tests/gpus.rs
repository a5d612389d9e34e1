//! The kernel keeps a run to its own GPUs, without a GPU: character devices
//! with NVIDIA's major (195) and no driver behind them stand in for two
//! GPUs below a machine root of the test's own (`PACKRUN_GPU_ROOT`). Two
//! `packrun exec --gpus 1` at once get different GPUs (claims across
//! packruns); each opening its own node gets past the cgroup (ENXIO: no
//! driver), and opening the other's (bound in by the job itself) gets EPERM.
//! Through the real binary, as root, on this machine's cgroup version.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A machine root with two NVIDIA GPUs, removed on drop. Under /var/lib:
/// a run gets a fresh /tmp.
struct FakeGpus(PathBuf);

impl FakeGpus {
    fn make(name: &str) -> FakeGpus {
        let root = PathBuf::from(format!(
            "/var/lib/packrun-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        let me = FakeGpus(root.clone());
        let put = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        for (minor, bus) in ["0000:3b:00.0", "0000:5e:00.0"].iter().enumerate() {
            let dev = format!("sys/bus/pci/devices/{bus}");
            put(&format!("{dev}/class"), "0x030200\n");
            put(&format!("{dev}/vendor"), "0x10de\n");
            put(&format!("{dev}/numa_node"), "0\n");
            put(&format!("{dev}/local_cpulist"), "\n");
            put(
                &format!("proc/driver/nvidia/gpus/{bus}/information"),
                &format!("Model: \t\t fake\nDevice Minor: \t {minor}\n"),
            );
        }
        std::fs::create_dir_all(root.join("dev")).unwrap();
        for (name, minor) in [("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255)] {
            let p = root.join("dev").join(name);
            nix::sys::stat::mknod(
                &p,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(195, minor),
            )
            .unwrap();
            // mknod's mode is cut by the umask.
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .unwrap();
        }
        let sync = root.join("sync");
        std::fs::create_dir_all(&sync).unwrap();
        std::fs::set_permissions(&sync, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        me
    }
}

impl Drop for FakeGpus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The job: names its node, opens it and the other GPU's (through the
/// host's fake /dev bound at /fakedev), tells, then (the first run) waits
/// until the second has told, so that both hold their GPUs at once.
const PROBE: &str = r#"
own=$(ls /dev | grep -E '^nvidia[0-9]+$')
echo "own=$own visible=$CUDA_VISIBLE_DEVICES order=$CUDA_DEVICE_ORDER nodes=$(ls /dev | grep nvidia | tr '\n' ' ')"
n=${own#nvidia}
(exec 3</dev/$own) 2>&1
(exec 3</fakedev/nvidia$((1 - n))) 2>&1
if [ "$1" = first ]; then
  touch /sync/first-told
  i=0; while [ ! -e /sync/second-told ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i + 1)); done
else
  touch /sync/second-told
fi
"#;

fn probe(root: &Path, which: &str) -> std::process::Child {
    let dev = format!("{}:/fakedev", root.join("dev").display());
    let sync = format!("{}:/sync:rw", root.join("sync").display());
    Command::new(BIN)
        .env("PACKRUN_GPU_ROOT", root)
        .args(["exec", "--gpus", "1", "--cpus", "1", "--time-limit", "600s"])
        .args([
            "--bind", &dev, "--bind", &sync, "--", "sh", "-c", PROBE, "probe", which,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("packrun starts")
}

#[test]
#[ignore = "needs root: makes character devices, cgroups and namespaces"]
fn a_run_opens_only_its_own_gpu_and_two_packruns_never_share_one() {
    if !privileged("a_run_opens_only_its_own_gpu_and_two_packruns_never_share_one") {
        return;
    }
    let fake = FakeGpus::make("gpus");
    let first = probe(&fake.0, "first");
    // The second starts once the first holds its GPU.
    let told = fake.0.join("sync/first-told");
    for _ in 0..6000 {
        if told.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let second = probe(&fake.0, "second");
    let mut own = Vec::new();
    for (name, child) in [("first", first), ("second", second)] {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        println!("--- {name} run's output:\n{text}--- its record (stderr):\n{err}");
        assert!(out.status.success(), "{name}: {text}\n{err}");
        let line = text
            .lines()
            .find(|l| l.starts_with("own="))
            .expect("it told");
        let node = line[4..line.find(' ').unwrap()].to_string();
        assert!(
            line.contains("visible=0 order=PCI_BUS_ID nodes=nvidia"),
            "{line}"
        );
        assert!(
            line.contains("nvidiactl"),
            "the shared node is there: {line}"
        );
        let n: u32 = node.trim_start_matches("nvidia").parse().unwrap();
        assert!(
            text.contains(&format!(
                "cannot open /dev/nvidia{n}: No such device or address"
            )),
            "{name}: its own node gets past the cgroup to the missing driver: {text}"
        );
        assert!(
            text.contains(&format!(
                "cannot open /fakedev/nvidia{}: Operation not permitted",
                1 - n
            )),
            "{name}: the other GPU's node is denied: {text}"
        );
        let bus = ["0000:3b:00.0", "0000:5e:00.0"][n as usize];
        assert!(
            err.contains(&format!("gpus                   {bus}")),
            "{err}"
        );
        own.push(node);
    }
    assert_ne!(own[0], own[1], "two packruns at once got one GPU");
}

#[test]
#[ignore = "needs root: makes cgroups and namespaces"]
fn more_gpus_than_the_machine_has_is_exit_2_naming_them() {
    if !privileged("more_gpus_than_the_machine_has_is_exit_2_naming_them") {
        return;
    }
    let fake = FakeGpus::make("gpus-many");
    let out = Command::new(BIN)
        .env("PACKRUN_GPU_ROOT", &fake.0)
        .args(["exec", "--gpus", "3", "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("resources.gpus asks for 3 GPUs, but the machine has 2"),
        "{err}"
    );
}
