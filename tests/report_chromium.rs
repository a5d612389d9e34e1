//! report.html in a real browser: headless Chromium loads the page, a probe
//! script counts the schedule's bars and records every script error, and
//! the test reads the result from the dumped DOM.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Chromium binary; a test that needs it fails, naming the package,
/// where it is not on PATH (tests/ci-install-ux.sh installs it).
fn chromium(test: &str) -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| on_path(name))
        .unwrap_or_else(|| {
            panic!(
                "{test} needs Chromium, which is not on PATH: install it with \
                 `apt-get install chromium` (tests/ci-install-ux.sh)"
            )
        })
}

/// Runs before the page's own script: records errors, then on load counts
/// bars, checks the hover script highlights every bar of one run, and
/// writes the findings on <body>.
const PROBE: &str = r#"<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push('error: ' + e.message); });
(function () {
  var orig = console.error;
  console.error = function () { window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' ')); orig.apply(console, arguments); };
})();
window.addEventListener('load', function () {
  var bars = document.querySelectorAll('.run-bar');
  var keys = {};
  bars.forEach(function (b) { keys[b.getAttribute('data-run-key')] = 1; });
  var hi = -1;
  if (bars.length) {
    var k = bars[0].getAttribute('data-run-key');
    bars[0].dispatchEvent(new MouseEvent('mouseenter'));
    var same = document.querySelectorAll('.run-bar[data-run-key="' + k + '"]').length;
    hi = document.querySelectorAll('.run-bar.hi').length === same ? 1 : 0;
  }
  document.body.setAttribute('data-probe-bars', String(bars.length));
  document.body.setAttribute('data-probe-runs', String(Object.keys(keys).length));
  document.body.setAttribute('data-probe-highlight', String(hi));
  document.body.setAttribute('data-probe-errors', window.__errors.join(' | '));
});
</script>"#;

/// What the probe found on the page.
#[derive(Debug)]
struct Probe {
    bars: usize,
    runs: usize,
    highlight: bool,
    errors: String,
    console: Vec<String>,
}

fn attr(dom: &str, name: &str) -> String {
    let key = format!("{name}=\"");
    let i = dom
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in the dumped DOM:\n{dom}"))
        + key.len();
    dom[i..i + dom[i..].find('"').unwrap()].to_string()
}

fn open(chromium: &Path, page: &Path) -> Probe {
    let tmp = tempfile::tempdir().unwrap();
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.contains("<head>"), "report.html has no <head>");
    let probed = tmp.path().join("probed.html");
    std::fs::write(
        &probed,
        html.replacen("<head>", &format!("<head>{PROBE}"), 1),
    )
    .unwrap();
    let profile = tmp.path().join("profile");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", probed.display()))
        .output()
        .expect("chromium starts");
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {err}");
    Probe {
        bars: attr(&dom, "data-probe-bars").parse().unwrap(),
        runs: attr(&dom, "data-probe-runs").parse().unwrap(),
        highlight: attr(&dom, "data-probe-highlight") == "1",
        errors: attr(&dom, "data-probe-errors"),
        // Chromium logs console messages (CSP violations too) as CONSOLE lines.
        console: err
            .lines()
            .filter(|l| l.contains("CONSOLE"))
            .map(String::from)
            .collect(),
    }
}

/// (rows, run-CPU pairs) of a runs.csv.
fn expected(dir: &Path) -> (usize, usize) {
    let mut rdr = csv::Reader::from_path(dir.join("runs.csv")).unwrap();
    let col = rdr
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "cpus")
        .unwrap();
    let mut rows = 0;
    let mut pairs = 0;
    for r in rdr.records() {
        rows += 1;
        for part in r.unwrap()[col].split(',') {
            pairs += match part.split_once('-') {
                Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
                None => 1,
            };
        }
    }
    (rows, pairs)
}

fn check(chromium: &Path, dir: &Path) {
    let (rows, pairs) = expected(dir);
    let p = open(chromium, &dir.join("report.html"));
    assert_eq!(p.bars, pairs, "one bar per run and CPU: {p:?}");
    assert_eq!(p.runs, rows, "every run has its bars: {p:?}");
    assert!(
        p.highlight,
        "hovering a bar highlights every bar of its run: {p:?}"
    );
    assert_eq!(p.errors, "", "script errors: {p:?}");
    assert!(p.console.is_empty(), "console messages: {:?}", p.console);
}

#[test]
#[ignore = "needs Chromium (tests/ci-install-ux.sh)"]
fn the_sample_report_shows_one_bar_per_run_and_cpu_without_console_errors() {
    let chromium =
        chromium("the_sample_report_shows_one_bar_per_run_and_cpu_without_console_errors");
    let dir = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results-sample");
    for f in ["runs.csv", "manifest.json"] {
        std::fs::copy(sample.join(f), dir.path().join(f)).unwrap();
    }
    let (out, _) = packrun(&["report", "--html", dir.path().to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check(&chromium, dir.path());
}

#[test]
#[ignore = "needs root and Chromium (tests/ci-install-ux.sh)"]
fn the_report_of_a_real_batch_shows_one_bar_per_run_and_cpu_without_console_errors() {
    let name = "the_report_of_a_real_batch_shows_one_bar_per_run_and_cpu_without_console_errors";
    if !privileged(name) {
        return;
    }
    let chromium = chromium(name);
    let dir = tempfile::Builder::new()
        .prefix("report-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jobs/failures.yaml");
    let (out, _) = packrun(&[
        "run",
        "--quiet",
        "--out",
        dir.path().to_str().unwrap(),
        job.to_str().unwrap(),
    ]);
    // Some runs of failures.yaml fail on purpose: exit 1.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dir.path().join("report.html").exists(),
        "packrun run writes report.html"
    );
    check(&chromium, dir.path());
}
