//! Shutdown: one cancellation token per process, cancelled by SIGINT/SIGTERM — or when the
//! supervising `promtier up` process disappears, so no node outlives its supervisor.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Environment variable through which `promtier up` tells a child its supervisor's pid.
pub const SUPERVISOR_ENV: &str = "PROMTIER_SUPERVISOR_PID";

/// Cancels `token` on SIGINT or SIGTERM, or when the supervisor named in the environment is gone.
/// Returns when the token is cancelled (by this or anyone else).
pub async fn watch_signals(token: CancellationToken) {
    let (mut term, mut int) = match (
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            token.cancelled().await;
            return;
        }
    };
    let supervisor: Option<i32> = std::env::var(SUPERVISOR_ENV).ok().and_then(|s| s.parse().ok());
    let mut orphan_check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = term.recv() => { tracing::info!("received SIGTERM, shutting down"); break; }
            _ = int.recv() => { tracing::info!("received SIGINT, shutting down"); break; }
            _ = orphan_check.tick(), if supervisor.is_some() => {
                if supervisor.is_some_and(|pid| nix::unistd::getppid().as_raw() != pid) {
                    tracing::warn!("supervisor is gone, shutting down");
                    break;
                }
            }
        }
    }
    token.cancel();
}
