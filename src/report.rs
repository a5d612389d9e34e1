//! Output: runs.csv, summary.csv, manifest.json. Formats what was measured;
//! never recomputes a measurement.
