//! The time one container takes to start: `container::spawn` of /bin/true
//! to its execve, and to its exit reaped, over N runs (median and p90).
//! As root: `cargo run --release --example spawn_bench [N]`.

use packrun::container::{spawn, ContainerConfig};
use std::time::{Duration, Instant};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let mut spawned = Vec::with_capacity(n);
    let mut total = Vec::with_capacity(n);
    for _ in 0..n {
        let (_, out) = nix::unistd::pipe().expect("pipe");
        let (_, err) = nix::unistd::pipe().expect("pipe");
        let cfg = ContainerConfig::new(vec!["/bin/true".into()], out, err);
        let t = Instant::now();
        let c = match spawn(cfg, None, &mut |_| Ok(())) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("spawn_bench: {e}");
                std::process::exit(1);
            }
        };
        spawned.push(t.elapsed());
        let status = c.wait().expect("wait");
        total.push(t.elapsed());
        assert_eq!(status.exit_code, Some(0), "/bin/true failed");
    }
    let q = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    println!("| what | median | p90 | n |");
    println!("|---|---|---|---|");
    for (what, v) in [
        ("spawn to execve", &mut spawned),
        ("spawn to exit reaped", &mut total),
    ] {
        println!(
            "| {what} | {:.2} ms | {:.2} ms | {n} |",
            q(v, 0.5).as_secs_f64() * 1e3,
            q(v, 0.9).as_secs_f64() * 1e3
        );
    }
}
