//! The outgoing queue: bounded, any number of sending ends, one receiving end (the socket's
//! send task).
//!
//! One mutex guards the items and the wakers, so a send is one lock, one push and, when the
//! send task waits, one wake-up. That is all an outgoing datagram needs: a general MPMC channel
//! (`async-channel`, used here before) cost about 1,400 user-space instructions per echoed
//! datagram in its queue, listener and notification machinery (`bench/callgrind.sh`, UDP
//! section).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::util::lock;

/// Creates a queue that holds at most `capacity` items (at least one).
pub(super) fn bounded<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let shared = Arc::new(Queue {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            senders: 1,
            closed: false,
            receiver: None,
            waiting: Vec::new(),
        }),
    });
    (
        QueueSender {
            queue: shared.clone(),
        },
        QueueReceiver { queue: shared },
    )
}

struct Queue<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// Live sending ends: with none left and nothing queued, the receiver sees the end.
    senders: usize,
    /// Closed by [`QueueSender::close`] or by the receiver's drop: sends fail from now on.
    closed: bool,
    /// The receiving task, while it waits for an item.
    receiver: Option<Waker>,
    /// Sending tasks waiting for room.
    waiting: Vec<Waker>,
}

impl<T> Queue<T> {
    fn state(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.state)
    }
}

impl<T> State<T> {
    /// Takes every waiting sender's waker (room was made, or the queue closed).
    fn take_waiting(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.waiting)
    }
}

/// A sending end; clones share the queue.
pub(super) struct QueueSender<T> {
    queue: Arc<Queue<T>>,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        self.queue.state().senders += 1;
        QueueSender {
            queue: self.queue.clone(),
        }
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        let receiver = {
            let mut s = self.queue.state();
            s.senders -= 1;
            if s.senders == 0 {
                s.receiver.take()
            } else {
                None
            }
        };
        if let Some(w) = receiver {
            w.wake();
        }
    }
}

impl<T> QueueSender<T> {
    /// Queues `item`, waiting while the queue is full; gives it back if the queue is closed.
    pub(super) async fn send(&self, item: T) -> Result<(), T> {
        let mut item = Some(item);
        poll_fn(|cx| self.poll_send(cx, &mut item)).await
    }

    fn poll_send(&self, cx: &mut Context<'_>, item: &mut Option<T>) -> Poll<Result<(), T>> {
        let Some(value) = item.take() else {
            // Polled again after it completed: nothing left to send.
            return Poll::Ready(Ok(()));
        };
        let mut s = self.queue.state();
        if s.closed {
            return Poll::Ready(Err(value));
        }
        if s.items.len() >= s.capacity {
            if !s.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                s.waiting.push(cx.waker().clone());
            }
            *item = Some(value);
            return Poll::Pending;
        }
        s.items.push_back(value);
        let receiver = s.receiver.take();
        drop(s);
        if let Some(w) = receiver {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }

    /// Closes the queue: sends fail from now on; what is queued can still be received.
    pub(super) fn close(&self) {
        let (receiver, waiting) = {
            let mut s = self.queue.state();
            s.closed = true;
            (s.receiver.take(), s.take_waiting())
        };
        receiver.into_iter().chain(waiting).for_each(Waker::wake);
    }
}

/// The receiving end (one per queue).
pub(super) struct QueueReceiver<T> {
    queue: Arc<Queue<T>>,
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        // Nobody will take what is queued: senders fail instead of waiting for room forever.
        self.close();
        let items = std::mem::take(&mut self.queue.state().items);
        drop(items);
    }
}

impl<T> QueueReceiver<T> {
    /// Closes the queue from the receiving side: sends fail from now on (waiting ones too);
    /// what is queued can still be taken.
    pub(super) fn close(&self) {
        let waiting = {
            let mut s = self.queue.state();
            s.closed = true;
            s.take_waiting()
        };
        waiting.into_iter().for_each(Waker::wake);
    }

    /// The next item; `None` once the queue is empty and closed or without senders.
    pub(super) async fn recv(&self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.queue.state();
        if !s.items.is_empty() {
            return Poll::Ready(Self::pop(s));
        }
        if s.closed || s.senders == 0 {
            return Poll::Ready(None);
        }
        match &mut s.receiver {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next item if one is queued.
    pub(super) fn try_recv(&self) -> Option<T> {
        Self::pop(self.queue.state())
    }

    /// Takes the first item and lets the lock go; when that made room in a full queue, wakes
    /// the waiting senders (all of them: one that was cancelled must not keep the others
    /// waiting), after the lock is released, since a wake-up may drop a task that holds a
    /// sending end of this queue.
    fn pop(mut s: MutexGuard<'_, State<T>>) -> Option<T> {
        let full = s.items.len() >= s.capacity;
        let item = s.items.pop_front()?;
        let waiting = if full { s.take_waiting() } else { Vec::new() };
        drop(s);
        waiting.into_iter().for_each(Waker::wake);
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::counting::counter;
    use std::future::Future;
    use std::pin::pin;

    #[test]
    fn items_arrive_in_order_and_a_full_queue_waits_for_room() {
        let (tx, rx) = bounded::<u32>(2);
        let (woken, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        for i in 0..2 {
            assert!(matches!(
                pin!(tx.send(i)).poll(&mut cx),
                Poll::Ready(Ok(()))
            ));
        }
        let mut third = pin!(tx.send(2));
        assert!(third.as_mut().poll(&mut cx).is_pending(), "full");
        assert_eq!(rx.try_recv(), Some(0));
        assert_eq!(woken.get(), 1, "room wakes the sender");
        assert!(matches!(third.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn the_receiver_waits_then_sees_the_end_when_the_last_sender_goes() {
        let (tx, rx) = bounded::<u32>(4);
        let tx2 = tx.clone();
        let (woken, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let mut next = pin!(rx.recv());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        assert!(matches!(
            pin!(tx2.send(7)).poll(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(woken.get(), 1, "an item wakes the receiver");
        assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(Some(7)));
        let mut end = pin!(rx.recv());
        assert!(end.as_mut().poll(&mut cx).is_pending());
        drop(tx);
        assert!(
            end.as_mut().poll(&mut cx).is_pending(),
            "one sender is left"
        );
        drop(tx2);
        assert_eq!(woken.get(), 2, "the last sender's drop wakes it");
        assert_eq!(end.as_mut().poll(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn close_fails_sends_keeps_what_is_queued_and_a_dropped_receiver_fails_them_too() {
        let (tx, rx) = bounded::<u32>(1);
        let (woken, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            pin!(tx.send(1)).poll(&mut cx),
            Poll::Ready(Ok(()))
        ));
        let mut blocked = pin!(tx.send(2));
        assert!(blocked.as_mut().poll(&mut cx).is_pending());
        tx.close();
        assert_eq!(woken.get(), 1, "close wakes a waiting sender");
        assert!(matches!(
            blocked.as_mut().poll(&mut cx),
            Poll::Ready(Err(2))
        ));
        assert_eq!(rx.try_recv(), Some(1), "what was queued is still received");
        assert_eq!(pin!(rx.recv()).poll(&mut cx), Poll::Ready(None));

        let (tx, rx) = bounded::<u32>(1);
        assert!(matches!(
            pin!(tx.send(1)).poll(&mut cx),
            Poll::Ready(Ok(()))
        ));
        let mut blocked = pin!(tx.send(2));
        assert!(blocked.as_mut().poll(&mut cx).is_pending());
        drop(rx);
        assert!(matches!(
            blocked.as_mut().poll(&mut cx),
            Poll::Ready(Err(2))
        ));
    }
}
