//! Talking to the running daemon from the command line: its URL from the config, and the
//! control token it wrote into the state directory (readable by root / the daemon's user only).

use std::path::Path;

use serde_json::Value;

use crate::config::LoadedConfig;
use crate::serve::{control_token_path, daemon_info_path};

pub struct DaemonClient {
    /// e.g. `http://127.0.0.1:8000/hub/api`
    pub api: String,
    token: String,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("orrery is not running (nothing answers at {0}); start it with `systemctl start orrery` or `orrery serve`")]
    NotRunning(String),
    #[error("cannot read the control token {0}: {1}. Is orrery running with this config (systemctl status orrery)? Run this command as root (or as the user orrery runs as)")]
    Token(String, std::io::Error),
    #[error("{0}")]
    Api(String),
}

impl DaemonClient {
    pub fn new(loaded: &LoadedConfig) -> Result<DaemonClient, DaemonError> {
        let cfg = &loaded.config;
        let host = connect_host(&cfg.http.address);
        // The running daemon's own word on where it listens beats the (maybe edited) file.
        let info = std::fs::read_to_string(daemon_info_path(&loaded.state_path())).ok();
        let api = info
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["api"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("http://{host}:{}{}hub/api", cfg.http.port, cfg.base_url));
        let path = control_token_path(&loaded.state_path());
        let token = read_token(&path)?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| DaemonError::Api(e.to_string()))?;
        Ok(DaemonClient { api, token, http })
    }

    /// Send a request; returns (status, JSON body or Null).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), DaemonError> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.api, path))
            .header("Authorization", format!("token {}", self.token));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                DaemonError::NotRunning(self.api.clone())
            } else {
                DaemonError::Api(e.to_string())
            }
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, json))
    }

    /// Is anything answering?
    pub async fn alive(&self) -> bool {
        self.http.get(format!("{}/", self.api)).send().await.is_ok()
    }
}

/// The host to connect to for a listener bound to `address`: its loopback equivalent when it
/// binds every interface.
pub fn connect_host(address: &str) -> String {
    match address.trim() {
        "" | "0.0.0.0" => "127.0.0.1".to_string(),
        "::" | "[::]" => "[::1]".to_string(),
        a if a.contains(':') && !a.starts_with('[') => format!("[{a}]"),
        a => a.to_string(),
    }
}

fn read_token(path: &Path) -> Result<String, DaemonError> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|e| DaemonError::Token(path.display().to_string(), e))
}

/// The `message` of a JupyterHub-style error body, or the whole body.
pub fn error_message(status: u16, body: &Value) -> String {
    body.get("message")
        .and_then(|m| m.as_str())
        .map(|m| format!("{m} (HTTP {status})"))
        .unwrap_or_else(|| format!("HTTP {status}: {body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_connect_over_loopback() {
        assert_eq!(connect_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(connect_host(""), "127.0.0.1");
        assert_eq!(connect_host("::"), "[::1]");
        assert_eq!(connect_host("fe80::1"), "[fe80::1]");
        assert_eq!(connect_host("10.0.0.5"), "10.0.0.5");
    }
}
