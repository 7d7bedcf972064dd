//! The request body shared by upstream attempts and mirrors.
//!
//! The downstream body streams to the first attempt as it arrives (a streaming client is
//! never held back) while up to [`REPLAY_LIMIT`](super::body::REPLAY_LIMIT) bytes are
//! recorded. A retry replays the recording and then continues from the downstream body; a
//! mirror follows the recording. Once the body outgrows the limit the recording is dropped
//! and no further attempt or mirror can start: a request that streamed past the buffer is
//! never retried.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::body::{BoxError, ProxyBody};

#[derive(Clone)]
enum Recorded {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Recorded {
    fn frame(&self) -> Frame<Bytes> {
        match self {
            Recorded::Data(d) => Frame::data(d.clone()),
            Recorded::Trailers(t) => Frame::trailers(t.clone()),
        }
    }
}

struct Tee {
    source: ProxyBody,
    frames: Vec<Recorded>,
    size: usize,
    limit: usize,
    overflowed: bool,
    ended: bool,
    error: Option<String>,
    /// Only the newest attempt reads from the source.
    leader: u64,
    exact_len: Option<u64>,
    followers: Vec<Waker>,
}

/// The shared body; cheap to clone.
#[derive(Clone)]
pub struct SharedBody(Arc<Mutex<Tee>>);

impl SharedBody {
    pub fn new(source: ProxyBody, limit: usize) -> SharedBody {
        let exact_len = source.size_hint().exact();
        let ended = source.is_end_stream();
        SharedBody(Arc::new(Mutex::new(Tee {
            source,
            frames: Vec::new(),
            size: 0,
            limit,
            overflowed: false,
            ended,
            error: None,
            leader: 0,
            exact_len,
            followers: Vec::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tee> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// False once the body streamed past the recording limit.
    pub fn replayable(&self) -> bool {
        !self.lock().overflowed
    }

    /// The body for a new upstream attempt (which supersedes earlier ones); none when the
    /// body can no longer be replayed.
    pub fn attempt(&self) -> Option<ProxyBody> {
        let mut tee = self.lock();
        if tee.overflowed {
            return None;
        }
        tee.leader += 1;
        let generation = tee.leader;
        drop(tee);
        Some(ProxyBody::new(Reader {
            tee: self.clone(),
            pos: 0,
            leader: Some(generation),
        }))
    }

    /// A body that follows the recording without reading the source (mirrors).
    pub fn follower(&self) -> Option<ProxyBody> {
        if self.lock().overflowed {
            return None;
        }
        Some(ProxyBody::new(Reader {
            tee: self.clone(),
            pos: 0,
            leader: None,
        }))
    }
}

struct Reader {
    tee: SharedBody,
    pos: usize,
    leader: Option<u64>,
}

impl Body for Reader {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let tee_handle = self.tee.clone();
        let mut tee = tee_handle.lock();
        if !tee.overflowed && self.pos < tee.frames.len() {
            let frame = tee.frames[self.pos].frame();
            self.pos += 1;
            return Poll::Ready(Some(Ok(frame)));
        }
        if self.leader.is_none() && tee.overflowed {
            return Poll::Ready(Some(Err("request body outgrew the mirror buffer".into())));
        }
        if let Some(e) = &tee.error {
            return Poll::Ready(Some(Err(e.clone().into())));
        }
        if tee.ended {
            return Poll::Ready(None);
        }
        match self.leader {
            None => {
                tee.followers.push(cx.waker().clone());
                Poll::Pending
            }
            Some(generation) if generation != tee.leader => {
                Poll::Ready(Some(Err("request body superseded by a retry".into())))
            }
            Some(_) => {
                let polled = Pin::new(&mut tee.source).poll_frame(cx);
                match polled {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(None) => {
                        tee.ended = true;
                        wake_all(&mut tee);
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tee.error = Some(format!("downstream request body: {e}"));
                        wake_all(&mut tee);
                        Poll::Ready(Some(Err(e)))
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        self.pos += 1;
                        if !tee.overflowed {
                            let recorded = if let Some(d) = frame.data_ref() {
                                tee.size += d.len();
                                Some(Recorded::Data(d.clone()))
                            } else {
                                frame.trailers_ref().map(|t| Recorded::Trailers(t.clone()))
                            };
                            if tee.size > tee.limit {
                                tee.overflowed = true;
                                tee.frames = Vec::new();
                            } else if let Some(r) = recorded {
                                tee.frames.push(r);
                            }
                        }
                        wake_all(&mut tee);
                        Poll::Ready(Some(Ok(frame)))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let tee = self.tee.lock();
        tee.ended && tee.error.is_none() && (tee.overflowed || self.pos >= tee.frames.len())
    }

    fn size_hint(&self) -> SizeHint {
        let tee = self.tee.lock();
        match tee.exact_len {
            Some(n) if self.pos == 0 => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

fn wake_all(tee: &mut Tee) {
    for w in tee.followers.drain(..) {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn retry_replays_and_mirror_follows() {
        let shared = SharedBody::new(body::full("hello"), 16);
        let mirror = shared.follower().unwrap();
        let first = shared.attempt().unwrap();
        assert_eq!(first.collect().await.unwrap().to_bytes(), "hello");
        let second = shared.attempt().unwrap();
        assert_eq!(second.collect().await.unwrap().to_bytes(), "hello");
        assert_eq!(mirror.collect().await.unwrap().to_bytes(), "hello");
    }

    #[tokio::test]
    async fn big_bodies_stream_once_and_cannot_be_replayed() {
        let shared = SharedBody::new(body::full(vec![b'x'; 100]), 16);
        let first = shared.attempt().unwrap();
        assert_eq!(first.collect().await.unwrap().to_bytes().len(), 100);
        assert!(!shared.replayable());
        assert!(shared.attempt().is_none());
        assert!(shared.follower().is_none());
    }

    #[tokio::test]
    async fn an_older_attempt_cannot_steal_frames_from_the_newest() {
        let shared = SharedBody::new(body::full("abc"), 16);
        let old = shared.attempt().unwrap();
        let new = shared.attempt().unwrap();
        assert!(old.collect().await.is_err());
        assert_eq!(new.collect().await.unwrap().to_bytes(), "abc");
    }
}
