//! The quinn-udp peers of `udp-bulk`: quinn-udp's `UdpSocketState` (GRO and GSO where the kernel
//! has them, `recvmmsg` in batches of 32) on a tokio socket, driven the way quinn drives it:
//! wait for readiness, then `recv` / `try_send` until they would block. quinn-udp is a point of
//! comparison here, never a dependency of asock.

use std::io::IoSliceMut;
use std::time::{Duration, Instant};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;

use super::tokio_peer::runtime;
use super::{cpu_time, local_for, report_sent, Counter, Res, IDLE, RCVBUF};

/// quinn-udp's receive batch on Linux.
const BATCH: usize = 32;
/// One receive buffer: room for a GRO buffer of 64 KiB.
const BUF: usize = 65_536;

/// A non-blocking socket bound to `addr` on the current runtime, with its quinn-udp state.
fn socket(addr: &str) -> std::io::Result<(tokio::net::UdpSocket, UdpSocketState)> {
    let std = std::net::UdpSocket::bind(addr)?;
    std.set_nonblocking(true)?;
    let state = UdpSocketState::new((&std).into())?;
    state.set_recv_buffer_size((&std).into(), RCVBUF)?;
    Ok((tokio::net::UdpSocket::from_std(std)?, state))
}

/// Receives a batch: how many buffers were filled (`meta[..n]` says with what).
async fn receive(
    s: &tokio::net::UdpSocket,
    state: &UdpSocketState,
    bufs: &mut [IoSliceMut<'_>],
    meta: &mut [RecvMeta],
) -> std::io::Result<usize> {
    s.async_io(Interest::READABLE, || state.recv(s.into(), bufs, meta))
        .await
}

/// Datagrams in a received buffer of `m.len` bytes cut every `m.stride`.
fn datagrams(m: &RecvMeta) -> usize {
    if m.stride == 0 {
        1
    } else {
        m.len.div_ceil(m.stride).max(1)
    }
}

pub fn recv(addr: &str, dur: Duration) -> Res {
    runtime()?.block_on(async {
        let (s, state) = socket(addr)?;
        println!("Started quinn-udp bulk receiver at {}", s.local_addr()?);
        let mut storage = vec![0u8; BATCH * BUF];
        let mut bufs: Vec<IoSliceMut<'_>> = storage.chunks_mut(BUF).map(IoSliceMut::new).collect();
        let mut meta = [RecvMeta::default(); BATCH];
        let mut c: Option<Counter> = None;
        loop {
            let r = match &c {
                None => Ok(receive(&s, &state, &mut bufs, &mut meta).await),
                Some(_) => {
                    tokio::time::timeout(IDLE, receive(&s, &state, &mut bufs, &mut meta)).await
                }
            };
            let Ok(n) = r else { break };
            let n = n?;
            let (d, b) = meta[..n]
                .iter()
                .fold((0, 0), |(d, b), m| (d + datagrams(m), b + m.len));
            match &mut c {
                None => c = Some(Counter::start(d, b)),
                Some(c) => c.add(d, b),
            }
            if c.as_ref().is_some_and(|c| c.elapsed() >= dur) {
                break;
            }
        }
        if let Some(c) = c {
            c.report();
        }
        Ok(())
    })
}

/// Sends `contents` to `to` as one transmit of `size`-byte segments (GSO when it has more than
/// one), waiting for room as quinn does.
async fn transmit(
    s: &tokio::net::UdpSocket,
    state: &UdpSocketState,
    to: std::net::SocketAddr,
    contents: &[u8],
    size: usize,
) -> std::io::Result<()> {
    let t = Transmit {
        destination: to,
        ecn: None,
        contents,
        segment_size: (contents.len() > size).then_some(size),
        src_ip: None,
    };
    s.async_io(Interest::WRITABLE, || state.try_send(s.into(), &t))
        .await
}

pub fn send(addr: &str, dur: Duration, size: usize, flows: usize) -> Res {
    runtime()?.block_on(async {
        let to: std::net::SocketAddr = addr.parse()?;
        let mut socks = Vec::new();
        for _ in 0..flows {
            socks.push(socket(local_for(&to))?);
        }
        // As many segments as one transmit may carry: quinn-udp's GSO limit and one UDP payload.
        let per = socks[0]
            .1
            .max_gso_segments()
            .min(super::per_send(size))
            .max(1);
        let buf = vec![0x5au8; size * per];
        let (cpu0, start) = (cpu_time(), Instant::now());
        let mut sent = 0u64;
        while start.elapsed() < dur {
            for (s, state) in &socks {
                if per > 1 {
                    transmit(s, state, to, &buf, size).await?;
                } else {
                    transmit(s, state, to, &buf[..size], size).await?;
                }
                sent += per as u64;
            }
        }
        report_sent(sent, cpu0);
        Ok(())
    })
}

pub fn echo(addr: &str) -> Res {
    runtime()?.block_on(async {
        let (s, state) = socket(addr)?;
        println!("Started quinn-udp bulk echo at {}", s.local_addr()?);
        let mut storage = vec![0u8; BATCH * BUF];
        let mut bufs: Vec<IoSliceMut<'_>> = storage.chunks_mut(BUF).map(IoSliceMut::new).collect();
        let mut meta = [RecvMeta::default(); BATCH];
        loop {
            let n = receive(&s, &state, &mut bufs, &mut meta).await?;
            // Each received buffer goes back as it came: one GSO transmit for a coalesced one.
            for (m, b) in meta[..n].iter().zip(bufs.iter()) {
                let stride = if m.stride == 0 { m.len } else { m.stride };
                // A sender that went away is no reason to stop.
                drop(transmit(&s, &state, m.addr, &b[..m.len], stride.max(1)).await);
            }
        }
    })
}
