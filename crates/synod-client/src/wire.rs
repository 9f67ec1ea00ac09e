//! The client protocol ([`synod_api::wire`]) plus its framing: 4-byte
//! length-prefixed postcard frames, at most [`MAX_CLIENT_FRAME`] long.

use serde::{Deserialize, Serialize};
pub use synod_api::wire::*;
use tokio_util::codec::LengthDelimitedCodec;

/// The codec for client connections.
pub fn client_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(MAX_CLIENT_FRAME)
        .new_codec()
}

/// Encode a frame payload.
pub fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    postcard::to_stdvec(value)
        .expect("encoding into a Vec cannot fail")
        .into()
}

/// Decode a frame payload.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}
