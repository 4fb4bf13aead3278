//! The `/federate` suite over `PEER/federate`: Prometheus's own federation handler scenarios.
//! The data (`data.test`, PromQL test-script `load` syntax) goes into an in-memory head; each
//! scenario's request goes through our `/federate` router with the scenario's external labels and
//! the fixed evaluation time, and status and body must match (sample lines sorted within each
//! family, as the upstream test compares them). Every scenario runs a second time against a
//! storage that is not ready: all but the 400s must answer 503.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use promtier::federate::frontier::Frontier;
use promtier::federate::{FederateState, router};
use promtier::model::{Coverage, Labels};
use promtier::topology::FastLinkConfig;
use promtier::promqltest::{Command, load, parse_script};
use promtier::tsdb::{Head, HeadOptions};
use tower::ServiceExt;

use crate::{Report, Suite};

pub(crate) const SUITES: &[Suite] = &[Suite { name: "federate", run, report_only: false }];

fn run(peer: &Path, report: &mut Report) {
    let dir = peer.join("federate");
    let setup = || -> Result<(Head, serde_json::Value), String> {
        let data = std::fs::read_to_string(dir.join("data.test")).map_err(|e| format!("data.test: {e}"))?;
        let head = Head::new(HeadOptions::default()).map_err(|e| e.to_string())?;
        for cmd in parse_script(&data).map_err(|e| format!("data.test: {e}"))? {
            if let Command::Load { step, series, .. } = cmd {
                load(&head, step, &series).map_err(|e| format!("data.test: {e}"))?;
            }
        }
        let text = std::fs::read_to_string(dir.join("scenarios.json")).map_err(|e| format!("scenarios.json: {e}"))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("scenarios.json: {e}"))?;
        Ok((head, json))
    };
    let (head, json) = match setup() {
        Ok(x) => x,
        Err(e) => {
            report.fail("setup", e);
            return;
        }
    };
    let now = json["now_ms"].as_i64().unwrap_or(0);
    let lookback = json["lookback_delta"]
        .as_str()
        .and_then(|s| promtier::model::parse_duration(s).ok())
        .unwrap_or(Duration::from_secs(300));
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            report.fail("setup", e.to_string());
            return;
        }
    };
    let storage = Arc::new(head);
    for sc in json["scenarios"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let name = sc["name"].as_str().unwrap_or("?").to_string();
        let external: Vec<(String, String)> = sc["external_labels"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
            .unwrap_or_default();
        let params = sc["params"].as_str().unwrap_or("");
        let want_code = sc["code"].as_u64().unwrap_or(0) as u16;
        let want_body = sc["body"].as_str().unwrap_or("");
        for ready in [true, false] {
            let state = FederateState {
                storage: storage.clone(),
                external_labels: Labels::from_pairs(&external),
                lookback,
                clock: Arc::new(move || now),
                ready: Arc::new(move || ready),
                frontier: Arc::new(Frontier::open(None).expect("an in-memory frontier")),
                coverage: Arc::new(Coverage::default),
                page_limits: promtier::role::page_limits(&FastLinkConfig::default()),
            };
            let case = if ready { name.clone() } else { format!("{name} (storage not ready)") };
            let (code, body) = match rt.block_on(get(router(state), &format!("/federate?{params}"))) {
                Ok(x) => x,
                Err(e) => {
                    report.fail(case, e);
                    continue;
                }
            };
            let (want_code, want_body) = if ready || want_code == 400 {
                (want_code, want_body)
            } else {
                (StatusCode::SERVICE_UNAVAILABLE.as_u16(), "")
            };
            if code != want_code {
                report.fail(case, format!("status {code}, want {want_code}; body {body:?}"));
            } else if !ready && code == 503 {
                report.pass();
            } else if normalise(&body) != normalise(want_body) {
                report.fail(case, format!("body differs:\n--- got\n{body}--- want\n{want_body}"));
            } else {
                report.pass();
            }
        }
    }
}

async fn get(app: axum::Router, uri: &str) -> Result<(u16, String), String> {
    let req = Request::builder().uri(uri).body(Body::empty()).map_err(|e| e.to_string())?;
    let resp = app.oneshot(req).await.map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.map_err(|e| e.to_string())?;
    Ok((code, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Sorts sample lines within each family (a family starts at its `# TYPE` line).
fn normalise(body: &str) -> String {
    let mut families: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    let mut heads: Vec<&str> = Vec::new();
    for line in body.lines() {
        if line.starts_with('#') {
            heads.push(line);
        } else {
            families.entry(heads.len()).or_default().push(line);
        }
    }
    let mut out = String::new();
    for (i, head) in heads.iter().enumerate() {
        out.push_str(head);
        out.push('\n');
        if let Some(lines) = families.get_mut(&(i + 1)) {
            lines.sort_unstable();
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    if let Some(lines) = families.get_mut(&0) {
        lines.sort_unstable();
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}
