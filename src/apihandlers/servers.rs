//! `/hub/api/users/{name}/server`: start (POST), stop (DELETE) and the progress event stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use serde_json::Value;

use super::base::{load_user, ApiError, ApiResult, Auth};
use crate::hub::Hub;
use crate::spawn::{self, ProgressEvent, StartError, StartOutcome, StopError};

pub async fn start_default(
    hub: State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    start(hub, auth, name, String::new(), body).await
}

pub async fn start_named(
    hub: State<Arc<Hub>>,
    auth: Auth,
    Path((name, server)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    start(hub, auth, name, server, body).await
}

async fn start(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    name: String,
    server: String,
    body: Bytes,
) -> ApiResult<Response> {
    let user = load_user(&hub, &name)?;
    auth.require_on_user(&hub, "servers", &user.name)?;
    let options: Value = if body.iter().all(|b| b.is_ascii_whitespace()) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("user_options must be a JSON object: {e}"))
        })?
    };
    if !options.is_object() {
        return Err(ApiError::bad_request("user_options must be a JSON object"));
    }
    match spawn::start(&hub, &user, &server, options).await {
        Ok(StartOutcome::Ready) => Ok(StatusCode::CREATED.into_response()),
        Ok(StartOutcome::Pending) => Ok(StatusCode::ACCEPTED.into_response()),
        Err(
            e
            @ (StartError::AlreadyRunning(_) | StartError::Pending(..) | StartError::NamedServers),
        ) => Err(ApiError::bad_request(e.to_string())),
        Err(StartError::TooMany) => Err(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: StartError::TooMany.to_string(),
            retry_after: Some(5),
        }),
        Err(StartError::NotAvailable(m)) => Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, m)),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

pub async fn stop_default(
    hub: State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    stop(hub, auth, name, String::new()).await
}

pub async fn stop_named(
    hub: State<Arc<Hub>>,
    auth: Auth,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<Response> {
    stop(hub, auth, name, server).await
}

async fn stop(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    name: String,
    server: String,
) -> ApiResult<Response> {
    let user = load_user(&hub, &name)?;
    auth.require_on_user(&hub, "delete:servers", &user.name)?;
    if let Some(s) = hub.store.server(&user.name, &server)? {
        if s.pending.as_deref() == Some("spawn") {
            return Err(ApiError::bad_request(format!(
                "{}'s server is still starting; stop it when the spawn has finished",
                user.name
            )));
        }
    }
    match spawn::stop(&hub, &user.name, &server).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        // JupyterHub answers 204 for stopping a server that is not running.
        Err(StopError::NotRunning(_)) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

/// `GET /users/{name}/server/progress`: server-sent events until ready or failed.
pub async fn progress(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let user = load_user(&hub, &name)?;
    auth.require_on_user(&hub, "read:servers", &user.name)?;
    Ok(progress_stream(&hub, &user.name).into_response())
}

/// The SSE stream for a server; shared with the spawn-pending page.
pub fn progress_stream(
    hub: &Hub,
    user: &str,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let prefix = spawn::server_prefix(hub, user);
    let running = hub.store.server(user, "").ok().flatten();
    let rx = hub.spawns.subscribe(user, "");
    let initial: Vec<ProgressEvent> = match (&running, &rx) {
        (Some(s), _) if s.ready => vec![ProgressEvent {
            progress: 100,
            message: format!("Server ready at {prefix}"),
            ready: true,
            failed: false,
            url: Some(prefix.clone()),
        }],
        (_, Some(rx)) => rx.borrow().clone(),
        (None, None) => vec![ProgressEvent {
            progress: 100,
            message: "No server is running or starting".into(),
            ready: false,
            failed: true,
            url: None,
        }],
        (Some(_), None) => Vec::new(),
    };
    let done = initial.iter().any(|e| e.ready || e.failed);
    let sent = initial.len();
    let head = stream::iter(initial);
    let tail = match (done, rx) {
        (false, Some(rx)) => stream::unfold(
            (rx, sent, false),
            |(mut rx, mut sent, finished)| async move {
                if finished {
                    return None;
                }
                loop {
                    let events = rx.borrow_and_update().clone();
                    if events.len() > sent {
                        let new: Vec<ProgressEvent> = events[sent..].to_vec();
                        sent = events.len();
                        let fin = new.iter().any(|e| e.ready || e.failed);
                        return Some((stream::iter(new), (rx, sent, fin)));
                    }
                    if rx.changed().await.is_err() {
                        return None;
                    }
                }
            },
        )
        .flatten()
        .boxed(),
        _ => stream::empty().boxed(),
    };
    let events = head
        .chain(tail)
        .map(|ev| Ok(Event::default().data(serde_json::to_string(&ev).unwrap_or_default())));
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
