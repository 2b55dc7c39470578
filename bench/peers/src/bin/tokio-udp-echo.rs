//! Datagram echo on tokio: `tokio-udp-echo [ADDR] [--multi-thread] [--threads N]`. One task
//! receives each datagram and sends it back to its sender.

use tokio::net::UdpSocket;

fn main() {
    let args = asock_bench_peers::args("tokio-udp-echo [ADDR] [--multi-thread] [--threads N]");
    let rt = asock_bench_peers::runtime(&args);
    rt.block_on(async {
        let socket = UdpSocket::bind(&args.addr)
            .await
            .unwrap_or_else(|e| asock_bench_peers::die(format!("bind {}: {e}", args.addr)));
        let local = socket
            .local_addr()
            .unwrap_or_else(|e| asock_bench_peers::die(e));
        asock_bench_peers::announce(&format!(
            "Started tokio {} UDP echo server at {local}",
            asock_bench_peers::flavour(&args)
        ));
        let mut buf = vec![0u8; 65536];
        loop {
            if let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let _ = socket.send_to(&buf[..n], from).await;
            }
        }
    })
}
