//! The node's plain HTML status page at `/status`: who this node is, its external labels, its
//! targets' health and its remote-write queues, with links to the machine-readable endpoints.
//! Rendered on the server and refreshing itself, it needs no script (the console at `/` does).

use std::fmt::Write;
use std::time::SystemTime;

use axum::extract::State;
use axum::response::Html;

use super::ApiState;
use crate::model::Labels;

/// Identity of the node serving the page.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub role: String,
    pub cluster: String,
    pub external_labels: Labels,
    pub started: SystemTime,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(super) async fn index(State(st): State<ApiState>) -> Html<String> {
    let n = &st.node;
    let snap = (st.targets)();
    let mut h = String::with_capacity(8192);
    let up = snap.active.iter().filter(|t| t.status.health == crate::scrape::Health::Up).count();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=utf-8><title>promtier {name}</title>\
         <meta http-equiv=refresh content=10>\
         <style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}.up{{color:#070}}.down{{color:#b00}}.warn{{color:#a50}}\
         code{{background:#f4f4f4}}</style></head><body>\
         <h1>promtier {role} <code>{name}</code></h1>\
         <p>cluster <code>{cluster}</code> · external labels <code>{labels}</code> · running {uptime}s · \
         <a href=/federate?match[]=%7B__name__%3D~%22.%2B%22%7D>/federate</a> · \
         <a href=/metrics>/metrics</a> · <a href=/api/v1/targets>/api/v1/targets</a> · \
         <a href=/-/ready>/-/ready</a> · <a href=/>console</a></p>",
        name = esc(&n.name),
        role = esc(&n.role),
        cluster = esc(&n.cluster),
        labels = esc(&n.external_labels.to_string()),
        uptime = n.started.elapsed().map(|d| d.as_secs()).unwrap_or(0),
    );
    let _ = write!(
        h,
        "<h2>Targets: {up} of {} up, {} dropped</h2><table><tr><th>job</th><th>endpoint</th><th>health</th>\
         <th>labels</th><th>last scrape</th><th>duration</th><th>samples</th><th>error</th></tr>",
        snap.active.len(),
        snap.dropped.len()
    );
    for t in &snap.active {
        let ago = t
            .status
            .last_scrape
            .and_then(|s| s.elapsed().ok())
            .map(|d| format!("{:.1}s ago", d.as_secs_f64()))
            .unwrap_or_else(|| "never".into());
        let _ = write!(
            h,
            "<tr><td>{}</td><td><a href=\"{url}\">{url}</a></td><td class={health}>{health}</td><td><code>{}</code></td>\
             <td>{ago}</td><td>{:.3}s</td><td>{}</td><td class={err_class}>{}</td></tr>",
            esc(&t.job),
            esc(&t.target.labels.to_string()),
            t.status.last_duration.as_secs_f64(),
            t.status.last_samples,
            esc(&t.status.last_error),
            url = esc(&t.target.url),
            health = t.status.health.as_str(),
            // An up target with an error stored only part of its samples.
            err_class = if t.status.health == crate::scrape::Health::Down { "down" } else { "warn" },
        );
    }
    h.push_str("</table>");
    if let Some(queues) = &st.status.remote_write {
        remote_write_table(&mut h, &queues());
    }
    h.push_str("</body></html>");
    Html(h)
}

/// The remote-write queues: where each is in the WAL and how far behind.
fn remote_write_table(h: &mut String, queues: &[crate::remote::send::QueueStatus]) {
    let _ = write!(
        h,
        "<h2>Remote write</h2><table><tr><th>name</th><th>url</th><th>protocol</th><th>WAL position</th><th>backlog</th>\
         <th>pending samples</th><th>shards</th><th>newest sent</th><th>error</th></tr>"
    );
    for q in queues {
        let sent = if q.highest_sent_ms > 0 {
            let ago = (crate::model::now_ms() - q.highest_sent_ms) as f64 / 1000.0;
            format!("{ago:.1}s ago")
        } else {
            "nothing yet".into()
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>segment {} offset {}</td><td>{:.1} MiB</td><td>{}</td><td>{}</td>\
             <td>{sent}</td><td class=warn>{}</td></tr>",
            esc(&q.name),
            esc(&q.url),
            q.protocol,
            q.position.segment,
            q.position.offset,
            q.backlog_bytes as f64 / (1 << 20) as f64,
            q.pending,
            q.shards,
            esc(q.last_error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table>");
}
