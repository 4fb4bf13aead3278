//! Who may call what. Every request is classed by path and method (open health checks, reads,
//! writes, admin); when the node has users, a class other than open needs basic-auth credentials
//! of a user allowed that class. State-changing requests (writes, admin) from another web origin
//! are refused whatever the credentials, and admin requests must not look like a form post, so
//! a page open in an operator's browser cannot pin a replica behind their back.
//!
//! Passwords are checked against bcrypt hashes; a successful check is remembered (as a SHA-256
//! of the password, never the password) so a global pulling every few seconds costs one bcrypt
//! per process, not one per request. At most two bcrypt checks run at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::topology::{Access, WebConfig};

/// What a request does, for access control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Health and readiness: always open, for load balancers and supervisors.
    Open,
    /// Queries, federation, status, metrics, the pages.
    Read,
    /// Receivers of pushed data.
    Write,
    /// Operator actions: dedup pin/unpin, reload.
    Admin,
}

impl RouteClass {
    fn allowed(self, a: Access) -> bool {
        match self {
            RouteClass::Open => true,
            RouteClass::Read => a.read,
            RouteClass::Write => a.write,
            RouteClass::Admin => a.admin,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RouteClass::Open => "open",
            RouteClass::Read => "read",
            RouteClass::Write => "write",
            RouteClass::Admin => "admin",
        }
    }
}

/// The class of a request for `path` with `method`.
pub fn classify(method: &Method, path: &str) -> RouteClass {
    match path {
        "/-/healthy" | "/-/ready" => RouteClass::Open,
        "/api/v1/dedup/pin" | "/api/v1/dedup/unpin" | "/-/reload" | "/-/quit" => RouteClass::Admin,
        p if p.starts_with("/api/v1/admin/") => RouteClass::Admin,
        "/api/v1/write" | "/api/v1/otlp/v1/metrics" => RouteClass::Write,
        p if p.starts_with("/metrics/job/") && method != Method::GET && method != Method::HEAD => {
            RouteClass::Write
        }
        _ => RouteClass::Read,
    }
}

/// Remembered successful logins before the memory is cleared (a bound, not a tuning knob).
const REMEMBERED_LOGINS: usize = 1024;

/// The access policy of one listener.
pub struct Guard {
    users: HashMap<String, (String, Access)>,
    /// (user, SHA-256 of a password that verified).
    verified: Mutex<HashSet<(String, [u8; 32])>>,
    bcrypt_slots: Semaphore,
    cors: Option<regex::Regex>,
}

impl Guard {
    pub fn new(web: &WebConfig) -> Guard {
        Guard {
            users: web.users.iter().map(|u| (u.name.clone(), (u.bcrypt_hash.clone(), u.access))).collect(),
            verified: Mutex::new(HashSet::new()),
            bcrypt_slots: Semaphore::new(2),
            cors: web.cors_origin.as_deref().and_then(|p| regex::Regex::new(p).ok()),
        }
    }

    /// The access of the user the request's credentials name, or the response refusing it.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Access, Refusal> {
        let Some((user, password)) = basic_credentials(headers) else {
            return Err(Refusal::Unauthorized);
        };
        let Some((hash, access)) = self.users.get(&user) else {
            return Err(Refusal::Unauthorized);
        };
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        let key = (user, digest);
        if self.verified.lock().contains(&key) {
            return Ok(*access);
        }
        let ok = {
            let _slot = self.bcrypt_slots.acquire().await.map_err(|_| Refusal::Unauthorized)?;
            let hash = hash.clone();
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
        };
        if !ok {
            return Err(Refusal::Unauthorized);
        }
        let mut v = self.verified.lock();
        if v.len() >= REMEMBERED_LOGINS {
            v.clear();
        }
        v.insert(key);
        Ok(*access)
    }

    /// Refuses a state-changing request sent from another web origin, or shaped like a form post
    /// (admin only: writes come from tools that post any content type).
    fn same_origin(&self, req: &Request, class: RouteClass) -> Result<(), Refusal> {
        let h = req.headers();
        let allowed = |origin: &str| self.cors.as_ref().is_some_and(|re| re.is_match(origin));
        if let Some(origin) = h.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("null");
            let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
            let same = origin
                .split_once("://")
                .is_some_and(|(_, authority)| !host.is_empty() && authority.eq_ignore_ascii_case(host));
            if !same && !allowed(origin) {
                return Err(Refusal::Forbidden(format!(
                    "cross-origin {} request from {origin} refused (allow origins with web.cors_origin)",
                    class.as_str()
                )));
            }
        } else if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok())
            && (site == "cross-site" || site == "same-site")
        {
            return Err(Refusal::Forbidden(format!("cross-site {} request refused", class.as_str())));
        }
        if class == RouteClass::Admin && !h.contains_key("x-requested-with") {
            let ct = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            if matches!(
                essence.as_str(),
                "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
            ) {
                return Err(Refusal::Forbidden(format!(
                    "admin requests must not be form posts (Content-Type {essence}): send the parameters in the URL without a body, or set X-Requested-With"
                )));
            }
        }
        Ok(())
    }
}

/// The middleware: classify, check origin, authenticate, authorize.
pub(super) async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let class = classify(req.method(), req.uri().path());
    if matches!(class, RouteClass::Write | RouteClass::Admin)
        && req.method() != Method::GET
        && req.method() != Method::HEAD
        && let Err(r) = guard.same_origin(&req, class)
    {
        return r.into_response();
    }
    if class != RouteClass::Open && !guard.users.is_empty() {
        match guard.authenticate(req.headers()).await {
            Ok(access) if class.allowed(access) => {}
            Ok(_) => {
                let user = basic_credentials(req.headers()).map(|(u, _)| u).unwrap_or_default();
                return Refusal::Forbidden(format!("user {user:?} may not make {} requests", class.as_str()))
                    .into_response();
            }
            Err(r) => return r.into_response(),
        }
    }
    next.run(req).await
}

/// The user and password of a `Basic` Authorization header.
fn basic_credentials(h: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Why a request is refused.
#[derive(Debug)]
enum Refusal {
    /// No, unknown or wrong credentials: 401 with a Basic challenge.
    Unauthorized,
    /// Known user without the right, or a request shape refused whoever sends it: 403 with the
    /// reason in Prometheus's error JSON.
    Forbidden(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized => {
                let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Basic realm=\"promtier\""),
                );
                r
            }
            Refusal::Forbidden(message) => {
                let body = serde_json::json!({"status": "error", "errorType": "forbidden", "error": message});
                Response::builder()
                    .status(StatusCode::FORBIDDEN)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap_or_else(|_| StatusCode::FORBIDDEN.into_response())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(classify(&Method::GET, "/-/ready"), RouteClass::Open);
        assert_eq!(classify(&Method::GET, "/api/v1/query"), RouteClass::Read);
        assert_eq!(classify(&Method::GET, "/federate/stream"), RouteClass::Read);
        assert_eq!(classify(&Method::POST, "/api/v1/dedup/pin"), RouteClass::Admin);
        assert_eq!(classify(&Method::POST, "/-/reload"), RouteClass::Admin);
        assert_eq!(classify(&Method::POST, "/api/v1/write"), RouteClass::Write);
        assert_eq!(classify(&Method::POST, "/api/v1/read"), RouteClass::Read);
        assert_eq!(classify(&Method::PUT, "/metrics/job/x"), RouteClass::Write);
        assert_eq!(classify(&Method::GET, "/metrics"), RouteClass::Read);
    }

    #[test]
    fn basic_header_parsing() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic dXNlcjpwYTpzcw==".parse().unwrap());
        assert_eq!(basic_credentials(&h), Some(("user".into(), "pa:ss".into())));
        h.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
    }
}
