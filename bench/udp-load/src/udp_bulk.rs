//! One-flow UDP bulk transfer, for the offload figures:
//! `udp-bulk recv ADDR IMPL SECS` then `udp-bulk send ADDR IMPL SECS [SIZE]`.
//!
//! IMPL is `asock` (the receiver with GRO on, the sender with `send_batch`: GSO, 64
//! datagrams per system call), `asock-plain` (GRO and GSO off: `recvmmsg`, one `send` per
//! datagram) or `tokio` (`recv_from` / `send_to` on a current-thread runtime). The receiver
//! prints `Started ... at ADDR`, then after the first datagram counts for SECS seconds and
//! prints `datagrams=N bytes=B mb_per_s=X`. Datagrams are SIZE bytes (default 1,200).

use std::time::{Duration, Instant};

use asock::{a_socket, SelectorManager, SocketAddress};

fn usage() -> ! {
    eprintln!("usage: udp-bulk recv|send ADDR asock|asock-plain|tokio SECS [SIZE]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        usage();
    }
    let addr = args[1].clone();
    let imp = args[2].clone();
    let secs: f64 = args[3].parse().unwrap_or_else(|_| usage());
    let size: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1200);
    let dur = Duration::from_secs_f64(secs);
    let r = match (args[0].as_str(), imp.as_str()) {
        ("recv", "tokio") => tokio_recv(&addr, dur),
        ("send", "tokio") => tokio_send(&addr, dur, size),
        ("recv", i) => asock_recv(&addr, dur, i == "asock"),
        ("send", i) => asock_send(&addr, dur, size, i == "asock"),
        _ => usage(),
    };
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn report(n: u64, bytes: u64, elapsed: Duration) {
    let s = elapsed.as_secs_f64();
    println!(
        "datagrams={n} bytes={bytes} mb_per_s={:.1}",
        bytes as f64 / s / 1e6
    );
}

fn asock_recv(addr: &str, dur: Duration, offload: bool) -> Result<(), Box<dyn std::error::Error>> {
    let sel = SelectorManager::builder().threads(1).build()?;
    sel.run_blocking(async {
        let s = a_socket(&sel)
            .udp()
            .gro(offload)
            .datagram_batch(64)
            .receive_buffer_size(4 << 20)
            .bind(addr)
            .await?;
        println!("Started asock bulk receiver at {}", s.local_address());
        let first = s.receive().await?;
        let (mut n, mut bytes) = (1u64, first.packet.len() as u64);
        let start = Instant::now();
        s.set_socket_timeout(Some(Duration::from_millis(500)));
        while start.elapsed() < dur {
            match s.receive().await {
                Ok(d) => {
                    n += 1;
                    bytes += d.packet.len() as u64;
                }
                Err(asock::Error::Timeout) => break,
                Err(e) => return Err(e.into()),
            }
        }
        report(n, bytes, start.elapsed());
        Ok(())
    })
}

fn asock_send(
    addr: &str,
    dur: Duration,
    size: usize,
    offload: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let sel = SelectorManager::builder().threads(1).build()?;
    let to: SocketAddress = addr.parse()?;
    sel.run_blocking(async {
        let s = a_socket(&sel)
            .udp()
            .gso(offload)
            .bind(if to.as_inet().is_some_and(|a| a.is_ipv6()) {
                "[::1]:0"
            } else {
                "127.0.0.1:0"
            })
            .await?;
        let buf = bytes::Bytes::from(vec![0x5a; size * 64]);
        let start = Instant::now();
        while start.elapsed() < dur {
            if offload {
                s.send_batch(to.clone(), size, buf.clone()).await?;
            } else {
                for i in 0..64 {
                    let d = asock::Datagram::new(buf.slice(i * size..(i + 1) * size), to.clone());
                    s.send(d).await?;
                }
            }
        }
        Ok(())
    })
}

fn tokio_rt() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn tokio_recv(addr: &str, dur: Duration) -> Result<(), Box<dyn std::error::Error>> {
    tokio_rt()?.block_on(async {
        let s = tokio::net::UdpSocket::bind(addr).await?;
        set_receive_buffer(&s, 4 << 20)?;
        println!("Started tokio bulk receiver at {}", s.local_addr()?);
        let mut buf = vec![0u8; 65_536];
        let (len, _) = s.recv_from(&mut buf).await?;
        let (mut n, mut bytes) = (1u64, len as u64);
        let start = Instant::now();
        // One timer for the whole run (a timeout per receive would cost tokio a timer each).
        let deadline = tokio::time::sleep(dur);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = s.recv_from(&mut buf) => {
                    let (len, _) = r?;
                    n += 1;
                    bytes += len as u64;
                }
                _ = &mut deadline => break,
            }
        }
        report(n, bytes, start.elapsed());
        Ok(())
    })
}

/// The same 4 MiB receive buffer the asock receiver asks for.
fn set_receive_buffer(s: &tokio::net::UdpSocket, bytes: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `bytes` is a readable `int` of the stated size; the descriptor is open (owned by
    // `s`, borrowed for the call).
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn tokio_send(addr: &str, dur: Duration, size: usize) -> Result<(), Box<dyn std::error::Error>> {
    tokio_rt()?.block_on(async {
        let to: std::net::SocketAddr = addr.parse()?;
        let s = tokio::net::UdpSocket::bind(if to.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        })
        .await?;
        let buf = vec![0x5au8; size];
        let start = Instant::now();
        while start.elapsed() < dur {
            for _ in 0..64 {
                s.send_to(&buf, to).await?;
            }
        }
        Ok(())
    })
}
