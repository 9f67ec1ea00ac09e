//! The frame payload: a versioned, cluster-bound envelope around one
//! message, encoded with postcard.
//!
//! ```text
//! +----------------+---------------------------------------------------------+
//! | length: u32 BE | postcard(Envelope { version, cluster, sender, from, to, |
//! |                |                     message })                          |
//! +----------------+---------------------------------------------------------+
//! ```
//!
//! The length prefix is `LengthDelimitedCodec`'s; a length over the
//! configured maximum closes the connection before anything is allocated.

use crate::error::TransportError;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use synod_core::RoleId;
use tokio_util::codec::LengthDelimitedCodec;

/// The wire protocol version this build speaks. 2: paged Promises and the
/// chosen watermark on Accepts. 3: the trim point on Promises, acceptor
/// trimming and snapshot transfer between learners. 4: the cluster
/// settings exchanged after the handshake proof. 5: configurations
/// (`Membership`, in stop signs and `EpochInfo`) name proposers and
/// learners. 6: configurations carry the roles the log moved to other
/// nodes (`Membership::moved`).
pub const PROTOCOL_VERSION: u16 = 6;

/// One message on the wire. Strings borrow from the frame when decoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<'a, M> {
    /// Protocol version; must equal [`PROTOCOL_VERSION`].
    pub version: u16,
    /// Cluster id; must equal the receiver's.
    pub cluster: &'a str,
    /// Sending node; must equal the node authenticated by the handshake.
    pub sender: &'a str,
    /// Sending role instance.
    pub from: RoleId,
    /// Destination role instance.
    pub to: RoleId,
    /// The message.
    pub message: M,
}

/// The codec every Synod connection uses: 4-byte big-endian length prefix,
/// frames of at most `max_frame_len` bytes.
pub fn frame_codec(max_frame_len: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(max_frame_len)
        .new_codec()
}

/// Encode `envelope` as a complete frame (length prefix included). The
/// size is computed first, so the frame is allocated once at its length
/// and one over `max_frame_len` is refused before any of it is written.
pub fn encode_frame<M: Serialize>(
    envelope: &Envelope<'_, M>,
    max_frame_len: usize,
) -> Result<Bytes, TransportError> {
    let malformed = |e: postcard::Error| TransportError::Malformed(e.to_string());
    let len = postcard::experimental::serialized_size(envelope).map_err(malformed)?;
    if len > max_frame_len {
        return Err(TransportError::Malformed(format!(
            "frame of {len} bytes exceeds the {max_frame_len}-byte limit"
        )));
    }
    let prefix = u32::try_from(len)
        .map_err(|_| TransportError::Malformed(format!("a frame of {len} bytes")))?;
    let mut frame = Vec::with_capacity(4 + len);
    frame.extend_from_slice(&prefix.to_be_bytes());
    let frame = postcard::to_extend(envelope, frame).map_err(malformed)?;
    debug_assert_eq!(frame.len(), 4 + len);
    Ok(Bytes::from(frame))
}

/// Decode a frame payload (without its length prefix).
pub fn decode_envelope<'a, M: Deserialize<'a>>(
    payload: &'a [u8],
) -> Result<Envelope<'a, M>, TransportError> {
    postcard::from_bytes(payload).map_err(|e| TransportError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_core::{Ballot, Message};

    fn envelope(message: Message) -> Envelope<'static, Message> {
        Envelope {
            version: PROTOCOL_VERSION,
            cluster: "c",
            sender: "n1",
            from: RoleId::proposer(1),
            to: RoleId::acceptor(2),
            message,
        }
    }

    #[test]
    fn envelope_encoding_is_pinned() {
        let frame = encode_frame(
            &envelope(Message::Prepare {
                ballot: Ballot::new(2, 1),
                from_slot: 5,
            }),
            1024,
        )
        .unwrap();
        // length, version, "c", "n1", from (role tag 0, index 1), to (role tag 1, index 2), Prepare (tag 0, 2, 1, 5)
        assert_eq!(
            &frame[..],
            &[
                0, 0, 0, 14, 6, 1, b'c', 2, b'n', b'1', 0, 1, 1, 2, 0, 2, 1, 5
            ]
        );
    }

    #[test]
    fn envelope_round_trips() {
        let original = envelope(Message::Accepted {
            ballot: Ballot::new(3, 2),
            slot: 9,
        });
        let frame = encode_frame(&original, 1024).unwrap();
        let decoded: Envelope<'_, Message> = decode_envelope(&frame[4..]).unwrap();
        assert_eq!(decoded, original);
    }

    #[test]
    fn oversized_frames_are_not_encoded() {
        let big = Message::Forward {
            commands: vec![synod_core::Command {
                id: synod_core::CommandId { client: 1, seq: 1 },
                payload: vec![0; 100],
            }],
        };
        assert!(encode_frame(&envelope(big), 50).is_err());
    }
}
