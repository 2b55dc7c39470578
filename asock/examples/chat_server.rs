//! A line-based chat server: every line a client sends goes to all the others, prefixed with
//! the sender's nick name; joins, leaves and nick changes are announced.
//!
//! ```text
//! cargo run --example chat_server -- 127.0.0.1:4000
//! nc 127.0.0.1 4000        # in two or more other terminals; the first line is your nick
//! ```
//!
//! Commands: `/nick NEW` renames you, `/who` lists who is here, `/quit` leaves. Each client has
//! one reader (its connection task) and one writer task fed by a bounded queue: a client too
//! slow to keep up loses messages instead of slowing the room or growing the server's memory.
//! `tests/examples.rs` drives it with several `nc` clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use asock::{a_socket, SelectorManager, ServerSocket, Socket};
use futures::channel::mpsc;
use futures::StreamExt;

/// Messages queued per client before its messages are dropped.
const QUEUE: usize = 256;
/// The longest line a client may send.
const MAX_LINE: usize = 4096;
/// The longest nick name.
const MAX_NICK: usize = 32;

/// Everyone who is in the room.
#[derive(Default)]
struct Room {
    next_id: u64,
    members: HashMap<u64, Member>,
}

struct Member {
    nick: String,
    queue: mpsc::Sender<Arc<str>>,
}

type Shared = Arc<Mutex<Room>>;

fn lock(room: &Shared) -> std::sync::MutexGuard<'_, Room> {
    // A panic elsewhere must not take the whole room down.
    room.lock().unwrap_or_else(|e| e.into_inner())
}

impl Room {
    /// Sends `text` to every member but `except`. A full queue drops the message for that
    /// member only.
    fn broadcast(&mut self, except: Option<u64>, text: &str) {
        let msg: Arc<str> = Arc::from(format!("{text}\n"));
        for (id, m) in self.members.iter_mut() {
            if Some(*id) != except {
                let _ = m.queue.try_send(msg.clone());
            }
        }
    }

    fn nick_taken(&self, nick: &str) -> bool {
        self.members.values().any(|m| m.nick == nick)
    }

    fn who(&self) -> String {
        let mut nicks: Vec<&str> = self.members.values().map(|m| m.nick.as_str()).collect();
        nicks.sort_unstable();
        nicks.join(", ")
    }
}

fn valid_nick(nick: &str) -> Result<(), &'static str> {
    if nick.is_empty() || nick.len() > MAX_NICK {
        return Err("a nick has 1 to 32 characters");
    }
    if !nick
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err("a nick has only letters, digits, '_' and '-'");
    }
    Ok(())
}

/// Accepts clients until the server socket is closed.
pub async fn serve(selector: SelectorManager, server: ServerSocket) -> asock::Result<()> {
    let room: Shared = Arc::default();
    loop {
        let socket = match server.accept().await {
            Ok(s) => s,
            Err(asock::Error::Closed(_)) => return Ok(()),
            // Out of descriptors and the like: keep serving the others.
            Err(e) => {
                eprintln!("accept: {e}");
                asock::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (room, sel) = (room.clone(), selector.clone());
        selector.launch(async move {
            if let Err(e) = client(sel, room, socket).await {
                eprintln!("client: {e}");
            }
        });
    }
}

async fn client(selector: SelectorManager, room: Shared, socket: Socket) -> asock::Result<()> {
    let mut input = socket.open_read_channel();
    input.set_max_line_length(MAX_LINE);
    let mut output = socket.open_write_channel(true);
    let (tx, mut rx) = mpsc::channel::<Arc<str>>(QUEUE);
    // The writer: drains this client's queue; ends when the queue's senders are gone.
    selector.launch(async move {
        while let Some(msg) = rx.next().await {
            if output.write_str(&msg).await.is_err() {
                return;
            }
        }
        let _ = output.close().await;
    });
    let mut me = tx.clone();
    let mut say = |text: String| {
        let _ = me.try_send(Arc::from(format!("{text}\n")));
    };

    // Ask for a nick until a free, valid one comes.
    say("Welcome to asock chat! Your nick?".to_string());
    let (id, mut nick) = loop {
        let Some(line) = read_line(&mut input, &mut say).await? else {
            return Ok(()); // left before choosing a nick
        };
        let nick = line.trim().to_string();
        if let Err(why) = valid_nick(&nick) {
            say(format!("* {why}; your nick?"));
            continue;
        }
        let mut room = lock(&room);
        if room.nick_taken(&nick) {
            drop(room);
            say(format!("* {nick} is taken; your nick?"));
            continue;
        }
        room.next_id += 1;
        let id = room.next_id;
        room.broadcast(None, &format!("* {nick} joined"));
        room.members.insert(
            id,
            Member {
                nick: nick.clone(),
                queue: tx.clone(),
            },
        );
        let who = room.who();
        drop(room);
        say(format!("* you are {nick}; here: {who}"));
        break (id, nick);
    };
    drop(tx); // the room holds our queue's sender now

    while let Some(line) = read_line(&mut input, &mut say).await? {
        let line = line.trim_end();
        if line == "/quit" {
            break;
        } else if line == "/who" {
            let who = lock(&room).who();
            say(format!("* here: {who}"));
        } else if let Some(new) = line.strip_prefix("/nick ") {
            let new = new.trim().to_string();
            if let Err(why) = valid_nick(&new) {
                say(format!("* {why}"));
                continue;
            }
            let mut room = lock(&room);
            if room.nick_taken(&new) {
                drop(room);
                say(format!("* {new} is taken"));
                continue;
            }
            if let Some(m) = room.members.get_mut(&id) {
                m.nick = new.clone();
            }
            room.broadcast(None, &format!("* {nick} is now {new}"));
            nick = new;
        } else if !line.is_empty() {
            lock(&room).broadcast(Some(id), &format!("<{nick}> {line}"));
        }
    }
    let mut room = lock(&room);
    room.members.remove(&id); // drops our queue: the writer finishes and closes
    room.broadcast(None, &format!("* {nick} left"));
    Ok(())
}

/// Reads a line; a line that is too long or not UTF-8 is answered and skipped, and any other
/// error ends the client (as end of stream).
async fn read_line(
    input: &mut asock::ByteReadChannel,
    say: &mut impl FnMut(String),
) -> asock::Result<Option<String>> {
    loop {
        match input.read_utf8_line().await {
            Ok(line) => return Ok(line),
            Err(asock::Error::InvalidUtf8 { .. }) => say("* that line was not UTF-8".into()),
            Err(asock::Error::LineTooLong { limit }) => {
                say(format!("* lines are limited to {limit} bytes; bye"));
                return Ok(None);
            }
            Err(_) => return Ok(None), // reset, timeout: the client is gone
        }
    }
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
        .unwrap_or_else(|| "127.0.0.1:4000".to_string());
    let selector = SelectorManager::new()?;
    selector.run_blocking(async {
        let server = a_socket(&selector).tcp().bind(addr.as_str()).await?;
        println!("Chat server listening on {}", server.local_address());
        serve(selector.clone(), server).await
    })
}
