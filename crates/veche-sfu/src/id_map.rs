//! Hash maps keyed by ids this server hands out.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by server-assigned ids (participant ids, room keys): looked up several times
/// per forwarded packet and subscriber, where std's SipHash costs more than the rest of the
/// lookup. Never key one by anything a peer chooses (addresses, ufrags): SipHash is what
/// keeps those maps safe from crafted collisions.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A multiply-rotate hasher (the FxHash construction) for small integer keys.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(SEED);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(n.into());
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(n.into());
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread() {
        let mut m: IdMap<(u64, u8), u64> = IdMap::default();
        for i in 0..10_000u64 {
            m.insert((i, (i % 3) as u8), i);
        }
        assert_eq!(m.len(), 10_000);
        assert_eq!(m.get(&(4_242, 0)), Some(&4_242));
    }
}
