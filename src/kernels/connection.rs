//! A kernel's connection file: where its five sockets listen and the key that signs messages.
//!
//! This is Jupyter's `kernel.json` (`jupyter_client.connect.write_connection_file`): the kernel
//! reads it at start (`python -m ipykernel_launcher -f kernel.json`) and binds its sockets to
//! `transport://ip:port`; clients read it to connect and to sign what they send.
//!
//! Orrery runs every kernel in its own container with its own IP address, so the ports can be
//! the same fixed ones for every kernel ([`KernelPorts::FIXED`]) and nothing has to pick free
//! ports or report them back. The kernel binds on `0.0.0.0` inside its container; the hub
//! connects to the container's address on the bridge network (the `ip` argument of
//! [`KernelClient::connect`](super::KernelClient::connect)), not to the file's `ip`.
//!
//! Each kernel gets a fresh 256-bit key. As in Jupyter, the key is used as the *ASCII bytes* of
//! its hex string, not hex-decoded (see [`ConnectionInfo::signing_key`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::channel::Channel;
use super::wire::SigningKey;

/// The only transport Orrery writes (`ipc` would not cross the container boundary).
pub const TRANSPORT_TCP: &str = "tcp";
/// The only signature scheme Orrery writes and accepts.
pub const SIGNATURE_SCHEME: &str = "hmac-sha256";

/// The five ports of one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelPorts {
    pub shell: u16,
    pub iopub: u16,
    pub stdin: u16,
    pub control: u16,
    pub hb: u16,
}

impl KernelPorts {
    /// The in-container ports of every Orrery kernel (each kernel has its own IP address).
    pub const FIXED: KernelPorts = KernelPorts {
        shell: 52000,
        iopub: 52001,
        stdin: 52002,
        control: 52003,
        hb: 52004,
    };
}

/// The JSON connection file of one kernel, field for field.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// Address the kernel binds to (Orrery: `0.0.0.0` inside the kernel's container).
    pub ip: String,
    /// `tcp`.
    pub transport: String,
    pub shell_port: u16,
    pub iopub_port: u16,
    pub stdin_port: u16,
    pub control_port: u16,
    pub hb_port: u16,
    /// HMAC key; its UTF-8 bytes are the key (Jupyter's convention). Empty = unsigned messages.
    pub key: String,
    /// `hmac-sha256`.
    pub signature_scheme: String,
    /// The kernelspec name (informational; `jupyter_client` writes it, kernels ignore it).
    #[serde(default)]
    pub kernel_name: String,
}

impl ConnectionInfo {
    /// A connection file for a new kernel: the given bind address, [`KernelPorts::FIXED`] and a
    /// fresh random 256-bit key (64 hex characters).
    pub fn new(ip: impl Into<String>, kernel_name: impl Into<String>) -> Self {
        Self::with_ports(ip, kernel_name, KernelPorts::FIXED)
    }

    /// Like [`ConnectionInfo::new`] with other ports (e.g. several kernels sharing one address).
    pub fn with_ports(
        ip: impl Into<String>,
        kernel_name: impl Into<String>,
        ports: KernelPorts,
    ) -> Self {
        ConnectionInfo {
            ip: ip.into(),
            transport: TRANSPORT_TCP.to_string(),
            shell_port: ports.shell,
            iopub_port: ports.iopub,
            stdin_port: ports.stdin,
            control_port: ports.control,
            hb_port: ports.hb,
            key: crate::secrets::new_token(),
            signature_scheme: SIGNATURE_SCHEME.to_string(),
            kernel_name: kernel_name.into(),
        }
    }

    /// The five ports.
    pub fn ports(&self) -> KernelPorts {
        KernelPorts {
            shell: self.shell_port,
            iopub: self.iopub_port,
            stdin: self.stdin_port,
            control: self.control_port,
            hb: self.hb_port,
        }
    }

    /// The port of one channel.
    pub fn port(&self, channel: Channel) -> u16 {
        match channel {
            Channel::Shell => self.shell_port,
            Channel::IOPub => self.iopub_port,
            Channel::Stdin => self.stdin_port,
            Channel::Control => self.control_port,
            Channel::Heartbeat => self.hb_port,
        }
    }

    /// The ZeroMQ endpoint of `channel` at `host` (the kernel's reachable address), e.g.
    /// `tcp://172.18.0.5:52000`. IPv6 addresses are bracketed.
    pub fn endpoint(&self, host: &str, channel: Channel) -> String {
        let port = self.port(channel);
        if host.contains(':') && !host.starts_with('[') {
            format!("{}://[{host}]:{port}", self.transport)
        } else {
            format!("{}://{host}:{port}", self.transport)
        }
    }

    /// The key that signs and checks this kernel's messages.
    pub fn signing_key(&self) -> SigningKey {
        SigningKey::new(self.key.as_bytes())
    }

    /// The file's JSON text (what the kernel reads with `-f`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a ConnectionInfo always serializes")
    }
}

/// Never prints the key (it lets anyone who has it run code in the kernel).
impl fmt::Debug for ConnectionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionInfo")
            .field("ip", &self.ip)
            .field("transport", &self.transport)
            .field("ports", &self.ports())
            .field(
                "key",
                &if self.key.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("signature_scheme", &self.signature_scheme)
            .field("kernel_name", &self.kernel_name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_has_fixed_ports_and_a_fresh_key() {
        let a = ConnectionInfo::new("0.0.0.0", "python3");
        let b = ConnectionInfo::new("0.0.0.0", "python3");
        assert_eq!(a.ports(), KernelPorts::FIXED);
        assert_eq!(a.key.len(), 64);
        assert!(a.key.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.key, b.key, "every kernel gets its own key");
        assert_eq!(a.transport, "tcp");
        assert_eq!(a.signature_scheme, "hmac-sha256");
    }

    #[test]
    fn json_is_jupyters_connection_file() {
        let info = ConnectionInfo::new("0.0.0.0", "python3");
        let v: serde_json::Value = serde_json::from_str(&info.to_json()).unwrap();
        for field in [
            "ip",
            "transport",
            "shell_port",
            "iopub_port",
            "stdin_port",
            "control_port",
            "hb_port",
            "key",
            "signature_scheme",
            "kernel_name",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["shell_port"], 52000);
        // A file written by jupyter_client (no kernel_name) reads too.
        let jc = r#"{"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4,
            "hb_port": 5, "ip": "127.0.0.1", "key": "k", "transport": "tcp",
            "signature_scheme": "hmac-sha256"}"#;
        let parsed: ConnectionInfo = serde_json::from_str(jc).unwrap();
        assert_eq!(parsed.port(Channel::Heartbeat), 5);
        let back: ConnectionInfo = serde_json::from_str(&info.to_json()).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn endpoints_and_debug() {
        let info = ConnectionInfo::new("0.0.0.0", "python3");
        assert_eq!(
            info.endpoint("172.18.0.5", Channel::Stdin),
            "tcp://172.18.0.5:52002"
        );
        assert_eq!(
            info.endpoint("fd00::5", Channel::Heartbeat),
            "tcp://[fd00::5]:52004"
        );
        let dbg = format!("{info:?}");
        assert!(
            !dbg.contains(&info.key),
            "Debug must not reveal the key: {dbg}"
        );
    }
}
