//! The kernel gateway's logic, in-process and without Docker: errors keep their kind (the
//! client's mistakes are 4xx, Orrery's own failures 5xx with the cause).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use orrery::config::{BackendKind, Config};
use orrery::hub::Hub;
use orrery::state::{Store, TokenKind, TokenOwner, UserRecord};
use serde_json::{json, Value};
use tower::ServiceExt;

/// A hub with remote kernels on, user `alice`, and alice's gateway token.
fn gateway_hub() -> (Arc<Hub>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut cfg = Config::default();
    cfg.kernels.remote = true;
    cfg.spawner.backend = BackendKind::Local;
    let backend = Arc::new(orrery::spawner::local::LocalBackend::new(vec![], false));
    let hub = Arc::new(Hub::new(cfg, None, store, backend, "x".into()));
    assert!(hub
        .store
        .create_user(&UserRecord::new("alice"))
        .expect("user"));
    let (token, _) = hub
        .issue_token(
            TokenOwner::User("alice".into()),
            TokenKind::Gateway,
            vec![],
            "gateway",
            None,
        )
        .expect("token");
    (hub, token, dir)
}

async fn call(
    hub: &Arc<Hub>,
    method: Method,
    path: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let router = orrery::gateway::router(hub.gateway.clone());
    let req = Request::builder()
        .method(method)
        .uri(format!("/hub/gateway{path}"))
        .header(header::AUTHORIZATION, format!("token {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = router.oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_failing_state_directory_is_a_500_with_its_cause_not_the_clients_fault() {
    let (hub, token, dir) = gateway_hub();
    // Where kernel connection directories go, a file: Orrery cannot write there.
    std::fs::write(dir.path().join("kernels"), b"not a directory").expect("block kernels/");
    let (status, body) = call(&hub, Method::POST, "/api/kernels", &token, json!({})).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let message = body["message"].as_str().unwrap_or("");
    assert!(
        message.contains("writing the kernel's connection file"),
        "names what failed: {body}"
    );
    assert!(
        message.len() > "writing the kernel's connection file: ".len(),
        "and why: {body}"
    );
    assert!(
        hub.gateway.kernels_of("alice").is_empty(),
        "no kernel is left registered"
    );

    // The client's mistakes stay 4xx.
    let (status, body) = call(
        &hub,
        Method::POST,
        "/api/kernels",
        &token,
        json!({"env": {"KERNEL_WORKING_DIR": "../../etc"}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = call(
        &hub,
        Method::POST,
        "/api/kernels",
        &token,
        json!({"name": "nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = call(
        &hub,
        Method::GET,
        "/api/kernels/some-id",
        &token,
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(
        &hub,
        Method::GET,
        "/api/kernels",
        "not-a-token",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "Forbidden");
}
