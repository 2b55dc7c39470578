//! UDP segmentation and receive offload (GSO/GRO) on loopback: a bulk echo of QUIC-sized
//! datagrams. A client sends rounds of datagrams with one `send_batch` each (on Linux one system
//! call and one trip through the stack for the whole round); an echo server takes each kernel
//! buffer whole with `receive_batch` (with GRO, the round as one buffer) and sends it back with
//! one `send_batch`; the client checks every datagram and counts the buffers it took.
//!
//! ```text
//! cargo run --release --example udp_gso                  # 2,000 rounds of 1,200 B datagrams
//! cargo run --release --example udp_gso -- 500 1400 --no-offload
//! ```
//!
//! Arguments: [ROUNDS [SIZE]] [--no-offload] (GSO and GRO off: one datagram per kernel buffer,
//! `sendmmsg` sends). Loopback only: nothing leaves this host. `tests/examples.rs` runs it with
//! offload on and off and checks the counts.

use std::time::{Duration, Instant};

use asock::{a_socket, Datagram, Error, SelectorManager};

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Datagrams echoed and checked.
    pub datagrams: usize,
    /// Payload bytes echoed.
    pub bytes: usize,
    /// Kernel buffers the client took them from (fewer than `datagrams` when GRO coalesced).
    pub buffers: usize,
    /// Whether the client's socket sent with GSO.
    pub gso: bool,
}

/// Datagrams per round: as many `size`-byte datagrams as one UDP payload (65,507 bytes) and the
/// kernel's 64-segment limit allow.
pub fn per_round(size: usize) -> usize {
    (Datagram::MAX_IPV4_PAYLOAD / size.max(1)).clamp(1, 64)
}

/// The byte datagram `i` of round `round` is filled with.
fn fill(round: usize, i: usize) -> u8 {
    (round * 7 + i) as u8
}

/// Runs `rounds` rounds of `size`-byte datagrams through a bulk echo on 127.0.0.1, with
/// GSO/GRO on (`offload`) or off.
pub async fn run(
    selector: &SelectorManager,
    rounds: usize,
    size: usize,
    offload: bool,
) -> asock::Result<Summary> {
    let udp = || {
        a_socket(selector)
            .udp()
            .gso(offload)
            .gro(offload)
            .receive_buffer_size(1 << 20)
    };
    let server = udp().bind("127.0.0.1:0").await?;
    let client = udp().bind("127.0.0.1:0").await?;
    let to = server.local_address().clone();

    // The echo: each kernel buffer back whole, as one send.
    let echo = selector.launch(async move {
        loop {
            let (buffer, segment, from) = match server.receive_batch().await {
                Ok(batch) => batch.into_parts(),
                Err(Error::Closed(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            if buffer.is_empty() {
                server.send(Datagram::new(buffer, from)).await?;
            } else {
                server.send_batch(from, segment, buffer).await?;
            }
        }
    });

    let per = per_round(size);
    let mut summary = Summary {
        datagrams: 0,
        bytes: 0,
        buffers: 0,
        gso: client.gso_enabled(),
    };
    client.set_socket_timeout(Some(Duration::from_secs(2)));
    for round in 0..rounds {
        let mut out = Vec::with_capacity(per * size);
        for i in 0..per {
            out.extend(std::iter::repeat_n(fill(round, i), size));
        }
        client.send_batch(to.clone(), size, out.into()).await?;
        let mut got = 0;
        while got < per {
            let batch = client.receive_batch().await?;
            summary.buffers += 1;
            for packet in batch.packets() {
                let want = fill(round, got);
                if packet.len() != size || packet.iter().any(|&b| b != want) {
                    return Err(Error::Io {
                        op: "echo check",
                        source: std::io::Error::other(format!(
                            "round {round}: datagram {got} differs"
                        )),
                    });
                }
                got += 1;
                summary.datagrams += 1;
                summary.bytes += packet.len();
            }
        }
    }
    client.close();
    echo.cancel();
    Ok(summary)
}

fn main() -> asock::Result<()> {
    let mut nums = Vec::new();
    let mut offload = true;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--no-offload" => offload = false,
            n => nums.push(n.parse::<usize>().map_err(|e| Error::Io {
                op: "arguments",
                source: std::io::Error::other(format!("{n}: {e}")),
            })?),
        }
    }
    let rounds = nums.first().copied().unwrap_or(2_000);
    let size = nums.get(1).copied().unwrap_or(1_200);
    let selector = SelectorManager::builder().threads(1).build()?;
    let start = Instant::now();
    let s = selector.run_blocking(run(&selector, rounds, size, offload))?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} datagrams of {size} B echoed in {} kernel buffers ({:.1} per buffer), GSO {}, {:.0} MB/s each way",
        s.datagrams,
        s.buffers,
        s.datagrams as f64 / s.buffers.max(1) as f64,
        if s.gso { "on" } else { "off" },
        s.bytes as f64 / secs / 1e6
    );
    Ok(())
}
