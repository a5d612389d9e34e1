//! `packrun images list|check|remove`: the cache of unpacked images.

use crate::cli::ImagesAction;
use crate::error::Error;
use crate::{fsx, image, report};
use std::path::PathBuf;
use std::process::ExitCode;

pub fn main(action: &ImagesAction, cache: Option<PathBuf>) -> Result<ExitCode, Error> {
    let cache = cache.unwrap_or_else(|| image::default_cache(nix::unistd::geteuid().as_raw()));
    let invalid = |e: &dyn std::error::Error| Error::Invalid {
        during: "images",
        message: fsx::chain(e),
    };
    match action {
        ImagesAction::List => {
            let entries = image::list(&cache).map_err(|e| invalid(&e))?;
            if entries.is_empty() {
                eprintln!("no images in {}", cache.display());
            }
            for e in entries {
                let used = chrono::DateTime::<chrono::Utc>::from(e.last_used)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                println!(
                    "{}  {:>10}  {}  {}  last used {used}",
                    e.digest,
                    report::human_bytes(e.size_bytes),
                    e.platform,
                    e.source
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ImagesAction::Check => {
            let mut bad = 0;
            for (digest, result) in image::check(&cache).map_err(|e| invalid(&e))? {
                match result {
                    Ok(()) => println!("ok    {digest}"),
                    Err(e) => {
                        bad += 1;
                        println!("FAIL  {digest}: {}", fsx::chain(&e));
                    }
                }
            }
            Ok(ExitCode::from(u8::from(bad > 0)))
        }
        ImagesAction::Remove { prefix } => {
            for digest in image::remove(&cache, prefix).map_err(|e| invalid(&e))? {
                println!("removed {digest}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
