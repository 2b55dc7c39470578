//! `--help` with examples on every command, shell completions, and `-v`/`-q` logging through
//! tracing without colour when stderr is not a terminal.
//! Everything on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_asock");

const COMMANDS: [&str; 6] = [
    "echo-server",
    "connect",
    "listen",
    "bench",
    "cert",
    "completions",
];

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run asock")
}

#[test]
fn every_command_has_help_with_examples() {
    let top = run(&["--help"]);
    assert!(top.status.success());
    let top = String::from_utf8(top.stdout).unwrap();
    assert!(top.contains("Examples:"), "{top}");
    for cmd in COMMANDS {
        assert!(top.contains(cmd), "top-level help does not list {cmd}");
        let out = run(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help failed");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(
            help.contains("Examples:"),
            "{cmd} --help has no examples:\n{help}"
        );
        assert!(
            help.contains(&format!("asock {cmd}")),
            "{cmd} --help has no example of itself:\n{help}"
        );
    }
}

#[test]
fn shell_completions() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F _asock"),
        ("zsh", "#compdef asock"),
        ("fish", "complete -c asock"),
    ] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "completions {shell} failed");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for cmd in COMMANDS {
            assert!(script.contains(cmd), "{shell} completions lack {cmd}");
        }
        if shell == "bash" {
            // The script parses.
            let path = dir.path().join("asock.bash");
            std::fs::write(&path, &script).unwrap();
            let check = Command::new("bash").arg("-n").arg(&path).status().unwrap();
            assert!(check.success(), "bash -n rejects the completion script");
        }
    }
    // An unknown shell is a usage error (exit 2).
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2));
}

/// Runs `asock [flags] echo-server 127.0.0.1:0`, makes one connection that echoes a line and
/// closes, stops the server with SIGTERM and returns its stderr.
fn echo_server_stderr(flags: &[&str]) -> String {
    let mut child: Child = Command::new(BIN)
        .args(flags)
        .args(["echo-server", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start asock");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port: u16 = first.trim().rsplit(':').next().unwrap().parse().unwrap();
    {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"ping\n").unwrap();
        let mut back = [0u8; 6];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping\r\n");
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest); // the server closes after our half-close
    }
    // Give the server a moment to log the close, then stop it.
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("echo-server did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

#[test]
fn verbose_logs_connections_and_quiet_does_not() {
    let verbose = echo_server_stderr(&["-v"]);
    assert!(verbose.contains("Socket accepted: 127.0.0.1:"), "{verbose}");
    assert!(verbose.contains("INFO"), "{verbose}");
    // stderr is a pipe here: no colour escapes.
    assert!(!verbose.contains('\x1b'), "colour on a pipe: {verbose:?}");

    let default = echo_server_stderr(&[]);
    assert!(!default.contains("Socket accepted"), "{default}");
    let quiet = echo_server_stderr(&["-q"]);
    assert!(!quiet.contains("Socket accepted"), "{quiet}");
    assert!(
        !quiet.contains("INFO") && !quiet.contains("WARN"),
        "{quiet}"
    );
    // -v and -q together are a usage error.
    assert_eq!(
        run(&["-v", "-q", "completions", "bash"]).status.code(),
        Some(2)
    );
}

/// Runs `asock FLAGS echo-server --max-line 10 127.0.0.1:0`, sends `clients` connections that
/// each send a line too long (ending their connection with an error) and one that resets,
/// waits `settle`, stops the server with SIGTERM and returns its stderr.
fn per_connection_errors(flags: &[&str], clients: usize, settle: Duration) -> String {
    let mut child: Child = Command::new(BIN)
        .args(flags)
        .args(["echo-server", "--max-line", "10", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start asock");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port: u16 = first.trim().rsplit(':').next().unwrap().parse().unwrap();
    for _ in 0..clients {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"this line is longer than ten bytes\n")
            .unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest); // the server closes it
    }
    // One reset while the server reads.
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
    std::thread::sleep(settle);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "echo-server did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// The help's promise: per-connection errors each at -v; at the default level at most one
/// summary line per second however many connections fail; nothing at all at -q (the issue's
/// `asock -q echo-server --max-line 10` printed every one).
#[test]
fn per_connection_errors_follow_the_logging_levels() {
    let quiet = per_connection_errors(&["-q"], 20, Duration::from_millis(1500));
    assert_eq!(quiet, "", "-q printed: {quiet}");

    let verbose = per_connection_errors(&["-v"], 5, Duration::from_millis(300));
    assert_eq!(
        verbose.matches("line longer than 10 bytes").count(),
        5,
        "{verbose}"
    );

    let start = Instant::now();
    let default = per_connection_errors(&[], 300, Duration::from_millis(1500));
    let secs = start.elapsed().as_secs() + 1;
    let summaries = default
        .lines()
        .filter(|l| l.contains("-v shows each"))
        .count();
    eprintln!("default level: {summaries} summary line(s) over {secs} s:\n{default}");
    assert!(summaries >= 1, "{default}");
    assert!(
        summaries as u64 <= secs + 1,
        "{summaries} lines in {secs} s: {default}"
    );
    assert!(
        default.lines().count() <= summaries + 2,
        "more than the summaries and the stop message: {default}"
    );
    assert!(
        default.contains("connections ended with an error"),
        "{default}"
    );
}
