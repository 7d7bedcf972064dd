//! The protobuf codec of the generated gRPC services: prost's, with buffer settings that
//! keep what each stream holds small.
//!
//! tonic keeps, per stream, an encode buffer that never shrinks: it grows to the largest
//! batch of messages encoded at once and stays that size for the life of the stream. With
//! tonic's default yield threshold (32 KiB) ready messages are batched until the buffer
//! passes 32 KiB, so a multi-part push left every stream with a 64 KiB buffer, 128 MB over
//! 2,000 proxies. Yielding after every message bounds the buffer by the largest single
//! message, which the control plane keeps near its part size (see `DeltaResponse.more`).
//! The connection's HTTP/2 layer batches frames into socket writes anyway.
//!
//! The buffer a stream starts with is also the size a new one is allocated at whenever the
//! previous one is still held by HTTP/2, and one that is free again is reused in place: so
//! a stream whose messages fit [`ENCODE_BUFFER_BYTES`] keeps a buffer of that size, where
//! larger messages left it doubled (to 64 KiB for ~30 KiB parts). Received messages on the
//! control plane's side are ACKs (a nonce and any rejections), so decoding starts small.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// The buffer an encoding stream starts with: a part of a push (see the control plane's
/// part size, kept below this) fits it with its framing.
const ENCODE_BUFFER_BYTES: usize = 8 * 1024;

/// The buffer a decoding stream starts with, and the step decompression grows it by;
/// it grows to the largest message received.
const DECODE_BUFFER_BYTES: usize = 1024;

/// Hand each encoded message to HTTP/2 on its own.
const YIELD_AFTER_BYTES: usize = 1;

/// [`ProstCodec`] with [`BufferSettings`] chosen for many long-lived streams.
#[derive(Debug, Clone)]
pub struct BoundedCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        BoundedCodec {
            _types: PhantomData,
        }
    }
}

fn settings(buffer: usize) -> BufferSettings {
    BufferSettings::new(buffer, YIELD_AFTER_BYTES)
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings(ENCODE_BUFFER_BYTES))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings(DECODE_BUFFER_BYTES))
    }
}
