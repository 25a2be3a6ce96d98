//! Jupyter messages on the kernel WebSocket, in the *legacy* framing that Jupyter Server uses
//! on its link to a gateway (`/api/kernels/{id}/channels`, no subprotocol).
//!
//! * A message without buffers is a text frame holding one JSON object:
//!   `{"header", "msg_id", "msg_type", "parent_header", "metadata", "content", "buffers": [],
//!   "channel"}` (`msg_id`/`msg_type` repeat the header's, as `Session.deserialize` adds them).
//! * A message with buffers is a binary frame (`serialize_binary_message` in
//!   `jupyter_server/services/kernels/connection/base.py`):
//!
//!   ```text
//!   u32 BE  n = 1 + number of buffers
//!   u32 BE  offset[0..n]       offsets from the start of the frame; offset[0] = 4 * (n + 1)
//!   JSON    the message object without "buffers"      (offset[0] .. offset[1])
//!   bytes   buffer i                                  (offset[i+1] .. offset[i+2] or the end)
//!   ```
//!
//! Towards the browser ([`kernel_to_ws`]) the JSON parts from the kernel are spliced into the
//! envelope as the bytes they are, so nothing is lost or reordered, and with Python's separators
//! so that the result is byte for byte what Jupyter Server produces for ASCII messages.
//! From the browser ([`ws_to_kernel`]) the JSON is parsed as untyped [`serde_json::Value`]s and
//! each part re-serialized, which keeps every field.
//!
//! Jupyter Server 2.x in gateway mode relays browser frames with
//! `WebSocketClientConnection.write_message(message)`, which sends *bytes* as a WebSocket
//! **text** frame: a binary-framed message can therefore arrive in a text frame (and is not
//! valid UTF-8). [`ws_to_kernel`] takes the payload whatever the opcode and tells the two
//! layouts apart by the first byte (`0x00`: the big-endian count of a binary frame; JSON
//! cannot start with it). In the other direction Jupyter Server decodes every frame from the
//! gateway as UTF-8 and forwards it as text, so binary frames towards it do not reach the
//! browser intact (see the module docs of [`crate::kernels`]).

use std::io::Write;

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use super::channel::{Channel, UnknownChannel};
use super::wire::{json_bytes, peek_header, RawMessage, WireError};

/// One WebSocket frame towards Jupyter Server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsFrame {
    Text(String),
    Binary(Bytes),
}

/// A WebSocket message that cannot be turned into a kernel message (or the reverse).
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("WebSocket message is not a JSON object: {0}")]
    Json(#[source] serde_json::Error),
    #[error("WebSocket message has no \"header\" object")]
    NoHeader,
    #[error("WebSocket message names {0}")]
    Channel(#[from] UnknownChannel),
    #[error("channel {0} does not carry messages")]
    NotMessageChannel(Channel),
    #[error("a JSON text message cannot carry binary buffers ({count} given); use a binary frame")]
    BuffersInText { count: usize },
    #[error("binary WebSocket frame is malformed: {0}")]
    Binary(String),
    #[error(transparent)]
    Kernel(#[from] WireError),
    #[error("a message of {bytes} bytes is too large for a WebSocket frame (4 GiB at most)")]
    TooLarge { bytes: usize },
    #[error("kernel message part {part} is not UTF-8")]
    NotUtf8 { part: &'static str },
}

/// A message from the WebSocket (text or binary payload, whatever the frame's opcode) as the
/// channel it is for and the message to send there. Identities and signature are empty; the
/// signature is added by [`RawMessage::to_frames`]. A missing `"channel"` means shell, as in
/// Jupyter Server.
pub fn ws_to_kernel(payload: &[u8]) -> Result<(Channel, RawMessage), WsError> {
    if payload.first() == Some(&0) {
        let (json, buffers) = split_binary_frame(payload)?;
        message_from_json(json, buffers, true)
    } else {
        message_from_json(payload, Vec::new(), false)
    }
}

/// A kernel message received on `channel` as the WebSocket frame for Jupyter Server: text
/// without buffers, binary with. Fails if a JSON part from the kernel is not valid JSON.
pub fn kernel_to_ws(channel: Channel, msg: &RawMessage) -> Result<WsFrame, WsError> {
    if !Channel::MESSAGE_CHANNELS.contains(&channel) {
        return Err(WsError::NotMessageChannel(channel));
    }
    let fields = peek_header(&msg.header, "header")?;
    for (raw, part) in [
        (&msg.parent_header, "parent_header"),
        (&msg.metadata, "metadata"),
        (&msg.content, "content"),
    ] {
        serde_json::from_slice::<IgnoredAny>(raw)
            .map_err(|source| WireError::Json { part, source })?;
    }

    let size =
        128 + msg.header.len() + msg.parent_header.len() + msg.metadata.len() + msg.content.len();
    let mut json = Vec::with_capacity(size);
    json.extend_from_slice(b"{\"header\": ");
    json.extend_from_slice(&msg.header);
    if let Some(id) = &fields.msg_id {
        json.extend_from_slice(b", \"msg_id\": ");
        write_json_string(&mut json, id);
    }
    if let Some(t) = &fields.msg_type {
        json.extend_from_slice(b", \"msg_type\": ");
        write_json_string(&mut json, t);
    }
    json.extend_from_slice(b", \"parent_header\": ");
    json.extend_from_slice(&msg.parent_header);
    json.extend_from_slice(b", \"metadata\": ");
    json.extend_from_slice(&msg.metadata);
    json.extend_from_slice(b", \"content\": ");
    json.extend_from_slice(&msg.content);
    if msg.buffers.is_empty() {
        json.extend_from_slice(b", \"buffers\": []");
    }
    json.extend_from_slice(b", \"channel\": ");
    write_json_string(&mut json, channel.as_str());
    json.push(b'}');

    if msg.buffers.is_empty() {
        String::from_utf8(json)
            .map(WsFrame::Text)
            .map_err(|_| WsError::NotUtf8 { part: "message" })
    } else {
        binary_frame(&json, &msg.buffers).map(WsFrame::Binary)
    }
}

/// The binary layout around an already serialized JSON message and its buffers. Its offsets
/// are 32-bit: a message of 4 GiB or more cannot be framed.
pub fn binary_frame(json: &[u8], buffers: &[Bytes]) -> Result<Bytes, WsError> {
    let n = 1 + buffers.len();
    let header_len = 4 * (n + 1);
    let total = header_len + json.len() + buffers.iter().map(Bytes::len).sum::<usize>();
    if u32::try_from(total).is_err() {
        return Err(WsError::TooLarge { bytes: total });
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&offset_u32(n).to_be_bytes());
    let mut offset = header_len;
    out.extend_from_slice(&offset_u32(offset).to_be_bytes());
    offset += json.len();
    for buf in buffers {
        out.extend_from_slice(&offset_u32(offset).to_be_bytes());
        offset += buf.len();
    }
    debug_assert_eq!(offset, total);
    out.extend_from_slice(json);
    for buf in buffers {
        out.extend_from_slice(buf);
    }
    Ok(Bytes::from(out))
}

/// `n` as a frame offset; [`binary_frame`] checked that every offset fits.
fn offset_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Splits a binary frame into its JSON message and its buffers (copies of the slices).
pub fn split_binary_frame(frame: &[u8]) -> Result<(&[u8], Vec<Bytes>), WsError> {
    let word = |i: usize| -> Option<usize> {
        let b = frame.get(4 * i..4 * i + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let n = word(0)
        .ok_or_else(|| WsError::Binary(format!("{} bytes, no offset count", frame.len())))?;
    if n == 0 || 4 * (n + 1) > frame.len() {
        return Err(WsError::Binary(format!(
            "{n} offsets do not fit in {} bytes",
            frame.len()
        )));
    }
    let mut offsets: Vec<usize> = (1..=n).map(|i| word(i).expect("length checked")).collect();
    offsets.push(frame.len());
    if offsets[0] < 4 * (n + 1) || offsets.windows(2).any(|w| w[0] > w[1]) {
        return Err(WsError::Binary(format!(
            "offsets {:?} are not increasing within the {} bytes after the {}-byte header",
            &offsets[..n],
            frame.len(),
            4 * (n + 1)
        )));
    }
    let json = &frame[offsets[0]..offsets[1]];
    let buffers = offsets[1..]
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&frame[w[0]..w[1]]))
        .collect();
    Ok((json, buffers))
}

fn message_from_json(
    json: &[u8],
    buffers: Vec<Bytes>,
    binary: bool,
) -> Result<(Channel, RawMessage), WsError> {
    let mut obj: Map<String, Value> = serde_json::from_slice(json).map_err(WsError::Json)?;
    let channel = match obj.remove("channel") {
        None | Some(Value::Null) => Channel::Shell,
        Some(Value::String(name)) => name.parse::<Channel>()?,
        Some(other) => return Err(UnknownChannel(other.to_string()).into()),
    };
    if !Channel::MESSAGE_CHANNELS.contains(&channel) {
        return Err(WsError::NotMessageChannel(channel));
    }
    // In a binary frame the buffers are the frame's (Jupyter Server ignores a JSON "buffers").
    if !binary {
        if let Some(Value::Array(listed)) = obj.get("buffers") {
            if !listed.is_empty() {
                return Err(WsError::BuffersInText {
                    count: listed.len(),
                });
            }
        }
    }
    let header = match obj.remove("header") {
        Some(h @ Value::Object(_)) => h,
        _ => return Err(WsError::NoHeader),
    };
    let mut part = |name: &str| match obj.remove(name) {
        Some(v) => json_bytes(&v),
        None => Bytes::from_static(b"{}"),
    };
    let msg = RawMessage {
        identities: Vec::new(),
        signature: String::new(),
        header: json_bytes(&header),
        parent_header: part("parent_header"),
        metadata: part("metadata"),
        content: part("content"),
        buffers,
    };
    Ok((channel, msg))
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out.by_ref(), s).expect("writing to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixtures produced by the real Jupyter Server (2.21.1, jupyter_client 8.10.0) in the test
    // image, by this script (run with
    // `docker run --rm -v $PWD:/kw:ro orrery-singleuser:latest python /kw/fixture.py`):
    //
    // ```python
    // import json
    // from jupyter_client.session import Session
    // from jupyter_client.jsonutil import json_default
    // from jupyter_server.services.kernels.connection.base import serialize_binary_message
    // s = Session(key=b"8f4c1e0b2a7d4e6f9c3b5a1d0e2f4a6b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f")
    // def pack(o): return json.dumps(o).encode()
    // def reserialize(msg_list, channel):   # ZMQChannelsWebsocketConnection._reserialize_reply
    //     msg = s.deserialize(msg_list)
    //     msg["channel"] = channel
    //     if msg["buffers"]:
    //         return serialize_binary_message(msg)
    //     return json.dumps(msg, default=json_default).encode()
    // hdr = pack({"msg_id": "c0ffee", "msg_type": "comm_msg", "username": "u", "session": "s1",
    //             "date": "2025-01-02T03:04:05.678901Z", "version": "5.4", "subshell_id": "sub-1"})
    // par = pack({"msg_id": "beef", "msg_type": "comm_msg"})
    // meta = pack({})
    // cont = pack({"comm_id": "k1", "data": {"x": [1, 2.5, None, True]}})
    // bufs = [b"\x00\x01binary", b"\xff\xfe second"]
    // print(reserialize([s.sign([hdr, par, meta, cont]), hdr, par, meta, cont] + bufs, "shell").hex())
    // hdr2 = pack({"msg_id": "d00d", "msg_type": "status", "username": "u", "session": "s1",
    //              "date": "2025-01-02T03:04:05.678901Z", "version": "5.4"})
    // cont2 = pack({"execution_state": "idle"})
    // print(reserialize([s.sign([hdr2, par, meta, cont2]), hdr2, par, meta, cont2], "iopub").decode())
    // ```
    const HDR: &str = r#"{"msg_id": "c0ffee", "msg_type": "comm_msg", "username": "u", "session": "s1", "date": "2025-01-02T03:04:05.678901Z", "version": "5.4", "subshell_id": "sub-1"}"#;
    const PAR: &str = r#"{"msg_id": "beef", "msg_type": "comm_msg"}"#;
    const CONT: &str = r#"{"comm_id": "k1", "data": {"x": [1, 2.5, null, true]}}"#;
    const BUF0: &[u8] = b"\x00\x01binary";
    const BUF1: &[u8] = b"\xff\xfe second";
    const BINARY_FRAME_HEX: &str = "00000003000000100000018b000001937b22686561646572223a207b226d73675f6964223a2022633066666565222c20226d73675f74797065223a2022636f6d6d5f6d7367222c2022757365726e616d65223a202275222c202273657373696f6e223a20227331222c202264617465223a2022323032352d30312d30325430333a30343a30352e3637383930315a222c202276657273696f6e223a2022352e34222c20227375627368656c6c5f6964223a20227375622d31227d2c20226d73675f6964223a2022633066666565222c20226d73675f74797065223a2022636f6d6d5f6d7367222c2022706172656e745f686561646572223a207b226d73675f6964223a202262656566222c20226d73675f74797065223a2022636f6d6d5f6d7367227d2c20226d65746164617461223a207b7d2c2022636f6e74656e74223a207b22636f6d6d5f6964223a20226b31222c202264617461223a207b2278223a205b312c20322e352c206e756c6c2c20747275655d7d7d2c20226368616e6e656c223a20227368656c6c227d000162696e617279fffe207365636f6e64";
    const HDR2: &str = r#"{"msg_id": "d00d", "msg_type": "status", "username": "u", "session": "s1", "date": "2025-01-02T03:04:05.678901Z", "version": "5.4"}"#;
    const CONT2: &str = r#"{"execution_state": "idle"}"#;
    const TEXT_FRAME: &str = r#"{"header": {"msg_id": "d00d", "msg_type": "status", "username": "u", "session": "s1", "date": "2025-01-02T03:04:05.678901Z", "version": "5.4"}, "msg_id": "d00d", "msg_type": "status", "parent_header": {"msg_id": "beef", "msg_type": "comm_msg"}, "metadata": {}, "content": {"execution_state": "idle"}, "buffers": [], "channel": "iopub"}"#;

    fn raw(header: &str, parent: &str, content: &str, buffers: &[&[u8]]) -> RawMessage {
        RawMessage {
            identities: vec![Bytes::from_static(b"ignored-topic")],
            signature: "ignored".into(),
            header: Bytes::copy_from_slice(header.as_bytes()),
            parent_header: Bytes::copy_from_slice(parent.as_bytes()),
            metadata: Bytes::from_static(b"{}"),
            content: Bytes::copy_from_slice(content.as_bytes()),
            buffers: buffers.iter().map(|b| Bytes::copy_from_slice(b)).collect(),
        }
    }

    fn value(raw: &[u8]) -> Value {
        serde_json::from_slice(raw).unwrap()
    }

    #[test]
    fn kernel_to_ws_matches_jupyter_server_byte_for_byte() {
        let binary = kernel_to_ws(Channel::Shell, &raw(HDR, PAR, CONT, &[BUF0, BUF1])).unwrap();
        assert_eq!(
            binary,
            WsFrame::Binary(Bytes::from(hex::decode(BINARY_FRAME_HEX).unwrap()))
        );
        let text = kernel_to_ws(Channel::IOPub, &raw(HDR2, PAR, CONT2, &[])).unwrap();
        assert_eq!(text, WsFrame::Text(TEXT_FRAME.to_string()));
    }

    #[test]
    fn ws_to_kernel_reads_jupyter_server_frames() {
        let (channel, msg) = ws_to_kernel(&hex::decode(BINARY_FRAME_HEX).unwrap()).unwrap();
        assert_eq!(channel, Channel::Shell);
        assert_eq!(value(&msg.header), value(HDR.as_bytes()));
        assert_eq!(value(&msg.header)["subshell_id"], "sub-1");
        assert_eq!(value(&msg.parent_header), value(PAR.as_bytes()));
        assert_eq!(value(&msg.metadata), serde_json::json!({}));
        assert_eq!(value(&msg.content), value(CONT.as_bytes()));
        assert_eq!(
            msg.buffers,
            vec![Bytes::from_static(BUF0), Bytes::from_static(BUF1)]
        );
        assert!(msg.identities.is_empty() && msg.signature.is_empty());

        let (channel, msg) = ws_to_kernel(TEXT_FRAME.as_bytes()).unwrap();
        assert_eq!(channel, Channel::IOPub);
        assert_eq!(value(&msg.header), value(HDR2.as_bytes()));
        assert_eq!(value(&msg.content), value(CONT2.as_bytes()));
        assert!(msg.buffers.is_empty());
    }

    #[test]
    fn round_trips_through_both_framings() {
        for buffers in [vec![], vec![BUF0], vec![BUF0, b"" as &[u8], BUF1]] {
            let original = raw(HDR, PAR, CONT, &buffers);
            let frame = kernel_to_ws(Channel::Control, &original).unwrap();
            let payload: Vec<u8> = match &frame {
                WsFrame::Text(t) => {
                    assert!(buffers.is_empty());
                    t.clone().into_bytes()
                }
                WsFrame::Binary(b) => {
                    assert!(!buffers.is_empty());
                    b.to_vec()
                }
            };
            let (channel, back) = ws_to_kernel(&payload).unwrap();
            assert_eq!(channel, Channel::Control);
            assert_eq!(value(&back.header), value(&original.header));
            assert_eq!(value(&back.content), value(&original.content));
            assert_eq!(back.buffers, original.buffers);
            assert_eq!(back.msg_type().unwrap(), "comm_msg");
        }
    }

    #[test]
    fn browser_json_keeps_every_field_and_defaults_the_rest() {
        let text = br#"  {"header": {"msg_id": "1", "msg_type": "execute_request", "subshell_id": null, "new": {"a": 1}},
                         "content": {"code": "x", "n": [1, 2.5, -0, 1e3]}, "buffers": []}"#;
        let (channel, msg) = ws_to_kernel(text).unwrap();
        assert_eq!(channel, Channel::Shell, "no channel means shell");
        let h = value(&msg.header);
        assert_eq!(h["new"]["a"], 1);
        assert!(h.as_object().unwrap().contains_key("subshell_id"));
        assert_eq!(msg.parent_header.as_ref(), b"{}");
        assert_eq!(msg.metadata.as_ref(), b"{}");
    }

    #[test]
    fn bad_ws_messages_are_refused() {
        let err = |p: &[u8]| ws_to_kernel(p).unwrap_err().to_string();
        assert!(err(b"[1]").contains("not a JSON object"));
        assert!(err(br#"{"content": {}}"#).contains("header"));
        assert!(err(br#"{"header": {}, "channel": "nope"}"#).contains("nope"));
        assert!(err(br#"{"header": {}, "channel": "hb"}"#).contains("does not carry"));
        assert!(err(br#"{"header": {}, "buffers": ["AAE="]}"#).contains("binary frame"));
        assert!(err(b"\x00\x00\x00").contains("no offset count"));
        assert!(err(b"\x00\x00\x00\x02\x00\x00\x00\x0c").contains("do not fit"));
        // Offsets going backwards.
        assert!(err(b"\x00\x00\x00\x02\x00\x00\x00\x0e\x00\x00\x00\x0c{}").contains("increasing"));
        // First offset inside the offset table.
        assert!(err(b"\x00\x00\x00\x01\x00\x00\x00\x04{}").contains("increasing"));
    }

    #[test]
    fn kernel_garbage_is_not_forwarded() {
        let bad = raw(HDR, PAR, "{not json", &[]);
        assert!(matches!(
            kernel_to_ws(Channel::IOPub, &bad),
            Err(WsError::Kernel(WireError::Json {
                part: "content",
                ..
            }))
        ));
        assert!(matches!(
            kernel_to_ws(Channel::Heartbeat, &raw(HDR, PAR, CONT, &[])),
            Err(WsError::NotMessageChannel(Channel::Heartbeat))
        ));
        // Strings are escaped when spliced; non-ASCII passes through as UTF-8.
        let odd = raw(
            r#"{"msg_id": "a\"b", "msg_type": "stream"}"#,
            "{}",
            r#"{"text": "é"}"#,
            &[],
        );
        let WsFrame::Text(t) = kernel_to_ws(Channel::IOPub, &odd).unwrap() else {
            panic!("no buffers: text");
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["msg_id"], "a\"b");
        assert_eq!(v["content"]["text"], "é");
    }
}
