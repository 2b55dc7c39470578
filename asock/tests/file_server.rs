//! The `file_server` example (its own code, included as a module) against plain std clients
//! and `nc`: whole files byte-exact, pipelined requests, refused names.

#[allow(dead_code)]
#[path = "../examples/file_server.rs"]
mod file_server;

use asock_test_support as common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use asock::a_socket;

fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 253) as u8).collect()
}

#[test]
fn serves_files_and_refuses_names_outside_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let big = content(20 << 20);
    std::fs::write(dir.path().join("big.bin"), &big).unwrap();
    std::fs::write(dir.path().join("empty"), b"").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let sel = common::selector();
    let server = sel
        .run_blocking(a_socket(&sel).tcp().bind("127.0.0.1:0"))
        .unwrap();
    let addr = server.local_address().to_string();
    let root = dir.path().to_path_buf();
    let sel2 = sel.clone();
    sel.launch(async move { file_server::serve(&sel2, server, root).await });

    let s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    // Pipelined: all requests first, then the answers in order.
    w.write_all(
        b"GET big.bin\nGET empty\nGET ../etc/passwd\nGET sub\nGET missing\nPUT x\nGET big.bin\n",
    )
    .unwrap();
    w.shutdown(std::net::Shutdown::Write).unwrap();
    let mut line = String::new();
    let mut next_line = |r: &mut BufReader<TcpStream>| {
        line.clear();
        r.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    };
    for round in 0..2 {
        if round == 1 {
            for want in ["ERR not a plain file name", "ERR not a regular file"] {
                assert_eq!(next_line(&mut r), want);
            }
            assert!(next_line(&mut r).starts_with("ERR "), "missing file");
            assert_eq!(next_line(&mut r), "ERR expected: GET name");
        }
        assert_eq!(next_line(&mut r), format!("OK {}", big.len()));
        let mut got = vec![0u8; big.len()];
        r.read_exact(&mut got).unwrap();
        assert!(got == big, "file bytes, exactly");
        if round == 0 {
            assert_eq!(next_line(&mut r), "OK 0");
        }
    }
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "then the server closes");

    // nc as the client: a request, then EOF (-N), and the answer.
    let mut nc = Command::new("nc")
        .args(["-N", "127.0.0.1", addr.rsplit(':').next().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("nc is needed for this test");
    nc.stdin
        .take()
        .unwrap()
        .write_all(b"GET big.bin\n")
        .unwrap();
    let out = nc.wait_with_output().unwrap();
    let header = format!("OK {}\n", big.len());
    assert!(out.stdout.starts_with(header.as_bytes()));
    assert!(out.stdout[header.len()..] == big[..]);
}
