//! The TLS listener: accepts TCP connections and completes TLS handshakes in their own tasks
//! (a slow or silent client never holds up the others), then serves each connection with
//! HTTP/2 or HTTP/1.1 as ALPN picked. WebSockets use HTTP/1.1: HTTP/2's extended CONNECT
//! (RFC 8441) is not offered, because the proxy carries WebSockets to users' servers and
//! kernels as HTTP/1.1 upgrades; browsers then open them on an HTTP/1.1 connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::{server_config, Certs};

/// A handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Serve TLS on `tcp` with the certificate in `certs`.
    pub fn new(tcp: TcpListener, certs: Arc<Certs>) -> TlsListener {
        let acceptor = TlsAcceptor::from(server_config(certs));
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { ready }
    }
}

impl TlsListener {
    /// The next connection whose handshake completed, and its peer.
    async fn accept(&mut self) -> (TlsStream<tokio::net::TcpStream>, SocketAddr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task only ends with the runtime.
            None => std::future::pending().await,
        }
    }
}

/// Serve `router` on `listener` until `stop`, then let open connections finish (at most
/// `grace`).
pub async fn serve(
    mut listener: TlsListener,
    router: axum::Router,
    stop: tokio_util::sync::CancellationToken,
    grace: Duration,
) {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt;
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (io, peer) = tokio::select! {
            c = listener.accept() => c,
            _ = stop.cancelled() => break,
        };
        let router = router.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTPS connections still open after the grace period");
    }
}
