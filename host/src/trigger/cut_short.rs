//! A response body that breaks off, instead of ending cleanly, when the
//! instance writing it failed before finishing it.
//!
//! WASI HTTP says an `outgoing-body` dropped without `finish` is incomplete,
//! and that the host must make that visible on the wire. wasmtime-wasi-http
//! 48 ends such a body as if it were whole (dropping the body drops its
//! finish channel, which reads as "finished, no trailers"). So a component
//! that trapped halfway through its body (a panic, its deadline) sent a
//! shorter body that looked complete, to a client or to a gateway that
//! caches it.
//!
//! The trigger marks an instance that failed ([`Failed::mark`]) before it
//! drops the instance's store, which is what drops an unfinished body. So
//! when the body ends after such a failure, [`CutShort`] knows and turns its
//! end into an error: hyper then breaks the response off (no last chunk,
//! or fewer bytes than its `Content-Length`), which every client reports.
//! A component that finished its body and failed only afterwards still has
//! its body cut when hyper reaches the body's end after the failure: the
//! two look the same from here, and after a failure a false break is safer
//! than a false whole.
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::Error as HttpError;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Whether an instance failed; shared by the instance and its body.
#[derive(Clone, Default)]
pub struct Failed(Arc<AtomicBool>);

impl Failed {
    /// Records the failure. Call it before the instance's store is dropped.
    pub fn mark(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A response body whose end is an error if its instance failed first.
pub struct CutShort {
    inner: HyperOutgoingBody,
    failed: Failed,
}

impl CutShort {
    pub fn new(inner: HyperOutgoingBody, failed: Failed) -> Self {
        Self { inner, failed }
    }
}

impl Body for CutShort {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(match frame {
            None if self.failed.is_set() => Some(Err(HttpError::HttpProtocolError)),
            frame => frame,
        })
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

    fn body(text: &'static str, failed: &Failed) -> CutShort {
        let inner = Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed_unsync();
        CutShort::new(inner, failed.clone())
    }

    #[tokio::test]
    async fn a_body_ends_cleanly_when_its_instance_did_not_fail() {
        let failed = Failed::default();
        let collected = body("whole", &failed).collect().await.unwrap();
        assert_eq!(collected.to_bytes(), "whole");
    }

    #[tokio::test]
    async fn a_body_whose_instance_failed_ends_in_an_error_after_its_data() {
        let failed = Failed::default();
        let mut cut = body("the first half", &failed);
        failed.mark();
        let data = cut.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(data, "the first half", "what was written still goes out");
        assert!(matches!(cut.frame().await, Some(Err(HttpError::HttpProtocolError))), "the end is an error");
    }
}
