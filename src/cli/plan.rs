//! `promtier plan`: the nodes and target assignment of a topology, as text or JSON.

use std::path::Path;
use std::process::ExitCode;

use crate::plan;
use crate::topology;

pub(super) fn run(file: &Path, json: bool, resize: &[String]) -> anyhow::Result<ExitCode> {
    let t = topology::load(file)?;
    let p = plan::plan(&t, resize)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", plan::render_text(&p));
    }
    Ok(ExitCode::SUCCESS)
}
