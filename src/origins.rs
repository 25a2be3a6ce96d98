//! Per-user origins (`http.subdomain_host`): which host serves the hub and which host serves
//! each user's server.
//!
//! On one origin, JavaScript in a server a visitor opens runs with the visitor's hub login. With
//! `http.subdomain_host = "hub.example.org"` the hub's pages and API are served on that host
//! only, and each server on a host of its own: `alice.hub.example.org` for alice's default
//! server and `lab--alice.hub.example.org` for her named server `lab` (JupyterHub 5's
//! form). The path stays `/user/alice/…`, so a server needs no change. The hub's login cookie is
//! host-only (no `Domain`), so browsers never send it to a user's host.
//!
//! A host label must be a DNS label (`[a-z0-9-]`, at most 63 characters). Names that are one
//! already are used as they are (`alice`, `lab--alice`); any other (a name with `.` or `_`,
//! or one with `--` in it, or a label that would be too long) becomes a readable part and a
//! hash of the whole identity, joined by `---`, which a plain label never contains: so two
//! servers never share a host.
//!
//! This module only computes and classifies hosts; the proxy and the hub's middleware act on
//! the answers ([`crate::proxy`], [`crate::app`]).

use sha2::{Digest, Sha256};

/// The hub's host and scheme as configured, when servers have origins of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins {
    /// `http` or `https`: the scheme of the URLs Orrery writes (servers' callback URLs, links).
    scheme: String,
    /// The hub's host name, lowercase, without port.
    host: String,
    /// `:port` when the configured value names one (the browser's port, which the host
    /// header carries too), else empty.
    port: String,
}

/// Where a request's `Host` header points, relative to the configured hub host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// The hub's own host.
    Hub,
    /// A host under the hub's (`<label>.hub.example.org`): some server's origin.
    Server(String),
    /// Anything else (an address, `localhost`): served as the hub, as a machine's own tools
    /// (health checks, the CLI) reach it.
    Other,
}

/// Why a `http.subdomain_host` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OriginsError {
    #[error(
        "{0:?} has a path; give only a scheme, host and port, e.g. \"https://hub.example.org\""
    )]
    HasPath(String),
    #[error("{0:?}: the scheme must be http or https")]
    Scheme(String),
    #[error("{0:?} is not a host name (letters, digits, '-' and '.', e.g. hub.example.org)")]
    Host(String),
    #[error("{0:?}: the port is not a number from 1 to 65535")]
    Port(String),
}

impl Origins {
    /// Parse `http.subdomain_host`: `hub.example.org`, `https://hub.example.org` or
    /// `http://hub.test:8000`. Without a scheme, `https` when `tls` (the daemon or a proxy in
    /// front serves HTTPS), else `http`. Empty: one origin (None).
    pub fn parse(value: &str, tls: bool) -> Result<Option<Origins>, OriginsError> {
        let v = value.trim();
        if v.is_empty() {
            return Ok(None);
        }
        let (scheme, rest) = match v.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ((if tls { "https" } else { "http" }).to_string(), v),
        };
        if scheme != "http" && scheme != "https" {
            return Err(OriginsError::Scheme(v.to_string()));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(OriginsError::HasPath(v.to_string()));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => {
                if !p.parse::<u16>().is_ok_and(|n| n > 0) {
                    return Err(OriginsError::Port(v.to_string()));
                }
                (h, format!(":{p}"))
            }
            None => (rest, String::new()),
        };
        let host = host.to_ascii_lowercase();
        if !is_host_name(&host) {
            return Err(OriginsError::Host(v.to_string()));
        }
        Ok(Some(Origins { scheme, host, port }))
    }

    /// Whether the origins are HTTPS ones (servers may then use `__Host-` cookies, which no
    /// other host can overwrite).
    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// The hub's origin, e.g. `https://hub.example.org` (what `JUPYTERHUB_HOST` says).
    pub fn hub_origin(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.port)
    }

    /// The host (with the configured port, if any) that serves `user`'s server `server`.
    pub fn server_host(&self, user: &str, server: &str) -> String {
        format!("{}.{}{}", label(user, server), self.host, self.port)
    }

    /// The origin of `user`'s server `server`, e.g. `https://alice.hub.example.org`.
    pub fn server_origin(&self, user: &str, server: &str) -> String {
        format!("{}://{}", self.scheme, self.server_host(user, server))
    }

    /// The host name a wildcard certificate and DNS record must cover: `*.hub.example.org`.
    pub fn wildcard(&self) -> String {
        format!("*.{}", self.host)
    }

    /// Classify a request's `Host` header (the port, if any, is ignored: the listener decides
    /// which ports reach the daemon).
    pub fn classify(&self, host_header: Option<&str>) -> HostKind {
        let Some(h) = host_header else {
            return HostKind::Other;
        };
        let name = strip_port(h).trim_end_matches('.').to_ascii_lowercase();
        if name == self.host {
            return HostKind::Hub;
        }
        match name.strip_suffix(&self.host) {
            Some(sub) if sub.ends_with('.') && sub.len() > 1 => {
                HostKind::Server(sub.trim_end_matches('.').to_string())
            }
            _ => HostKind::Other,
        }
    }

    /// Whether `host_header` is the host that serves `user`'s server `server`.
    pub fn is_server_host(&self, host_header: Option<&str>, user: &str, server: &str) -> bool {
        self.classify(host_header) == HostKind::Server(label(user, server))
    }
}

/// The host label of `user`'s server `server` (see the module doc for the rule).
pub fn label(user: &str, server: &str) -> String {
    let plain = if server.is_empty() {
        is_plain(user).then(|| user.to_string())
    } else {
        (is_plain(user) && is_plain(server)).then(|| format!("{server}--{user}"))
    };
    match plain {
        Some(l) if l.len() <= 63 => l,
        _ => {
            let mut h = Sha256::new();
            h.update(user.as_bytes());
            h.update([0u8]);
            h.update(server.as_bytes());
            let digest = hex::encode(h.finalize());
            let readable: String = if server.is_empty() {
                readable_part(user)
            } else {
                format!("{}-{}", readable_part(server), readable_part(user))
            };
            let readable: String = readable.chars().take(40).collect();
            let readable = readable.trim_matches('-');
            format!("{readable}---{}", &digest[..12])
        }
    }
}

/// A name that is a DNS label by itself, with single hyphens only.
fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
        && s.bytes().all(|b| !b.is_ascii_uppercase())
}

/// `s` with every run of characters a label cannot hold (and every run of hyphens) made one `-`.
fn readable_part(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h; // an IPv6 literal: never the hub's name
    }
    h.rsplit_once(':').map(|(n, _)| n).unwrap_or(h)
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens, with a dot in it (a
/// wildcard certificate cannot cover the children of a top-level name).
fn is_host_name(h: &str) -> bool {
    h.len() <= 253
        && h.contains('.')
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(v: &str) -> Origins {
        Origins::parse(v, false).unwrap().unwrap()
    }

    #[test]
    fn values_parse_with_or_without_scheme_and_port() {
        assert_eq!(Origins::parse("", true), Ok(None));
        assert_eq!(o("hub.example.org").hub_origin(), "http://hub.example.org");
        assert_eq!(
            Origins::parse("Hub.Example.org", true)
                .unwrap()
                .unwrap()
                .hub_origin(),
            "https://hub.example.org"
        );
        let t = o("http://hub.test:8000/");
        assert_eq!(t.hub_origin(), "http://hub.test:8000");
        assert_eq!(t.server_origin("alice", ""), "http://alice.hub.test:8000");
        assert_eq!(t.wildcard(), "*.hub.test");
        for bad in [
            "ftp://hub.test",
            "hub.test/jupyter",
            "hub.test:0",
            "hub.test:x",
            "localhost",
            "hub_x.test",
            "-hub.test",
        ] {
            assert!(Origins::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_names_are_their_own_labels_and_named_servers_come_first() {
        assert_eq!(label("alice", ""), "alice");
        assert_eq!(label("alice", "lab"), "lab--alice");
        assert_eq!(label("a-b", "x-1"), "x-1--a-b");
    }

    #[test]
    fn other_names_get_a_hashed_label_no_plain_label_can_equal() {
        let l = label("alice.smith", "");
        assert!(l.starts_with("alice-smith---"), "{l}");
        assert!(l.len() <= 63);
        assert_ne!(label("alice.smith", ""), label("alice_smith", ""));
        // A name with `--` in it cannot pose as a named server's label.
        assert_ne!(label("lab--alice", ""), label("alice", "lab"));
        assert!(label("lab--alice", "").contains("---"));
        // Too long as a plain label: hashed, and still a DNS label.
        let long = label(&"a".repeat(32), &"b".repeat(32));
        assert!(long.len() <= 63 && long.contains("---"), "{long}");
        for l in [l, long] {
            assert!(l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        }
    }

    #[test]
    fn hosts_are_classified_ignoring_port_and_case() {
        let t = o("hub.test");
        assert_eq!(t.classify(Some("hub.test:8000")), HostKind::Hub);
        assert_eq!(t.classify(Some("HUB.test")), HostKind::Hub);
        assert_eq!(
            t.classify(Some("alice.hub.test:8000")),
            HostKind::Server("alice".into())
        );
        assert_eq!(
            t.classify(Some("lab--alice.hub.test")),
            HostKind::Server("lab--alice".into())
        );
        assert_eq!(t.classify(Some("127.0.0.1:8000")), HostKind::Other);
        assert_eq!(t.classify(Some("evilhub.test")), HostKind::Other);
        assert_eq!(t.classify(Some("[::1]:8000")), HostKind::Other);
        assert_eq!(t.classify(None), HostKind::Other);
        assert!(t.is_server_host(Some("alice.hub.test"), "alice", ""));
        assert!(!t.is_server_host(Some("bob.hub.test"), "alice", ""));
        assert!(!t.is_server_host(Some("x.alice.hub.test"), "alice", ""));
    }
}
