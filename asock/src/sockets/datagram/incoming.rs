//! [`Incoming`]: the datagrams a socket receives, as a stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::shared::Shared;
use super::Datagram;
use crate::error::{Error, Result};
use crate::time::WaitTimer;

/// The datagrams a socket receives, as a [`futures_core::Stream`]: Ktor's `incoming` channel.
///
/// Each item is what [`BoundDatagramSocket::receive`](super::BoundDatagramSocket::receive)
/// would return; the stream ends when the socket (or its manager) is closed. With a socket
/// timeout, a wait that long for the next datagram yields one [`Error::Timeout`] item and the
/// stream goes on. The clock runs only while the stream waits: time the consumer spends between
/// items never counts.
pub struct Incoming {
    shared: Arc<Shared>,
    wait: WaitTimer,
}

impl Incoming {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Incoming {
            shared,
            wait: WaitTimer::default(),
        }
    }
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("local", &self.shared.local)
            .finish()
    }
}

impl futures_core::Stream for Incoming {
    type Item = Result<Datagram>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.shared.poll_receive(cx) {
            Poll::Ready(Err(Error::Closed(_))) => Poll::Ready(None),
            Poll::Ready(r) => {
                this.wait.restart();
                Poll::Ready(Some(r))
            }
            Poll::Pending => {
                let timeout = this.shared.timeout();
                match this
                    .wait
                    .poll_expired(cx, timeout, Some(this.shared.io.handle()))
                {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Error::Timeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}
