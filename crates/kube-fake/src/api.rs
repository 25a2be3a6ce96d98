//! The HTTP API: one axum handler that reads a request path as the real API server does
//! (`/api/v1/namespaces/{ns}/{resource}[/{name}[/{sub}]]`, `/api/v1/{resource}...` for all
//! namespaces and cluster-scoped resources, `/apis/{group}/{version}/...` likewise, and the
//! discovery documents) and maps the verbs: GET (get, list, watch), POST (create), PUT
//! (replace), PATCH, DELETE (delete, deletecollection), plus `pods/{name}/log`. JSON only;
//! no authentication or authorization.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::discovery;
use crate::kubelet::Kubelet;
use crate::patch::PatchType;
use crate::resources::{self, ResourceInfo};
use crate::selectors::{parse_field_selector, parse_label_selector, Selector};
use crate::status::{self, ApiError};
use crate::store::{DeleteOptions, Deleted, ListRv, Store, WatchStart, Write};
use crate::table::{self, Include};
use crate::watch::{self, WatchParams};

/// What the handler needs.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    /// Serves `pods/{name}/log` (none: no pod has a container).
    pub kubelet: Option<Arc<Kubelet>>,
    /// `host:port` this server listens on (for `/api`'s serverAddressByClientCIDRs).
    pub address: String,
}

/// The router: everything goes through [`dispatch`].
pub fn router(state: AppState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v)
}

/// A request's query parameters.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }

    fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {k}: {v:?} is not an integer"))
            }),
        }
    }

    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(v) => Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: \"{v}\": supported values: \"All\""
            ))),
        }
    }

    fn selector(&self, res: &ResourceInfo) -> Result<Selector, ApiError> {
        let labels = parse_label_selector(self.get("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let fields = parse_field_selector(self.get("fieldSelector").unwrap_or(""), res)
            .map_err(ApiError::bad_request)?;
        Ok(Selector { labels, fields })
    }

    fn rv(&self) -> Result<Option<u64>, ApiError> {
        match self.get("resourceVersion") {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::new(
                    400,
                    "BadRequest",
                    format!("resourceVersion: Invalid value: \"{v}\": must be an integer"),
                )
            }),
        }
    }
}

/// Where a resource request points.
struct Target {
    res: &'static ResourceInfo,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let s = |x: &str| Some(x.to_string());
    let (plural, ns, name, sub) = match rest {
        [r] => (*r, None, None, None),
        [r, n] => (*r, None, s(n), None),
        ["namespaces", ns, "status" | "finalize"] if group.is_empty() => {
            let sub = rest.get(2).copied().unwrap_or("");
            ("namespaces", None, s(ns), s(sub))
        }
        ["namespaces", ns, r] => (*r, s(ns), None, None),
        [r, n, sub] => (*r, None, s(n), s(sub)),
        ["namespaces", ns, r, n] => (*r, s(ns), s(n), None),
        ["namespaces", ns, r, n, sub] => (*r, s(ns), s(n), s(sub)),
        _ => return Err(ApiError::no_route()),
    };
    let res = resources::lookup(group, version, plural).ok_or_else(ApiError::no_route)?;
    if (res.namespaced && ns.is_none() && name.is_some()) || (!res.namespaced && ns.is_some()) {
        return Err(ApiError::no_route());
    }
    if let Some(sub) = &sub {
        if !res.subresources().contains(&sub.as_str()) {
            return Err(ApiError::no_route());
        }
    }
    Ok(Target { res, ns, name, sub })
}

/// Every request.
pub async fn dispatch(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match Query::<Vec<(String, String)>>::try_from_uri(&uri) {
        Ok(Query(p)) => Params(p),
        Err(e) => return ApiError::bad_request(format!("bad query: {e}")).into_response(),
    };
    let path = uri.path().to_string();
    tracing::debug!("{method} {uri}");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let got = match (segs.as_slice(), &method) {
        (["version"], &Method::GET) => Ok(ok(&discovery::version())),
        (["api"], &Method::GET) => Ok(ok(&discovery::api_versions(&state.address))),
        (["apis"], &Method::GET) => Ok(ok(&discovery::api_group_list())),
        (["api", v], &Method::GET) => discovery::resource_list("", v)
            .map(|d| ok(&d))
            .ok_or_else(ApiError::no_route),
        (["apis", g], &Method::GET) => discovery::api_group(g)
            .map(|d| ok(&d))
            .ok_or_else(ApiError::no_route),
        (["apis", g, v], &Method::GET) => discovery::resource_list(g, v)
            .map(|d| ok(&d))
            .ok_or_else(ApiError::no_route),
        (["openapi", "v2"], &Method::GET) => {
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if accept.contains("protobuf") {
                Ok((
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, discovery::OPENAPI_V2_PROTOBUF)],
                    Bytes::new(),
                )
                    .into_response())
            } else {
                Ok(ok(&discovery::openapi_v2_json()))
            }
        }
        (["openapi", "v3"], &Method::GET) => Ok(ok(&discovery::openapi_v3_root())),
        (["openapi", "v3", "api", v], &Method::GET) => discovery::openapi_v3("", v)
            .map(|d| ok(&d))
            .ok_or_else(ApiError::no_route),
        (["openapi", "v3", "apis", g, v], &Method::GET) => discovery::openapi_v3(g, v)
            .map(|d| ok(&d))
            .ok_or_else(ApiError::no_route),
        (["api", v, rest @ ..], _) if !rest.is_empty() => {
            resource(&state, &method, &headers, &params, &body, "", v, rest).await
        }
        (["apis", g, v, rest @ ..], _) if !rest.is_empty() => {
            resource(&state, &method, &headers, &params, &body, g, v, rest).await
        }
        _ => Err(ApiError::no_route()),
    };
    match got {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("{method} {uri}: {e}");
            e.into_response()
        }
    }
}

fn parse_body(body: &Bytes, headers: &HeaderMap) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !(media.is_empty() || media == "application/json" || media == "*/*") {
        return Err(ApiError::unsupported_media_type(
            media,
            "kube-fake accepts application/json only",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))
    })
}

fn delete_options(body: &Bytes, params: &Params) -> Result<DeleteOptions, ApiError> {
    let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("DeleteOptions could not be decoded as JSON: {e}"))
        })?
    };
    let dry_run = params.dry_run()?
        || b.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "All"));
    let orphan = b.get("orphanDependents").and_then(Value::as_bool) == Some(true)
        || params.get("orphanDependents") == Some("true");
    Ok(DeleteOptions {
        grace_period_seconds: match params.int("gracePeriodSeconds")? {
            Some(g) => Some(g),
            None => b.get("gracePeriodSeconds").and_then(Value::as_i64),
        },
        propagation_policy: params
            .get("propagationPolicy")
            .map(String::from)
            .or_else(|| {
                b.get("propagationPolicy")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .or_else(|| orphan.then(|| "Orphan".to_string())),
        precondition_uid: b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        precondition_rv: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        dry_run,
    })
}

fn list_doc(res: &ResourceInfo, items: Vec<Arc<Value>>, rv: u64) -> Value {
    json!({
        "kind": res.list_kind(),
        "apiVersion": res.api_version(),
        "metadata": { "resourceVersion": rv.to_string() },
        "items": items.iter().map(|i| (**i).clone()).collect::<Vec<_>>(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    params: &Params,
    body: &Bytes,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response, ApiError> {
    let t = parse_target(group, version, rest)?;
    let store = &state.store;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let as_table = table::wanted(accept).then(|| Include::from_param(params.get("includeObject")));
    let res = t.res;
    let ns = t.ns.as_deref().unwrap_or("");
    match (&t.name, t.sub.as_deref(), method) {
        (None, None, &Method::GET) => {
            let selector = params.selector(res)?;
            if params.flag("watch") {
                return watch_request(store, res, t.ns.as_deref(), params, selector, as_table);
            }
            let rv = match (params.rv()?, params.get("resourceVersionMatch")) {
                (None, None | Some("")) => ListRv::Latest,
                (Some(n), Some("Exact")) if n > 0 => ListRv::Exact(n),
                (_, Some("Exact")) => {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is \
                         forbidden for resourceVersion \"0\" or unset",
                    ))
                }
                (Some(n), None | Some("") | Some("NotOlderThan")) => ListRv::NotOlderThan(n),
                (None, Some("NotOlderThan")) => {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden \
                         unless resourceVersion is provided",
                    ))
                }
                (_, Some(m)) => {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "resourceVersionMatch: Unsupported value: \"{m}\": supported values: \
                             \"Exact\", \"NotOlderThan\", \"\""
                        ),
                    ))
                }
            };
            let (items, rv) = store.list(res, t.ns.as_deref(), &selector, rv)?;
            if let Some(include) = as_table {
                let rv = rv.to_string();
                return Ok(ok(&table::table(
                    res,
                    items.iter().map(|i| &**i),
                    Some(&rv),
                    include,
                )));
            }
            Ok(ok(&list_doc(res, items, rv)))
        }
        (None, None, &Method::POST) => {
            let obj = parse_body(body, headers)?;
            let created = store.create(res, ns, obj, params.dry_run()?)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (None, None, &Method::DELETE) => {
            let selector = params.selector(res)?;
            let opts = delete_options(body, params)?;
            let items = store.delete_collection(res, t.ns.as_deref(), &selector, &opts)?;
            let rv = store.current_rv();
            Ok(ok(&list_doc(res, items, rv)))
        }
        (Some(name), None, &Method::GET) => {
            if params.flag("watch") {
                let mut selector = params.selector(res)?;
                selector.fields = parse_field_selector(&format!("metadata.name={name}"), res)
                    .map_err(ApiError::bad_request)?;
                return watch_request(store, res, t.ns.as_deref(), params, selector, as_table);
            }
            let obj = store.get(res, ns, name)?;
            if let Some(include) = as_table {
                return Ok(ok(&table::table(res, [&*obj], None, include)));
            }
            Ok(ok(&obj))
        }
        (Some(name), sub @ (None | Some("status")), &Method::PUT) => {
            let obj = parse_body(body, headers)?;
            let write = if sub.is_some() {
                Write::Status
            } else {
                Write::Main
            };
            let updated = store.update(res, ns, name, obj, write, params.dry_run()?)?;
            Ok(ok(&updated))
        }
        (Some(name), sub @ (None | Some("status")), &Method::PATCH) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = PatchType::from_content_type(ct)?;
            let patch: Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("the patch could not be decoded as JSON: {e}"))
            })?;
            let write = if sub.is_some() {
                Write::Status
            } else {
                Write::Main
            };
            let patched = store.patch(res, ns, name, kind, &patch, write, params.dry_run()?)?;
            Ok(ok(&patched))
        }
        (Some(name), None, &Method::DELETE) => {
            let opts = delete_options(body, params)?;
            match store.delete(res, ns, name, &opts)? {
                Deleted::Now(obj) => {
                    let uid = obj
                        .pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    Ok(ok(&status::success(res, name, uid)))
                }
                Deleted::Pending(obj) => Ok(ok(&obj)),
            }
        }
        (Some(name), Some("status"), &Method::GET) => Ok(ok(&*store.get(res, ns, name)?)),
        (Some(name), Some("log"), &Method::GET) => {
            let pod = store.get(res, ns, name)?;
            let request = crate::kubelet::LogParams {
                container: params.get("container").map(String::from),
                previous: params.flag("previous"),
                limit_bytes: params.int("limitBytes")?,
                docker: crate::kubelet::LogRequest {
                    tail: params.int("tailLines")?,
                    timestamps: params.flag("timestamps"),
                    follow: params.flag("follow"),
                    since_seconds: params.int("sinceSeconds")?,
                },
            };
            let body = match crate::kubelet::logs(state.kubelet.as_deref(), &pod, &request).await? {
                crate::kubelet::Logs::Text(t) => axum::body::Body::from(t),
                crate::kubelet::Logs::Stream(s) => axum::body::Body::from_stream(s),
            };
            Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn watch_request(
    store: &Store,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    params: &Params,
    selector: Selector,
    as_table: Option<Include>,
) -> Result<Response, ApiError> {
    let send_initial_events = params.flag("sendInitialEvents");
    let bookmarks = params.flag("allowWatchBookmarks");
    if send_initial_events {
        if params.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::new(
                422,
                "Invalid",
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting \
                 resourceVersionMatch to NotOlderThan",
            ));
        }
        if !bookmarks {
            return Err(ApiError::new(
                422,
                "Invalid",
                "allowWatchBookmarks: Forbidden: sendInitialEvents requires \
                 allowWatchBookmarks=true",
            ));
        }
    }
    let start = match params.rv()? {
        None | Some(0) => WatchStart::Now,
        // The initial events are the state at (at least) N: the current state.
        Some(_) if send_initial_events => WatchStart::Now,
        Some(n) => WatchStart::After(n),
    };
    let timeout = params
        .int("timeoutSeconds")?
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s.max(0).unsigned_abs()));
    Ok(watch::respond(
        store,
        res,
        ns,
        start,
        WatchParams {
            selector,
            bookmarks,
            timeout,
            send_initial_events,
            as_table,
        },
    ))
}
