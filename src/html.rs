//! report.html: one self-contained page per results folder — the schedule
//! (CPUs × time, one bar per run on each of its CPUs), per-job charts of
//! wall time, CPU time and peak memory, the summary table and the manifest;
//! and compare.html, the section `packrun compare` draws (ratios B/A with
//! their intervals).
//!
//! The SVG is written by the small `svg` module below rather than plotters:
//! the charts are rectangles, circles, lines and text, which take a few
//! format! calls; plotters would add a dependency tree and, for text, a font
//! stack (or hand-placed labels anyway), and we want every bar to carry our
//! own class, data attribute and <title> tooltip, which its backend does not
//! expose. No fonts are embedded: text uses the browser's sans-serif.

use crate::fsx::Context;
use crate::report::compare::{self, Comparison, Verdict};
use crate::report::formats::epoch_seconds;
use crate::report::{byte_unit, human_bytes, label, params_label, Summary};
use crate::results::{read_manifest_in, read_rows, Manifest, ResultsError, Row, State};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Writes `dir/report.html` from `dir/runs.csv` and `dir/manifest.json`
/// (the page is still written, without topology, when the manifest is absent).
pub fn write_report(dir: &Path) -> Result<PathBuf, ResultsError> {
    let rows = read_rows(&dir.join("runs.csv"))?;
    let manifest = read_manifest_in(dir)?;
    let out = dir.join("report.html");
    std::fs::write(&out, render(&rows, manifest.as_ref())).at("write", &out)?;
    Ok(out)
}

/// Minimal SVG and HTML writing: escaping, numbers, a colour palette.
mod svg {
    /// Escapes text for HTML/SVG content and attribute values.
    pub fn esc(s: &str) -> String {
        let mut o = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '&' => o.push_str("&amp;"),
                '<' => o.push_str("&lt;"),
                '>' => o.push_str("&gt;"),
                '"' => o.push_str("&quot;"),
                '\'' => o.push_str("&#39;"),
                c => o.push(c),
            }
        }
        o
    }

    /// Tableau 10: distinct, colour-blind friendly, readable on white.
    const PALETTE: [&str; 10] = [
        "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7",
        "#bab0ac", "#e15759",
    ];

    pub fn colour(i: usize) -> &'static str {
        PALETTE[i % PALETTE.len()]
    }

    /// A "nice" tick step (1, 2 or 5 × 10^k) giving about `n` ticks over `span`.
    pub fn step(span: f64, n: f64) -> f64 {
        if span <= 0.0 || !span.is_finite() {
            return 1.0;
        }
        let raw = span / n;
        let mag = 10f64.powf(raw.log10().floor());
        let f = raw / mag;
        mag * if f < 1.5 {
            1.0
        } else if f < 3.5 {
            2.0
        } else if f < 7.5 {
            5.0
        } else {
            10.0
        }
    }

    /// A tick label without trailing zeros.
    pub fn num(v: f64) -> String {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

use svg::esc;

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 4px}
.sub{color:#666;font-size:13px}
svg text{font-family:inherit;font-size:11px;fill:#333}
svg text.bar-label{fill:#fff;font-size:10px;pointer-events:none}
svg text.bar-label.failed{fill:#600;font-weight:600;paint-order:stroke;stroke:#fff;stroke-width:3px}
svg .node-label{font-weight:600;font-size:12px}
.run-bar{stroke:#fff;stroke-width:.5}
.run-bar.failed{stroke:#c00;stroke-width:1.5}
.run-bar.warmup{opacity:.45}
.run-bar.hi{stroke:#000;stroke-width:2}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:13px;margin:6px 0}
.legend span{display:inline-flex;align-items:center;gap:5px}
.sw{display:inline-block;width:14px;height:10px;border-radius:2px}
table{border-collapse:collapse;font-size:13px}
th,td{padding:4px 9px;border-bottom:1px solid #e4e4e4;text-align:left;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td:nth-child(4){color:#b00}
dl{display:grid;grid-template-columns:max-content auto;gap:3px 16px;font-size:13px}
dt{color:#666} dd{margin:0}
.charts{display:flex;flex-wrap:wrap;gap:8px}
td.verdict-faster,td.verdict-smaller{color:#2f7d32} td.verdict-slower,td.verdict-larger{color:#b00}
td.verdict-too-few-runs{color:#888} tr.geomean td{font-weight:600} tr.geomean.first td{border-top:1px solid #999}
"#;

/// Highlights every bar of the run under the pointer (a run on several CPUs
/// has one bar per CPU).
const SCRIPT: &str = r#"
document.querySelectorAll('.run-bar').forEach(function(b){
  var k=b.getAttribute('data-run-key');
  function set(on){document.querySelectorAll('.run-bar[data-run-key="'+k+'"]').forEach(function(x){x.classList.toggle('hi',on);});}
  b.addEventListener('mouseenter',function(){set(true);});
  b.addEventListener('mouseleave',function(){set(false);});
});
"#;

/// The page's head and the start of its body: our style, and a
/// Content-Security-Policy that forbids loading anything.
fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width\">\n<title>{}</title>\n<style>{STYLE}</style></head><body>\n",
        esc(title)
    )
}

/// The whole page.
pub fn render(rows: &[Row], manifest: Option<&Manifest>) -> String {
    let groups = crate::report::summarize(rows);
    let mut jobs: Vec<&str> = Vec::new();
    for r in rows {
        if !jobs.contains(&r.job.as_str()) {
            jobs.push(&r.job);
        }
    }
    let title = manifest.map(|m| m.name.as_str()).unwrap_or("packrun batch");
    let mut h = head(&format!("{title} — packrun report"));
    let _ = writeln!(h, "<h1>{}</h1>", esc(title));
    let states = |s: State| rows.iter().filter(|r| r.state == s).count();
    let _ = writeln!(
        h,
        "<p class=\"sub\">{} runs ({} completed){}{}</p>",
        rows.len(),
        states(State::Completed),
        manifest
            .map(|m| format!(" · {} · {}", esc(&m.machine.host), esc(&m.start)))
            .unwrap_or_default(),
        manifest
            .and_then(|m| m.end.as_ref())
            .map(|e| format!(" – {}", esc(e)))
            .unwrap_or_default()
    );

    h.push_str("<h2>Schedule</h2>\n");
    h.push_str(&legend(&jobs));
    h.push_str(&schedule(rows, manifest, &jobs));

    h.push_str("<h2>Usage per job</h2>\n<p class=\"sub\">Measured runs (no warmups): a dot per run, a bar at the median of the completed runs; red rings are runs that did not complete.</p>\n");
    for (i, job) in jobs.iter().enumerate() {
        let gs: Vec<&Summary> = groups.iter().filter(|g| g.job == *job).collect();
        if gs.is_empty() {
            continue;
        }
        let _ = writeln!(h, "<h3>{}</h3>\n<div class=\"charts\">", esc(job));
        h.push_str(&dot_chart(
            "wall time (s)",
            &gs,
            svg::colour(i),
            |r| r.wall_s,
            Unit::Seconds,
        ));
        h.push_str(&dot_chart(
            "CPU time (s)",
            &gs,
            svg::colour(i),
            |r| r.cpu_s,
            Unit::Seconds,
        ));
        h.push_str(&dot_chart(
            "peak memory",
            &gs,
            svg::colour(i),
            |r| r.memory_peak as f64,
            Unit::Bytes,
        ));
        h.push_str("</div>\n");
    }

    h.push_str("<h2>Summary</h2>\n");
    h.push_str(&summary_table(&groups));
    if groups.iter().any(|g| !g.counters.is_empty()) {
        h.push_str("<h2>Counters</h2>\n");
        h.push_str(&counters_table(&groups));
    }

    if let Some(m) = manifest {
        h.push_str("<h2>Manifest</h2>\n");
        h.push_str(&manifest_list(m));
    }
    let _ = write!(h, "<script>{SCRIPT}</script>\n</body></html>\n");
    h
}

fn legend(jobs: &[&str]) -> String {
    let mut s = String::from("<div class=\"legend\">");
    for (i, j) in jobs.iter().enumerate() {
        let _ = write!(
            s,
            "<span><i class=\"sw\" style=\"background:{}\"></i>{}</span>",
            svg::colour(i),
            esc(j)
        );
    }
    s.push_str(
        "<span><i class=\"sw\" style=\"background:repeating-linear-gradient(45deg,#999 0 2px,#fff 2px 4px);outline:1.5px solid #c00\"></i>did not complete (state in the tooltip)</span>\
         <span><i class=\"sw\" style=\"background:#999;opacity:.45\"></i>warmup</span></div>\n",
    );
    s
}

/// One row of the schedule: a CPU and the node it belongs to.
struct CpuRow {
    cpu: u32,
    node: Option<u32>,
}

/// The CPU rows grouped by NUMA node: the manifest's topology, plus any CPU
/// a run used that the topology does not list.
fn cpu_rows(rows: &[Row], manifest: Option<&Manifest>) -> Vec<CpuRow> {
    let mut out: Vec<CpuRow> = Vec::new();
    for n in manifest.iter().flat_map(|m| &m.topology.nodes) {
        out.extend(n.cpus.iter().map(|cpu| CpuRow {
            cpu,
            node: Some(n.id),
        }));
    }
    let mut extra: Vec<u32> = rows
        .iter()
        .flat_map(|r| r.cpus.iter())
        .filter(|c| !out.iter().any(|r| r.cpu == *c))
        .collect();
    extra.sort();
    extra.dedup();
    out.extend(extra.into_iter().map(|cpu| CpuRow { cpu, node: None }));
    out
}

fn tooltip(r: &Row) -> String {
    format!(
        "{}\nrep {}{}\nCPUs {}\nwall {:.3} s · CPU {:.3} s\npeak memory {}\n{}{}{}",
        label(&r.job, &r.params),
        r.rep,
        if r.warmup { " (warmup)" } else { "" },
        r.cpus,
        r.wall_s,
        r.cpu_s,
        human_bytes(r.memory_peak),
        r.net
            .map(|t| format!(
                "network received {} ({} packets) · sent {} ({} packets)\n",
                human_bytes(t.rx_bytes),
                t.rx_packets,
                human_bytes(t.tx_bytes),
                t.tx_packets
            ))
            .unwrap_or_default(),
        r.state,
        r.exit_code
            .map(|c| format!(" (exit code {c})"))
            .unwrap_or_default()
    )
}

/// The schedule's geometry: the CPU labels' width, the width, a lane's height.
const SCHEDULE_LEFT: f64 = 110.0;
const SCHEDULE_WIDTH: f64 = 1180.0;
const SCHEDULE_ROW: f64 = 16.0;

/// The schedule: a row per CPU, time across, a bar per run on each of its CPUs.
fn schedule(rows: &[Row], manifest: Option<&Manifest>, jobs: &[&str]) -> String {
    const LEFT: f64 = SCHEDULE_LEFT;
    const WIDTH: f64 = SCHEDULE_WIDTH;
    const ROW: f64 = SCHEDULE_ROW;
    let plot_w = WIDTH - LEFT - 20.0;
    let times: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| {
            let s = epoch_seconds(r.start_time);
            let e = epoch_seconds(r.end_time);
            (s, e.max(s))
        })
        .collect();
    let t0 = times.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
    let t1 = times.iter().map(|t| t.1).fold(f64::NEG_INFINITY, f64::max);
    if !t0.is_finite() {
        return "<p>No runs recorded yet.</p>\n".into();
    }
    let span = (t1 - t0).max(1e-3);
    let x = |t: f64| LEFT + (t - t0) / span * plot_w;

    // Y position of every CPU row; a header per node.
    let mut body = String::new();
    let (ypos, plot_bottom) = cpu_lanes(&cpu_rows(rows, manifest), &mut body);

    // Grid and time axis.
    let step = svg::step(span, 10.0);
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let _ = writeln!(
            body,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"4\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3} s</text>",
            x(t0 + t),
            plot_bottom,
            plot_bottom + 14.0,
            svg::num(t)
        );
        t += step;
    }

    let defs = hatch_defs(jobs.len());

    for (r, (s, e)) in rows.iter().zip(&times) {
        let ji = jobs.iter().position(|j| *j == r.job).unwrap_or(0);
        let done = r.state == State::Completed;
        let fill = if done {
            svg::colour(ji).to_string()
        } else {
            format!("url(#hatch{ji})")
        };
        let class = format!(
            "run-bar state-{}{}{}",
            r.state.as_str().to_lowercase(),
            if done { "" } else { " failed" },
            if r.warmup { " warmup" } else { "" }
        );
        let tip = esc(&tooltip(r));
        for cpu in r.cpus.iter() {
            let Some((_, cy)) = ypos.iter().find(|(c, _)| *c == cpu) else {
                continue;
            };
            let _ = writeln!(
                body,
                "<rect class=\"{class}\" data-run-key=\"{}\" data-cpu=\"{cpu}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"2\" fill=\"{fill}\"><title>{tip}</title></rect>",
                esc(&r.key),
                x(*s),
                cy + 1.5,
                (x(*e) - x(*s)).max(1.5),
                ROW - 3.0
            );
            let w = x(*e) - x(*s);
            if w > 8.0 * (r.job.len() as f64 + 6.0) {
                let _ = writeln!(
                    body,
                    "<text class=\"bar-label{}\" x=\"{:.1}\" y=\"{:.1}\">{} #{}{}</text>",
                    if done { "" } else { " failed" },
                    x(*s) + 4.0,
                    cy + 11.5,
                    esc(&r.job),
                    r.rep,
                    if done {
                        String::new()
                    } else {
                        format!(" {}", r.state)
                    }
                );
            }
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{:.0}\" viewBox=\"0 0 {WIDTH} {:.0}\" role=\"img\" aria-label=\"schedule\" id=\"schedule\">\n{defs}{body}</svg>\n",
        plot_bottom + 22.0,
        plot_bottom + 22.0
    )
}

/// A lane per CPU, grouped under a header per NUMA node, drawn into
/// `body`: each CPU's y position, and the y below the last lane.
fn cpu_lanes(cpus: &[CpuRow], body: &mut String) -> (Vec<(u32, f64)>, f64) {
    const NODE_HEAD: f64 = 22.0;
    const LEFT: f64 = SCHEDULE_LEFT;
    const WIDTH: f64 = SCHEDULE_WIDTH;
    const ROW: f64 = SCHEDULE_ROW;
    let plot_w = WIDTH - LEFT - 20.0;
    let mut y = 4.0;
    let mut ypos: Vec<(u32, f64)> = Vec::new();
    let mut last_node: Option<Option<u32>> = None;
    for c in cpus {
        if last_node != Some(c.node) {
            if last_node.is_some() {
                y += 6.0;
                let _ = writeln!(
                    body,
                    "<line x1=\"0\" x2=\"{WIDTH}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#bbb\" stroke-dasharray=\"4 3\"/>",
                    y - 3.0,
                    y - 3.0
                );
            }
            let label = match c.node {
                Some(n) => format!("NUMA node {n}"),
                None => "CPUs outside the topology".into(),
            };
            let _ = writeln!(
                body,
                "<text class=\"node-label\" x=\"4\" y=\"{:.1}\">{}</text>",
                y + 15.0,
                esc(&label)
            );
            y += NODE_HEAD;
            last_node = Some(c.node);
        }
        let _ = writeln!(
            body,
            "<rect x=\"{LEFT}\" y=\"{y:.1}\" width=\"{plot_w:.1}\" height=\"{ROW}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">CPU {}</text>",
            if ypos.len() % 2 == 0 { "#f6f6f6" } else { "#fdfdfd" },
            LEFT - 8.0,
            y + 12.0,
            c.cpu
        );
        ypos.push((c.cpu, y));
        y += ROW;
    }
    (ypos, y)
}

/// Hatch patterns for runs that did not complete, one per job colour.
fn hatch_defs(jobs: usize) -> String {
    let mut defs = String::from("<defs>");
    for i in 0..jobs {
        let _ = write!(
            defs,
            "<pattern id=\"hatch{i}\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"{}\"/><rect width=\"2.5\" height=\"6\" fill=\"#fff\" fill-opacity=\".75\"/></pattern>",
            svg::colour(i)
        );
    }
    defs.push_str("</defs>\n");
    defs
}

#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Bytes,
}

/// Dots per run and a median bar, one column per parameter set of a job.
fn dot_chart(
    title: &str,
    groups: &[&Summary],
    colour: &str,
    value: impl Fn(&Row) -> f64,
    unit: Unit,
) -> String {
    const W: f64 = 380.0;
    const H: f64 = 220.0;
    const L: f64 = 58.0;
    const T: f64 = 22.0;
    const B: f64 = 44.0;
    let plot_w = W - L - 12.0;
    let plot_h = H - T - B;
    let max = groups
        .iter()
        .flat_map(|g| g.rows.iter().map(|r| value(r)))
        .fold(0.0f64, f64::max);
    let (div, uname) = match unit {
        Unit::Seconds => (1.0, "s"),
        Unit::Bytes => byte_unit(max),
    };
    let step = svg::step(max / div, 4.0);
    let top = ((max / div / step).ceil().max(1.0)) * step;
    let y = |v: f64| T + plot_h - (v / div) / top * plot_h;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" class=\"dot-chart\"><text x=\"{L}\" y=\"14\" style=\"font-weight:600;font-size:12px\">{}</text>\n",
        esc(title)
    );
    let mut v = 0.0;
    while v <= top + 1e-9 {
        let yy = T + plot_h - v / top * plot_h;
        let _ = writeln!(
            s,
            "<line x1=\"{L}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#e6e6e6\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} {uname}</text>",
            L + plot_w,
            L - 5.0,
            yy + 4.0,
            svg::num(v)
        );
        v += step;
    }
    let bw = plot_w / groups.len() as f64;
    for (i, g) in groups.iter().enumerate() {
        let cx = L + (i as f64 + 0.5) * bw;
        let n = g.rows.len().max(1) as f64;
        let spread = (bw * 0.5).min(60.0);
        let ok: Vec<f64> = g.completed().map(&value).collect();
        if !ok.is_empty() {
            let m = crate::report::Stats::of(&ok).median;
            let _ = writeln!(
                s,
                "<line class=\"median\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{2:.1}\" y2=\"{2:.1}\" stroke=\"#222\" stroke-width=\"2\"><title>median {3}</title></line>",
                cx - spread / 2.0 - 8.0,
                cx + spread / 2.0 + 8.0,
                y(m),
                esc(&match unit {
                    Unit::Seconds => format!("{m:.3} s"),
                    Unit::Bytes => human_bytes(m as u64),
                })
            );
        }
        for (k, r) in g.rows.iter().enumerate() {
            let px = if n > 1.0 {
                cx - spread / 2.0 + spread * k as f64 / (n - 1.0)
            } else {
                cx
            };
            let done = r.state == State::Completed;
            let (fill, stroke) = if done {
                (colour, "#fff")
            } else {
                ("none", "#c00")
            };
            let _ = writeln!(
                s,
                "<circle class=\"run-dot\" cx=\"{px:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"><title>{}</title></circle>",
                y(value(r)),
                esc(&tooltip(r))
            );
        }
        let label = params_label(&g.params);
        let label = if label.is_empty() {
            "(no parameters)".into()
        } else {
            label
        };
        let max_chars = (bw / 6.0).max(4.0) as usize;
        let short: String = if label.chars().count() > max_chars {
            label.chars().take(max_chars - 1).collect::<String>() + "…"
        } else {
            label.clone()
        };
        let _ = writeln!(
            s,
            "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\"><title>{}</title>{}</text>",
            T + plot_h + 16.0,
            esc(&label),
            esc(&short)
        );
    }
    let _ = writeln!(
        s,
        "<line x1=\"{L}\" x2=\"{L}\" y1=\"{T}\" y2=\"{:.1}\" stroke=\"#999\"/></svg>",
        T + plot_h
    );
    s
}

fn summary_table(groups: &[Summary]) -> String {
    let cells = crate::report::table_cells(groups);
    let mut s = String::from("<table><thead><tr>");
    for c in &cells[0] {
        let _ = write!(s, "<th>{}</th>", esc(c));
    }
    s.push_str("</tr></thead><tbody>\n");
    for (g, row) in groups.iter().zip(&cells[1..]) {
        let _ = write!(
            s,
            "<tr{}>",
            if g.failures > 0 { " class=\"bad\"" } else { "" }
        );
        for (i, c) in row.iter().enumerate() {
            let _ = write!(
                s,
                "<td{}>{}</td>",
                if i >= 4 { " class=\"n\"" } else { "" },
                esc(c)
            );
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n<p class=\"sub\">Statistics cover the completed measured runs. Outliers: wall times with a modified z-score above 3.5 (Iglewicz–Hoaglin); counted, never dropped.</p>\n");
    s
}

/// The counters of each job and parameter set: the statistics of its
/// completed measured runs that counted them.
fn counters_table(groups: &[Summary]) -> String {
    let mut s = String::from("<table><thead><tr>");
    for c in [
        "job",
        "parameters",
        "counter",
        "runs",
        "median",
        "mean",
        "stddev",
        "min",
        "max",
    ] {
        let _ = write!(s, "<th>{c}</th>");
    }
    s.push_str("</tr></thead><tbody>\n");
    for g in groups {
        for (c, st, n) in g.counters.iter().filter(|(_, _, n)| *n > 0) {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{n}</td>",
                esc(&g.job),
                esc(&crate::report::params_label(&g.params)),
                esc(c.column())
            );
            for v in [st.median, st.mean, st.stddev, st.min, st.max] {
                let _ = write!(s, "<td class=\"n\">{}</td>", esc(&c.cell(v)));
            }
            s.push_str("</tr>\n");
        }
    }
    s.push_str("</tbody></table>\n<p class=\"sub\">task_clock in nanoseconds, energy in joules, the others are counts; runs.csv's counters_note says which values were scaled (multiplexed) or left empty, and why.</p>\n");
    s
}

/// Writes `dir/compare.html`: the comparison section as a page of its
/// own, self-contained like report.html.
pub fn write_compare_report(dir: &Path, c: &Comparison) -> Result<PathBuf, ResultsError> {
    let out = dir.join("compare.html");
    let mut h = head("comparison — packrun");
    h.push_str("<h1>packrun comparison</h1>\n");
    h.push_str(&compare_section(c));
    h.push_str("</body></html>\n");
    std::fs::write(&out, h).at("write", &out)?;
    Ok(out)
}

/// Adds the comparison to `dir`'s report.html (made anew), before its end.
pub fn add_comparison_to_report(dir: &Path, c: &Comparison) -> Result<PathBuf, ResultsError> {
    let page = write_report(dir)?;
    let text = std::fs::read_to_string(&page).at("read", &page)?;
    let at = text.rfind("</body>").unwrap_or(text.len());
    let text = format!("{}{}{}", &text[..at], compare_section(c), &text[at..]);
    std::fs::write(&page, text).at("write", &page)?;
    Ok(page)
}

/// Green when B is faster or smaller, red when slower or larger, blue when
/// no difference shows, grey without a verdict.
fn verdict_colour(v: Verdict) -> &'static str {
    match v {
        Verdict::Faster | Verdict::Smaller => "#59a14f",
        Verdict::Slower | Verdict::Larger => "#e15759",
        Verdict::NoSignificantDifference => "#4e79a7",
        Verdict::TooFewRuns => "#999",
    }
}

/// `no-significant-difference`: a verdict as a class name.
fn verdict_class(v: Verdict) -> String {
    format!("verdict-{}", v.as_str().replace(' ', "-"))
}

/// The comparison: what A and B are, a ratio chart per metric, the table
/// and the notes on the method.
pub fn compare_section(c: &Comparison) -> String {
    let mut h = String::from("<section id=\"comparison\">\n<h2>Comparison</h2>\n");
    let _ = writeln!(
        h,
        "<p class=\"sub\">A: {}<br>B: {}</p>",
        esc(&c.a.describe()),
        esc(&c.b.describe())
    );
    let _ = writeln!(
        h,
        "<p class=\"sub\">B/A per job and parameter set: a dot at the ratio of the medians, a bar over its {}% interval, on a log scale; left of the line at 1, B is faster (smaller). Green: faster or smaller; red: slower or larger; blue: no significant difference; grey rings: too few runs for a verdict.</p>",
        svg::num(c.confidence * 100.0)
    );
    h.push_str("<div class=\"charts\">\n");
    for i in 0..c.geomean.len() {
        h.push_str(&ratio_chart(c, i));
    }
    h.push_str("</div>\n");
    h.push_str(&compare_table(c));
    for n in compare::notes(c) {
        let _ = writeln!(h, "<p class=\"sub\">{}</p>", esc(&n));
    }
    h.push_str("</section>\n");
    h
}

/// One metric's ratios B/A: a row per set and one for the geometric mean,
/// the ratio on a log scale centred on 1.
fn ratio_chart(c: &Comparison, metric: usize) -> String {
    const W: f64 = 640.0;
    const L: f64 = 230.0;
    const T: f64 = 26.0;
    const ROW: f64 = 22.0;
    let plot_w = W - L - 24.0;
    let geo = &c.geomean[metric];
    let name = geo.metric.name();
    let rows = c.sets.len() as f64 + 1.0;
    let plot_h = rows * ROW + 8.0;
    let height = T + plot_h + 40.0;

    // A symmetric log domain that holds every ratio and bound, at least 1/1.1 … 1.1.
    let lim = c
        .sets
        .iter()
        .map(|s| &s.metrics[metric])
        .flat_map(|m| [m.ratio, m.ci_low, m.ci_high])
        .chain([geo.ratio, geo.ci_low, geo.ci_high])
        .flatten()
        .filter(|v| *v > 0.0 && v.is_finite())
        .map(|v| v.ln().abs())
        .fold(1.1f64.ln(), f64::max)
        * 1.08;
    let x = |v: f64| L + (v.ln().clamp(-lim, lim) + lim) / (2.0 * lim) * plot_w;

    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height:.0}\" viewBox=\"0 0 {W} {height:.0}\" class=\"ratio-chart\" data-metric=\"{}\" role=\"img\" aria-label=\"B/A {name}\"><text x=\"{L}\" y=\"16\" style=\"font-weight:600;font-size:12px\">B/A {name}</text>\n",
        esc(geo.metric.column()),
    );
    ratio_ticks(&mut s, &x, lim, (T, plot_h));
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"sub\">← B faster/smaller · B slower/larger →</text>",
        L + plot_w / 2.0,
        T + plot_h + 32.0
    );

    for (i, set) in c.sets.iter().enumerate() {
        let m = &set.metrics[metric];
        let y = T + 4.0 + (i as f64 + 0.5) * ROW;
        let tooltip = format!(
            "{}\n{name}: A {} ({} runs), B {} ({} runs)\nB/A {}{}{}\n{}",
            set.label(),
            m.median_a.map_or("-".into(), |v| m.metric.format(v)),
            set.runs_a,
            m.median_b.map_or("-".into(), |v| m.metric.format(v)),
            set.runs_b,
            m.ratio.map_or("-".into(), |r| format!("{r:.3}")),
            match (m.ci_low, m.ci_high) {
                (Some(lo), Some(hi)) => format!(" [{lo:.3}, {hi:.3}]"),
                _ => String::new(),
            },
            m.p_value.map_or(String::new(), |p| format!(", p {p:.3}")),
            m.verdict
        );
        let p = Point {
            ratio: m.ratio,
            lo: m.ci_low,
            hi: m.ci_high,
            verdict: m.verdict,
            tooltip,
        };
        ratio_point(&mut s, &x, L, (y, &set.label()), p, false);
    }
    let y = T + 4.0 + (rows - 0.5) * ROW;
    let _ = writeln!(
        s,
        "<line x1=\"12\" x2=\"{:.1}\" y1=\"{1:.1}\" y2=\"{1:.1}\" stroke=\"#bbb\" stroke-dasharray=\"4 3\"/>",
        L + plot_w,
        y - ROW / 2.0
    );
    let glabel = format!("geometric mean ({} sets)", geo.sets);
    let gtip = format!(
        "{glabel}\nB/A {}{}\n{}",
        geo.ratio.map_or("-".into(), |r| format!("{r:.3}")),
        match (geo.ci_low, geo.ci_high) {
            (Some(lo), Some(hi)) => format!(" [{lo:.3}, {hi:.3}]"),
            _ => String::new(),
        },
        geo.verdict
    );
    let gp = Point {
        ratio: geo.ratio,
        lo: geo.ci_low,
        hi: geo.ci_high,
        verdict: geo.verdict,
        tooltip: gtip,
    };
    ratio_point(&mut s, &x, L, (y, &glabel), gp, true);
    let _ = writeln!(
        s,
        "<line class=\"one\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{T}\" y2=\"{1:.1}\" stroke=\"#222\" stroke-width=\"1.2\"/></svg>",
        x(1.0),
        T + plot_h
    );
    s
}

/// The ratio chart's ticks at 1, 1.01 … 1000 and their reciprocals, at
/// least 34 px apart going out from 1, over the plot's height.
fn ratio_ticks(s: &mut String, x: &impl Fn(f64) -> f64, lim: f64, (top, plot_h): (f64, f64)) {
    let mut ups = vec![1.0];
    for t in [
        1.01f64, 1.02, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0,
    ] {
        if t.ln() <= lim && x(t) - x(ups[ups.len() - 1]) >= 34.0 {
            ups.push(t);
        }
    }
    let ticks = ups
        .iter()
        .skip(1)
        .map(|t| 1.0 / t)
        .chain(ups.iter().copied());
    for t in ticks {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{top}\" y2=\"{1:.1}\" stroke=\"#e6e6e6\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            x(t),
            top + plot_h,
            top + plot_h + 14.0,
            svg::num(t)
        );
    }
}

/// One row of the ratio chart: its label left of the plot (at `left`),
/// the interval and the point (a diamond for the geometric mean).
fn ratio_point(
    s: &mut String,
    x: &impl Fn(f64) -> f64,
    left: f64,
    (y, label): (f64, &str),
    m: Point,
    geomean: bool,
) {
    let colour = verdict_colour(m.verdict);
    let short: String = if label.chars().count() > 34 {
        label.chars().take(33).collect::<String>() + "…"
    } else {
        label.to_string()
    };
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\"{}><title>{}</title>{}</text>",
        left - 8.0,
        y + 4.0,
        if geomean {
            " style=\"font-weight:600\""
        } else {
            ""
        },
        esc(label),
        esc(&short)
    );
    if let (Some(lo), Some(hi)) = (m.lo, m.hi) {
        let _ = writeln!(
            s,
            "<g class=\"ci\" stroke=\"{colour}\" stroke-width=\"2\"><line x1=\"{0:.1}\" x2=\"{1:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{2:.1}\" y2=\"{3:.1}\"/><line x1=\"{1:.1}\" x2=\"{1:.1}\" y1=\"{2:.1}\" y2=\"{3:.1}\"/></g>",
            x(lo),
            x(hi),
            y - 4.0,
            y + 4.0
        );
    }
    let Some(r) = m.ratio else {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#999\">no ratio</text>",
            left + 4.0,
            y + 4.0
        );
        return;
    };
    let (fill, stroke) = if m.verdict == Verdict::TooFewRuns {
        ("#fff", colour)
    } else {
        (colour, "#fff")
    };
    let class = format!("ratio {}", verdict_class(m.verdict));
    let title = esc(&m.tooltip);
    let cx = x(r);
    if geomean {
        let _ = writeln!(
            s,
            "<polygon class=\"{class} geomean\" points=\"{:.1},{y:.1} {cx:.1},{:.1} {:.1},{y:.1} {cx:.1},{:.1}\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"><title>{title}</title></polygon>",
            cx - 6.0,
            y - 6.0,
            cx + 6.0,
            y + 6.0
        );
    } else {
        let _ = writeln!(
            s,
            "<circle class=\"{class}\" cx=\"{cx:.1}\" cy=\"{y:.1}\" r=\"4.5\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"><title>{title}</title></circle>"
        );
    }
}

/// One ratio to draw.
struct Point {
    ratio: Option<f64>,
    lo: Option<f64>,
    hi: Option<f64>,
    verdict: Verdict,
    tooltip: String,
}

fn compare_table(c: &Comparison) -> String {
    let cells = compare::table_cells(c);
    let mut s = String::from("<table class=\"comparison\"><thead><tr>");
    for h in &cells[0] {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>\n");
    let verdicts = c
        .sets
        .iter()
        .flat_map(|set| set.metrics.iter().map(|m| m.verdict))
        .chain(c.geomean.iter().map(|g| g.verdict));
    let n_sets = cells.len() - 1 - c.geomean.len();
    for (i, (row, v)) in cells[1..].iter().zip(verdicts).enumerate() {
        s.push_str(match i.cmp(&n_sets) {
            std::cmp::Ordering::Less => "<tr>",
            std::cmp::Ordering::Equal => "<tr class=\"geomean first\">",
            std::cmp::Ordering::Greater => "<tr class=\"geomean\">",
        });
        for (j, cell) in row.iter().enumerate() {
            let class = match j {
                3..=9 => " class=\"n\"".to_string(),
                10 => format!(" class=\"{}\"", verdict_class(v)),
                _ => String::new(),
            };
            let _ = write!(s, "<td{class}>{}</td>", esc(cell));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n");
    s
}

fn manifest_list(m: &Manifest) -> String {
    let mut items: Vec<(&str, String)> = vec![
        ("batch", m.name.clone()),
        (
            "job file",
            format!("{} (sha256 {})", m.job_file, m.job_file_sha256),
        ),
        ("host", m.machine.host.clone()),
        ("kernel", m.machine.kernel.clone()),
        ("CPU", m.machine.cpu_model.clone()),
        ("SMT", m.machine.smt.clone()),
        ("frequency governor", m.machine.governor.clone()),
        ("turbo", m.machine.turbo.clone()),
        ("ASLR", m.machine.aslr.clone()),
        ("cgroup version", m.cgroup_version.clone()),
        ("user ids", m.userns.ids.clone()),
        (
            "order",
            match m.seed {
                Some(seed) => format!("{:?} (seed {seed})", m.order).to_lowercase(),
                None => format!("{:?}", m.order).to_lowercase(),
            },
        ),
    ];
    for i in &m.images {
        items.push((
            "image",
            format!("job {}: {} {} ({})", i.job, i.source, i.digest, i.platform),
        ));
    }
    if !m.userns.host_ids_jobs.is_empty() {
        items.push(("host ids (userns: host)", m.userns.host_ids_jobs.join(", ")));
    }
    if !m.smt_shared_runs.is_empty() {
        items.push((
            "SMT siblings shared",
            format!(
                "{} run(s) ran while another used an SMT sibling of their CPUs",
                m.smt_shared_runs.len()
            ),
        ));
    }
    let nodes = &m.topology.nodes;
    if !nodes.is_empty() {
        let ncpu = m.topology.cpus.len();
        let desc: Vec<String> = nodes
            .iter()
            .map(|n| {
                format!(
                    "node {}: CPUs {}, {}",
                    n.id,
                    n.cpus,
                    human_bytes(n.memory_bytes)
                )
            })
            .collect();
        items.push((
            "topology",
            format!(
                "{ncpu} CPUs, {} NUMA node(s) — {}",
                nodes.len(),
                desc.join("; ")
            ),
        ));
    }
    items.push(("start", m.start.clone()));
    items.push((
        "end",
        m.end
            .clone()
            .unwrap_or_else(|| "(running or interrupted)".into()),
    ));
    items.push(("runs planned", m.runs.to_string()));
    items.push(("packrun", m.packrun_version.clone()));
    let mut s = String::from("<dl>");
    for (k, v) in items {
        let _ = write!(s, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v));
    }
    s.push_str("</dl>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results-sample")
    }

    #[test]
    fn a_run_on_two_cpus_draws_a_bar_on_each() {
        let rows = read_rows(&sample().join("runs.csv")).unwrap();
        let m = read_manifest_in(&sample()).unwrap().unwrap();
        let page = render(&rows, Some(&m));
        let expected: usize = rows.iter().map(|r| r.cpus.len()).sum();
        assert_eq!(page.matches("class=\"run-bar ").count(), expected);
        let two = rows.iter().find(|r| r.cpus.to_string() == "4-5").unwrap();
        assert_eq!(
            page.matches(&format!("data-run-key=\"{}\"", two.key))
                .count(),
            2
        );
    }

    #[test]
    fn runs_that_did_not_complete_are_hatched_and_named() {
        let rows = read_rows(&sample().join("runs.csv")).unwrap();
        let page = render(&rows, None);
        assert_eq!(page.matches("state-timeout failed").count(), 1);
        assert_eq!(page.matches("state-out_of_memory failed").count(), 1);
        assert!(page.contains("CPUs outside the topology"));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        let rows = read_rows(&sample().join("runs.csv")).unwrap();
        let page = render(&rows, None);
        assert!(!page.contains("src="), "no external scripts or images");
        assert!(!page.contains("<link"), "no external stylesheets or fonts");
        assert!(!page.contains("@import") && !page.contains("url(http"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn tick_steps_are_one_two_or_five() {
        assert_eq!(svg::step(11.0, 10.0), 1.0);
        assert_eq!(svg::step(25.0, 10.0), 2.0);
        assert_eq!(svg::step(0.4, 4.0), 0.1);
        assert_eq!(svg::num(2.500), "2.5");
    }
}
