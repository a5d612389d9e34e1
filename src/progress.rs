//! What a batch shows while it runs: indicatif bars on a terminal (one
//! overall bar, one line per running run), else one line per finished run.

use crate::jobfile::Run;
use crate::plan::Placement;
use crate::report::human_bytes;
use crate::results::{Record, State};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

pub struct Progress {
    bars: Option<Bars>,
    total: usize,
    done: usize,
    failed: usize,
}

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    running: HashMap<String, ProgressBar>,
}

fn describe(job: &str, params: &[(String, String)], rep: u32, warmup: bool) -> String {
    let mut s = crate::report::label(job, params);
    s.push_str(&format!(" rep {rep}"));
    if warmup {
        s.push_str(" (warmup)");
    }
    s
}

impl Progress {
    /// Bars when stderr is a terminal and not `quiet`; lines otherwise.
    /// `planned` is the predicted makespan, a first ETA.
    pub fn new(total: usize, already_done: usize, planned: Duration, quiet: bool) -> Progress {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let overall = multi.add(ProgressBar::new(total as u64));
            overall.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} runs, {msg} [{elapsed_precise}, eta {eta}]",
                )
                .expect("valid template"),
            );
            overall.set_position(already_done as u64);
            overall.set_message(format!(
                "0 failed, planned {}",
                humantime::format_duration(round(planned))
            ));
            overall.enable_steady_tick(Duration::from_millis(200));
            Bars {
                multi,
                overall,
                running: HashMap::new(),
            }
        });
        Progress {
            bars,
            total,
            done: already_done,
            failed: 0,
        }
    }

    pub fn started(&mut self, run: &Run, placement: &Placement) {
        if let Some(b) = &mut self.bars {
            let pb = b.multi.add(ProgressBar::new_spinner());
            pb.set_style(
                ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                    .expect("valid template"),
            );
            pb.set_message(format!(
                "{} on CPUs {}",
                describe(&run.job, &run.params, run.rep, run.warmup),
                placement.cpus
            ));
            pb.enable_steady_tick(Duration::from_millis(200));
            b.running.insert(run.key.clone(), pb);
        }
    }

    pub fn finished(&mut self, rec: &Record) {
        self.done += 1;
        if rec.state != State::Completed {
            self.failed += 1;
        }
        let line = format!(
            "[{}/{}] {}: {} in {:.3} s wall, {:.3} s CPU, {} peak{}",
            self.done,
            self.total,
            describe(&rec.job, &rec.params, rec.rep, rec.warmup),
            rec.state.as_str(),
            rec.wall_time.as_secs_f64(),
            rec.usage.cpu_ns as f64 / 1e9,
            human_bytes(rec.usage.memory_peak_bytes),
            if rec.state == State::Completed {
                String::new()
            } else {
                format!(" ({})", rec.termination_reason)
            },
        );
        if let Some(b) = &mut self.bars {
            if let Some(pb) = b.running.remove(&rec.key) {
                pb.finish_and_clear();
                b.multi.remove(&pb);
            }
            b.overall.set_position(self.done as u64);
            b.overall.set_message(format!("{} failed", self.failed));
        }
        if self.bars.is_none() || rec.state != State::Completed {
            self.note(&line);
        }
    }

    /// One message line, printed above the bars while they are drawn, so
    /// nothing tears them; on stderr as it is otherwise.
    pub fn note(&self, line: &str) {
        match &self.bars {
            Some(b) => {
                let _ = b.multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// Clears the bars; what is noted afterwards (the final table) goes to
    /// stderr as it is.
    pub fn finish(&mut self) {
        if let Some(b) = self.bars.take() {
            for pb in b.running.values() {
                pb.finish_and_clear();
            }
            b.overall.finish_and_clear();
            let _ = b.multi.clear();
        }
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}
