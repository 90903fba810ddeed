//! The small deterministic generator the tests draw random DAGs from (xorshift64): the same
//! seed, the same graph, on every machine.

/// A generator of numbers below `m` (`m > 0`), seeded.
pub fn below(seed: u64) -> impl FnMut(usize) -> usize {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    }
}
