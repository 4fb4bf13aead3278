//! Which web origins may read a node's responses: by default none but its own (no CORS headers,
//! so browsers keep other sites out); with `web.cors_origin`, origins matching that regex, as
//! Prometheus's `--web.cors.origin`.

use axum::http::{HeaderName, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::ServeError;

/// The CORS layer for `origin` (an anchored regex, or `None` for same-origin only).
pub(super) fn layer(origin: Option<&str>) -> Result<CorsLayer, ServeError> {
    let Some(pattern) = origin else { return Ok(CorsLayer::new()) };
    let re = regex::Regex::new(pattern).map_err(|e| ServeError::Config(format!("cors_origin: {e}")))?;
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |o, _| o.to_str().is_ok_and(|s| re.is_match(s))))
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            HeaderName::from_static("accept"),
            HeaderName::from_static("authorization"),
            HeaderName::from_static("content-type"),
            HeaderName::from_static("origin"),
        ])
        .expose_headers([HeaderName::from_static("date")]))
}
