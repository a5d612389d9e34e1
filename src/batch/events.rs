//! The one consumer of a run loop's events, as nextest's reporter is: it
//! turns `run::Event`s into what `packrun run` and `packrun exec` show and
//! keep (progress bars or lines on stderr; rows in runs.csv and steps.csv,
//! synced) and counts what it could not keep.

use crate::fsx;
use crate::progress::Progress;
use crate::results::{self, Record, Reserve, RunsCsv};
use crate::run::Event;
use std::path::Path;

/// Where a batch's records go: its folder, runs.csv, and the space kept
/// for them when the disk fills.
pub struct Records<'a> {
    pub dir: &'a Path,
    /// The batch's counters: steps.csv's counter columns.
    pub counters: crate::counters::Chosen,
    pub csv: &'a mut RunsCsv,
    pub reserve: &'a mut Reserve,
}

/// What the events are shown on.
enum Screen<'a> {
    /// A batch's progress bars (or lines when not a terminal).
    Progress(&'a mut Progress),
    /// `packrun exec`: notes on stderr, nothing else (the job owns the terminal).
    Stderr,
}

pub struct Recorder<'a> {
    screen: Screen<'a>,
    records: Option<Records<'a>>,
    /// Rows that could not be written.
    pub lost_rows: usize,
    /// Bytes of the reserve freed to write records on a full disk.
    pub freed: u64,
    /// The last run's record, kept when there are no records to write it
    /// to (`packrun exec`).
    pub last: Option<Record>,
}

impl<'a> Recorder<'a> {
    /// A batch's: progress on screen, rows into `records`.
    pub fn batch(progress: &'a mut Progress, records: Records<'a>) -> Recorder<'a> {
        Recorder {
            screen: Screen::Progress(progress),
            records: Some(records),
            lost_rows: 0,
            freed: 0,
            last: None,
        }
    }

    /// One run's (`packrun exec`): notes to stderr, its record kept.
    pub fn single() -> Recorder<'static> {
        Recorder {
            screen: Screen::Stderr,
            records: None,
            lost_rows: 0,
            freed: 0,
            last: None,
        }
    }

    pub fn note(&self, text: &str) {
        match &self.screen {
            Screen::Progress(p) => p.note(text),
            Screen::Stderr => eprintln!("{text}"),
        }
    }

    pub fn event(&mut self, ev: Event) {
        match ev {
            Event::Started { run, placement } => {
                if let Screen::Progress(p) = &mut self.screen {
                    p.started(run, placement);
                }
            }
            Event::Finished(rec) => {
                if let Some(r) = &mut self.records {
                    let freed = &mut self.freed;
                    if let Err(x) = r.reserve.write(|| r.csv.append(&rec), &mut |n| *freed += n) {
                        self.lost_rows += 1;
                        self.note(&format!(
                            "packrun run: row of run {} not recorded: {}",
                            rec.key,
                            fsx::chain(&x)
                        ));
                    }
                }
                match &mut self.screen {
                    Screen::Progress(p) => p.finished(&rec),
                    Screen::Stderr => self.last = Some(rec),
                }
            }
            Event::Step(step) => {
                let Some(r) = &mut self.records else { return };
                let (dir, freed, counters) = (r.dir, &mut self.freed, r.counters);
                if let Err(x) = r
                    .reserve
                    .write(|| results::append_step(dir, &step, counters), &mut |n| {
                        *freed += n
                    })
                {
                    self.note(&format!(
                        "packrun run: {} step of run {} not recorded: {}",
                        step.step,
                        step.run_key,
                        fsx::chain(&x)
                    ));
                }
            }
            Event::Note(text) => self.note(&text),
            Event::Flush => self.sync(),
        }
    }

    /// Syncs runs.csv (after every flush event, and once after the loop,
    /// also when an error ended it early).
    pub fn sync(&mut self) {
        let Some(r) = &mut self.records else { return };
        let freed = &mut self.freed;
        if let Err(x) = r.reserve.write(|| r.csv.sync(), &mut |n| *freed += n) {
            self.note(&format!("packrun run: {}", fsx::chain(&x)));
        }
    }
}
