//! The connection drivers: ping-pong, stream and idle over TCP (or TLS); the UDP ones are in
//! `udp.rs`.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use asock::tls::TlsConfig;
use asock::{a_socket, ByteReadChannel, ByteWriteChannel, SelectorManager};

use super::args::BenchMode;
use super::pattern::{expect, expect_eof, Pattern};
use super::stats::{lock, record, Shared, STOP};

/// Polls both futures until both are done, or one fails.
pub async fn try_join<A, B>(a: A, b: B) -> Result<(), String>
where
    A: Future<Output = Result<(), String>>,
    B: Future<Output = Result<(), String>>,
{
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut a_done, mut b_done) = (false, false);
    poll_fn(|cx| {
        if !a_done {
            if let Poll::Ready(r) = a.as_mut().poll(cx) {
                r?;
                a_done = true;
            }
        }
        if !b_done {
            if let Poll::Ready(r) = b.as_mut().poll(cx) {
                r?;
                b_done = true;
            }
        }
        if a_done && b_done {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// What one connection task needs.
pub struct Conn {
    pub id: usize,
    pub selector: SelectorManager,
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub pattern: Arc<Pattern>,
    pub mode: BenchMode,
    /// Messages to send, or `None` to run until the stop.
    pub quota: Option<u64>,
    /// Speak TLS with this configuration.
    pub tls: Option<TlsConfig>,
    pub udp: bool,
    /// UDP stream: datagrams in flight at most.
    pub window: usize,
}

impl Conn {
    pub fn done(&self, k: u64) -> bool {
        self.quota
            .map_or(self.shared.phase.load(Ordering::Relaxed) == STOP, |q| {
                k >= q
            })
    }
}

/// Connects, over TLS when asked, and opens the channels (the write channel flushing every
/// write when `auto_flush`).
pub async fn open(
    c: &Conn,
    auto_flush: bool,
) -> Result<(ByteReadChannel, ByteWriteChannel), String> {
    let socket = a_socket(&c.selector)
        .tcp()
        .no_delay(true)
        .connect_timeout(Duration::from_secs(10))
        .connect(c.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", c.addr))?;
    Ok(match &c.tls {
        Some(config) => {
            let tls = socket
                .tls(config)
                .await
                .map_err(|e| format!("TLS handshake with {}: {e}", c.addr))?;
            (tls.open_read_channel(), tls.open_write_channel(auto_flush))
        }
        None => (
            socket.open_read_channel(),
            socket.open_write_channel(auto_flush),
        ),
    })
}

pub async fn connection(c: Conn) -> Result<(), String> {
    if c.udp {
        return match c.mode {
            BenchMode::Stream => super::udp::stream(c).await,
            _ => super::udp::pingpong(c).await,
        };
    }
    let (mut input, mut output) = open(&c, c.mode != BenchMode::Stream).await?;
    if c.mode != BenchMode::Idle {
        c.shared.connected.fetch_add(1, Ordering::Relaxed);
    }
    match c.mode {
        BenchMode::Pingpong | BenchMode::Idle => {
            let mut k = 0u64;
            loop {
                if c.done(k) {
                    break;
                }
                let msg = c.pattern.message(c.id, k);
                let start = Instant::now();
                output
                    .write_fully(msg)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                expect(&mut input, msg).await?;
                record(start, msg.len(), &c.shared.phase);
                k += 1;
                if c.mode == BenchMode::Idle {
                    c.shared.connected.fetch_add(1, Ordering::Relaxed);
                    c.shared.stopped().await;
                    break;
                }
            }
            output.close().await.map_err(|e| format!("close: {e}"))?;
        }
        BenchMode::Stream => {
            let sent_at = Mutex::new(VecDeque::<Instant>::new());
            let sent = AtomicU64::new(0);
            let writer_done = AtomicBool::new(false);
            let writer = async {
                let mut k = 0u64;
                while !c.done(k) {
                    let msg = c.pattern.message(c.id, k);
                    lock(&sent_at).push_back(Instant::now());
                    sent.store(k + 1, Ordering::Release);
                    output
                        .write_fully(msg)
                        .await
                        .map_err(|e| format!("write: {e}"))?;
                    k += 1;
                }
                writer_done.store(true, Ordering::Release);
                output.close().await.map_err(|e| format!("close: {e}"))
            };
            let reader = async {
                let mut j = 0u64;
                loop {
                    if j == sent.load(Ordering::Acquire) {
                        if writer_done.load(Ordering::Acquire) {
                            return Ok(());
                        }
                        // Nothing is owed yet: wait for bytes (or the writer's next message).
                        if !input
                            .await_content()
                            .await
                            .map_err(|e| format!("read: {e}"))?
                        {
                            if writer_done.load(Ordering::Acquire)
                                && j == sent.load(Ordering::Acquire)
                            {
                                return Ok(());
                            }
                            return Err("the server closed the connection early".into());
                        }
                    }
                    let msg = c.pattern.message(c.id, j);
                    expect(&mut input, msg).await?;
                    let start = lock(&sent_at).pop_front().unwrap_or_else(Instant::now);
                    record(start, msg.len(), &c.shared.phase);
                    j += 1;
                }
            };
            try_join(writer, reader).await?;
        }
    }
    expect_eof(&mut input).await
}
