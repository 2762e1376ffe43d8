//! A reader that fails with `TimedOut` when nothing arrives for a while; the while can be
//! changed from outside (short until a client has logged in, long after), so a connection
//! that never finishes its handshake frees its place soon.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The current limit of a [`DeadlineReader`], shared with whoever may change it.
#[derive(Debug, Clone)]
pub struct Limit(Arc<AtomicU64>);

impl Limit {
    pub fn new(limit: Duration) -> Limit {
        Limit(Arc::new(AtomicU64::new(limit.as_millis() as u64)))
    }

    /// Takes effect from the next piece that arrives.
    pub fn set(&self, limit: Duration) {
        self.0.store(limit.as_millis() as u64, Ordering::Relaxed);
    }

    fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

pub struct DeadlineReader<R> {
    inner: R,
    limit: Limit,
    deadline: Pin<Box<Sleep>>,
}

impl<R> DeadlineReader<R> {
    pub fn new(inner: R, limit: Limit) -> Self {
        let deadline = Box::pin(tokio::time::sleep(limit.get()));
        DeadlineReader {
            inner,
            limit,
            deadline,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for DeadlineReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + self.limit.get();
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing arrived for {:?}", self.limit.get()),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn silence_past_the_limit_fails_and_the_limit_can_grow() {
        let (mut client, server) = tokio::io::duplex(64);
        let limit = Limit::new(Duration::from_secs(10));
        let mut reader = DeadlineReader::new(server, limit.clone());
        let mut buf = [0u8; 8];
        client.write_all(b"hi").await.unwrap();
        assert_eq!(reader.read(&mut buf).await.unwrap(), 2);
        limit.set(Duration::from_secs(60));
        // The next piece restarts the wait with the new limit.
        client.write_all(b"x").await.unwrap();
        assert_eq!(reader.read(&mut buf).await.unwrap(), 1);
        let started = Instant::now();
        let e = reader.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }
}
