//! Kubernetes `Status` errors: every failure the fake API server answers is a real
//! `{"kind":"Status","apiVersion":"v1","status":"Failure",...}` object with the HTTP code, the
//! machine-readable `reason` and the message wording of the real API server, so clients
//! (kube-rs's `Error::Api`, kubectl's messages) see what they would see against a cluster.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::resources::ResourceInfo;

/// One failed API request, as the `Status` object the server answers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// The HTTP status code (also `Status.code`).
    pub code: u16,
    /// `Status.reason`: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...
    pub reason: &'static str,
    pub message: String,
    /// `Status.details`, or `Value::Null` for none.
    pub details: Value,
}

/// One cause of an `Invalid` error: the field, what is wrong (`FieldValueInvalid`, ...) and
/// the field's message.
#[derive(Debug, Clone)]
pub struct Cause {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

fn details(res: &ResourceInfo, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": res.plural });
    if !res.group.is_empty() {
        d["group"] = json!(res.group);
    }
    d
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// 404 `pods "x" not found`.
    pub fn not_found(res: &ResourceInfo, name: &str) -> ApiError {
        ApiError {
            details: details(res, name),
            ..ApiError::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", res.qualified()),
            )
        }
    }

    /// 404 for a path that names no resource this server has.
    pub fn no_route() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 409 `pods "x" already exists`.
    pub fn already_exists(res: &ResourceInfo, name: &str) -> ApiError {
        ApiError {
            details: details(res, name),
            ..ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", res.qualified()),
            )
        }
    }

    /// 409 Conflict: a stale `resourceVersion` (optimistic concurrency).
    pub fn conflict(res: &ResourceInfo, name: &str) -> ApiError {
        ApiError::conflict_because(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and \
             try again",
        )
    }

    /// 409 Conflict with the real server's `Operation cannot be fulfilled on ...` wording.
    pub fn conflict_because(res: &ResourceInfo, name: &str, why: &str) -> ApiError {
        ApiError {
            details: details(res, name),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    res.qualified()
                ),
            )
        }
    }

    /// 422 Invalid: `Pod "x" is invalid: <field>: <message>[, ...]`.
    pub fn invalid(res: &ResourceInfo, name: &str, causes: Vec<Cause>) -> ApiError {
        let text: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let text = match text.len() {
            1 => text.join(""),
            _ => format!("[{}]", text.join(", ")),
        };
        let mut d = json!({
            "name": name,
            "kind": res.kind,
            "causes": causes.iter().map(|c| json!({
                "reason": c.reason, "message": c.message, "field": c.field,
            })).collect::<Vec<_>>(),
        });
        if !res.group.is_empty() {
            d["group"] = json!(res.group);
        }
        ApiError {
            details: d,
            ..ApiError::new(
                422,
                "Invalid",
                format!("{} \"{name}\" is invalid: {text}", res.kind),
            )
        }
    }

    /// 410 Expired: a resourceVersion older than the kept history.
    pub fn expired(asked: u64, oldest: u64) -> ApiError {
        ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {asked} ({oldest})"),
        )
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str, why: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json ({content_type}: {why})"),
        )
    }

    /// 504 Timeout: a resourceVersion newer than any this server has written.
    pub fn too_large_resource_version(asked: u64, current: u64) -> ApiError {
        ApiError {
            details: json!({
                "causes": [{ "reason": "ResourceVersionTooLarge", "message": "Too large resource version" }],
                "retryAfterSeconds": 1,
            }),
            ..ApiError::new(
                504,
                "Timeout",
                format!("Too large resource version: {asked}, current: {current}"),
            )
        }
    }

    /// 500 InternalError (something inside the fake failed).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.details.is_null() {
            s["details"] = self.details.clone();
        }
        s
    }
}

/// A `Status` of success (what an immediate delete answers).
pub fn success(res: &ResourceInfo, name: &str, uid: &str) -> Value {
    let mut d = details(res, name);
    d["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": d,
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            [(header::CONTENT_TYPE, "application/json")],
            self.to_status().to_string(),
        )
            .into_response()
    }
}
