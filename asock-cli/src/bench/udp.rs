//! The UDP connection drivers: ping-pong, and stream (datagrams back to back, up to a window in
//! flight, every echo verified; loss and reordering counted, since UDP promises neither).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use asock::{a_socket, ConnectedDatagramSocket};

use super::driver::Conn;
use super::stats::record;

/// Each stream datagram starts with its sequence number (8 bytes, big-endian); the rest is the
/// pattern's message for that number.
pub const SEQ_LEN: usize = 8;
/// A stream connection waiting this long for an echo gives up on what it has in flight.
const SILENCE: Duration = Duration::from_millis(200);
/// The most datagrams one stream send carries (the kernel's GSO segment limit).
const PER_SEND: usize = 64;

async fn connect(c: &Conn) -> Result<ConnectedDatagramSocket, String> {
    a_socket(&c.selector)
        .udp()
        .receive_buffer_size(4 << 20)
        .connect(c.addr, None)
        .await
        .map_err(|e| format!("connect {}: {e}", c.addr))
}

/// Ping-pong over a connected UDP socket: one datagram out, the same datagram back.
pub async fn pingpong(c: Conn) -> Result<(), String> {
    let socket = connect(&c).await?;
    c.shared.connected.fetch_add(1, Ordering::Relaxed);
    let mut k = 0u64;
    let mut lost = 0u64;
    while !c.done(k) {
        let msg = c.pattern.message(c.id, k);
        let start = Instant::now();
        socket
            .send_packet(msg)
            .await
            .map_err(|e| format!("send: {e}"))?;
        loop {
            match asock::time::timeout(Duration::from_secs(1), socket.receive()).await {
                Ok(Ok(d)) if d.packet[..] == *msg => {
                    record(start, msg.len(), &c.shared.phase);
                    break;
                }
                // A late reply to a datagram given up on: skip it.
                Ok(Ok(d)) if lost > 0 && d.packet.len() == msg.len() => {}
                Ok(Ok(d)) => {
                    return Err(format!(
                        "echo mismatch: a {}-byte datagram for a {}-byte message",
                        d.packet.len(),
                        msg.len()
                    ))
                }
                Ok(Err(e)) => return Err(format!("receive: {e}")),
                Err(_) => {
                    lost += 1;
                    c.shared
                        .fail(format!("no reply to a datagram within 1 s ({lost} so far)"));
                    break;
                }
            }
        }
        k += 1;
    }
    Ok(())
}

/// Datagram `seq` of connection `c`: its sequence number, then the pattern's message.
fn datagram(c: &Conn, seq: u64, out: &mut Vec<u8>) {
    let msg = c.pattern.message(c.id, seq);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&msg[SEQ_LEN..]);
}

/// Checks one echoed datagram; returns its sequence number.
fn verify(c: &Conn, packet: &[u8], size: usize, sent: u64) -> Result<u64, String> {
    if packet.len() != size {
        return Err(format!(
            "echo mismatch: a {}-byte datagram for {size}-byte ones",
            packet.len()
        ));
    }
    let seq = u64::from_be_bytes(packet[..SEQ_LEN].try_into().expect("8 bytes"));
    if seq >= sent {
        return Err(format!(
            "echo mismatch: sequence number {seq}, but only {sent} datagrams were sent"
        ));
    }
    let msg = c.pattern.message(c.id, seq);
    if packet[SEQ_LEN..] != msg[SEQ_LEN..] {
        return Err(format!("echo mismatch in the payload of datagram {seq}"));
    }
    Ok(seq)
}

/// Stream over a connected UDP socket: datagrams of the pattern's size back to back, in sends
/// of up to 64 (one GSO send where the kernel has it), at most `c.window` in flight; echoes
/// are taken a kernel buffer at a time (`receive_batch`, whole GRO buffers) and each one is
/// verified (length, sequence number, payload). A latency is a datagram's send to its echo.
/// Silence for 200 ms gives up on what is in flight (counted lost at the end: sent minus
/// echoed). When the run ends, the connection stops sending and waits for what is in flight.
pub async fn stream(c: Conn) -> Result<(), String> {
    let socket = connect(&c).await?;
    let to = socket.remote_address().clone();
    c.shared.connected.fetch_add(1, Ordering::Relaxed);
    let size = c.pattern.variants[0].len();
    let window = c.window.max(1);
    // When each datagram still in flight left, by sequence number modulo the ring.
    let ring = (window * 4).next_power_of_two();
    let mut sent_at = vec![Instant::now(); ring];
    let counts = &c.shared.udp;
    let (mut sent, mut echoed, mut given_up, mut highest) = (0u64, 0u64, 0u64, None::<u64>);
    loop {
        let in_flight = sent.saturating_sub(echoed + given_up) as usize;
        let sending = !c.done(sent);
        if !sending && in_flight == 0 {
            break;
        }
        if sending && in_flight < window {
            let quota = c.quota.map_or(u64::MAX, |q| q - sent);
            let n = (window - in_flight)
                .min(PER_SEND)
                .min(quota as usize)
                .max(1);
            let mut buf = Vec::with_capacity(n * size);
            for i in 0..n as u64 {
                datagram(&c, sent + i, &mut buf);
            }
            let now = Instant::now();
            for i in 0..n as u64 {
                sent_at[((sent + i) as usize) & (ring - 1)] = now;
            }
            socket
                .send_batch(to.clone(), size, buf.into())
                .await
                .map_err(|e| format!("send: {e}"))?;
            sent += n as u64;
            counts.sent.fetch_add(n as u64, Ordering::Relaxed);
            // Keep the window full before waiting for echoes.
            continue;
        }
        match asock::time::timeout(SILENCE, socket.receive_batch()).await {
            Ok(Ok(b)) => {
                for packet in b.packets() {
                    let seq = verify(&c, &packet, size, sent)?;
                    if highest.is_some_and(|h| seq < h) {
                        counts.reordered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        highest = Some(seq);
                    }
                    record(sent_at[(seq as usize) & (ring - 1)], size, &c.shared.phase);
                    echoed += 1;
                    counts.echoed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Err(e)) => return Err(format!("receive: {e}")),
            // Silence: what is in flight is taken as lost, and the window opens again.
            Err(_) => given_up = sent.saturating_sub(echoed),
        }
    }
    Ok(())
}
