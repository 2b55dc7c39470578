//! UDP bulk transfer and bulk echo, for the offload figures (`bench/udp_bulk.sh`):
//!
//! - `udp-bulk recv ADDR IMPL SECS`: a receiver; prints `Started ... at ADDR`, then, counting
//!   from the first datagram for SECS seconds (or until 0.5 s without one), prints
//!   `datagrams=N bytes=B mb_per_s=X cpu_us_per_datagram=C`.
//! - `udp-bulk send ADDR IMPL SECS [SIZE [FLOWS]]`: sends datagrams of SIZE bytes (1,200) back
//!   to back for SECS seconds from FLOWS sockets (1), taking turns, then prints
//!   `sent=N cpu_us_per_datagram=C`.
//! - `udp-bulk echo ADDR IMPL`: an echo server (every datagram back to its sender) until killed;
//!   prints `Started ... at ADDR`.
//! - `udp-bulk load ADDR SECS [SIZE [FLOWS [WINDOW]]]`: loads an echo server from FLOWS asock
//!   sockets with offload, each keeping up to WINDOW datagrams (256) in flight in sends of up to
//!   64, after a 0.5 s warm-up; prints `datagrams_per_s=.. mb_per_s=.. lost=.. total=..`
//!   (`total`: every echo, warm-up included). A flow whose echoes stop for 20 ms counts what it
//!   had in flight as lost and sends a fresh window.
//!
//! IMPL is `asock` (GRO and GSO: `receive_batch` and `send_batch`), `asock-plain` (offload off:
//! `receive` takes datagrams from `recvmmsg` batches, one `send` per datagram), `tokio`
//! (`recv_from` / `send_to`) or `quinn` (quinn-udp's `UdpSocketState` with GRO and GSO on a
//! tokio socket, the way quinn drives it). Every process runs one thread; CPU figures are this
//! process's user + system time (`getrusage`) over what it counted.

#[path = "udp_bulk/quinn_peer.rs"]
mod quinn_peer;
#[path = "udp_bulk/tokio_peer.rs"]
mod tokio_peer;

use std::time::{Duration, Instant};

use asock::{a_socket, Datagram, SelectorManager, SocketAddress};
use bytes::Bytes;

/// Receive buffers of every receiver and echo server: 4 MiB (the default `rmem_max`).
pub const RCVBUF: usize = 4 << 20;
/// A receiver stops after this long without a datagram.
pub const IDLE: Duration = Duration::from_millis(500);

fn usage() -> ! {
    eprintln!(
        "usage: udp-bulk recv ADDR IMPL SECS | send ADDR IMPL SECS [SIZE [FLOWS]] | echo ADDR IMPL \
         | load ADDR SECS [SIZE [FLOWS [WINDOW]]]\n  IMPL: asock, asock-plain, tokio, quinn"
    );
    std::process::exit(2)
}

type Res = Result<(), Box<dyn std::error::Error>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        usage();
    }
    let addr = args[1].as_str();
    let num = |i: usize, default: f64| -> f64 {
        args.get(i)
            .map(|s| s.parse().unwrap_or_else(|_| usage()))
            .unwrap_or(default)
    };
    let r = match args[0].as_str() {
        "load" => load(
            addr,
            Duration::from_secs_f64(num(2, 3.0)),
            num(3, 1200.0) as usize,
            num(4, 1.0) as usize,
            num(5, 256.0) as usize,
        ),
        "echo" => match args[2].as_str() {
            "tokio" => tokio_peer::echo(addr),
            "quinn" => quinn_peer::echo(addr),
            "asock" => asock_echo(addr, true),
            "asock-plain" => asock_echo(addr, false),
            _ => usage(),
        },
        cmd @ ("recv" | "send") => {
            let dur = Duration::from_secs_f64(num(3, 3.0));
            let size = num(4, 1200.0) as usize;
            let flows = (num(5, 1.0) as usize).max(1);
            match (cmd, args[2].as_str()) {
                ("recv", "tokio") => tokio_peer::recv(addr, dur),
                ("recv", "quinn") => quinn_peer::recv(addr, dur),
                ("recv", "asock") => asock_recv(addr, dur, true),
                ("recv", "asock-plain") => asock_recv(addr, dur, false),
                ("send", "tokio") => tokio_peer::send(addr, dur, size, flows),
                ("send", "quinn") => quinn_peer::send(addr, dur, size, flows),
                ("send", "asock") => asock_send(addr, dur, size, flows, true),
                ("send", "asock-plain") => asock_send(addr, dur, size, flows, false),
                _ => usage(),
            }
        }
        _ => usage(),
    };
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// This process's user + system CPU time so far.
pub fn cpu_time() -> Duration {
    // SAFETY: `getrusage` fills the zeroed `rusage` it is given and reads nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live, writable `rusage`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Datagrams per send for one buffer of `size`-byte datagrams: as many as one UDP payload
/// (65,507 bytes over IPv4) and the kernel's segment limit (64) allow.
pub fn per_send(size: usize) -> usize {
    (Datagram::MAX_IPV4_PAYLOAD / size.max(1)).clamp(1, 64)
}

/// What a receiver counted since its first datagram.
pub struct Counter {
    n: u64,
    bytes: u64,
    start: Instant,
    cpu: Duration,
}

impl Counter {
    /// Starts counting with the first `n` datagrams of `bytes` bytes.
    pub fn start(n: usize, bytes: usize) -> Counter {
        Counter {
            n: n as u64,
            bytes: bytes as u64,
            start: Instant::now(),
            cpu: cpu_time(),
        }
    }

    pub fn add(&mut self, n: usize, bytes: usize) {
        self.n += n as u64;
        self.bytes += bytes as u64;
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn report(&self) {
        let s = self.start.elapsed().as_secs_f64();
        let cpu = (cpu_time() - self.cpu).as_secs_f64();
        println!(
            "datagrams={} bytes={} mb_per_s={:.1} cpu_us_per_datagram={:.3}",
            self.n,
            self.bytes,
            self.bytes as f64 / s / 1e6,
            cpu * 1e6 / self.n.max(1) as f64
        );
    }
}

/// What a sender prints at the end.
pub fn report_sent(sent: u64, cpu0: Duration) {
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    println!(
        "sent={sent} cpu_us_per_datagram={:.3}",
        cpu * 1e6 / sent.max(1) as f64
    );
}

/// The unspecified-port loopback address of `to`'s family.
pub fn local_for(to: &std::net::SocketAddr) -> &'static str {
    if to.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    }
}

fn selector() -> asock::Result<SelectorManager> {
    SelectorManager::builder().threads(1).build()
}

fn asock_recv(addr: &str, dur: Duration, offload: bool) -> Res {
    let sel = selector()?;
    sel.run_blocking(async {
        let s = a_socket(&sel)
            .udp()
            .gro(offload)
            .datagram_batch(64)
            .receive_buffer_size(RCVBUF)
            .bind(addr)
            .await?;
        println!("Started asock bulk receiver at {}", s.local_address());
        let first = s.receive_batch().await?;
        let mut c = Counter::start(first.len(), first.buffer().len());
        s.set_socket_timeout(Some(IDLE));
        while c.elapsed() < dur {
            if offload {
                // Whole GRO buffers: the consumer that wants the batch as it came.
                match s.receive_batch().await {
                    Ok(b) => c.add(b.len(), b.buffer().len()),
                    Err(asock::Error::Timeout) => break,
                    Err(e) => return Err(e.into()),
                }
            } else {
                match s.receive().await {
                    Ok(d) => c.add(1, d.packet.len()),
                    Err(asock::Error::Timeout) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        c.report();
        Ok(())
    })
}

fn asock_send(addr: &str, dur: Duration, size: usize, flows: usize, offload: bool) -> Res {
    let sel = selector()?;
    let to: SocketAddress = addr.parse()?;
    let local = local_for(&to.as_inet().ok_or("an IP address")?);
    sel.run_blocking(async {
        let mut socks = Vec::new();
        for _ in 0..flows {
            socks.push(a_socket(&sel).udp().gso(offload).bind(local).await?);
        }
        let per = per_send(size);
        let buf = Bytes::from(vec![0x5a; size * per]);
        let (cpu0, start) = (cpu_time(), Instant::now());
        let mut sent = 0u64;
        while start.elapsed() < dur {
            for s in &socks {
                if offload {
                    sent += s.send_batch(to.clone(), size, buf.clone()).await? as u64;
                } else {
                    for i in 0..per {
                        let d = Datagram::new(buf.slice(i * size..(i + 1) * size), to.clone());
                        s.send(d).await?;
                    }
                    sent += per as u64;
                }
            }
        }
        report_sent(sent, cpu0);
        Ok(())
    })
}

/// The asock bulk echo: with offload, each received buffer goes back whole (`receive_batch`,
/// then one `send_batch`: one GSO send for a coalesced buffer); without, `receive` and one
/// `send` per datagram.
fn asock_echo(addr: &str, offload: bool) -> Res {
    let sel = selector()?;
    sel.run_blocking(async {
        let s = a_socket(&sel)
            .udp()
            .gro(offload)
            .gso(offload)
            .datagram_batch(64)
            .receive_buffer_size(RCVBUF)
            .bind(addr)
            .await?;
        println!("Started asock bulk echo at {}", s.local_address());
        loop {
            if offload {
                let (buf, seg, from) = s.receive_batch().await?.into_parts();
                // An empty datagram has segment size 0, which `send_batch` refuses.
                let r = if buf.is_empty() {
                    s.send(Datagram::new(buf, from)).await
                } else {
                    s.send_batch(from, seg, buf).await.map(drop)
                };
                // A sender that went away is no reason to stop.
                drop(r);
            } else {
                let d = s.receive().await?;
                drop(s.send(d).await);
            }
        }
    })
}

/// One flow of `load`: what it counted after the warm-up, what it lost, what it counted in all.
async fn load_flow(
    s: asock::BoundDatagramSocket,
    to: SocketAddress,
    size: usize,
    window: usize,
    (warm_end, end): (Instant, Instant),
) -> asock::Result<(u64, u64, u64, u64)> {
    let per = per_send(size).min(window);
    let buf = Bytes::from(vec![0x42; size * per]);
    let (mut n, mut bytes, mut lost, mut total) = (0u64, 0u64, 0u64, 0u64);
    let mut in_flight = 0usize;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        while in_flight + per <= window {
            in_flight += s.send_batch(to.clone(), size, buf.clone()).await?;
        }
        match asock::time::timeout(Duration::from_millis(20), s.receive_batch()).await {
            Ok(Ok(b)) => {
                in_flight = in_flight.saturating_sub(b.len());
                total += b.len() as u64;
                if Instant::now() >= warm_end {
                    n += b.len() as u64;
                    bytes += b.buffer().len() as u64;
                }
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                if now >= warm_end {
                    lost += in_flight as u64;
                }
                in_flight = 0;
            }
        }
    }
    Ok((n, bytes, lost, total))
}

fn load(addr: &str, dur: Duration, size: usize, flows: usize, window: usize) -> Res {
    let sel = selector()?;
    let to: SocketAddress = addr.parse()?;
    let local = local_for(&to.as_inet().ok_or("an IP address")?);
    let window = window.max(1);
    sel.run_blocking(async {
        let start = Instant::now();
        let times = (
            start + Duration::from_millis(500),
            start + Duration::from_millis(500) + dur,
        );
        let mut tasks = Vec::new();
        for _ in 0..flows.max(1) {
            let s = a_socket(&sel)
                .udp()
                .datagram_batch(64)
                .receive_buffer_size(RCVBUF)
                .bind(local)
                .await?;
            tasks.push(sel.launch(load_flow(s, to.clone(), size, window, times)));
        }
        let (mut n, mut bytes, mut lost, mut total) = (0, 0, 0, 0);
        for t in tasks {
            let (a, b, c, d) = t.await??;
            (n, bytes, lost, total) = (n + a, bytes + b, lost + c, total + d);
        }
        let secs = dur.as_secs_f64();
        println!(
            "datagrams_per_s={:.0} mb_per_s={:.1} lost={lost} total={total} replies={n}",
            n as f64 / secs,
            bytes as f64 / secs / 1e6
        );
        Ok(())
    })
}
