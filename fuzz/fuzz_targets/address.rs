//! The address parser: any text either parses or fails with a typed error, never panics, and
//! a parsed literal prints back to an address that parses to the same value.
#![no_main]

use asock::{SocketAddress, ToSocketAddress};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = s.parse::<SocketAddress>() {
        let back: SocketAddress = a.to_string().parse().expect("printed address parses");
        assert_eq!(back, a);
    }
    let _ = s.to_target();
    if let Some((host, port)) = s.split_once('|') {
        let _ = (host, port.len() as u16).to_target();
    }
});
