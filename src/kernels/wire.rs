//! Jupyter messages as they travel on a kernel's ZeroMQ sockets (messaging protocol 5.x).
//!
//! A message is one ZeroMQ multipart message:
//!
//! ```text
//! [identity…, "<IDS|MSG>", hmac_hex, header, parent_header, metadata, content, buffer…]
//! ```
//!
//! The identities are routing prefixes (a ROUTER's peer id; on iopub the PUB topic), the four
//! JSON parts are signed with HMAC-SHA256 under the kernel's key (buffers are not signed), and
//! the buffers are opaque binary blobs (widgets, comms).
//!
//! [`RawMessage`] keeps the four JSON parts as the bytes they arrived as. A bridge forwards
//! them untouched and only re-signs ([`RawMessage::to_frames`]), so header fields this code has
//! never heard of (`subshell_id`, future additions) survive the trip. When a field *is* needed
//! ([`RawMessage::msg_type`], [`RawMessage::msg_id`], [`RawMessage::parent_msg_id`]) it is
//! parsed on demand from the raw header, without building the whole JSON tree.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

/// The frame that separates the routing identities from the message.
pub const DELIMITER: &[u8] = b"<IDS|MSG>";

/// The messaging protocol version written in the headers of messages Orrery originates.
pub const PROTOCOL_VERSION: &str = "5.4";

/// What goes into `header.username` of messages Orrery originates.
pub const USERNAME: &str = "orrery";

/// A kernel's HMAC-SHA256 key, ready to sign (the key schedule is computed once).
///
/// As in `jupyter_client`, the key is the raw bytes of the connection file's `key` string, and
/// an empty key means messages are neither signed nor checked.
#[derive(Clone)]
pub struct SigningKey {
    mac: Option<Hmac<Sha256>>,
}

impl SigningKey {
    /// A key from the bytes of the connection file's `key` (empty: no signing).
    pub fn new(key: &[u8]) -> Self {
        let mac = (!key.is_empty())
            .then(|| Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length"));
        SigningKey { mac }
    }

    /// No key: signatures are empty and not checked (a kernel started without a key).
    pub fn unsigned() -> Self {
        SigningKey { mac: None }
    }

    /// Whether this key signs nothing.
    pub fn is_unsigned(&self) -> bool {
        self.mac.is_none()
    }

    fn mac_of(&self, parts: [&[u8]; 4]) -> Option<Hmac<Sha256>> {
        let mut mac = self.mac.clone()?;
        for part in parts {
            mac.update(part);
        }
        Some(mac)
    }
}

/// Never prints key material.
impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_unsigned() {
            "SigningKey(unsigned)"
        } else {
            "SigningKey(hmac-sha256, <redacted>)"
        })
    }
}

/// The signature of a message: lower-case hex HMAC-SHA256 over header, parent_header, metadata
/// and content, in that order (`jupyter_client.session.Session.sign`). Empty when `key` is
/// [`SigningKey::unsigned`].
pub fn sign(key: &SigningKey, parts: [&[u8]; 4]) -> String {
    match key.mac_of(parts) {
        Some(mac) => hex::encode(mac.finalize().into_bytes()),
        None => String::new(),
    }
}

/// Whether `signature` is the right one for `parts`, compared in constant time. With an
/// unsigned key every signature is accepted, as `jupyter_client` does.
pub fn verify(key: &SigningKey, parts: [&[u8]; 4], signature: &str) -> bool {
    let Some(mac) = key.mac_of(parts) else {
        return true;
    };
    match hex::decode(signature) {
        Ok(expected) => mac.verify_slice(&expected).is_ok(),
        Err(_) => false,
    }
}

/// A ZeroMQ message that is not a well-formed Jupyter message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("no <IDS|MSG> delimiter among the {frames} frames of the message")]
    NoDelimiter { frames: usize },
    #[error(
        "{found} frames after <IDS|MSG>, a Jupyter message needs at least 5 \
         (signature, header, parent_header, metadata, content)"
    )]
    TooFewFrames { found: usize },
    #[error("the signature frame is not text")]
    SignatureNotText,
    #[error("invalid signature (msg_type {msg_type})")]
    BadSignature { msg_type: String },
    #[error("the message {part} is not valid JSON: {source}")]
    Json {
        part: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the message header has no string {field:?}")]
    MissingField { field: &'static str },
}

/// One Jupyter message with its JSON parts kept as raw bytes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RawMessage {
    /// Routing prefix before `<IDS|MSG>` (peer ids, or the iopub topic). Empty from the WebSocket.
    pub identities: Vec<Bytes>,
    /// The signature as received (hex). Ignored when sending: [`RawMessage::to_frames`] re-signs.
    pub signature: String,
    pub header: Bytes,
    pub parent_header: Bytes,
    pub metadata: Bytes,
    pub content: Bytes,
    /// Binary buffers after the content (not signed).
    pub buffers: Vec<Bytes>,
}

/// The two header fields every message has, borrowed where the JSON has no escapes.
#[derive(Deserialize)]
struct HeaderPeek<'a> {
    #[serde(borrow, default)]
    msg_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    msg_type: Option<Cow<'a, str>>,
}

pub(crate) struct HeaderFields {
    pub msg_id: Option<String>,
    pub msg_type: Option<String>,
}

/// Reads `msg_id` and `msg_type` of a header (the rest is skipped, but checked to be JSON).
pub(crate) fn peek_header(raw: &[u8], part: &'static str) -> Result<HeaderFields, WireError> {
    let peek: HeaderPeek<'_> =
        serde_json::from_slice(raw).map_err(|source| WireError::Json { part, source })?;
    Ok(HeaderFields {
        msg_id: peek.msg_id.map(Cow::into_owned),
        msg_type: peek.msg_type.map(Cow::into_owned),
    })
}

impl RawMessage {
    /// A new message originated by Orrery (e.g. a `kernel_info_request`): a header with a fresh
    /// `msg_id`, the given type and session, the current time and [`PROTOCOL_VERSION`]; empty
    /// parent header and metadata.
    pub fn new(msg_type: &str, session: &str, content: &Value) -> RawMessage {
        let header = serde_json::json!({
            "msg_id": uuid::Uuid::new_v4().to_string(),
            "msg_type": msg_type,
            "username": USERNAME,
            "session": session,
            "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "version": PROTOCOL_VERSION,
        });
        RawMessage {
            identities: Vec::new(),
            signature: String::new(),
            header: json_bytes(&header),
            parent_header: Bytes::from_static(b"{}"),
            metadata: Bytes::from_static(b"{}"),
            content: json_bytes(content),
            buffers: Vec::new(),
        }
    }

    /// This message as a reply to `parent`: its parent header becomes `parent`'s header bytes.
    pub fn with_parent(mut self, parent: &RawMessage) -> RawMessage {
        self.parent_header = parent.header.clone();
        self
    }

    /// This message as a reply to a message whose header was `header` (kept when the message
    /// itself is gone, e.g. across a restart of the daemon).
    pub fn with_parent_header(mut self, header: &Value) -> RawMessage {
        self.parent_header = json_bytes(header);
        self
    }

    /// This message with binary buffers.
    pub fn with_buffers(mut self, buffers: Vec<Bytes>) -> RawMessage {
        self.buffers = buffers;
        self
    }

    /// Splits a received multipart message at `<IDS|MSG>`. The signature is *not* checked here
    /// (see [`RawMessage::verify`]).
    pub fn from_frames(frames: impl IntoIterator<Item = Bytes>) -> Result<RawMessage, WireError> {
        let mut frames: Vec<Bytes> = frames.into_iter().collect();
        let Some(at) = frames.iter().position(|f| f.as_ref() == DELIMITER) else {
            return Err(WireError::NoDelimiter {
                frames: frames.len(),
            });
        };
        let mut rest = frames.split_off(at + 1);
        frames.truncate(at); // drop the delimiter
        if rest.len() < 5 {
            return Err(WireError::TooFewFrames { found: rest.len() });
        }
        let buffers = rest.split_off(5);
        let mut parts = rest.into_iter();
        let mut next = || parts.next().expect("five frames checked above");
        let signature =
            String::from_utf8(next().to_vec()).map_err(|_| WireError::SignatureNotText)?;
        Ok(RawMessage {
            identities: frames,
            signature,
            header: next(),
            parent_header: next(),
            metadata: next(),
            content: next(),
            buffers,
        })
    }

    /// The frames to send, signed afresh with `key` (whatever [`RawMessage::signature`] says).
    pub fn to_frames(&self, key: &SigningKey) -> Vec<Bytes> {
        let mut frames = Vec::with_capacity(self.identities.len() + 6 + self.buffers.len());
        frames.extend(self.identities.iter().cloned());
        frames.push(Bytes::from_static(DELIMITER));
        frames.push(Bytes::from(sign(key, self.signed_parts())));
        frames.push(self.header.clone());
        frames.push(self.parent_header.clone());
        frames.push(self.metadata.clone());
        frames.push(self.content.clone());
        frames.extend(self.buffers.iter().cloned());
        frames
    }

    /// Sets [`RawMessage::signature`] to the signature under `key`.
    pub fn sign(&mut self, key: &SigningKey) {
        self.signature = sign(key, self.signed_parts());
    }

    /// Checks the received signature, in constant time.
    pub fn verify(&self, key: &SigningKey) -> Result<(), WireError> {
        if verify(key, self.signed_parts(), &self.signature) {
            Ok(())
        } else {
            Err(WireError::BadSignature {
                msg_type: self
                    .msg_type()
                    .unwrap_or_else(|_| "<unreadable>".to_string()),
            })
        }
    }

    /// The four signed parts, in signing order.
    pub fn signed_parts(&self) -> [&[u8]; 4] {
        [
            &self.header,
            &self.parent_header,
            &self.metadata,
            &self.content,
        ]
    }

    /// `header.msg_type` (parsed on demand).
    pub fn msg_type(&self) -> Result<String, WireError> {
        peek_header(&self.header, "header")?
            .msg_type
            .ok_or(WireError::MissingField { field: "msg_type" })
    }

    /// `header.msg_id` (parsed on demand).
    pub fn msg_id(&self) -> Result<String, WireError> {
        peek_header(&self.header, "header")?
            .msg_id
            .ok_or(WireError::MissingField { field: "msg_id" })
    }

    /// `parent_header.msg_id`, or `None` for a message that answers nothing (`{}`).
    pub fn parent_msg_id(&self) -> Result<Option<String>, WireError> {
        Ok(peek_header(&self.parent_header, "parent_header")?.msg_id)
    }

    /// The whole header as JSON (allocates the tree; prefer the accessors above).
    pub fn header_json(&self) -> Result<Value, WireError> {
        parse_part(&self.header, "header")
    }

    /// The content as JSON.
    pub fn content_json(&self) -> Result<Value, WireError> {
        parse_part(&self.content, "content")
    }
}

fn parse_part(raw: &[u8], part: &'static str) -> Result<Value, WireError> {
    serde_json::from_slice(raw).map_err(|source| WireError::Json { part, source })
}

pub(crate) fn json_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("a serde_json::Value always serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The key of the fixtures below, as it would appear in a connection file.
    const KEY: &[u8] = b"8f4c1e0b2a7d4e6f9c3b5a1d0e2f4a6b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f";

    /// Computed in the test image (Python 3.11, jupyter_client 8.10) with
    ///
    /// ```python
    /// import hmac, hashlib
    /// from jupyter_client.session import Session
    /// h = hmac.new(KEY, digestmod=hashlib.sha256)
    /// for p in PARTS: h.update(p)
    /// h.hexdigest()                   # and Session(key=KEY).sign(PARTS): the same value
    /// ```
    const VECTOR_PARTS: [&[u8]; 4] = [
        br#"{"msg_id": "a1", "msg_type": "execute_request", "session": "s1", "username": "u", "date": "2025-01-02T03:04:05.678901Z", "version": "5.4", "subshell_id": null}"#,
        b"{}",
        b"{}",
        br#"{"code": "1+1", "silent": false}"#,
    ];
    const VECTOR_SIGNATURE: &str =
        "735decd2cfbac1d5009a9822f4ab64e30ea8e1bbb6cdcc8715ca69a0a433f261";

    #[test]
    fn sign_matches_pythons_hmac() {
        let key = SigningKey::new(KEY);
        assert_eq!(sign(&key, VECTOR_PARTS), VECTOR_SIGNATURE);
        assert!(verify(&key, VECTOR_PARTS, VECTOR_SIGNATURE));
        // Upper-case hex is the same digest.
        assert!(verify(
            &key,
            VECTOR_PARTS,
            &VECTOR_SIGNATURE.to_ascii_uppercase()
        ));
    }

    #[test]
    fn verify_rejects_tampering() {
        let key = SigningKey::new(KEY);
        let mut bad = VECTOR_SIGNATURE.to_string();
        bad.replace_range(0..1, "8");
        assert!(!verify(&key, VECTOR_PARTS, &bad));
        assert!(!verify(&key, VECTOR_PARTS, ""));
        assert!(!verify(&key, VECTOR_PARTS, "not hex"));
        assert!(!verify(&key, VECTOR_PARTS, &VECTOR_SIGNATURE[..62]));
        let mut parts = VECTOR_PARTS;
        parts[3] = br#"{"code": "1+2", "silent": false}"#;
        assert!(!verify(&key, parts, VECTOR_SIGNATURE));
        // Another key.
        assert!(!verify(
            &SigningKey::new(b"other"),
            VECTOR_PARTS,
            VECTOR_SIGNATURE
        ));
    }

    #[test]
    fn unsigned_key_signs_nothing_and_accepts_anything() {
        let key = SigningKey::new(b"");
        assert!(key.is_unsigned());
        assert_eq!(sign(&key, VECTOR_PARTS), "");
        assert!(verify(&key, VECTOR_PARTS, "whatever"));
        assert_eq!(format!("{key:?}"), "SigningKey(unsigned)");
        assert!(!format!("{:?}", SigningKey::new(KEY)).contains("8f4c"));
    }

    fn frames(parts: &[&[u8]]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
    }

    #[test]
    fn frames_round_trip_keeps_unknown_header_fields_byte_for_byte() {
        let key = SigningKey::new(KEY);
        // A header with a field this code does not know, odd spacing and key order: the bytes
        // must come out exactly as they went in.
        let header: &[u8] = br#"{"subshell_id":"abc",  "msg_type": "execute_request", "msg_id":"m\u00e9", "x-future": {"n": [1,2]}}"#;
        let received = frames(&[
            b"topic-or-peer",
            DELIMITER,
            VECTOR_SIGNATURE.as_bytes(), // stale: to_frames must replace it
            header,
            b"{}",
            b"{\"k\": 1}",
            br#"{"code": "1+1"}"#,
            b"\x00\x01binary",
            b"",
        ]);
        let msg = RawMessage::from_frames(received.clone()).unwrap();
        assert_eq!(msg.identities, vec![Bytes::from_static(b"topic-or-peer")]);
        assert_eq!(msg.header.as_ref(), header);
        assert_eq!(msg.buffers.len(), 2);
        assert_eq!(msg.msg_type().unwrap(), "execute_request");
        assert_eq!(msg.msg_id().unwrap(), "mé");
        assert_eq!(msg.parent_msg_id().unwrap(), None);
        assert_eq!(msg.header_json().unwrap()["subshell_id"], "abc");

        let out = msg.to_frames(&key);
        assert_eq!(out.len(), received.len());
        assert_eq!(out[0], received[0]);
        assert_eq!(out[1].as_ref(), DELIMITER);
        assert_eq!(
            out[3..],
            received[3..],
            "JSON parts and buffers are forwarded untouched"
        );
        let resigned = std::str::from_utf8(&out[2]).unwrap();
        assert_ne!(resigned, VECTOR_SIGNATURE);
        assert_eq!(resigned, sign(&key, msg.signed_parts()));

        let back = RawMessage::from_frames(out).unwrap();
        back.verify(&key).unwrap();
        assert!(matches!(
            msg.verify(&key),
            Err(WireError::BadSignature { msg_type }) if msg_type == "execute_request"
        ));
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert!(matches!(
            RawMessage::from_frames(frames(&[b"a", b"b"])),
            Err(WireError::NoDelimiter { frames: 2 })
        ));
        assert!(matches!(
            RawMessage::from_frames(frames(&[DELIMITER, b"sig", b"{}", b"{}", b"{}"])),
            Err(WireError::TooFewFrames { found: 4 })
        ));
        assert!(matches!(
            RawMessage::from_frames(frames(&[DELIMITER, b"\xff", b"{}", b"{}", b"{}", b"{}"])),
            Err(WireError::SignatureNotText)
        ));
        let no_type =
            RawMessage::from_frames(frames(&[DELIMITER, b"", b"{}", b"{}", b"{}", b"{}"])).unwrap();
        assert!(no_type.identities.is_empty());
        assert!(matches!(
            no_type.msg_type(),
            Err(WireError::MissingField { field: "msg_type" })
        ));
        let junk = RawMessage {
            header: Bytes::from_static(b"{nope"),
            ..no_type
        };
        assert!(matches!(
            junk.msg_id(),
            Err(WireError::Json { part: "header", .. })
        ));
    }

    #[test]
    fn new_messages_have_a_full_header() {
        let req = RawMessage::new("kernel_info_request", "sess", &json!({}));
        let h = req.header_json().unwrap();
        assert_eq!(h["msg_type"], "kernel_info_request");
        assert_eq!(h["session"], "sess");
        assert_eq!(h["version"], PROTOCOL_VERSION);
        assert_eq!(h["msg_id"].as_str().unwrap().len(), 36);
        let date = h["date"].as_str().unwrap();
        assert!(date.ends_with('Z') && date.contains('.'), "{date}");
        let reply = RawMessage::new("kernel_info_reply", "k", &json!({"status": "ok"}))
            .with_parent(&req)
            .with_buffers(vec![Bytes::from_static(b"b")]);
        assert_eq!(reply.parent_msg_id().unwrap(), Some(req.msg_id().unwrap()));
        assert_eq!(reply.content_json().unwrap()["status"], "ok");
        assert_eq!(reply.buffers.len(), 1);
    }
}
