//! A presence announcer over UDP multicast: each instance announces itself to a group every
//! interval, lists the others as they appear, notices when one says goodbye or falls silent,
//! and says goodbye itself when it stops. Loopback only (`127.0.0.1`, TTL 0): nothing leaves
//! this host.
//!
//! ```text
//! cargo run --example multicast_presence -- alice        # in one terminal
//! cargo run --example multicast_presence -- bob 5        # in another: runs 5 seconds
//! ```
//!
//! Arguments: NAME [SECONDS [GROUP:PORT]] (defaults: 30 seconds, 239.255.77.77:4777). Every
//! instance binds the group's port with `reuse_address`, so any number run side by side.
//! `tests/examples.rs` runs several in one process and checks they see each other come and go.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use asock::{a_socket, BoundDatagramSocket, Datagram, SelectorManager};

/// The default group and port.
pub const DEFAULT_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 77), 4777);

/// What an announcer saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer announced itself for the first time (or again after leaving).
    Joined(String),
    /// A peer said goodbye.
    Left(String),
    /// A peer was not heard from for three intervals.
    TimedOut(String),
}

/// One announcer's settings.
#[derive(Debug, Clone)]
pub struct Presence {
    /// The name announced.
    pub name: String,
    /// The multicast group and port.
    pub group: SocketAddrV4,
    /// Time between announcements.
    pub interval: Duration,
    /// How long to run before saying goodbye.
    pub run_for: Duration,
}

/// Joins the group on the loopback interface, announces, listens, and says goodbye at the end.
/// Calls `on_event` for each event as it happens and returns them all.
pub async fn run(
    selector: &SelectorManager,
    p: &Presence,
    mut on_event: impl FnMut(&Event),
) -> asock::Result<Vec<Event>> {
    let socket = bind(selector, p.group).await?;
    // A random-enough instance id, so two announcers with one name don't mistake each other
    // for themselves.
    let me = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ (&socket as *const _ as u128)
    );
    let hello = format!("PRESENCE HELLO {me} {}", p.name);
    let mut events = Vec::new();
    let mut seen: HashMap<String, (String, Instant)> = HashMap::new(); // id -> (name, last)
    let start = Instant::now();
    let mut next_announce = start;
    let mut emit = |e: Event, events: &mut Vec<Event>| {
        on_event(&e);
        events.push(e);
    };
    while start.elapsed() < p.run_for {
        let now = Instant::now();
        if now >= next_announce {
            socket
                .send(Datagram::new(
                    hello.clone(),
                    std::net::SocketAddr::V4(p.group),
                ))
                .await?;
            next_announce = now + p.interval;
            // Anyone silent for three intervals is gone.
            let silent: Vec<String> = seen
                .iter()
                .filter(|(_, (_, last))| now.duration_since(*last) > 3 * p.interval)
                .map(|(id, _)| id.clone())
                .collect();
            for id in silent {
                if let Some((name, _)) = seen.remove(&id) {
                    emit(Event::TimedOut(name), &mut events);
                }
            }
        }
        let wait = next_announce.saturating_duration_since(Instant::now());
        // `receive` is cancel-safe: a timeout loses no datagram.
        let d = match asock::time::timeout(wait, socket.receive()).await {
            Err(_) => continue, // time to announce
            Ok(d) => d?,
        };
        let text = String::from_utf8_lossy(&d.packet);
        let mut words = text.splitn(4, ' ');
        let (Some("PRESENCE"), Some(kind), Some(id), Some(name)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue; // not ours
        };
        if id == me {
            continue;
        }
        match kind {
            "HELLO" => {
                let fresh = seen
                    .insert(id.to_string(), (name.to_string(), Instant::now()))
                    .is_none();
                if fresh {
                    emit(Event::Joined(name.to_string()), &mut events);
                }
            }
            "BYE" if seen.remove(id).is_some() => {
                emit(Event::Left(name.to_string()), &mut events);
            }
            _ => {}
        }
    }
    socket
        .send(Datagram::new(
            format!("PRESENCE BYE {me} {}", p.name),
            std::net::SocketAddr::V4(p.group),
        ))
        .await?;
    socket.leave_multicast_v4(*p.group.ip(), Ipv4Addr::LOCALHOST)?;
    Ok(events)
}

/// A socket that sends to and receives from `group` on the loopback interface only.
async fn bind(
    selector: &SelectorManager,
    group: SocketAddrV4,
) -> asock::Result<BoundDatagramSocket> {
    let socket = a_socket(selector)
        .udp()
        .reuse_address(true) // several announcers on one host share the port
        .multicast_interface_v4(Ipv4Addr::LOCALHOST)
        .multicast_loop(true) // deliver to the other announcers on this host
        .multicast_ttl(0) // and never past it
        .bind(std::net::SocketAddr::V4(group))
        .await?;
    socket.join_multicast_v4(*group.ip(), Ipv4Addr::LOCALHOST)?;
    Ok(socket)
}

#[allow(dead_code)] // `main` is unused when tests include this file as a module
fn main() -> std::process::ExitCode {
    // One readable line, not the `Debug` dump a `main` returning `Result` prints.
    match run_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_main() -> asock::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "anonymous".to_string());
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30.0);
    let group = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_GROUP);
    let presence = Presence {
        name,
        group,
        interval: Duration::from_secs(1),
        run_for: Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(30)),
    };
    let selector = SelectorManager::builder().threads(1).build()?;
    println!(
        "{} announcing on {} for {secs} s (loopback only)",
        presence.name, presence.group
    );
    selector.run_blocking(run(&selector, &presence, |e| match e {
        Event::Joined(n) => println!("+ {n} is here"),
        Event::Left(n) => println!("- {n} left"),
        Event::TimedOut(n) => println!("- {n} went silent"),
    }))?;
    println!("{} said goodbye", presence.name);
    Ok(())
}
