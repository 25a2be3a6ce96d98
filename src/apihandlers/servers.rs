//! `/hub/api/users/{name}/server`: start (POST), stop (DELETE) and the progress event stream.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::base::{load_user, parse_body, ApiError, ApiResult, Auth};
use crate::hub::Hub;
use crate::spawn::{self, StartError, StartOutcome, StopError};

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
    let request = StartBody::parse(&body)?;
    match spawn::start(
        &hub,
        &user,
        &server,
        request.user_options,
        request.display_name,
    )
    .await
    {
        Ok(StartOutcome::Ready) => Ok(StatusCode::CREATED.into_response()),
        Ok(StartOutcome::Pending) => Ok(StatusCode::ACCEPTED.into_response()),
        Err(
            e @ (StartError::AlreadyRunning(_)
            | StartError::Pending(..)
            | StartError::NamedServers
            | StartError::BadOptions(_)
            | StartError::TooManyNamed(..)),
        ) => Err(ApiError::bad_request(e.to_string())),
        Err(StartError::TooMany) => Err(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: StartError::TooMany.to_string(),
            retry_after: Some(5),
        }),
        Err(StartError::NotAvailable(m)) => Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, m)),
        Err(StartError::NoGpu(m)) => Err(ApiError::new(StatusCode::CONFLICT, m)),
        Err(StartError::Refused(m)) => Err(ApiError::new(StatusCode::FORBIDDEN, m)),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

/// The longest `display_name` kept (JupyterHub stores it in a 255-character column).
const DISPLAY_NAME_MAX: usize = 255;

/// A start request's body in either of JupyterHub's forms: JupyterHub 6's
/// `{"user_options": {...}, "display_name": "..."}`, or, when neither key is there, the older
/// form where the whole body is the `user_options`. No body (or `user_options: null`) means
/// no options: Orrery keeps no options from a server's previous launch.
#[derive(Debug, Default, PartialEq)]
struct StartBody {
    user_options: Value,
    display_name: Option<String>,
}

impl StartBody {
    fn parse(body: &[u8]) -> ApiResult<StartBody> {
        let empty = || Value::Object(Default::default());
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(StartBody {
                user_options: empty(),
                display_name: None,
            });
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))?;
        let Value::Object(mut fields) = value else {
            return Err(ApiError::bad_request(format!(
                "the request body must be a JSON object, e.g. {{\"user_options\": {{}}}}, found {}",
                json_type(&value)
            )));
        };
        if !fields.contains_key("user_options") && !fields.contains_key("display_name") {
            // Before JupyterHub 6: the body is the options.
            return Ok(StartBody {
                user_options: Value::Object(fields),
                display_name: None,
            });
        }
        let user_options = match fields.remove("user_options") {
            None | Some(Value::Null) => empty(),
            Some(o @ Value::Object(_)) => o,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "user_options must be a JSON object, found {}",
                    json_type(&other)
                )))
            }
        };
        let display_name = match fields.remove("display_name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() > DISPLAY_NAME_MAX => {
                return Err(ApiError::bad_request(format!(
                    "display_name is longer than {DISPLAY_NAME_MAX} characters"
                )))
            }
            Some(Value::String(s)) if s.chars().any(char::is_control) => {
                return Err(ApiError::bad_request(
                    "display_name must not contain control characters",
                ))
            }
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "display_name must be a string, found {}",
                    json_type(&other)
                )))
            }
        };
        if let Some(extra) = fields.keys().next() {
            return Err(ApiError::bad_request(format!(
                "unknown field {extra:?} next to user_options/display_name: put the spawner's \
                 options inside user_options"
            )));
        }
        Ok(StartBody {
            user_options,
            display_name,
        })
    }
}

/// How a JSON value's type is named in error messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `DELETE …/servers/{server}` may carry JupyterHub's `{"remove": bool}`. A stopped server
/// keeps nothing in Orrery, so stopping always removes; the body is checked all the same.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StopBody {
    /// For a named server: also forget it (its kept options), as JupyterHub deletes it.
    remove: Option<bool>,
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
    body: Bytes,
) -> ApiResult<Response> {
    let req: StopBody = parse_body(&body)?;
    let hub_ref = hub.0.clone();
    let response = stop(hub, auth, name.clone(), server.clone()).await?;
    if req.remove == Some(true) && !server.is_empty() {
        // The record's key is the normalised name (the path may say `Alice`).
        let name = load_user(&hub_ref, &name)?.name;
        hub_ref.forget_named_server(&name, &server)?;
    }
    Ok(response)
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

/// `GET /users/{name}/server/progress` and `/users/{name}/servers/{server}/progress`:
/// server-sent events until ready or failed.
pub async fn progress(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(params): Path<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let name = params.first().map(|(_, v)| v.clone()).unwrap_or_default();
    let server = params.get(1).map(|(_, v)| v.clone()).unwrap_or_default();
    let user = load_user(&hub, &name)?;
    auth.require_on_user(&hub, "read:servers", &user.name)?;
    Ok(spawn::progress_stream(&hub, &user.name, &server).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: &str) -> Result<StartBody, String> {
        StartBody::parse(body.as_bytes()).map_err(|e| e.message)
    }

    #[test]
    fn both_body_forms() {
        let jh6 = parse(r#"{"user_options": {"image": "x"}, "display_name": "My GPU box"}"#);
        assert_eq!(
            jh6,
            Ok(StartBody {
                user_options: json!({"image": "x"}),
                display_name: Some("My GPU box".into())
            })
        );
        let old = parse(r#"{"image": "x"}"#).expect("old form");
        assert_eq!(old.user_options, json!({"image": "x"}));
        assert_eq!(old.display_name, None);
        for empty in [
            "",
            "  ",
            r#"{"user_options": null}"#,
            r#"{"display_name": null}"#,
        ] {
            assert_eq!(
                parse(empty).expect(empty).user_options,
                json!({}),
                "{empty:?}"
            );
        }
    }

    #[test]
    fn wrong_types_name_the_field() {
        for (body, field) in [
            (r#"{"user_options": [1]}"#, "user_options"),
            (r#"{"user_options": "x"}"#, "user_options"),
            (r#"{"display_name": 5}"#, "display_name"),
            (r#"{"display_name": "a\nb"}"#, "display_name"),
            (r#"{"user_options": {}, "image": "x"}"#, "image"),
            ("[1]", "JSON object"),
            ("nope", "not JSON"),
        ] {
            let err = parse(body).expect_err(body);
            assert!(err.contains(field), "{body}: {err}");
        }
    }
}
