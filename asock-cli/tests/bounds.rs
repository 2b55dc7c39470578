//! `echo-server`'s bound flags: `--max-connections`, `--max-memory`, `--idle-timeout 0`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn asock() -> Command {
    Command::new(env!("CARGO_BIN_EXE_asock"))
}

#[test]
fn bad_bounds_are_refused_with_one_line() {
    for (args, want) in [
        (&["--max-connections", "0"][..], "--max-connections"),
        (&["--max-memory", "lots"][..], "invalid size"),
    ] {
        let out = asock()
            .arg("echo-server")
            .args(args)
            .arg("127.0.0.1:0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn help_states_the_defaults() {
    let out = asock().args(["echo-server", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("[default: 4096]"), "{help}");
    assert!(help.contains("[default: 512M]"), "{help}");
    assert!(help.contains("0: never"), "{help}");
}

#[test]
fn idle_timeout_zero_means_none_and_a_capped_server_serves_within_its_cap() {
    let mut child = asock()
        .args([
            "echo-server",
            "--idle-timeout",
            "0",
            "--max-connections",
            "1",
            "--max-memory",
            "64M",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first.split_whitespace().last().unwrap().to_string();
    let mut a = TcpStream::connect(&addr).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    a.write_all(b"one\n").unwrap();
    let mut buf = [0u8; 5];
    a.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"one\r\n");
    // A second client waits in the backlog while the first is open...
    let mut b = TcpStream::connect(&addr).unwrap();
    b.write_all(b"two\n").unwrap();
    b.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(b.read(&mut buf).is_err(), "served past --max-connections 1");
    // ...and is served once it closes.
    drop(a);
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two\r\n");
    child.kill().unwrap();
    child.wait().unwrap();
}
