//! What a lookup keeps in memory to find a key's row with one cache probe:
//! the first key of each base block ([`BlockIndex`]); which keys the delta
//! may hold is [`super::delta::DeltaRuns`].
//!
//! Why: the row cache used to hold one entry per key. With a million keys
//! read at random, a probe missed the CPU caches at every step of moka's
//! table, its access bookkeeping and the row (1.7 µs per probe measured
//! alone, about a fifth of a lookup's server CPU). Cached as blocks (up to
//! 64 keys each) the cache holds 64 times fewer entries, which stay in the
//! CPU caches, and a lookup touches one block: 0.7 µs. The block a key is
//! in is found by binary search over the blocks' first keys, which a full
//! refresh and a merge produce as they write the blocks (and opening the
//! store reads back).
//!
//! Rows an incremental refresh upserts live in the delta and are cached
//! per key. A lookup must know whether the delta has its key before it
//! reads the base: `DeltaRuns` answers "certainly not" or "maybe" from the
//! keys' hashes, in a few nanoseconds.

/// The first keys of a base table's blocks, ascending.
#[derive(Debug, Default)]
pub struct BlockIndex {
    keys: Vec<u8>,
    /// `ends[i]`: where block `i`'s first key ends in `keys`.
    ends: Vec<u32>,
}

impl BlockIndex {
    /// Adds the next block's first key (greater than the last one added).
    pub fn push(&mut self, first_key: &[u8]) {
        self.keys.extend_from_slice(first_key);
        self.ends.push(self.keys.len() as u32);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Block `block`'s first key.
    pub fn first_key(&self, block: usize) -> &[u8] {
        let start = match block {
            0 => 0,
            _ => self.ends[block - 1] as usize,
        };
        &self.keys[start..self.ends[block] as usize]
    }

    /// The block that holds `key` if any does: the last whose first key is
    /// not above it.
    pub fn block_of(&self, key: &[u8]) -> Option<usize> {
        let after = self.partition_point(|first| first <= key);
        after.checked_sub(1)
    }

    /// The number of leading blocks whose first key satisfies `pred`
    /// (which must hold for a prefix of them).
    fn partition_point(&self, pred: impl Fn(&[u8]) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = low + (high - low) / 2;
            if pred(self.first_key(middle)) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_block_a_key_would_be_in() {
        let mut index = BlockIndex::default();
        for first in [b"b".as_slice(), b"d", b"dd", b"f"] {
            index.push(first);
        }
        assert_eq!(index.block_of(b"a"), None);
        assert_eq!(index.block_of(b"b"), Some(0));
        assert_eq!(index.block_of(b"c"), Some(0));
        assert_eq!(index.block_of(b"d"), Some(1));
        assert_eq!(index.block_of(b"da"), Some(1));
        assert_eq!(index.block_of(b"dd"), Some(2));
        assert_eq!(index.block_of(b"e"), Some(2));
        assert_eq!(index.block_of(b"z"), Some(3));
        assert_eq!(index.first_key(2), b"dd");
        assert_eq!(BlockIndex::default().block_of(b"a"), None);
    }
}
