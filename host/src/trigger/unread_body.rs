//! A request body the component did not read to its end is read to its end
//! anyway, in the background, and thrown away.
//!
//! A component may answer without reading the body (the gateway refuses an
//! anonymous or oversize request before reading it). The client may still
//! be sending it then. Closing the connection with its data unread makes
//! the kernel reset it, and the client, still writing, sees a broken pipe
//! or a reset instead of the answer that was already on its way (hyper
//! itself drains only what has already arrived). So the rest is read and
//! discarded, as servers' "lingering close" does, up to
//! [`MAX_DRAINED_BYTES`] and [`MAX_DRAIN_TIME`]: a client that sends more,
//! or more slowly, is cut off as before.
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

/// The most of an unread body read and thrown away.
pub const MAX_DRAINED_BYTES: usize = 64 << 20;
/// How long an unread body may take to arrive before it is cut off.
pub const MAX_DRAIN_TIME: Duration = Duration::from_secs(5);

/// `B`, read to its end in the background if dropped before it.
pub struct DrainedWhenDropped<B: Body + Send + Unpin + 'static> {
    /// Always `Some` until dropped.
    inner: Option<B>,
}

impl<B: Body + Send + Unpin + 'static> DrainedWhenDropped<B> {
    pub fn new(inner: B) -> Self {
        Self { inner: Some(inner) }
    }
}

impl<B: Body<Data = Bytes> + Send + Unpin + 'static> Body for DrainedWhenDropped<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.get_mut().inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl<B: Body + Send + Unpin + 'static> Drop for DrainedWhenDropped<B> {
    fn drop(&mut self) {
        let Some(mut body) = self.inner.take() else { return };
        if body.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let drain = async {
                let mut drained = 0usize;
                while let Some(Ok(frame)) = body.frame().await {
                    drained += frame.data_ref().map_or(0, bytes::Buf::remaining);
                    if drained > MAX_DRAINED_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(MAX_DRAIN_TIME, drain).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::StreamBody;

    use super::*;

    const CHUNK: usize = 64 << 10;

    /// A body of `chunks` chunks of [`CHUNK`] bytes, counting those read.
    fn counted(chunks: usize, read: Arc<AtomicUsize>) -> impl Body<Data = Bytes, Error = Infallible> + Send + Unpin {
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        let frames = (0..chunks).map(move |_| {
            read.fetch_add(1, Ordering::SeqCst);
            Ok(Frame::data(chunk.clone()))
        });
        StreamBody::new(futures::stream::iter(frames))
    }

    /// Waits until `read` reaches `n` chunks.
    async fn until_read(read: &AtomicUsize, n: usize) {
        let started = std::time::Instant::now();
        while read.load(Ordering::SeqCst) < n {
            assert!(started.elapsed() < Duration::from_secs(10), "read {read:?} of {n} chunks");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_body_dropped_unread_is_read_to_its_end() {
        let read = Arc::new(AtomicUsize::new(0));
        let mut body = DrainedWhenDropped::new(counted(100, read.clone()));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), CHUNK, "reads pass through");
        drop(body);
        until_read(&read, 100).await;
    }

    #[tokio::test]
    async fn draining_stops_at_its_bound() {
        let read = Arc::new(AtomicUsize::new(0));
        drop(DrainedWhenDropped::new(counted(MAX_DRAINED_BYTES / CHUNK + 100, read.clone())));
        // The chunk that goes past the bound is the last one read.
        let bound = MAX_DRAINED_BYTES / CHUNK + 1;
        until_read(&read, bound).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(read.load(Ordering::SeqCst), bound, "stopped right after the bound");
    }
}
