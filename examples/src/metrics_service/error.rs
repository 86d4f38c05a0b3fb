//! What can go wrong while starting or stopping the metrics service.

use metrics_exporter_prometheus::BuildError;

/// The metrics service could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The Prometheus recorder could not be built or installed (another
    /// recorder is installed already, for one).
    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(#[from] BuildError),
    /// The HTTP server's socket failed.
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
    /// The HTTP server's task panicked or was cancelled.
    #[error("the HTTP server's task ended abnormally: {0}")]
    ServerTask(#[from] tokio::task::JoinError),
}
