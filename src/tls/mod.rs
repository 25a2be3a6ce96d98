//! HTTPS in the daemon: rustls serves the hub with a certificate from files
//! (`https.tls.cert/key`, re-read when they change) or from an ACME server
//! (`https.letsencrypt.*`, obtained and renewed by Orrery itself).
//!
//! * [`Certs`]: the certificate being served, swapped in place (new connections get the new
//!   one, open ones keep theirs), and what the admin page and `orrery doctor` show about it.
//! * [`files`]: certificate files, watched.
//! * [`acme`]: the ACME loop (instant-acme): account, HTTP-01 challenges answered on the HTTP
//!   port ([`acme::Challenges`]), renewal when a third of the lifetime is left, backoff.
//! * [`info`]: what a certificate says (names, issuer, validity), read with x509-parser.
//! * [`listener`]: the TLS listener (HTTP/1.1 and HTTP/2 by ALPN) for `axum::serve`.
//! * [`redirect`]: the plain-HTTP port once a certificate is served: the ACME challenge path,
//!   else a redirect to HTTPS.

pub mod acme;
pub mod files;
pub mod info;
pub mod listener;
pub mod redirect;

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Serialize;

pub use info::CertInfo;

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },
}

/// What is known about the certificate served (or why there is none).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsStatus {
    /// `files` or `acme`.
    pub source: String,
    pub certificate: Option<CertInfo>,
    /// Why the last attempt to get or load a certificate failed, with the fix.
    pub error: Option<String>,
    /// When the certificate is renewed (ACME).
    pub renew_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The certificate the TLS listener serves, swappable while it runs.
#[derive(Debug, Default)]
pub struct Certs {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    status: RwLock<TlsStatus>,
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

impl Certs {
    pub fn new(source: &str) -> Arc<Certs> {
        let certs = Certs::default();
        write(&certs.status).source = source.to_string();
        Arc::new(certs)
    }

    /// Serve `key` from now on (new connections); clears the last error.
    pub fn install(&self, key: CertifiedKey, info: CertInfo) {
        tracing::info!(names = ?info.names, issuer = %info.issuer, not_after = %info.not_after, "serving a certificate");
        *write(&self.current) = Some(Arc::new(key));
        let mut st = write(&self.status);
        st.certificate = Some(info);
        st.error = None;
    }

    /// Record why getting a certificate failed (the served one, if any, stays).
    pub fn fail(&self, why: String) {
        tracing::error!(error = %why, "HTTPS certificate");
        write(&self.status).error = Some(why);
    }

    pub fn set_renew_at(&self, at: Option<chrono::DateTime<chrono::Utc>>) {
        write(&self.status).renew_at = at;
    }

    pub fn status(&self) -> TlsStatus {
        read(&self.status).clone()
    }

    /// Whether a certificate is being served.
    pub fn ready(&self) -> bool {
        read(&self.current).is_some()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        read(&self.current).clone()
    }
}

/// The rustls configuration of the TLS listener: the certificate from `certs`, HTTP/2 and
/// HTTP/1.1 by ALPN.
pub fn server_config(certs: Arc<Certs>) -> Arc<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap_or_else(|_| {
        // The ring provider supports the default versions; this cannot happen.
        rustls::ServerConfig::builder()
    })
    .with_no_client_auth()
    .with_cert_resolver(certs);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// A served certificate from PEM: the chain (leaf first) and its private key.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(CertifiedKey, CertInfo), TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |what: &str, why: String| TlsError::Invalid {
        what: what.to_string(),
        why,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            invalid(
                "the certificate file",
                format!("not PEM certificates ({e})"),
            )
        })?;
    let Some(leaf) = chain.first() else {
        return Err(invalid(
            "the certificate file",
            "holds no CERTIFICATE block".into(),
        ));
    };
    let info = info::read(leaf).map_err(|why| invalid("the certificate", why))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| invalid("the key file", format!("no PEM private key ({e})")))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| invalid("the key file", format!("an unusable key ({e})")))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| {
        invalid(
            "the key file",
            format!("does not match the certificate ({e})"),
        )
    })?;
    Ok((ck, info))
}
