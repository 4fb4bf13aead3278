//! HTTP plumbing every role shares: the server loop (TLS, timeouts, graceful stop), who may call
//! what (basic auth with access levels, cross-origin protection, CORS), and clients built from
//! one [`ClientConfig`](crate::topology::ClientConfig) (credentials, TLS, client certificates).
//! Endpoints themselves live in `api` and `federate`; this module knows only paths and methods.

pub mod client;
mod cors;
mod guard;
mod pem;
pub mod server;

pub use client::{ClientError, HttpClient};
pub use guard::{Guard, RouteClass, classify};
pub use server::{ServeError, ServerOptions};

use axum::Router;

use crate::topology::WebConfig;

/// Wraps `app` with the listener's access control and CORS policy.
pub fn protect(app: Router, web: &WebConfig) -> Result<Router, ServeError> {
    let guard = std::sync::Arc::new(Guard::new(web));
    let app = app.layer(axum::middleware::from_fn_with_state(guard, guard::check));
    Ok(app.layer(cors::layer(web.cors_origin.as_deref())?))
}
