//! The tokio peers of `udp-bulk`: `recv_from` / `send_to` on a current-thread runtime, the
//! plain tokio way (tokio has no batched or offloaded datagram calls).

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::{cpu_time, local_for, per_send, report_sent, Counter, Res, IDLE, RCVBUF};

pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Sets `SO_RCVBUF` on `fd` to `bytes`, as the asock peers ask for.
pub fn set_receive_buffer(fd: &impl AsRawFd, bytes: usize) -> std::io::Result<()> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `bytes` is a readable `int` of the stated size; the descriptor is open (owned by
    // the caller's socket, borrowed for the call).
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
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

pub fn recv(addr: &str, dur: Duration) -> Res {
    runtime()?.block_on(async {
        let s = tokio::net::UdpSocket::bind(addr).await?;
        set_receive_buffer(&s, RCVBUF)?;
        println!("Started tokio bulk receiver at {}", s.local_addr()?);
        let mut buf = vec![0u8; 65_536];
        let (len, _) = s.recv_from(&mut buf).await?;
        let mut c = Counter::start(1, len);
        // One timer for the whole run (a timeout per receive would cost tokio a timer each);
        // the idle limit is checked against it.
        let deadline = tokio::time::sleep(dur);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = tokio::time::timeout(IDLE, s.recv_from(&mut buf)) => match r {
                    Ok(r) => c.add(1, r?.0),
                    Err(_) => break,
                },
                _ = &mut deadline => break,
            }
        }
        c.report();
        Ok(())
    })
}

pub fn send(addr: &str, dur: Duration, size: usize, flows: usize) -> Res {
    runtime()?.block_on(async {
        let to: std::net::SocketAddr = addr.parse()?;
        let mut socks = Vec::new();
        for _ in 0..flows {
            socks.push(tokio::net::UdpSocket::bind(local_for(&to)).await?);
        }
        let buf = vec![0x5au8; size];
        let per = per_send(size);
        let (cpu0, start) = (cpu_time(), Instant::now());
        let mut sent = 0u64;
        while start.elapsed() < dur {
            for s in &socks {
                for _ in 0..per {
                    s.send_to(&buf, to).await?;
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
        let s = tokio::net::UdpSocket::bind(addr).await?;
        set_receive_buffer(&s, RCVBUF)?;
        println!("Started tokio bulk echo at {}", s.local_addr()?);
        let mut buf = vec![0u8; 65_536];
        loop {
            let (len, from) = s.recv_from(&mut buf).await?;
            // A sender that went away is no reason to stop.
            drop(s.send_to(&buf[..len], from).await);
        }
    })
}
