//! The read channel over arbitrary chunking, checked against a reference model
//! (tests/chunk_model): a bounded random property test in the normal suite, plus regression
//! cases for what it and the fuzz targets (fuzz/) found. `ASOCK_CHUNK_CASES` runs more cases.

mod chunk_model;

/// Random streams rich in `\r`, `\n` and invalid UTF-8, random chunk sizes and limits.
#[test]
fn random_streams_and_chunkings_match_the_model() {
    let cases: usize = std::env::var("ASOCK_CHUNK_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const ALPHABET: &[u8] = b"ab\r\n\r\n\xff\xc3\xa9x0";
    for _ in 0..cases {
        let len = (next() % 300) as usize;
        let input: Vec<u8> = (0..len + 4)
            .map(|i| {
                let r = next();
                if i < 4 {
                    r as u8
                } else {
                    ALPHABET[(r % ALPHABET.len() as u64) as usize]
                }
            })
            .collect();
        chunk_model::run(&input);
    }
}

/// Found by the model: an unterminated last line of exactly limit + 1 bytes was returned
/// instead of failing with `LineTooLong` (the limit check leaves room for a terminator).
#[test]
fn unterminated_last_line_over_the_limit_is_too_long() {
    for chunk in [1, 2, 64] {
        let mut ch = asock::channel::memory::read_channel(b"abcd"[..].into(), chunk);
        ch.set_max_line_length(3);
        assert!(matches!(
            asock::block_on(ch.read_line()),
            Err(asock::Error::LineTooLong { limit: 3 })
        ));
        let mut ch = asock::channel::memory::read_channel(b"abc"[..].into(), chunk);
        ch.set_max_line_length(3);
        assert_eq!(asock::block_on(ch.read_line()).unwrap(), Some(&b"abc"[..]));
        let mut ch = asock::channel::memory::read_channel(b"abcd"[..].into(), chunk);
        ch.set_max_line_length(3);
        assert!(asock::block_on(ch.read_until(b"\r\n")).is_err());
    }
}
