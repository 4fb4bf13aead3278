//! The PromQL suites over `PEER/promql-tests`: Prometheus's own `.test` scripts, run against our
//! engine over our head storage, one suite per file (`promql/functions`, …). The stable files
//! must pass; the experimental ones (`promql-experimental/…`) are run and reported only.
//!
//! Each `eval` is judged as Prometheus's harness does (see `promtier::promqltest::eval`): results
//! by label set with a relative tolerance of 1e-6, `expect ordered`, `expect fail [msg|regex]`,
//! warning/info expectations, and every instant eval re-run as a range query (t-1m … t+1m,
//! step 1m) whose middle step must agree. Evals are skipped only for a named reason — they read
//! or expect native histograms, which our float storage cannot hold, or use an experimental
//! feature we do not implement — and every skip is counted.

use std::fs;
use std::path::Path;

use promtier::promqltest::runner::{Outcome, run_script, test_engine};

use crate::{Report, Suite};

macro_rules! file_suites {
    ($($fn_name:ident $family:literal $file:literal $report_only:literal;)*) => {
        $(fn $fn_name(dir: &Path, report: &mut Report) { run_file(dir, $file, report) })*
        pub(crate) const SUITES: &[Suite] = &[
            $(Suite { name: concat!($family, "/", $file), run: $fn_name, report_only: $report_only }),*
        ];
    };
}

file_suites! {
    literals "promql" "literals" false;
    selectors "promql" "selectors" false;
    operators "promql" "operators" false;
    aggregators "promql" "aggregators" false;
    functions "promql" "functions" false;
    staleness "promql" "staleness" false;
    subquery "promql" "subquery" false;
    at_modifier "promql" "at_modifier" false;
    range_queries "promql" "range_queries" false;
    trig_functions "promql" "trig_functions" false;
    collision "promql" "collision" false;
    histograms "promql" "histograms" false;
    name_label_dropping "promql" "name_label_dropping" false;
    native_histograms "promql-experimental" "native_histograms" true;
    limit "promql-experimental" "limit" true;
    duration_expression "promql-experimental" "duration_expression" true;
    extended_vectors "promql-experimental" "extended_vectors" true;
    fill_modifier "promql-experimental" "fill-modifier" true;
    info "promql-experimental" "info" true;
    start_timestamps "promql-experimental" "start_timestamps" true;
    type_and_unit "promql-experimental" "type_and_unit" true;
}

fn run_file(peer: &Path, file: &str, report: &mut Report) {
    let path = peer.join("promql-tests").join(format!("{file}.test"));
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => return report.fail(file, format!("cannot read {}: {e}", path.display())),
    };
    for c in run_script(file, &text, &test_engine()) {
        match c.outcome {
            Outcome::Passed => report.pass(),
            Outcome::Failed(why) if c.query.is_empty() => report.fail(c.case, why),
            Outcome::Failed(why) => report.fail(c.case, format!("{}: {why}", c.query)),
            Outcome::Skipped(reason) => report.skip(c.case, reason),
        }
    }
}
