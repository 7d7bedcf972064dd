//! Bodies on the proxy path: one boxed type both ways, the bounded replay buffer that makes
//! retries and mirrors possible, and a wrapper that keeps per-request accounting alive until
//! the body is finished.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the proxy sends, downstream or upstream.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Request bodies up to this size are kept so a retry or a mirror can send them again;
/// larger ones stream through and are never retried.
pub const REPLAY_LIMIT: usize = 64 * 1024;

pub fn empty() -> ProxyBody {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A request body read up to [`REPLAY_LIMIT`].
pub enum RequestBody {
    /// The whole body (and trailers) fit: it can be sent any number of times.
    Replayable(Replay),
    /// Too big: the read prefix and the rest, sendable once.
    Streaming(ProxyBody),
}

/// A complete, cheaply clonable body.
#[derive(Clone, Default)]
pub struct Replay {
    chunks: Vec<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Replay {
    pub fn body(&self) -> ProxyBody {
        ReplayBody {
            chunks: self.chunks.clone().into(),
            trailers: self.trailers.clone(),
        }
        .boxed_unsync()
    }
}

struct ReplayBody {
    chunks: std::collections::VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
    }
}

/// Reads `body` until it ends or passes `limit` bytes.
pub async fn read_replayable<B>(mut body: B, limit: usize) -> Result<RequestBody, BoxError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut replay = Replay::default();
    let mut size = 0usize;
    if body.is_end_stream() {
        return Ok(RequestBody::Replayable(replay));
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Into::into)?;
        match frame.into_data() {
            Ok(data) => {
                size += data.len();
                replay.chunks.push(data);
                if size > limit {
                    let rest = Prefixed {
                        prefix: std::mem::take(&mut replay.chunks).into(),
                        rest: body,
                    };
                    return Ok(RequestBody::Streaming(rest.boxed_unsync()));
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    replay.trailers = Some(trailers);
                }
            }
        }
    }
    Ok(RequestBody::Replayable(replay))
}

/// Already-read chunks followed by the rest of the body.
struct Prefixed<B> {
    prefix: std::collections::VecDeque<Bytes>,
    rest: B,
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(chunk) = self.prefix.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Pin::new(&mut self.rest)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(Into::into)))
    }
}

/// A body that holds `guard` until it is finished or dropped: in-flight request counters
/// and connection accounting end with the response, not with its headers.
pub struct Guarded<G> {
    inner: ProxyBody,
    guard: Option<G>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout_message: String,
}

impl<G: Send + Unpin + 'static> Guarded<G> {
    pub fn new(inner: ProxyBody, guard: G) -> Self {
        Guarded {
            inner,
            guard: Some(guard),
            deadline: None,
            timeout_message: String::new(),
        }
    }

    /// Fails the body at `at` (the route timeout covers the whole response).
    pub fn with_deadline(mut self, at: Option<tokio::time::Instant>, message: String) -> Self {
        self.deadline = at.map(|at| Box::pin(tokio::time::sleep_until(at)));
        self.timeout_message = message;
        self
    }
}

impl<G: Send + Unpin + 'static> Body for Guarded<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.guard = None;
            this.deadline = None;
            return Poll::Ready(Some(Err(this.timeout_message.clone().into())));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) | Poll::Ready(Some(Err(_))) = polled {
            this.guard = None;
            this.deadline = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body made of fixed frames.
    struct Frames(std::collections::VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    #[tokio::test]
    async fn small_bodies_replay_with_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let body = Frames(
            vec![
                Frame::data(Bytes::from("ab")),
                Frame::data(Bytes::from("cd")),
                Frame::trailers(trailers),
            ]
            .into(),
        );
        let RequestBody::Replayable(replay) = read_replayable(body, 10).await.unwrap() else {
            panic!("small body must be replayable");
        };
        for _ in 0..2 {
            let collected = replay.body().collect().await.unwrap();
            assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
            assert_eq!(collected.to_bytes(), "abcd");
        }
    }

    #[tokio::test]
    async fn big_bodies_stream_with_their_prefix() {
        let body = Frames(
            (0..5u8)
                .map(|i| Frame::data(Bytes::from(vec![b'a' + i; 4])))
                .collect(),
        );
        let RequestBody::Streaming(body) = read_replayable(body, 6).await.unwrap() else {
            panic!("big body must stream");
        };
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "aaaabbbbccccddddeeee");
    }
}
