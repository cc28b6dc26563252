//! The winner per integer key while a refresh offers rows: an
//! open-addressing table that can be prefetched.
//!
//! Why not a `HashMap`: a partition of a full refresh offers millions of
//! rows over about a million keys, an 80 MB table probed at random, and
//! every probe waited for memory (the hash map was a fifth of the
//! partitions' CPU). Here the probe positions of a whole batch are known
//! up front, so the rows a little ahead are prefetched while the current
//! one is decided: the waits overlap instead of adding up.
//!
//! Linear probing at a load of at most one half; a key's position comes
//! from a seeded mix of its bits (seeded per table, so that no fixed set
//! of keys collides everywhere). A slot is a key and its winner in 32
//! aligned bytes, so a probe that ends at its first slot touches a single
//! cache line; an empty slot is marked inside it (no separate bitmap, whose
//! line would be one more to fetch).

use super::newest::Winner;

/// How many rows ahead a batch prefetches: enough to cover a memory
/// access, few enough that the lines stay cached until they are used.
pub const PREFETCH_AHEAD: usize = 16;

/// A key and its winner: what the table holds and, compacted, returns.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub struct Slot {
    pub key: i64,
    pub winner: Winner,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 32);

pub struct IntegerWinners {
    slots: Vec<Slot>,
    len: usize,
    seed: u64,
}

/// What [`IntegerWinners::entry`] found.
pub enum Entry<'a> {
    Kept(&'a mut Winner),
    /// The key is new: its winner goes in with [`Vacant::insert`].
    Vacant(Vacant<'a>),
}

pub struct Vacant<'a> {
    table: &'a mut IntegerWinners,
    key: i64,
    index: usize,
}

impl Vacant<'_> {
    pub fn insert(self, winner: Winner) {
        debug_assert!(!winner.is_empty(), "an empty winner marks an empty slot");
        let table = self.table;
        table.slots[self.index] = Slot {
            key: self.key,
            winner,
        };
        table.len += 1;
    }
}

impl IntegerWinners {
    pub fn with_capacity(keys: usize) -> Self {
        Self::seeded(keys, ahash::RandomState::new().hash_one(0u64))
    }

    fn seeded(keys: usize, seed: u64) -> Self {
        let slots = (keys.max(8) * 2).next_power_of_two();
        IntegerWinners {
            slots: vec![EMPTY; slots],
            len: 0,
            seed,
        }
    }

    /// Where `key`'s probe starts: pass it to [`Self::prefetch`] and
    /// [`Self::entry`].
    pub fn position(&self, key: i64) -> u64 {
        mix(key as u64 ^ self.seed)
    }

    /// Asks for the memory `position`'s probe will read.
    pub fn prefetch(&self, position: u64) {
        let index = position as usize & (self.slots.len() - 1);
        prefetch((&self.slots[index] as *const Slot).cast());
    }

    /// The winner kept for `key` (at `position`), or where a new one goes.
    pub fn entry(&mut self, key: i64, position: u64) -> Entry<'_> {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut index = position as usize & mask;
        loop {
            let slot = &self.slots[index];
            if slot.winner.is_empty() {
                return Entry::Vacant(Vacant {
                    table: self,
                    key,
                    index,
                });
            }
            if slot.key == key {
                return Entry::Kept(&mut self.slots[index].winner);
            }
            index = (index + 1) & mask;
        }
    }

    /// Every key with its winner, in no particular order: the table's own
    /// memory, compacted.
    pub fn into_entries(mut self) -> Vec<Slot> {
        let mut kept = 0;
        for index in 0..self.slots.len() {
            if !self.slots[index].winner.is_empty() {
                self.slots[kept] = self.slots[index];
                kept += 1;
            }
        }
        self.slots.truncate(kept);
        self.slots
    }

    fn grow(&mut self) {
        let old = std::mem::replace(self, Self::seeded(self.slots.len(), self.seed));
        for Slot { key, winner } in old.into_entries() {
            let position = self.position(key);
            match self.entry(key, position) {
                Entry::Vacant(vacant) => vacant.insert(winner),
                Entry::Kept(_) => unreachable!("keys of a table are distinct"),
            }
        }
    }
}

const EMPTY: Slot = Slot {
    key: 0,
    winner: Winner::EMPTY,
};

/// MurmurHash3's 64-bit finalizer: every input bit moves every output bit,
/// so consecutive keys land far apart.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[inline(always)]
fn prefetch(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE is part of x86-64, and a prefetch only hints: it
        // reads nothing and never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(address.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn winner(event_time: i64) -> Winner {
        Winner::of_empty_row_at(event_time)
    }

    #[test]
    fn keeps_one_winner_per_key_across_growth() {
        let mut table = IntegerWinners::with_capacity(0);
        // Negative, zero and extreme keys, each offered twice.
        let keys: Vec<i64> = (-5000..5000).chain([i64::MIN, i64::MAX]).collect();
        for round in 0..2 {
            for &key in &keys {
                let position = table.position(key);
                table.prefetch(position);
                match table.entry(key, position) {
                    Entry::Vacant(vacant) => {
                        assert_eq!(round, 0, "key {key} was lost");
                        vacant.insert(winner(key));
                    }
                    Entry::Kept(kept) => {
                        assert_eq!(round, 1, "key {key} was found before it went in");
                        assert_eq!(kept.event_time, key);
                    }
                }
            }
        }
        assert_eq!(table.len, keys.len());
        let mut entries: Vec<(i64, i64)> = table
            .into_entries()
            .into_iter()
            .map(|slot| (slot.key, slot.winner.event_time))
            .collect();
        entries.sort();
        let mut expected: Vec<(i64, i64)> = keys.iter().map(|&k| (k, k)).collect();
        expected.sort();
        assert_eq!(entries, expected);
    }
}
