//! What a certificate says: its names, issuer and validity, for logs, the admin page and
//! `orrery doctor`.

use chrono::{DateTime, Utc};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertInfo {
    /// DNS names (subject alternative names, else the common name).
    pub names: Vec<String>,
    /// The issuer's distinguished name.
    pub issuer: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// Read a DER certificate.
pub fn read(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| format!("unreadable ({e})"))?;
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    GeneralName::IPAddress(b) if b.len() == 4 => {
                        Some(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_string))
            .collect();
    }
    let time = |t: ASN1Time| DateTime::from_timestamp(t.timestamp(), 0).unwrap_or_default();
    Ok(CertInfo {
        names,
        issuer: cert.issuer().to_string(),
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
    })
}

impl CertInfo {
    /// `hub.example.edu, issued by CN=R11, valid until 2027-03-01 (88 days)`.
    pub fn describe(&self) -> String {
        let days = (self.not_after - Utc::now()).num_days();
        format!(
            "{}, issued by {}, valid until {} ({days} days)",
            self.names.join(", "),
            self.issuer,
            self.not_after.format("%Y-%m-%d %H:%M UTC")
        )
    }
}
