//! Feed arbitrary bytes through the frame codec and the envelope decoder,
//! exactly as an inbound connection does after its handshake.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use synod_core::Message;
use synod_transport::{decode_envelope, frame_codec};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut codec = frame_codec(64 * 1024);
    let mut buffer = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut buffer) {
        assert!(frame.len() <= 64 * 1024);
        let _ = decode_envelope::<Message>(&frame);
    }
});
