//! A pooled connection's socket, moved along by the request waiting on it.
//!
//! tokio-postgres splits a connection in two: a handle
//! that queues requests and waits for their replies, and a future, the
//! socket's side, that writes the queued requests and reads the replies,
//! and that someone must poll. The usual way spawns that future as a task
//! of its own; then every reply wakes that task, which hands the reply over
//! and wakes the request's task: two trips through tokio's run queue per
//! round trip. On a busy host each trip waits behind every runnable
//! request, and the second one was where production's requests waited
//! while Postgres sat idle. A [`Driver`] is polled by the request itself
//! while it waits ([`Driver::drive`]), so a reply wakes the request
//! directly: one trip.
//!
//! The redis crate's multiplexed connection has the same split, but there
//! one connection serves every request, and one wake-up of its task hands
//! many requests their replies; a pool of them, each driven this way, was
//! measured slower than the one shared connection (BENCHMARKS.md), so
//! Redis keeps it.
//!
//! Nobody polls an idle connection's driver. The pool checks it when it
//! hands the connection out again ([`Driver::is_running`]), which reads
//! whatever the server sent meanwhile, its goodbye included.
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

/// The socket's side of one connection.
pub struct Driver {
    /// `None` once the connection ended (closed or broken): dropping it
    /// fails every request still waiting, as the end of a driver task would.
    io: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Driver {
    /// `io` runs until the connection ends.
    pub fn new(io: impl Future<Output = ()> + Send + 'static) -> Self {
        Self { io: Some(Box::pin(io)) }
    }

    /// Runs `requests` (on this connection's handle) to the end, moving
    /// the socket along meanwhile.
    pub async fn drive<F: Future>(&mut self, requests: F) -> F::Output {
        let mut requests = pin!(requests);
        poll_fn(|cx| {
            // The socket first: replies that arrived go to their requests.
            self.poll_io(cx);
            if let Poll::Ready(output) = requests.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            // Then again, to send at once what the requests just queued
            // (queueing wakes this task, but that would cost a trip
            // through the run queue before anything goes out).
            self.poll_io(cx);
            requests.as_mut().poll(cx)
        })
        .await
    }

    /// Whether the connection is still open; reads what the server sent
    /// while nobody was polling (a notice, or the end of the connection
    /// when the server shut down or an administrator closed it).
    pub fn is_running(&mut self) -> bool {
        self.poll_io(&mut Context::from_waker(Waker::noop()));
        self.io.is_some()
    }

    /// Polls the socket's side once; drops it when the connection ended.
    fn poll_io(&mut self, cx: &mut Context<'_>) {
        let Some(io) = self.io.as_mut() else { return };
        if io.as_mut().poll(cx).is_ready() {
            self.io = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::{mpsc, oneshot};

    use super::*;

    type Requests = mpsc::UnboundedSender<(u32, oneshot::Sender<u32>)>;

    /// A connection's two halves in miniature: requests go through a
    /// channel to `io`, which answers each with its double, and ends (as a
    /// connection the server closed) after `lifetime` of them.
    fn connection(lifetime: usize) -> (Requests, Driver, Arc<AtomicUsize>) {
        let (send, mut receive) = mpsc::unbounded_channel::<(u32, oneshot::Sender<u32>)>();
        let served = Arc::new(AtomicUsize::new(0));
        let counted = served.clone();
        let io = async move {
            while counted.load(Ordering::Relaxed) < lifetime
                && let Some((n, reply)) = receive.recv().await
            {
                counted.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(n * 2);
            }
        };
        (send, Driver::new(io), served)
    }

    fn ask(send: &Requests, n: u32) -> oneshot::Receiver<u32> {
        let (reply, answer) = oneshot::channel();
        send.send((n, reply)).unwrap();
        answer
    }

    #[tokio::test]
    async fn a_request_is_answered_only_by_driving_its_connection() {
        let (send, mut driver, served) = connection(usize::MAX);
        let answer = ask(&send, 21);
        assert_eq!(driver.drive(answer).await, Ok(42));
        // Nobody polls an idle connection: a request queued meanwhile waits.
        let waiting = ask(&send, 1);
        tokio::task::yield_now().await;
        assert_eq!(served.load(Ordering::Relaxed), 1);
        assert!(driver.is_running());
        assert_eq!(driver.drive(waiting).await, Ok(2));
    }

    #[tokio::test]
    async fn a_connection_that_ended_fails_the_requests_still_waiting() {
        let (send, mut driver, _) = connection(1);
        let first = ask(&send, 1);
        let second = ask(&send, 2);
        assert_eq!(driver.drive(first).await, Ok(2));
        assert!(driver.drive(second).await.is_err(), "its reply can never come");
        assert!(!driver.is_running());
    }
}
