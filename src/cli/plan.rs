//! `promtier plan`: the nodes and target assignment of a topology (and its push ring), as text
//! or JSON.

use std::path::Path;
use std::process::ExitCode;

use crate::plan;
use crate::topology;

pub(super) fn run(
    file: &Path,
    json: bool,
    resize: &[String],
    push_keys: &[String],
) -> anyhow::Result<ExitCode> {
    let t = topology::load(file)?;
    let p = plan::plan(&t, resize, push_keys)?;
    if json {
        super::emit(&format!("{}\n", serde_json::to_string_pretty(&p)?))?;
    } else {
        super::emit(&plan::render_text(&p))?;
    }
    Ok(ExitCode::SUCCESS)
}
