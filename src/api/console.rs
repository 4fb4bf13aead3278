//! The web console every node serves at `/`: a PromQL box (autocomplete, history, table and
//! graph), the topology as a picture, targets, dedup state with pin and unpin, TSDB status and
//! the effective configuration. It is plain HTML, CSS and JavaScript with no build step, built
//! into the binary from `assets/console/` (uPlot, for the graph, vendored in
//! `assets/vendor/uplot/`), and it reads only this node's own API: nothing comes from elsewhere,
//! so it works offline. What it shows is the API's business; this module only serves the files.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The page's policy: scripts and styles from this node only (uPlot sets element styles from
/// script, hence the style exception), no framing (the dedup buttons must not be clickjacked).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// A file of the console: its path under `/console/`, content type and body.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const INDEX: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/console/index.html"));

const ASSETS: &[Asset] = &[
    asset!("console.css", "console/console.css", CSS),
    asset!("main.js", "console/main.js", JS),
    asset!("api.js", "console/api.js", JS),
    asset!("query.js", "console/query.js", JS),
    asset!("complete.js", "console/complete.js", JS),
    asset!("graph.js", "console/graph.js", JS),
    asset!("topology.js", "console/topology.js", JS),
    asset!("status.js", "console/status.js", JS),
    asset!("vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.iife.min.js", JS),
    asset!("vendor/uplot/uPlot.min.css", "vendor/uplot/uPlot.min.css", CSS),
    asset!("vendor/uplot/LICENSE", "vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
];

/// Headers every console file gets: the files change with the binary, so revalidate.
fn with_headers(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// `GET /`: the console's page.
pub(super) async fn index() -> Response {
    let mut r = with_headers("text/html; charset=utf-8", INDEX);
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    r
}

/// `GET /console/{*file}`: a script, style sheet or vendored file of the console.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.path == file) {
        Some(a) => with_headers(a.content_type, a.body),
        None => (StatusCode::NOT_FOUND, "no such console file\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_and_style_the_page_names_is_served() {
        let page = std::str::from_utf8(INDEX).expect("utf-8 page");
        let mut named = 0;
        for part in page.split("/console/").skip(1) {
            let path = part.split('"').next().unwrap_or("");
            assert!(ASSETS.iter().any(|a| a.path == path), "the page names {path:?}, which is not served");
            named += 1;
        }
        assert!(named >= 3, "the page names only {named} console files");
        // Modules import each other by relative path: each import must be served too.
        for a in ASSETS.iter().filter(|a| a.content_type == JS && !a.path.starts_with("vendor/")) {
            let text = std::str::from_utf8(a.body).expect("utf-8 script");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let target = line.rsplit("from \"./").next().and_then(|s| s.split('"').next()).unwrap_or("");
                assert!(ASSETS.iter().any(|x| x.path == target), "{} imports {target:?}, not served", a.path);
            }
        }
        assert!(ASSETS.iter().any(|a| a.content_type == CSS));
    }
}
