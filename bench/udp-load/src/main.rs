//! `udp-load ADDR [--sockets N] [--window W] [--size BYTES] [--duration SECS] [--warmup SECS]`
//!
//! Loads a UDP echo server at ADDR from N connected sockets, each keeping W datagrams in
//! flight, on one thread that moves datagrams with `sendmmsg`/`recvmmsg` (Linux) so the load
//! generator costs far less per datagram than any server it measures. Prints one line:
//! `datagrams_per_s=.. replies=.. lost=.. secs=.. total=..` (replies counted after the warm-up;
//! `total`: all replies, warm-up included).
//!
//! A socket whose replies stop for 50 ms is assumed to have lost what it had in flight (the
//! kernel drops datagrams when a receive buffer is full) and sends a fresh window.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const MAX_BATCH: usize = 64;

struct Args {
    addr: SocketAddr,
    sockets: usize,
    window: usize,
    size: usize,
    duration: f64,
    warmup: f64,
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        addr: "127.0.0.1:2323".parse().unwrap_or_else(|e| die(e)),
        sockets: 8,
        window: 16,
        size: 64,
        duration: 5.0,
        warmup: 1.0,
    };
    let mut addr_seen = false;
    while let Some(arg) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .unwrap_or_else(|| die(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--sockets" => a.sockets = val("--sockets").parse().unwrap_or_else(|e| die(e)),
            "--window" => a.window = val("--window").parse().unwrap_or_else(|e| die(e)),
            "--size" => a.size = val("--size").parse().unwrap_or_else(|e| die(e)),
            "--duration" => a.duration = val("--duration").parse().unwrap_or_else(|e| die(e)),
            "--warmup" => a.warmup = val("--warmup").parse().unwrap_or_else(|e| die(e)),
            s if !s.starts_with("--") && !addr_seen => {
                a.addr = s.parse().unwrap_or_else(|e| die(format!("address {s}: {e}")));
                addr_seen = true;
            }
            s => die(format!(
                "unknown argument {s}\nusage: udp-load ADDR [--sockets N] [--window W] [--size BYTES] [--duration SECS] [--warmup SECS]"
            )),
        }
    }
    a.window = a.window.clamp(1, MAX_BATCH);
    a.sockets = a.sockets.max(1);
    a
}

struct Peer {
    sock: UdpSocket,
    in_flight: usize,
    last_reply: Instant,
}

/// Sends `n` copies of `payload` on a connected socket with one `sendmmsg`; returns how many
/// the kernel took.
fn send_many(sock: &UdpSocket, payload: &[u8], n: usize) -> usize {
    let n = n.min(MAX_BATCH);
    // SAFETY: plain C structs for which all-zero bytes are valid (null pointers, zero lengths).
    let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        iovs[i] = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        };
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `hdrs[..n]` point at live iovecs over `payload`, which sendmmsg only reads; the
    // socket is connected, so no address is needed.
    let r = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as _,
        )
    };
    if r < 0 {
        0
    } else {
        r as usize
    }
}

/// Receives whatever is waiting (up to a batch) with one `recvmmsg`; returns the count.
fn recv_many(sock: &UdpSocket, bufs: &mut [[u8; 2048]; MAX_BATCH]) -> usize {
    // SAFETY: as above, all-zero is valid for these C structs.
    let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for (i, b) in bufs.iter_mut().enumerate() {
        iovs[i] = libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        };
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: each header points at its own iovec over a distinct, live 2 KiB buffer; the kernel
    // writes within those lengths only. MSG_DONTWAIT: never blocks.
    let r = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            hdrs.as_mut_ptr(),
            MAX_BATCH as libc::c_uint,
            libc::MSG_DONTWAIT as _,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        0
    } else {
        r as usize
    }
}

fn main() {
    let a = parse_args();
    if a.size > 2048 {
        die("--size is at most 2048 bytes");
    }
    let payload = vec![0x42u8; a.size];
    let bind = if a.addr.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let now = Instant::now();
    let mut peers: Vec<Peer> = (0..a.sockets)
        .map(|_| {
            let sock = UdpSocket::bind(bind).unwrap_or_else(|e| die(e));
            sock.connect(a.addr).unwrap_or_else(|e| die(e));
            Peer {
                sock,
                in_flight: 0,
                last_reply: now,
            }
        })
        .collect();
    let mut bufs = Box::new([[0u8; 2048]; MAX_BATCH]);
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(a.warmup);
    let end = warm_end + Duration::from_secs_f64(a.duration);
    let lost_after = Duration::from_millis(50);
    let (mut replies, mut lost, mut total) = (0u64, 0u64, 0u64);
    let mut measuring = false;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if !measuring && now >= warm_end {
            measuring = true;
            replies = 0;
            lost = 0;
        }
        for p in peers.iter_mut() {
            let got = recv_many(&p.sock, &mut bufs);
            if got > 0 {
                p.in_flight = p.in_flight.saturating_sub(got);
                p.last_reply = now;
                replies += got as u64;
                total += got as u64;
            } else if p.in_flight > 0 && now.duration_since(p.last_reply) > lost_after {
                lost += p.in_flight as u64;
                p.in_flight = 0;
                p.last_reply = now;
            }
            if p.in_flight < a.window {
                let sent = send_many(&p.sock, &payload, a.window - p.in_flight);
                if sent > 0 && p.in_flight == 0 {
                    p.last_reply = now;
                }
                p.in_flight += sent;
            }
        }
    }
    let secs = a.duration;
    println!(
        "datagrams_per_s={:.0} replies={replies} lost={lost} secs={secs} total={total}",
        replies as f64 / secs
    );
}
