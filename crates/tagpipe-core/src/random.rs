//! Random identifiers from the operating system's generator, and a repeatable generator for
//! tests.

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    if getrandom::fill(&mut buf).is_err() {
        // The OS generator does not fail on supported platforms; fall back to a time-seeded mix
        // rather than crash a running server.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(167);
        }
    }
    buf
}

/// A random 64-bit number.
pub fn u64() -> u64 {
    u64::from_le_bytes(bytes::<8>())
}

/// 32 random lowercase hex characters (128 bits), e.g. for device ids.
pub fn hex32() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let raw = bytes::<16>();
    let mut out = String::with_capacity(32);
    for b in raw {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// A small deterministic generator (xorshift64*) for property tests that want many varied but
/// repeatable inputs (a failure reproduces from its seed); never for identifiers.
pub struct Repeatable(u64);

impl Repeatable {
    /// A generator from a non-zero seed.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The next number below `n` (which must not be zero).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_ids_are_32_lowercase_hex_and_differ() {
        let a = super::hex32();
        let b = super::hex32();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_ne!(a, b);
    }
}
