//! A Redis client speaking RESP (the Redis serialization protocol) over an asock TCP socket:
//! `PING`, `SET`, `GET`, and a pipeline of many commands sent in one write.
//!
//! Start a server (`redis-server --port 6379 --save '' --appendonly no`), then:
//!
//! ```text
//! cargo run --example redis_client -- 127.0.0.1:6379
//! ```
//!
//! The [`Redis`] type is small on purpose: it shows how `ByteReadChannel`'s `read_line` and
//! `read_exact`, and `ByteWriteChannel`'s buffering plus one `flush`, map onto a real wire
//! protocol. `tests/examples.rs` runs it against a real `redis-server`.

use asock::{a_socket, ByteReadChannel, ByteWriteChannel, SelectorManager, ToSocketAddress};

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: an error reply from the server (the connection stays usable).
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$5\r\nhello`; `None` is the null bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`; `None` is the null array `*-1`.
    Array(Option<Vec<Reply>>),
}

/// What one header line starts.
enum Item {
    /// A complete reply.
    Reply(Reply),
    /// An array of this many replies, which follow.
    ArrayOf(usize),
}

/// The largest bulk string or array this client accepts (a guard against a hostile server).
const MAX_LEN: i64 = 64 << 20;

/// A connection to a Redis server.
pub struct Redis {
    input: ByteReadChannel,
    output: ByteWriteChannel,
}

impl Redis {
    /// Connects to `addr` (e.g. `"127.0.0.1:6379"`).
    pub async fn connect(
        selector: &SelectorManager,
        addr: impl ToSocketAddress,
    ) -> asock::Result<Redis> {
        let socket = a_socket(selector).tcp().connect(addr).await?;
        // No auto-flush: commands are buffered and sent by `flush`, so a pipeline is one write.
        let conn = socket.connection(false);
        Ok(Redis {
            input: conn.input,
            output: conn.output,
        })
    }

    /// Queues one command (an array of bulk strings) without sending it.
    pub async fn queue(&mut self, args: &[&[u8]]) -> asock::Result<()> {
        self.output
            .write_str(&format!("*{}\r\n", args.len()))
            .await?;
        for arg in args {
            self.output
                .write_str(&format!("${}\r\n", arg.len()))
                .await?;
            self.output.write_fully(arg).await?;
            self.output.write_fully(b"\r\n").await?;
        }
        Ok(())
    }

    /// Sends one command and reads its reply.
    pub async fn command(&mut self, args: &[&[u8]]) -> asock::Result<Reply> {
        self.queue(args).await?;
        self.output.flush().await?;
        self.read_reply().await
    }

    /// Sends all `commands` in one write (pipelining), then reads their replies in order.
    pub async fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> asock::Result<Vec<Reply>> {
        for cmd in commands {
            let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
            self.queue(&args).await?;
        }
        self.output.flush().await?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(self.read_reply().await?);
        }
        Ok(replies)
    }

    /// Reads one reply.
    pub async fn read_reply(&mut self) -> asock::Result<Reply> {
        // Arrays nest: walk them with an explicit stack instead of recursion in an async fn.
        let mut stack: Vec<(usize, Vec<Reply>)> = Vec::new();
        loop {
            let mut reply = match self.read_item().await? {
                Item::Reply(reply) => reply,
                Item::ArrayOf(n) => {
                    stack.push((n, Vec::with_capacity(n.min(1024))));
                    continue;
                }
            };
            // `reply` is complete: fold it into the arrays it completes.
            loop {
                let Some((want, items)) = stack.last_mut() else {
                    return Ok(reply);
                };
                items.push(reply);
                if items.len() < *want {
                    break;
                }
                let Some((_, items)) = stack.pop() else {
                    unreachable!("the stack has an element: last_mut returned one")
                };
                reply = Reply::Array(Some(items));
            }
        }
    }

    /// Reads a complete scalar reply, or the header of a non-empty array.
    async fn read_item(&mut self) -> asock::Result<Item> {
        let line = match self.input.read_utf8_line().await? {
            Some(line) => line,
            None => return Err(protocol("connection closed by the server")),
        };
        let (kind, rest) = line.split_at(line.len().min(1));
        let number = || -> asock::Result<i64> {
            rest.parse()
                .map_err(|_| protocol(&format!("bad number in {line:?}")))
        };
        Ok(Item::Reply(match kind {
            "+" => Reply::Simple(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Integer(number()?),
            "$" => match number()? {
                -1 => Reply::Bulk(None),
                n if (0..=MAX_LEN).contains(&n) => {
                    let mut data = self.input.read_bytes(n as usize + 2).await?;
                    if !data.ends_with(b"\r\n") {
                        return Err(protocol("bulk string not followed by CRLF"));
                    }
                    data.truncate(n as usize);
                    Reply::Bulk(Some(data))
                }
                n => return Err(protocol(&format!("bad bulk length {n}"))),
            },
            "*" => match number()? {
                -1 => Reply::Array(None),
                0 => Reply::Array(Some(Vec::new())),
                n if (1..=MAX_LEN).contains(&n) => return Ok(Item::ArrayOf(n as usize)),
                n => return Err(protocol(&format!("bad array length {n}"))),
            },
            _ => return Err(protocol(&format!("unknown reply {line:?}"))),
        }))
    }

    /// Says `QUIT` and closes the connection.
    pub async fn quit(mut self) -> asock::Result<()> {
        let reply = self.command(&[b"QUIT"]).await?;
        self.output.close().await?;
        match reply {
            Reply::Simple(_) => Ok(()),
            other => Err(protocol(&format!("unexpected reply to QUIT: {other:?}"))),
        }
    }
}

fn protocol(msg: &str) -> asock::Error {
    asock::Error::Io {
        op: "RESP",
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string()),
    }
}

/// The demo `main` runs: PING, SET/GET, a pipeline of 100 INCRs, and prints what it sees.
pub async fn demo(
    selector: &SelectorManager,
    addr: impl ToSocketAddress,
) -> asock::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut redis = Redis::connect(selector, addr).await?;
    out.push(format!("PING -> {:?}", redis.command(&[b"PING"]).await?));
    out.push(format!(
        "SET greeting -> {:?}",
        redis
            .command(&[b"SET", b"greeting", b"hello from asock"])
            .await?
    ));
    let got = redis.command(&[b"GET", b"greeting"]).await?;
    if let Reply::Bulk(Some(v)) = &got {
        out.push(format!("GET greeting -> {:?}", String::from_utf8_lossy(v)));
    } else {
        out.push(format!("GET greeting -> {got:?}"));
    }
    redis.command(&[b"DEL", b"counter"]).await?;
    let incrs: Vec<Vec<Vec<u8>>> = (0..100)
        .map(|_| vec![b"INCR".to_vec(), b"counter".to_vec()])
        .collect();
    let replies = redis.pipeline(&incrs).await?;
    out.push(format!(
        "pipelined 100 x INCR counter -> last reply {:?}",
        replies.last()
    ));
    redis.quit().await?;
    Ok(out)
}

#[allow(dead_code)] // `main` is unused when tests include this file as a module
fn main() -> std::process::ExitCode {
    // One readable line, not the `Debug` dump a `main` returning `Result` prints.
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> asock::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6379".to_string());
    let selector = SelectorManager::builder().threads(1).build()?;
    let lines = selector.run_blocking(demo(&selector, addr))?;
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
