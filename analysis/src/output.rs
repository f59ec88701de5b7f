//! What a run or a sweep leaves next to its JSON: `charts/<name>.svg` and
//! `.png`, and `report.html`.

use std::path::Path;

use crate::charts::{self, ChartError};
use crate::hdr::HdrError;
use crate::merge::Merged;
use crate::view::RunReport;
use crate::{figures, html};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("report.json does not read as a report: {0}")]
    Report(#[from] serde_json::Error),
    #[error(transparent)]
    Hdr(#[from] HdrError),
    #[error(transparent)]
    Chart(#[from] ChartError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn write(path: &Path, text: &str) -> Result<(), OutputError> {
    std::fs::write(path, text).map_err(|source| OutputError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Charts and page for the run whose `report.json` text is `report`.
pub fn write_run(dir: &Path, report: &str, scenario_text: Option<&str>) -> Result<(), OutputError> {
    let r = RunReport::from_json(report)?;
    let rendered = charts::render(&figures::for_run(&r)?, &dir.join("charts"))?;
    write(
        &dir.join("report.html"),
        &html::run_page(&r, &rendered, scenario_text),
    )
}

/// `merged.json`, charts and page for a merged sweep.
pub fn write_sweep(
    dir: &Path,
    merged: &Merged,
    scenario_text: Option<&str>,
) -> Result<(), OutputError> {
    let mut json = serde_json::to_string_pretty(merged)?;
    json.push('\n');
    write(&dir.join("merged.json"), &json)?;
    let rendered = charts::render(&figures::for_sweep(merged)?, &dir.join("charts"))?;
    write(
        &dir.join("report.html"),
        &html::sweep_page(merged, &rendered, scenario_text),
    )
}
