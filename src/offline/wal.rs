//! The write-ahead log of a table's small writes.
//!
//! Small INSERTs are acknowledged once their rows are in this log (fsynced),
//! not after an Iceberg commit: an Iceberg commit rewrites the table's
//! metadata, so committing every small INSERT would make each one slower
//! than the last and fill the disk with metadata. The rows stay readable
//! from memory (the table's tail) until a flush commits them to Iceberg
//! with the highest sequence number they cover (snapshot property
//! `featuredb.wal-seq`); after that the log segments holding them are
//! deleted.
//!
//! Record frame: magic `FDBW`, payload length (u32), CRC-32 of sequence
//! number and payload (u32), sequence number (u64), payload (an Arrow IPC
//! stream with one batch). A torn record at the end of the newest segment
//! (a crash mid-append, never acknowledged) is cut off at startup; a bad
//! record anywhere else is corruption and is reported.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;

use super::storage::{create_dir_durable, sync_dir};
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"FDBW";
const HEADER_LEN: usize = 4 + 4 + 4 + 8;

/// One logged write: a batch in the table's engine schema.
#[derive(Debug, Clone)]
pub struct WalRecord {
    pub seq: u64,
    pub batch: RecordBatch,
}

/// The log files of one table. Not internally synchronised: the table
/// serialises appends.
pub struct Wal {
    dir: PathBuf,
    /// Open segment for appends, created on first use.
    current: Option<Segment>,
    /// Closed segments, oldest first, with the last sequence number each
    /// holds.
    closed: Vec<(PathBuf, u64)>,
}

struct Segment {
    path: PathBuf,
    file: File,
    len: u64,
    last_seq: Option<u64>,
}

fn wal_error(action: &str, path: &Path, err: std::io::Error) -> Error {
    Error::io(format!("{action} {}", path.display()), err)
}

impl Wal {
    /// Opens the log in `dir` and returns every intact record, in sequence
    /// order.
    pub fn open(dir: &Path) -> Result<(Self, Vec<WalRecord>)> {
        create_dir_durable(dir).map_err(|e| wal_error("creating", dir, e))?;
        let mut segments: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| wal_error("listing", dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        segments.sort();
        let mut records = Vec::new();
        let mut closed = Vec::new();
        let count = segments.len();
        for (index, path) in segments.into_iter().enumerate() {
            let newest = index + 1 == count;
            let (segment_records, valid_len) = read_segment(&path)?;
            let total_len = fs::metadata(&path)
                .map_err(|e| wal_error("stat", &path, e))?
                .len();
            if valid_len < total_len {
                if !newest {
                    return Err(Error::internal(format!(
                        "write-ahead log segment {} is corrupt at byte {valid_len}",
                        path.display()
                    )));
                }
                // A torn append: the client never got an acknowledgement.
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| wal_error("opening", &path, e))?;
                file.set_len(valid_len)
                    .map_err(|e| wal_error("truncating", &path, e))?;
                file.sync_all()
                    .map_err(|e| wal_error("syncing", &path, e))?;
                tracing::warn!(path = %path.display(), at = valid_len, "cut a torn record off the write-ahead log");
            }
            if let Some(last) = segment_records.last() {
                closed.push((path, last.seq));
            } else {
                fs::remove_file(&path).map_err(|e| wal_error("removing", &path, e))?;
            }
            records.extend(segment_records);
        }
        records.sort_by_key(|r| r.seq);
        Ok((
            Self {
                dir: dir.to_path_buf(),
                current: None,
                closed,
            },
            records,
        ))
    }

    /// Appends records and makes them durable. On failure nothing of this
    /// call remains in the log.
    pub fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<()> {
        let Some(first_seq) = records.first().map(|r| r.0) else {
            return Ok(());
        };
        if self.current.is_none() {
            let path = self.dir.join(format!("{first_seq:020}.wal"));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| wal_error("creating", &path, e))?;
            sync_dir(&self.dir).map_err(|e| wal_error("syncing", &self.dir, e))?;
            self.current = Some(Segment {
                path,
                file,
                len: 0,
                last_seq: None,
            });
        }
        let segment = self.current.as_mut().expect("segment opened above");
        let mut frames = Vec::new();
        for (seq, payload) in records {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&seq.to_le_bytes());
            crc.update(payload);
            frames.extend_from_slice(MAGIC);
            frames.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            frames.extend_from_slice(&crc.finalize().to_le_bytes());
            frames.extend_from_slice(&seq.to_le_bytes());
            frames.extend_from_slice(payload);
        }
        let written = segment
            .file
            .write_all(&frames)
            .and_then(|()| segment.file.sync_data());
        if let Err(e) = written {
            // Undo a partial append so that the log never holds records
            // whose writers were told they failed.
            let _ = segment.file.set_len(segment.len);
            let _ = segment.file.seek(SeekFrom::End(0));
            return Err(wal_error("appending to", &segment.path, e));
        }
        segment.len += frames.len() as u64;
        segment.last_seq = records.last().map(|r| r.0);
        Ok(())
    }

    /// Forgets records up to and including `seq` (they are in Iceberg):
    /// deletes segments that hold nothing newer.
    pub fn release_through(&mut self, seq: u64) -> Result<()> {
        // Rotate, so that the segment being appended to never grows
        // forever while writes keep arriving during flushes.
        if let Some(segment) = self.current.take() {
            match segment.last_seq {
                Some(last) => self.closed.push((segment.path, last)),
                None => self.current = Some(segment),
            }
        }
        let mut removed = false;
        let mut kept = Vec::new();
        for (path, last) in std::mem::take(&mut self.closed) {
            if last <= seq {
                fs::remove_file(&path).map_err(|e| wal_error("removing", &path, e))?;
                removed = true;
            } else {
                kept.push((path, last));
            }
        }
        self.closed = kept;
        if removed {
            sync_dir(&self.dir).map_err(|e| wal_error("syncing", &self.dir, e))?;
        }
        Ok(())
    }

    /// Deletes the log (the table was dropped).
    pub fn destroy(&mut self) {
        self.current = None;
        self.closed.clear();
        if let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not delete write-ahead log");
        }
    }
}

/// Encodes a batch as an Arrow IPC stream.
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut payload, &batch.schema())?;
        writer.write(batch)?;
        writer.finish()?;
    }
    Ok(payload)
}

fn decode_batch(payload: &[u8]) -> Option<RecordBatch> {
    let mut reader = StreamReader::try_new(payload, None).ok()?;
    reader.next()?.ok()
}

/// Reads a segment's intact records and the length they cover.
fn read_segment(path: &Path) -> Result<(Vec<WalRecord>, u64)> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| wal_error("reading", path, e))?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while bytes.len() >= at + HEADER_LEN {
        if &bytes[at..at + 4] != MAGIC {
            break;
        }
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(bytes[at + 12..at + 20].try_into().expect("8 bytes"));
        let start = at + HEADER_LEN;
        let Some(payload) = bytes.get(start..start + len) else {
            break;
        };
        let mut check = crc32fast::Hasher::new();
        check.update(&seq.to_le_bytes());
        check.update(payload);
        if check.finalize() != crc {
            break;
        }
        let Some(batch) = decode_batch(payload) else {
            break;
        };
        records.push(WalRecord { seq, batch });
        at = start + len;
    }
    Ok((records, at as u64))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    fn append(wal: &mut Wal, seq: u64, values: &[i64]) {
        wal.append(&[(seq, encode_batch(&batch(values)).unwrap())])
            .unwrap();
    }

    #[test]
    fn replays_released_and_torn_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        {
            let (mut wal, records) = Wal::open(&path).unwrap();
            assert!(records.is_empty());
            append(&mut wal, 1, &[1]);
            append(&mut wal, 2, &[2, 3]);
        }
        let (mut wal, records) = Wal::open(&path).unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(records[1].batch.num_rows(), 2);
        append(&mut wal, 3, &[4]);
        wal.release_through(2).unwrap();
        append(&mut wal, 4, &[5]);
        drop(wal);

        // Simulate a crash in the middle of an append.
        let newest = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .max()
            .unwrap();
        let mut file = OpenOptions::new().append(true).open(&newest).unwrap();
        file.write_all(b"FDBW\x10\x00\x00\x00garbage").unwrap();
        drop(file);

        let (_wal, records) = Wal::open(&path).unwrap();
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert!(seqs.contains(&4));
        assert!(!seqs.contains(&1), "released records are gone: {seqs:?}");

        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.release_through(10).unwrap();
        drop(wal);
        let (_wal, records) = Wal::open(&path).unwrap();
        assert!(records.is_empty());
    }
}
