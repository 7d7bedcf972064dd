//! A body fed from a channel, for streaming responses and requests in tests.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Frames sent on the paired [`BodySender`] arrive in this body; it ends when the sender is
/// dropped.
pub struct ChannelBody {
    rx: mpsc::Receiver<Frame<Bytes>>,
}

pub struct BodySender {
    tx: mpsc::Sender<Frame<Bytes>>,
}

pub fn channel() -> (BodySender, ChannelBody) {
    let (tx, rx) = mpsc::channel(16);
    (BodySender { tx }, ChannelBody { rx })
}

impl BodySender {
    /// Sends a data chunk; false if the body was dropped.
    pub async fn data(&self, chunk: impl Into<Bytes>) -> bool {
        self.tx.send(Frame::data(chunk.into())).await.is_ok()
    }

    /// Sends trailers (and should be the last frame).
    pub async fn trailers(&self, trailers: HeaderMap) -> bool {
        self.tx.send(Frame::trailers(trailers)).await.is_ok()
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx).map(|f| f.map(Ok))
    }
}
