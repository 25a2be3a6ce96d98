//! Forwarding HTTP to users' servers: the proxy's engine, which knows nothing of users.
//!
//! Requests and responses stream through (no buffering of uploads or downloads); WebSocket
//! upgrades are tunnelled byte for byte, with the server's data acknowledged at once
//! (`QuickAck`). Hop-by-hop headers, and those named by `Connection`, are not forwarded;
//! `X-Forwarded-For/-Proto/-Host` are set as configurable-http-proxy sets them. Everything else
//! passes in both directions untouched. Who may reach which server is decided above this
//! ([`crate::proxy`], and the server's own OAuth check).

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
];

/// The HTTP client to users' servers (one connection pool, TCP_NODELAY).
pub struct Forwarder {
    client: Client<HttpConnector, Body>,
}

impl Default for Forwarder {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        Forwarder {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .build(connector),
        }
    }
}

/// A WebSocket the hub may close before either end does (a guest whose share was revoked):
/// put into the request's extensions, it ends the tunnel when `cancel` fires. `on_end` is
/// dropped when the tunnel ends, whichever way (the registry's guard).
#[derive(Clone)]
pub struct Revocable {
    pub cancel: tokio_util::sync::CancellationToken,
    pub on_end: std::sync::Arc<dyn std::any::Any + Send + Sync>,
}

/// Largest body [`Forwarder::get_small`] reads.
const SMALL_BODY: usize = 64 * 1024;

impl Forwarder {
    /// `GET url` with `headers`, answered within `wait`.
    async fn send_get(
        &self,
        url: &str,
        headers: axum::http::HeaderMap,
        wait: Duration,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ProxyError> {
        let uri: Uri = url
            .parse()
            .map_err(|e: axum::http::uri::InvalidUri| ProxyError::Target(e.to_string()))?;
        let mut req = hyper::Request::builder()
            .method(axum::http::Method::GET)
            .uri(uri)
            .body(Body::empty())
            .map_err(|e| ProxyError::Target(e.to_string()))?;
        *req.headers_mut() = headers;
        tokio::time::timeout(wait, self.client.request(req))
            .await
            .map_err(|_| ProxyError::Upstream(format!("no answer within {} s", wait.as_secs())))?
            .map_err(|e| ProxyError::Upstream(describe(&e)))
    }

    /// `GET url` with `headers`: the status and up to 64 KiB of the body (how the proxy asks a
    /// server who a visitor is).
    pub async fn get_small(
        &self,
        url: &str,
        headers: axum::http::HeaderMap,
    ) -> Result<(StatusCode, Vec<u8>), ProxyError> {
        let resp = self.send_get(url, headers, Duration::from_secs(10)).await?;
        let status = resp.status();
        let body = tokio::time::timeout(
            Duration::from_secs(10),
            axum::body::to_bytes(Body::new(resp.into_body()), SMALL_BODY),
        )
        .await
        .map_err(|_| ProxyError::Upstream("body not read within 10 s".into()))?
        .map_err(|e| ProxyError::Upstream(e.to_string()))?
        .to_vec();
        Ok((status, body))
    }

    /// The status of a plain `GET url` with `headers` (the body is discarded): how the gateway
    /// asks a user's server whether a browser may open one of its kernels.
    pub async fn status_of_get(
        &self,
        url: &str,
        headers: axum::http::HeaderMap,
    ) -> Result<StatusCode, ProxyError> {
        Ok(self
            .send_get(url, headers, Duration::from_secs(30))
            .await?
            .status())
    }
}

/// Request headers replayed on a check to a user's server (may this browser open that kernel,
/// who is this visitor): the credentials, and what the single-user server's XSRF rule looks at (`Sec-Fetch-Mode: websocket` needs no XSRF token).
const REPLAYED: &[&str] = &[
    "cookie",
    "authorization",
    "host",
    "sec-fetch-mode",
    "user-agent",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// The credentials of `req`, to replay on a `GET` to the same user's server: the headers of
/// [`REPLAYED`] (and `Accept: application/json`), and `?token=` if the request had one.
pub fn replayed_credentials(req: &Request) -> (axum::http::HeaderMap, String) {
    let mut headers = axum::http::HeaderMap::new();
    for name in REPLAYED {
        for v in req.headers().get_all(*name) {
            headers.append(*name, v.clone());
        }
    }
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let query = request_token(req)
        .map(|t| {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("token", &t)
                .finish();
            format!("?{q}")
        })
        .unwrap_or_default();
    (headers, query)
}

/// The `?token=` of a request, if any.
pub fn request_token(req: &Request) -> Option<String> {
    req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    })
}

/// Is this a WebSocket upgrade request?
pub fn is_websocket(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad target URL: {0}")]
    Target(String),
    #[error("{0}")]
    Upstream(String),
}

/// Forward `req` to `target` (scheme://host:port), keeping its path and query.
pub async fn forward(
    proxy: &Forwarder,
    mut req: Request,
    target: &str,
    client_ip: Option<std::net::IpAddr>,
    https: bool,
) -> Result<Response, ProxyError> {
    let path_q = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let uri: Uri = format!("{target}{path_q}")
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| ProxyError::Target(e.to_string()))?;
    let websocket = is_websocket(&req);

    // Build the upstream request: same method, headers minus hop-by-hop, streaming body.
    let mut builder = hyper::Request::builder()
        .method(req.method().clone())
        .uri(uri);
    if let Some(h) = builder.headers_mut() {
        *h = req.headers().clone();
        strip_hop_by_hop(h);
        join_cookies(h);
        add_forwarded(h, client_ip, https);
        if websocket {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
    }
    let client_upgrade = if websocket {
        Some(hyper::upgrade::on(&mut req))
    } else {
        None
    };
    let revocable = req.extensions().get::<Revocable>().cloned();
    let body = std::mem::take(req.body_mut());
    let upstream_req = builder
        .body(body)
        .map_err(|e| ProxyError::Target(e.to_string()))?;
    let mut upstream = proxy
        .client
        .request(upstream_req)
        .await
        .map_err(|e| ProxyError::Upstream(describe(&e)))?;

    if websocket && upstream.status() == StatusCode::SWITCHING_PROTOCOLS {
        let server_upgrade = hyper::upgrade::on(&mut upstream);
        let mut resp = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        if let Some(h) = resp.headers_mut() {
            for (k, v) in upstream.headers() {
                h.append(k.clone(), v.clone());
            }
        }
        if let Some(client_upgrade) = client_upgrade {
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, server_upgrade) {
                    Ok((client, server)) => match revocable {
                        Some(r) => {
                            tokio::select! {
                                _ = tunnel(client, server) => {}
                                _ = r.cancel.cancelled() => {
                                    tracing::info!("a revoked visitor's WebSocket was closed");
                                }
                            }
                            drop(r.on_end);
                        }
                        None => tunnel(client, server).await,
                    },
                    Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
                }
            });
        }
        return resp
            .body(Body::empty())
            .map_err(|e| ProxyError::Upstream(e.to_string()));
    }

    let (mut parts, body) = upstream.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// HTTP/2 clients (browsers) may split `Cookie` into one field per cookie; towards an
/// HTTP/1.1 server they must be joined with "; " (RFC 9113 §8.2.3): Tornado would join
/// repeated fields with "," and lose every cookie but the first.
fn join_cookies(h: &mut axum::http::HeaderMap) {
    if h.get_all(header::COOKIE).iter().count() < 2 {
        return;
    }
    let joined = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    if let Ok(v) = HeaderValue::from_str(&joined) {
        h.insert(header::COOKIE, v);
    }
}

/// Remove what describes only one hop: the hop-by-hop headers, and every header the message's
/// `Connection` header names (RFC 9110 §7.6.1), in either direction.
fn strip_hop_by_hop(h: &mut axum::http::HeaderMap) {
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        h.remove(name);
    }
}

/// Carry an upgraded connection (a WebSocket) both ways until either side closes.
///
/// Jupyter Server (tornado) leaves Nagle's algorithm on for its WebSockets, so each small
/// message after the first waits until we acknowledge the one before, and Linux delays ACKs by
/// up to 40 ms: a kernel round trip through the proxy took 26-45 ms instead of ~9. The proxy
/// therefore acknowledges the server's data at once (`TCP_QUICKACK`, which Linux clears again
/// by itself, so it is re-armed after every read).
async fn tunnel(client: hyper::upgrade::Upgraded, server: hyper::upgrade::Upgraded) {
    use tokio::io::AsyncWriteExt;
    let mut client = TokioIo::new(client);
    match server.downcast::<TokioIo<tokio::net::TcpStream>>() {
        Ok(parts) => {
            // Bytes hyper had already read past the response head belong to the tunnel.
            if !parts.read_buf.is_empty() && client.write_all(&parts.read_buf).await.is_err() {
                return;
            }
            let mut server = QuickAck(parts.io.into_inner());
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
        Err(server) => {
            let mut server = TokioIo::new(server);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
    }
}

/// A TCP stream that acknowledges what it reads at once (see [`tunnel`]).
struct QuickAck(tokio::net::TcpStream);

impl QuickAck {
    fn arm(&self) {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket descriptor owned by `self.0`, a pointer to a live c_int and
        // its size; failure (not Linux, or not TCP) only means no quick ACK.
        unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = polled {
            self.arm();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// `X-Forwarded-For` (appended to), `-Proto` and `-Host` (kept if set), as CHP does.
pub fn add_forwarded(
    h: &mut axum::http::HeaderMap,
    client_ip: Option<std::net::IpAddr>,
    https: bool,
) {
    if let Some(ip) = client_ip {
        let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            h.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
    }
    if !h.contains_key("x-forwarded-proto") {
        h.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(if https { "https" } else { "http" }),
        );
    }
    if let Some(host) = h.get(header::HOST).cloned() {
        if !h.contains_key("x-forwarded-host") {
            h.insert(HeaderName::from_static("x-forwarded-host"), host);
        }
    }
}

fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}
