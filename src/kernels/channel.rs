//! The five kernel channels (shell, control, stdin, iopub, heartbeat) and their names.
//!
//! The names are the ones Jupyter uses everywhere: in the connection file (`shell_port`…),
//! in the `"channel"` field of WebSocket messages and in log lines. Heartbeat never travels over
//! the WebSocket; it is only a ZeroMQ REQ/REP ping between the hub and the kernel.

use std::fmt;
use std::str::FromStr;

/// One of a kernel's ZeroMQ channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Requests and replies (execute, complete, inspect, comm messages…); DEALER → kernel ROUTER.
    Shell,
    /// Like shell, but served even while the kernel is busy (interrupt, shutdown, debug).
    Control,
    /// Requests *from* the kernel for user input (`input()`); shares shell's identity.
    Stdin,
    /// Broadcast output (status, streams, results, comm messages); SUB → kernel PUB.
    IOPub,
    /// Liveness ping: bytes sent on REQ come back unchanged from the kernel's REP.
    Heartbeat,
}

impl Channel {
    /// The channels that carry Jupyter messages (and so may appear on the WebSocket).
    pub const MESSAGE_CHANNELS: [Channel; 4] = [
        Channel::Shell,
        Channel::Control,
        Channel::Stdin,
        Channel::IOPub,
    ];

    /// The channel's Jupyter name: `shell`, `control`, `stdin`, `iopub`, `hb`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Shell => "shell",
            Channel::Control => "control",
            Channel::Stdin => "stdin",
            Channel::IOPub => "iopub",
            Channel::Heartbeat => "hb",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel name that is not one of Jupyter's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kernel channel {0:?} (expected shell, control, stdin, iopub or hb)")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "shell" => Ok(Channel::Shell),
            "control" => Ok(Channel::Control),
            "stdin" => Ok(Channel::Stdin),
            "iopub" => Ok(Channel::IOPub),
            "hb" => Ok(Channel::Heartbeat),
            other => Err(UnknownChannel(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Channel::MESSAGE_CHANNELS
            .into_iter()
            .chain([Channel::Heartbeat])
        {
            assert_eq!(c.as_str().parse::<Channel>(), Ok(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(
            "Shell".parse::<Channel>(),
            Err(UnknownChannel("Shell".into()))
        );
    }
}
