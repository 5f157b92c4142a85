//! `strata report`: [`strata::report::build`], and the page every command leaves.

use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

/// `strata report` arguments.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run, search, lr-find or study folder.
    pub dir: PathBuf,
}

/// `strata report DIR`.
pub fn run(args: &ReportArgs) -> Result<()> {
    let w = strata::report::build(&args.dir)?;
    let mut s = format!(
        "{:?} report: {}\nsections: {}\n",
        w.kind,
        w.path.display(),
        w.sections.join(", ")
    );
    for m in &w.missing {
        s.push_str(&format!("not shown: {m}\n"));
    }
    super::models::out(&s)
}

/// Writes the page of `dir` after a command; returns the lines that say where it is
/// (the command prints them last). A failure is a warning: the command's work is done.
pub fn leave(dir: &Path) -> String {
    match strata::report::build(dir) {
        Ok(w) => {
            let mut s = format!("report: {}\n", w.path.display());
            for m in &w.missing {
                s.push_str(&format!("  (not shown: {m})\n"));
            }
            s
        }
        Err(e) => format!("warning: no report.html for {}: {e}\n", dir.display()),
    }
}
