//! The exposition-format suites over `PEER/exposition`: the text-format manifest (valid, invalid
//! and real-world bodies) and the OpenMetrics parser cases, each judged by our parser.
//!
//! Where the manifest's expectation comes from prometheus/common's strict client-side parser
//! and Prometheus's scrape parser (`promparse`) accepts the input, we accept it too (that is what
//! a scrape does): such cases are listed below by name with the reason and reported as lenient.

use std::fs;
use std::path::Path;

use promtier::exposition::{Entry, SeriesLine, TextFormat, TextParser};

use crate::{Report, Suite};

pub(crate) const SUITES: &[Suite] =
    &[
        Suite { name: "exposition", run: text_suite, report_only: false },
        Suite { name: "openmetrics", run: openmetrics_suite, report_only: false },
    ];

/// Manifest cases that prometheus/common rejects but Prometheus's scrape parser accepts, and so
/// do we. Keep in step with the parser: a listed case that we reject fails the suite.
const LENIENT_LIKE_PROMPARSE: &[(&str, &str)] = &[
    ("common-expfmt-err-00", "no newline at the end of the body (promparse appends one)"),
    ("common-expfmt-err-07", "non-float quantile value (promparse normalises only parseable values)"),
    ("common-expfmt-err-12", "second HELP for a family (promparse does not track families)"),
    ("common-expfmt-err-13", "second TYPE for a family (promparse does not track families)"),
    ("common-expfmt-err-14", "TYPE after the family's samples (promparse does not track families)"),
    ("common-expfmt-err-19", "non-float le value (promparse normalises only parseable values)"),
    ("common-expfmt-err-32", "hex-float le value (promparse normalises it to 0.125; we keep it as written)"),
    ("common-expfmt-err-33", "hex-float quantile value (promparse normalises it to 0.125; we keep it as written)"),
    ("common-expfmt-err-43", "negative histogram count (promparse does not check histogram values)"),
    ("common-expfmt-err-44", "negative bucket count (promparse does not check histogram values)"),
    ("common-expfmt-err-45", "negative histogram count (promparse does not check histogram values)"),
    ("common-expfmt-err-46", "negative bucket count (promparse does not check histogram values)"),
];

/// Manifest cases expected to parse that promparse itself rejects; we follow the manifest.
const BEYOND_PROMPARSE: &[(&str, &str)] = &[
    ("common-expfmt-ok-03", "negative timestamp (promparse's lexer takes digits only)"),
    ("common-expfmt-ok-15", "TYPE gaugehistogram (promparse knows counter, gauge, histogram, summary, untyped)"),
    ("common-expfmt-ok-16", "TYPE gauge_histogram (promparse knows counter, gauge, histogram, summary, untyped)"),
    ("common-expfmt-ok-17", "TYPE gauge_histogram (promparse knows counter, gauge, histogram, summary, untyped)"),
];

/// OpenMetrics case families that need checks across lines (families, ordering, per-type value
/// rules) which a streaming scrape parser does not make — Prometheus's own OpenMetrics parser
/// does not either. They are run (they must not panic) but not judged.
const OM_NOT_JUDGED: &[(&str, &str)] = &[
    ("bad_clashing_names_", "family name clashes need family tracking across lines"),
    ("bad_counter_values_", "value rules per metric type (negative or NaN counters, sums, buckets)"),
    ("bad_grouping_or_ordering_", "grouping and timestamp order across lines"),
    ("bad_histograms_", "histogram bucket structure and counts across lines"),
    ("bad_info_and_stateset_values_", "value rules for info and stateset families"),
    ("bad_stateset_info_values_", "value rules for info and stateset families"),
    ("bad_missing_or_invalid_labels_for_a_type_", "labels a metric type requires (le, quantile, state)"),
    ("bad_metadata_in_wrong_place_", "metadata position relative to samples"),
    ("bad_repeated_metadata_", "metadata repeated for a family"),
    ("bad_exemplars_on_unallowed_", "which metric types and samples may carry exemplars"),
    ("bad_unit_6", "units on info families"),
    ("bad_unit_7", "units on stateset families"),
];

/// OpenMetrics cases that break the specification's grammar but that Prometheus's OpenMetrics
/// parser accepts, as we do.
const OM_LENIENT_LIKE_PROMETHEUS: &[(&str, &str)] =
    &[("bad_missing_or_extra_commas_2", "trailing comma in a label set (Prometheus allows it)")];

#[derive(serde::Deserialize)]
struct ManifestCase {
    file: String,
    expect: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OmCase {
    file: String,
    should_parse: bool,
}

fn lookup<'t>(table: &'t [(&str, &str)], case: &str) -> Option<&'t str> {
    table.iter().find(|(name, _)| *name == case).map(|(_, reason)| *reason)
}

/// Parses a whole body; the entries are returned with every series owned-free (borrowed).
fn parse(body: &[u8], format: TextFormat) -> Result<Vec<Entry<'_>>, String> {
    TextParser::with_format(body, format).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
}

fn text_suite(peer: &Path, report: &mut Report) {
    let dir = peer.join("exposition");
    let manifest = match fs::read(dir.join("manifest.json")) {
        Ok(bytes) => bytes,
        Err(e) => return report.fail("manifest.json", format!("cannot read {}: {e}", dir.display())),
    };
    let cases: Vec<ManifestCase> = match serde_json::from_slice(&manifest) {
        Ok(cases) => cases,
        Err(e) => return report.fail("manifest.json", format!("cannot decode: {e}")),
    };
    for case in &cases {
        let name = case_name(&case.file);
        let body = match fs::read(dir.join(&case.file)) {
            Ok(body) => body,
            Err(e) => {
                report.fail(&case.file, format!("cannot read: {e}"));
                continue;
            }
        };
        // A scraper picks the grammar from the Content-Type; these files are OpenMetrics.
        let format = if case.file.ends_with(".om.txt") { TextFormat::OpenMetrics } else { TextFormat::Prometheus };
        let expect_ok = match case.expect.as_str() {
            // We implement UTF-8 names, so the legacy-mode error does not apply.
            "ok" | "ok-utf8/error-legacy" => true,
            "error" => false,
            other => {
                report.fail(&case.file, format!("unknown expectation {other:?}"));
                continue;
            }
        };
        let parsed = parse(&body, format);
        match (&parsed, expect_ok, lookup(LENIENT_LIKE_PROMPARSE, name)) {
            (Ok(_), false, Some(reason)) => report.lenient(name, reason),
            (Ok(_), false, None) => report.fail(name, "accepted, but the manifest expects an error"),
            (Ok(_), true, Some(_)) => report.fail(name, "listed as lenient like promparse, but expected to parse"),
            (Err(e), _, Some(_)) => report.fail(name, format!("listed as lenient like promparse but rejected: {e}")),
            (Err(e), true, None) => report.fail(name, format!("rejected: {e}")),
            (Err(_), false, None) => report.pass(),
            (Ok(entries), true, None) => match cross_check(&dir, &case.file, &body, entries) {
                Ok(()) => {
                    report.pass();
                    if let Some(remark) = lookup(BEYOND_PROMPARSE, name) {
                        report.note(name, format!("passes per the manifest; promparse rejects it: {remark}"));
                    }
                }
                Err(why) => report.fail(name, why),
            },
        }
    }
}

fn case_name(file: &str) -> &str {
    let base = file.rsplit('/').next().unwrap_or(file);
    base.strip_suffix(".txt").unwrap_or(base)
}

/// Further checks on a body that parsed: counts against a naive line count, family counts from
/// real-world file names, and hand-checked values from Prometheus's own parser tests.
fn cross_check(dir: &Path, file: &str, body: &[u8], entries: &[Entry<'_>]) -> Result<(), String> {
    let types = entries.iter().filter(|e| matches!(e, Entry::Type { .. })).count();
    let series: Vec<&SeriesLine<'_>> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Series(s) => Some(s),
            _ => None,
        })
        .collect();
    if file.starts_with("realworld/") {
        let text = String::from_utf8_lossy(body);
        let lines = || text.lines().map(str::trim_start);
        let naive_types = lines().filter(|l| l.starts_with("# TYPE ")).count();
        let naive_series = lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
        if (types, series.len()) != (naive_types, naive_series) {
            return Err(format!(
                "{types} TYPE lines and {} series parsed, {naive_types} and {naive_series} counted",
                series.len()
            ));
        }
        // `…237mfs…` names the number of metric families in the file.
        let families = file.split('.').find_map(|part| part.strip_suffix("mfs")?.parse::<usize>().ok());
        if let Some(families) = families
            && !file.contains(".nometa.")
            && types != families
        {
            return Err(format!("{types} families parsed, the file name says {families}"));
        }
        if let Some(sibling) = file.strip_suffix(".nometa.prom.txt") {
            // The same scrape without HELP/TYPE must give the same samples.
            let meta_body = fs::read(dir.join(format!("{sibling}.prom.txt"))).map_err(|e| e.to_string())?;
            let meta = parse(&meta_body, TextFormat::Prometheus)?;
            let key = |s: &SeriesLine<'_>| (s.raw().to_vec(), s.value().to_bits(), s.timestamp());
            let theirs: Vec<_> = meta
                .iter()
                .filter_map(|e| match e {
                    Entry::Series(s) => Some(key(s)),
                    _ => None,
                })
                .collect();
            let ours: Vec<_> = series.iter().map(|s| key(s)).collect();
            if ours != theirs {
                return Err("samples differ from the file with metadata".into());
            }
        }
    }
    for &(raw, labels, value, ts) in spot_checks(file) {
        let Some(s) = series.iter().find(|s| s.raw() == raw.as_bytes()) else {
            return Err(format!("series {raw:?} not found"));
        };
        let got: Vec<(String, String)> = s.labels().map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
        let want: Vec<(String, String)> = labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        if got != want || s.value() != value || s.timestamp() != ts {
            return Err(format!(
                "{raw:?}: got {got:?} {} {:?}, want {want:?} {value} {ts:?}",
                s.value(),
                s.timestamp()
            ));
        }
    }
    if file == "valid/prometheus-promparse-utf8.txt" {
        let odd = "Heizölrückstoßabdämpfung 10€ metric with \"interesting\" {character\nchoices}";
        let found = series.iter().any(|s| {
            s.name() == odd
                && s.labels().map(|(n, v)| (n.into_owned(), v.into_owned())).eq([(
                    "strange©™\n'quoted' \"name\"".to_string(),
                    "6".to_string(),
                )])
        });
        if !found {
            return Err("the quoted name with escapes and non-ASCII characters was not decoded".into());
        }
    }
    Ok(())
}

type SpotCheck = (&'static str, &'static [(&'static str, &'static str)], f64, Option<i64>);

/// Series whose decoded labels, value and timestamp Prometheus's own parser tests pin (including
/// the `le`/`quantile` normalisation after a histogram or summary TYPE line).
fn spot_checks(file: &str) -> &'static [SpotCheck] {
    match file {
        "valid/prometheus-promparse-main.txt" => &[
            ("go_gc_duration_seconds{quantile=\"0\"}", &[("quantile", "0.0")], 4.9351e-05, None),
            (
                "prometheus_http_request_duration_seconds_bucket{handler=\"/\",le=\"1\"}",
                &[("handler", "/"), ("le", "1.0")],
                423.0,
                None,
            ),
            (
                "go_gc_duration_seconds { quantile = \"2.0\" a = \"b\" }",
                &[("quantile", "2.0"), ("a", "b")],
                8.3835e-05,
                None,
            ),
            ("go_goroutines", &[], 33.0, Some(123123)),
            ("testmetric{le=\"10\"}", &[("le", "10")], 1.0, None),
            ("testmetric{label=\"\\\"bar\\\"\"}", &[("label", "\"bar\"")], 1.0, None),
            ("null_byte_metric{a=\"abc\0\"}", &[("a", "abc\0")], 1.0, None),
        ],
        "valid/prometheus-promparse-utf8.txt" => {
            &[("{\"go.gc_duration_seconds\",quantile=\"0\"}", &[("quantile", "0.0")], 4.9351e-05, None)]
        }
        _ => &[],
    }
}

fn openmetrics_suite(peer: &Path, report: &mut Report) {
    let dir = peer.join("exposition").join("openmetrics-parsers");
    let mut names: Vec<String> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => return report.fail("openmetrics-parsers", format!("cannot read {}: {e}", dir.display())),
    };
    names.sort();
    for name in &names {
        let case_dir = dir.join(name);
        let case: OmCase = match fs::read(case_dir.join("test.json"))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(case) => case,
            Err(e) => {
                report.fail(name, format!("cannot read test.json: {e}"));
                continue;
            }
        };
        let body = match fs::read(case_dir.join(&case.file)) {
            Ok(body) => body,
            Err(e) => {
                report.fail(name, format!("cannot read {}: {e}", case.file));
                continue;
            }
        };
        let parsed = parse(&body, TextFormat::OpenMetrics);
        if let Some((_, reason)) = OM_NOT_JUDGED.iter().find(|(prefix, _)| name.starts_with(prefix)) {
            report.skip(name, format!("not judged by a scrape parser: {reason}"));
            continue;
        }
        match (parsed, case.should_parse, lookup(OM_LENIENT_LIKE_PROMETHEUS, name)) {
            (Ok(_), false, Some(reason)) => report.lenient(name, reason),
            (Ok(_), true, Some(_)) => report.fail(name, "listed as lenient, but the case is expected to parse"),
            (Err(e), _, Some(_)) => report.fail(name, format!("listed as lenient but rejected: {e}")),
            (Ok(_), true, None) | (Err(_), false, None) => report.pass(),
            (Ok(_), false, None) => report.fail(name, "accepted, but the case must not parse"),
            (Err(e), true, None) => report.fail(name, format!("rejected: {e}")),
        }
    }
}
