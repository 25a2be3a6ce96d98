//! The Docker backend: one container per user. Its implementation arrives with the Docker
//! backend issue; until then every start is refused with a clear "not available" error, which
//! the API reports as 501.

use futures::future::BoxFuture;

use super::{Backend, PollStatus, SpawnError, SpawnSpec, Started};

pub struct DockerBackend;

const NOT_YET: &str = "the docker backend is not available in this build of orrery yet; \
    for development use the local backend (orrery config set spawner.backend local)";

impl Backend for DockerBackend {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn hub_api_base(&self, _internal_port: u16) -> Option<String> {
        None
    }

    fn start(&self, _spec: SpawnSpec) -> BoxFuture<'_, Result<Started, SpawnError>> {
        Box::pin(async { Err(SpawnError::NotAvailable(NOT_YET.into())) })
    }

    fn stop<'a>(
        &'a self,
        _u: &'a str,
        _s: &'a str,
        _st: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), SpawnError>> {
        Box::pin(async { Ok(()) })
    }

    fn poll<'a>(
        &'a self,
        _u: &'a str,
        _s: &'a str,
        _st: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<PollStatus, SpawnError>> {
        Box::pin(async {
            Ok(PollStatus::Stopped(
                "the docker backend is not available".into(),
            ))
        })
    }
}
