//! Watches: `?watch=true` answers a chunked stream of newline-delimited JSON events
//! (`{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":...}`), one chunk per event.
//! A watch from "" or "0" starts with an `ADDED` for every match; from `N` it replays the
//! history after N; from a resourceVersion older than the history it sends one `ERROR` event
//! (a `410 Expired` Status) and ends, with HTTP 200, as the real server does. Selectors work as
//! the real watch cache: an object that starts matching arrives as `ADDED`, one that stops
//! matching as `DELETED`. Bookmarks (`allowWatchBookmarks`), `timeoutSeconds` and
//! `sendInitialEvents` (the streaming list's closing bookmark) are honoured.

use std::convert::Infallible;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::resources::ResourceInfo;
use crate::selectors::Selector;

use crate::store::{Change, ChangeKind, Store, Subscription, WatchStart};
use crate::table::{self, Include};

/// How often a watch that allows bookmarks gets one.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);
/// How long a watch without `timeoutSeconds` lasts.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What a watch request asks for.
#[derive(Debug, Clone)]
pub struct WatchParams {
    pub selector: Selector,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    pub send_initial_events: bool,
    /// Send each object as a one-row Table (kubectl's default output).
    pub as_table: Option<Include>,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut s = json!({ "type": kind, "object": object }).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(res: &ResourceInfo, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if initial_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    line(
        "BOOKMARK",
        &json!({ "kind": res.kind, "apiVersion": res.api_version(), "metadata": meta }),
    )
}

/// The event a change is for a watcher with `params`, if any.
fn event_for(c: &Change, params: &WatchParams) -> Option<Bytes> {
    let sel = &params.selector;
    let now = || sel.matches(&c.object);
    let before = || c.prev.as_deref().is_some_and(|p| sel.matches(p));
    let kind = match c.kind {
        ChangeKind::Added => now().then_some("ADDED"),
        ChangeKind::Modified => match (before(), now()) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
        ChangeKind::Deleted => {
            let matched = match c.prev.as_deref() {
                Some(p) => sel.matches(p),
                None => now(),
            };
            matched.then_some("DELETED")
        }
    }?;
    match params.as_table {
        Some(include) => Some(line(
            kind,
            &table::table(c.res, [&*c.object], None, include),
        )),
        None => Some(line(kind, &c.object)),
    }
}

/// Answer a watch of `res` (in `ns`, or everywhere) from `start`.
pub fn respond(
    store: &Store,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    start: WatchStart,
    params: WatchParams,
) -> Response {
    let sub = match store.watch(res, ns, start) {
        Ok(sub) => sub,
        Err(e) if e.code == 410 => {
            // As the real server: 200, one ERROR event, end of stream.
            let body = line("ERROR", &e.to_status());
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(pump(sub, res, ns.map(String::from), start, params, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Feed one watch: its initial events, then live changes, bookmarks, until it times out, is
/// closed, or its client goes.
async fn pump(
    sub: Subscription,
    res: &'static ResourceInfo,
    ns: Option<String>,
    start: WatchStart,
    params: WatchParams,
    tx: mpsc::Sender<Bytes>,
) {
    let Subscription {
        initial,
        mut rx,
        rv: mut last_rv,
        cancel,
    } = sub;
    for c in &initial {
        if let Some(ev) = event_for(c, &params) {
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    }
    if params.send_initial_events
        && start == WatchStart::Now
        && tx.send(bookmark(res, last_rv, true)).await.is_err()
    {
        return;
    }
    let deadline = tokio::time::sleep(params.timeout.unwrap_or(DEFAULT_TIMEOUT));
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + BOOKMARK_INTERVAL,
        BOOKMARK_INTERVAL,
    );
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            got = rx.recv() => match got {
                Ok(c) => {
                    let in_scope = std::ptr::eq(c.res, res)
                        && ns.as_deref().is_none_or(|n| n == c.namespace);
                    if c.rv <= last_rv || !in_scope {
                        last_rv = last_rv.max(c.rv);
                        continue;
                    }
                    last_rv = c.rv;
                    if let Some(ev) = event_for(&c, &params) {
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                }
                // Too slow a reader, or the store went: end the watch; the client resumes.
                Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
            },
            _ = ticks.tick(), if params.bookmarks => {
                if tx.send(bookmark(res, last_rv, false)).await.is_err() {
                    return;
                }
            }
        }
    }
}
