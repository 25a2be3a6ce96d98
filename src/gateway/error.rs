//! The gateway's errors, each with its HTTP status: the client's mistakes are 4xx, Orrery's own
//! failures 5xx with their cause. Rendered in the gateway API's shape, `{"reason", "message"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No token, or not a live gateway token of an existing user.
    #[error("a valid gateway token is required")]
    Unauthorized,
    /// An unknown kernel id, or another user's kernel (the same answer, so ids can't be probed).
    #[error("Kernel does not exist: {0}")]
    NoSuchKernel(String),
    /// A kernelspec (or one of its resources) that does not exist or is not offered to the user.
    #[error("{0}")]
    NoSuchSpec(String),
    /// Something in the request is wrong, e.g. a `KERNEL_WORKING_DIR` outside the home.
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "you have {have} kernels, the most allowed (kernels.max_per_user = {most}); shut one down first"
    )]
    TooManyKernels { have: usize, most: usize },
    #[error("remote kernels are turned off (kernels.remote = false)")]
    Disabled,
    /// A browser page from another origin tried to open a kernel's WebSocket.
    #[error("cross-origin WebSocket refused: the page's Origin is not this server's Host")]
    CrossOrigin,
    /// The user's server did not let a browser open a kernel's WebSocket.
    #[error("{user}'s server did not authorize this kernel connection ({status})")]
    NotAuthorized { user: String, status: StatusCode },
    /// The user's server could not be asked.
    #[error("{user}'s server did not answer the authorization check: {cause}")]
    ServerUnreachable { user: String, cause: String },
    /// Orrery could not write one of its own files (connection file, kernel record).
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The state database failed.
    #[error("the state database failed: {0}")]
    State(#[from] StateError),
    /// The kernel could not do what was asked (interrupt, restart) for a reason of its own.
    #[error("{0}")]
    Kernel(String),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Unauthorized | GatewayError::CrossOrigin => StatusCode::FORBIDDEN,
            GatewayError::NoSuchKernel(_) | GatewayError::NoSuchSpec(_) => StatusCode::NOT_FOUND,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::TooManyKernels { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Disabled => StatusCode::SERVICE_UNAVAILABLE,
            // The server's own answer (403, 404…) is passed on.
            GatewayError::NotAuthorized { status, .. } => *status,
            GatewayError::ServerUnreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Io { .. } | GatewayError::State(_) | GatewayError::Kernel(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "gateway request failed");
        }
        let reason = status.canonical_reason().unwrap_or("Error");
        (
            status,
            Json(serde_json::json!({"reason": reason, "message": self.to_string()})),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_mistakes_are_4xx_and_orrerys_own_failures_5xx() {
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        for (e, status) in [
            (GatewayError::Unauthorized, 403),
            (GatewayError::NoSuchKernel("k".into()), 404),
            (GatewayError::BadRequest("..".into()), 400),
            (GatewayError::TooManyKernels { have: 2, most: 2 }, 429),
            (GatewayError::Disabled, 503),
            (
                GatewayError::Io {
                    what: "writing the kernel's connection file",
                    source: io(),
                },
                500,
            ),
            (GatewayError::Kernel("no container".into()), 500),
        ] {
            assert_eq!(e.status().as_u16(), status, "{e}");
        }
        let e = GatewayError::Io {
            what: "saving the kernel's record",
            source: io(),
        };
        assert_eq!(
            e.to_string(),
            "saving the kernel's record: denied",
            "keeps the cause"
        );
    }
}
