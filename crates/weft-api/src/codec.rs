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

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// The buffer a stream starts with, and the step decoding grows it by.
const BUFFER_BYTES: usize = 8 * 1024;

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

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_AFTER_BYTES)
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
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
