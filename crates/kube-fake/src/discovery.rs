//! Discovery, as kubectl and kube-rs read it: `/version`, `/api` (APIVersions), `/api/v1` and
//! `/apis/<group>/<version>` (APIResourceList, with short names and subresources), `/apis`
//! (APIGroupList) and `/apis/<group>` (APIGroup). Only the legacy (unaggregated) documents
//! are served; clients asking for aggregated discovery fall back to them.
//!
//! OpenAPI: no schemas, only what kubectl needs to create and apply objects without
//! `--validate=false`. `/openapi/v3` is a skeleton: each group/version's document lists the
//! operations with their query parameters and `x-kubernetes-group-version-kind`, so kubectl
//! (1.27+) sees the server does field validation itself (`fieldValidation`, accepted and not
//! enforced) and computes its patches from its built-in types. `/openapi/v2` is an empty
//! document (protobuf or JSON, as asked): kubectl (1.20, Debian's) finds no schema for any
//! kind and skips client-side validation. With a 404 at either, `kubectl apply` fails
//! ("failed to download openapi" / "the server could not find the requested resource").

use serde_json::{json, Value};

use crate::resources::{self, ResourceInfo, GROUPS};

/// The Kubernetes version the fake claims to be.
pub const MAJOR: &str = "1";
pub const MINOR: &str = "33";
pub const GIT_VERSION: &str = "v1.33.0-kube-fake";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": MAJOR,
        "minor": MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn group(name: &str, version: &str) -> Value {
    let gv = json!({ "groupVersion": format!("{name}/{version}"), "version": version });
    json!({
        "name": name,
        "versions": [gv.clone()],
        "preferredVersion": gv,
    })
}

/// `/apis`.
pub fn api_group_list() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": GROUPS.iter().map(|(g, v)| group(g, v)).collect::<Vec<_>>(),
    })
}

/// `/apis/<group>`, if the group is served.
pub fn api_group(name: &str) -> Option<Value> {
    GROUPS.iter().find(|(g, _)| *g == name).map(|(g, v)| {
        let mut doc = group(g, v);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        doc
    })
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn entries(r: &ResourceInfo) -> Vec<Value> {
    let mut main = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        main["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        main["categories"] = json!(r.categories);
    }
    let mut out = vec![main];
    for sub in r.subresources() {
        let (kind, verbs): (&str, &[&str]) = match *sub {
            "log" => ("Pod", &["get"]),
            _ => (r.kind, &["get", "patch", "update"]),
        };
        out.push(json!({
            "name": format!("{}/{sub}", r.plural),
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": kind,
            "verbs": verbs,
        }));
    }
    out
}

/// `/api/v1` or `/apis/<group>/<version>`, if served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let rs = resources::in_group_version(group, version);
    if rs.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": rs.into_iter().flat_map(entries).collect::<Vec<_>>(),
    }))
}

/// The `hash` of the OpenAPI v3 documents (kubectl caches them by URL).
const OPENAPI_HASH: &str = concat!("kube-fake-", env!("CARGO_PKG_VERSION"));

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: where each group/version's document is.
pub fn openapi_v3_root() -> Value {
    let mut gvs = vec![("", "v1")];
    gvs.extend(GROUPS.iter().copied());
    let paths: serde_json::Map<String, Value> = gvs
        .into_iter()
        .map(|(g, v)| {
            let p = gv_path(g, v);
            let url = format!("/openapi/v3/{p}?hash={OPENAPI_HASH}");
            (p, json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

fn query(name: &str) -> Value {
    json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } })
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`: the operations, without
/// schemas.
pub fn openapi_v3(group: &str, version: &str) -> Option<Value> {
    let rs = resources::in_group_version(group, version);
    if rs.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    for r in rs {
        let gvk = json!({ "group": group, "version": version, "kind": r.kind });
        let base = if r.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}",
                gv_path(group, version),
                r.plural
            )
        } else {
            format!("/{}/{}", gv_path(group, version), r.plural)
        };
        let write_params = json!([
            query("dryRun"),
            query("fieldManager"),
            query("fieldValidation")
        ]);
        let op = |action: &str, params: &Value| {
            json!({
                "operationId": format!("{action}{}", r.kind),
                "parameters": params,
                "responses": { "200": { "description": "OK" } },
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        paths.insert(
            base.clone(),
            json!({ "get": op("list", &json!([])), "post": op("post", &write_params) }),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            json!({
                "get": op("get", &json!([])),
                "put": op("put", &write_params),
                "patch": op("patch", &json!([query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")])),
                "delete": op("delete", &json!([query("dryRun")])),
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes (kube-fake)", "version": GIT_VERSION },
        "paths": paths,
        "components": { "schemas": {} },
    }))
}

/// The media type of the protobuf OpenAPI v2 document (kubectl asks for `...v2@v1.0+protobuf`;
/// the answer must be a parseable media type).
pub const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2` as JSON: a valid, empty Swagger 2.0 document. (As protobuf it is the empty
/// message: no bytes.)
pub fn openapi_v2_json() -> Value {
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes (kube-fake)", "version": GIT_VERSION },
        "paths": {},
        "definitions": {},
    })
}
