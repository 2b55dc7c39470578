//! Errors a user can act on (which thing failed and why), `bench` against a server in the other
//! mode and at Ctrl-C, and the safe defaults: help examples on 127.0.0.1 with unprivileged
//! ports, `--tls-self-signed` in a private directory, `cert` that does not overwrite a CA.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use asock_test_support::{kill, wait_output};
use support::{Server, BIN};

fn asock(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run asock")
}

/// The one `error: ...` line of a failed run (exit 1).
fn error_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    err.trim().to_string()
}

fn certs(dir: &Path) {
    assert!(asock(&["cert", "--out", dir.to_str().unwrap()])
        .status
        .success());
}

#[test]
fn a_privileged_port_says_so() {
    // Tests run as root here: drop to nobody for this one child.
    let mut cmd = Command::new(BIN);
    cmd.args(["echo-server", "127.0.0.1:80"])
        .stdin(Stdio::null());
    // SAFETY: runs in the forked child before exec; setgid/setuid are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::getuid() == 0 && (libc::setgid(65534) != 0 || libc::setuid(65534) != 0) {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let e = error_line(&out);
    assert!(e.contains("127.0.0.1:80"), "{e}");
    assert!(e.contains("permission denied"), "{e}");
    assert!(e.contains("below 1024"), "{e}");
}

#[test]
fn a_port_out_of_range_is_named() {
    for args in [
        &["connect", "127.0.0.1:99999"][..],
        &["echo-server", "127.0.0.1:99999"],
        &["listen", "127.0.0.1:99999"],
    ] {
        let e = error_line(&asock(args));
        assert!(e.contains("port 99999 is out of range (0-65535)"), "{e}");
    }
}

#[test]
fn bad_key_ca_and_mismatched_files_are_named() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    certs(a.path());
    certs(b.path());
    let junk = a.path().join("junk.pem");
    std::fs::write(&junk, "not a PEM file\n").unwrap();
    let (cert, key) = (a.path().join("server.pem"), a.path().join("server.key"));
    let s = |p: &Path| p.to_str().unwrap().to_string();

    let e = error_line(&asock(&[
        "echo-server",
        "127.0.0.1:0",
        "--tls-cert",
        &s(&cert),
        "--tls-key",
        &s(&junk),
    ]));
    assert!(e.contains(&s(&junk)) && e.contains("private key"), "{e}");

    let e = error_line(&asock(&[
        "echo-server",
        "127.0.0.1:0",
        "--tls-cert",
        &s(&junk),
        "--tls-key",
        &s(&key),
    ]));
    assert!(e.contains(&s(&junk)) && e.contains("no certificate"), "{e}");

    let e = error_line(&asock(&[
        "connect",
        "--tls",
        "--ca",
        &s(&junk),
        "127.0.0.1:9",
    ]));
    assert!(e.contains(&s(&junk)) && e.contains("CA file"), "{e}");

    let other_key = b.path().join("server.key");
    let e = error_line(&asock(&[
        "listen",
        "127.0.0.1:0",
        "--tls-cert",
        &s(&cert),
        "--tls-key",
        &s(&other_key),
    ]));
    assert!(e.contains("does not match"), "{e}");
    assert!(e.contains(&s(&other_key)) && e.contains(&s(&cert)), "{e}");
    assert!(!e.contains("KeyMismatch"), "{e}");
}

#[test]
fn cert_does_not_overwrite_a_ca_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    certs(dir.path());
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let e = error_line(&asock(&["cert", "--out", d]));
    assert!(e.contains("already exists") && e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca);
    assert!(asock(&["cert", "--out", d, "--force"]).status.success());
    assert_ne!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca);
}

#[test]
fn self_signed_uses_a_private_directory_and_cleans_up() {
    let mut server = Server::start(&["--tls-self-signed"], None);
    let ca = server.lines[1].rsplit(' ').next().unwrap().to_string();
    let dir = Path::new(&ca).parent().unwrap().to_path_buf();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("asock-tls-"), "{name}");
    assert!(
        !name.ends_with(&server.pid().to_string()),
        "predictable name {name}"
    );
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{dir:?}");
    assert!(Path::new(&ca).exists());
    assert!(
        !dir.join("server.key").exists(),
        "the key stays on disk while the server runs"
    );
    server.signal(libc::SIGTERM);
    let (status, _) = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(!dir.exists(), "{dir:?} left behind");
}

#[test]
fn help_examples_bind_loopback_and_unprivileged_ports() {
    for cmd in ["echo-server", "bench", "listen", "connect"] {
        let help = String::from_utf8(asock(&[cmd, "--help"]).stdout).unwrap();
        let examples = &help[help.find("Examples:").expect("examples")..];
        assert!(!examples.contains("0.0.0.0"), "{cmd}: {examples}");
        for word in examples.split_whitespace() {
            if let Some((_, port)) = word.rsplit_once(':') {
                if let Ok(p) = port.parse::<u16>() {
                    assert!(p == 0 || p >= 1024, "{cmd}: privileged port in {word}");
                }
            }
        }
    }
}

/// `bench` without `--lines` against a line echo server: it says what probably happened, and
/// does not wait the full drain limit (the 2-second run took 13 s).
#[test]
fn bench_against_a_line_server_without_lines_explains() {
    let server = Server::start(&[], None);
    let addr = format!("127.0.0.1:{}", server.port);
    let t0 = Instant::now();
    let out = asock(&["bench", &addr, "-d", "1", "-w", "0.2"]);
    let took = t0.elapsed();
    let e = error_line(&out);
    assert!(e.contains("--lines"), "{e}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
}

/// Ctrl-C during a run prints the summary of what was measured so far, then exits 130.
#[test]
fn bench_at_ctrl_c_prints_what_it_measured() {
    let server = Server::start(&["--raw"], None);
    let addr = format!("127.0.0.1:{}", server.port);
    let mut child = Command::new(BIN)
        .args(["bench", &addr, "-d", "60", "-w", "0.2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = Instant::now();
    kill(&child, libc::SIGINT);
    let _ = &mut child;
    let (code, out, err) = wait_output(child, Duration::from_secs(10));
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, Some(130), "{out} {err}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let line = BufReader::new(out.as_bytes())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("msgs_per_s="))
        .unwrap_or_else(|| panic!("no summary: {out}"));
    let msgs: u64 = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("msgs="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(msgs > 0, "{line}");
    assert!(line.contains("client_cpu_us_per_msg="), "{line}");
}
