//! The encoded rows a refresh partition keeps for its newest-row winners,
//! one after another in one buffer, and where each one sits.
//!
//! A newer row for a key is encoded at the arena's end. Copying it over
//! the row it beat keeps the arena as small as the kept rows, but that is
//! a write to a random place in tens of megabytes: a cache miss per
//! replaced row, a tenth of a full refresh's CPU. So a beaten row is left
//! as garbage while the arena is under [`SLACK`] times its live rows, and
//! overwritten (when the newer row fits) past that: memory stays bounded
//! whatever the order of the rows (rows arriving in time order replace the
//! kept one every time), and the partition copies its live rows out in key
//! order at the end anyway.

use crate::error::{Error, Result};
use crate::online::RowEncoder;

/// How many times its live rows' size the arena may grow to before beaten
/// rows are overwritten.
const SLACK: usize = 3;

pub struct RowArena {
    bytes: Vec<u8>,
    /// The size of the rows that are not beaten.
    live: usize,
}

impl RowArena {
    pub fn new() -> Self {
        RowArena {
            bytes: Vec::new(),
            live: 0,
        }
    }

    /// An arena of these rows, every byte live.
    #[cfg(test)]
    pub fn of(bytes: Vec<u8>) -> Self {
        let live = bytes.len();
        RowArena { bytes, live }
    }

    pub fn is_unallocated(&self) -> bool {
        self.bytes.capacity() == 0
    }

    /// Makes room for `rows` live rows of about `row_size` bytes and the
    /// garbage their replacements may leave: growing a buffer of tens of
    /// megabytes by doubling copies it and faults in fresh pages each time,
    /// while room reserved and never written costs no memory.
    pub fn reserve(&mut self, rows: usize, row_size: usize) {
        self.bytes
            .reserve(rows.saturating_mul(row_size).saturating_mul(SLACK));
    }

    /// Encodes `row` of `encoder`'s columns at the end: where it went.
    pub fn push(&mut self, encoder: &RowEncoder<'_>, row: usize) -> Result<RowPlace> {
        let start = self.bytes.len();
        encoder.encode(row, &mut self.bytes)?;
        let place = RowPlace::new(start, self.bytes.len() - start);
        match place {
            Ok(place) => self.live += place.len(),
            Err(_) => self.bytes.truncate(start),
        }
        place
    }

    /// Where a row that beat the one at `beaten` stays, `newer` being the
    /// place [`Self::push`] just gave it.
    pub fn replace(&mut self, beaten: RowPlace, newer: RowPlace) -> RowPlace {
        self.live -= beaten.len();
        if newer.len() > beaten.len() || self.bytes.len() <= SLACK * self.live {
            return newer;
        }
        self.bytes.copy_within(newer.range(), beaten.start());
        self.bytes.truncate(newer.start());
        newer.moved_to(beaten.start())
    }

    pub fn row(&self, place: RowPlace) -> &[u8] {
        &self.bytes[place.range()]
    }

    /// A new arena of the rows of `entries` (each at `place_of` it), in
    /// their order; points them at it. `entries` are every row not beaten.
    pub fn copy_in_order<T>(
        &self,
        entries: &mut [T],
        place_of: impl Fn(&mut T) -> &mut RowPlace,
    ) -> RowArena {
        // The entries are the winners, so their rows are the live ones.
        let mut bytes = Vec::with_capacity(self.live);
        for entry in entries {
            let place = place_of(entry);
            let start = bytes.len();
            bytes.extend_from_slice(self.row(*place));
            *place = place.moved_to(start);
        }
        debug_assert_eq!(bytes.len(), self.live, "every live row copied once");
        let live = bytes.len();
        RowArena { bytes, live }
    }
}

/// Where a row's encoded values sit in an arena, in 8 bytes: its start in
/// the low [`RowPlace::START_BITS`] bits, its length above them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowPlace(u64);

impl RowPlace {
    const START_BITS: u32 = 38;
    /// An arena of up to 256 GiB (more than a partition ever holds).
    const MAX_START: u64 = (1 << Self::START_BITS) - 1;
    /// Rows of up to 64 MiB; the largest length marks [`Self::NOWHERE`].
    const MAX_LEN: u64 = (1 << (64 - Self::START_BITS)) - 2;
    /// No row: what empty slots of a table of winners hold.
    pub const NOWHERE: RowPlace = RowPlace(u64::MAX);

    pub fn new(start: usize, len: usize) -> Result<RowPlace> {
        if len as u64 > Self::MAX_LEN {
            return Err(Error::ProgramLimitExceeded(format!(
                "a feature view's row encodes to {len} bytes, over the online store's limit of {} bytes",
                Self::MAX_LEN
            )));
        }
        if start as u64 > Self::MAX_START {
            return Err(Error::ProgramLimitExceeded(
                "a refresh partition's newest rows take over 256 GiB".into(),
            ));
        }
        Ok(RowPlace(start as u64 | (len as u64) << Self::START_BITS))
    }

    pub fn start(self) -> usize {
        (self.0 & Self::MAX_START) as usize
    }

    pub fn len(self) -> usize {
        (self.0 >> Self::START_BITS) as usize
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start()..self.start() + self.len()
    }

    /// The same row at `start` of an arena no larger than its own.
    fn moved_to(self, start: usize) -> RowPlace {
        debug_assert!(start as u64 <= Self::MAX_START);
        RowPlace(start as u64 | (self.0 & !Self::MAX_START))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, StringArray};

    use super::*;

    #[test]
    fn a_place_holds_its_start_and_length() {
        let place =
            RowPlace::new(RowPlace::MAX_START as usize, RowPlace::MAX_LEN as usize).unwrap();
        assert_eq!(place.start() as u64, RowPlace::MAX_START);
        assert_eq!(place.len() as u64, RowPlace::MAX_LEN);
        assert_ne!(place, RowPlace::NOWHERE);
        assert_eq!(place.moved_to(7).start(), 7);
        assert_eq!(place.moved_to(7).len() as u64, RowPlace::MAX_LEN);
        let too_long = RowPlace::new(0, RowPlace::MAX_LEN as usize + 1).unwrap_err();
        assert!(matches!(too_long, Error::ProgramLimitExceeded(_)));
        assert!(RowPlace::new(RowPlace::MAX_START as usize + 1, 1).is_err());
    }

    #[test]
    fn beaten_rows_are_overwritten_only_past_the_slack() {
        let texts: ArrayRef = Arc::new(StringArray::from(vec!["aaaa", "bb", "cc", "dd"]));
        let encoder = RowEncoder::new([&texts]);
        let mut arena = RowArena::new();
        let mut kept = arena.push(&encoder, 0).unwrap();
        let first_len = arena.bytes.len();
        // Newer rows for the one key: kept where they were encoded until
        // the arena is SLACK times its live row, then written over the
        // beaten one.
        for row in 1..4 {
            let newer = arena.push(&encoder, row).unwrap();
            kept = arena.replace(kept, newer);
            assert_eq!(arena.row(kept), {
                let mut one = Vec::new();
                encoder.encode(row, &mut one).unwrap();
                one
            });
            assert_eq!(arena.live, kept.len());
        }
        assert!(arena.bytes.len() <= SLACK * arena.live + first_len);
        let mut places = [kept];
        let compact = arena.copy_in_order(&mut places, |place| place);
        assert_eq!(compact.bytes.len(), kept.len());
        assert_eq!(compact.row(places[0]), arena.row(kept));
    }
}
