//! Which scheme a request really came with, and whose `X-Forwarded-*` headers are believed.
//!
//! A request is HTTPS when it arrived on the TLS listener, or when it came from an address in
//! `http.trusted_proxies` that says `X-Forwarded-Proto: https`. From any other address the
//! `X-Forwarded-Proto/-For/-Host` headers are removed before handlers or users' servers see
//! them: a client cannot make the hub believe it is on HTTPS, or spoof its address. On the TLS
//! listener `X-Forwarded-Proto: https` is set, so one header says the scheme everywhere after
//! this (cookies, the plain-HTTP warning, links, users' servers: [`crate::session::is_secure`]).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;

use crate::config::{parse_net, SharedConfig};

/// Whether `ip` is one of `trusted` (addresses or CIDRs).
pub fn is_trusted(trusted: &[String], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    trusted
        .iter()
        .filter_map(|t| parse_net(t))
        .any(|net| net.contains(&ip))
}

const FORWARDED: [&str; 3] = ["x-forwarded-proto", "x-forwarded-for", "x-forwarded-host"];

/// Settle the scheme of `req` (arrived over TLS: `tls`): drop forwarded headers from untrusted
/// peers, say `https` for the TLS listener.
pub fn classify(req: &mut Request, config: &SharedConfig, tls: bool) {
    // HTTP/2 carries the host in the URI (`:authority`); handlers and users' servers read it
    // from `Host`, as in HTTP/1.1.
    if !req.headers().contains_key(axum::http::header::HOST) {
        if let Some(host) = req
            .uri()
            .authority()
            .and_then(|a| axum::http::HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(axum::http::header::HOST, host);
        }
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let trusted = peer.is_some_and(|ip| is_trusted(&config.get().http.trusted_proxies, ip));
    if !trusted {
        for h in FORWARDED {
            req.headers_mut().remove(h);
        }
    }
    if tls {
        // What handlers and users' servers read (the proxy passes it on, as a TLS-terminating
        // reverse proxy would set it).
        req.headers_mut().insert(
            "x-forwarded-proto",
            axum::http::HeaderValue::from_static("https"),
        );
    }
}

/// Middleware for the plain-HTTP listener.
pub async fn plain(
    axum::extract::State(config): axum::extract::State<SharedConfig>,
    mut req: Request,
    next: Next,
) -> Response {
    classify(&mut req, &config, false);
    next.run(req).await
}

/// Middleware for the TLS listener.
pub async fn tls(
    axum::extract::State(config): axum::extract::State<SharedConfig>,
    mut req: Request,
    next: Next,
) -> Response {
    classify(&mut req, &config, true);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_cidrs_are_trusted_as_listed() {
        let trusted = vec!["127.0.0.1".to_string(), "10.0.0.0/8".to_string()];
        assert!(is_trusted(&trusted, "127.0.0.1".parse().unwrap()));
        assert!(is_trusted(&trusted, "10.2.3.4".parse().unwrap()));
        assert!(is_trusted(&trusted, "::ffff:10.2.3.4".parse().unwrap()));
        assert!(!is_trusted(&trusted, "192.168.1.1".parse().unwrap()));
        assert!(!is_trusted(&[], "127.0.0.1".parse().unwrap()));
        assert!(parse_net("not-an-ip").is_none());
    }
}
