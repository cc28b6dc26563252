//! Writing one new file of a table: durable when closed, and, past its
//! first few MiB, written around the page cache.
//!
//! Why around the page cache: a data file is written once and read later,
//! if at all soon, by a scan that can read it from disk. Written through the
//! page cache, each byte is copied into a freshly allocated cache page, and
//! on this project's benchmark machine (a VM) that copy, with the page
//! allocation and accounting behind it, was 10–16% of a full refresh's CPU:
//! 400 MB took 0.4–1.1 s of kernel time, while the same bytes written with
//! `O_DIRECT` from one reused buffer took 0.2 s of waiting on the disk.
//! The data is on the device when a direct write returns, so the fsync at
//! close only makes the file's size and extents durable.
//!
//! How: bytes collect in an aligned buffer of [`CHUNK`] bytes; each full
//! buffer is one aligned write at an aligned offset, made by a thread of
//! the file while the caller fills a second buffer (a direct write waits
//! for the device). The file starts in the
//! page cache, and `O_DIRECT` is switched on (`fcntl`) when the first chunk
//! is full, so small files (manifests, small appends) never pay for it.
//! The tail that does not fill a chunk is written through the page cache
//! (`O_DIRECT` switched off again): direct writes must be whole blocks.
//! Where direct I/O is not supported (some filesystems refuse the flag or
//! the alignment), the file stays in the page cache; then the kernel is
//! asked to start writeback every chunk, so that the fsync at close does
//! not find the whole file dirty.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

/// Bytes per direct write, and the size of the buffers that collect them.
const CHUNK: usize = 4 << 20;

/// Alignment of direct writes (memory address, file offset and length):
/// a page, which covers devices of 512-byte and 4 KiB logical blocks.
const ALIGN: usize = 4096;

#[derive(Debug)]
pub struct DurableFileWrite {
    file: Arc<fs::File>,
    path: PathBuf,
    pending: AlignedChunk,
    /// Bytes handed to the file (written, or being written by the chunk
    /// writer): a multiple of [`CHUNK`] until the tail.
    in_file: u64,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    /// Through the page cache; direct I/O not tried yet.
    Cached,
    /// Full chunks go to a thread that writes them while the next one
    /// fills: a direct write waits for the device (~2 ms per chunk here),
    /// and that wait should not stall the refresh computing the rows.
    Direct(ChunkWriter),
    /// Through the page cache for good (direct I/O refused); writeback was
    /// requested up to this offset.
    CachedOnly { writeback_requested: u64 },
}

impl DurableFileWrite {
    pub fn new(file: fs::File, path: PathBuf) -> Self {
        Self {
            file: Arc::new(file),
            path,
            pending: AlignedChunk::new(),
            in_file: 0,
            mode: Mode::Cached,
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let taken = self.pending.fill(bytes);
            bytes = &bytes[taken..];
            if self.pending.is_full() {
                self.write_chunk()?;
            }
        }
        Ok(())
    }

    /// Writes what is pending, then fsyncs the file.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if let Mode::Direct(writer) = std::mem::replace(&mut self.mode, Mode::Cached) {
            writer.finish()?;
            set_direct(&self.file, false)?;
        }
        if !self.pending.bytes().is_empty() {
            self.file.write_all_at(self.pending.bytes(), self.in_file)?;
            self.in_file += self.pending.bytes().len() as u64;
            self.pending.clear();
        }
        self.file.sync_all()
    }

    fn write_chunk(&mut self) -> std::io::Result<()> {
        if let Mode::Cached = self.mode {
            self.mode = match set_direct(&self.file, true) {
                Ok(()) => Mode::Direct(ChunkWriter::start(self.file.clone())),
                Err(_) => Mode::CachedOnly {
                    writeback_requested: self.in_file,
                },
            };
        }
        let offset = self.in_file;
        self.in_file += CHUNK as u64;
        match &mut self.mode {
            Mode::Direct(writer) => {
                let next = writer.next_buffer()?;
                writer.submit(std::mem::replace(&mut self.pending, next), offset)
            }
            Mode::CachedOnly {
                writeback_requested,
            } => {
                self.file.write_all_at(self.pending.bytes(), offset)?;
                self.pending.clear();
                request_writeback(&self.file, *writeback_requested, self.in_file);
                *writeback_requested = self.in_file;
                Ok(())
            }
            Mode::Cached => unreachable!("chosen above"),
        }
    }
}

/// A thread that writes full chunks at their offsets, handing each buffer
/// back when written. Two buffers circulate: one filling, one writing.
#[derive(Debug)]
struct ChunkWriter {
    file: Arc<fs::File>,
    /// None if the thread could not be started: chunks are then written
    /// in place.
    chunks: Option<mpsc::SyncSender<(AlignedChunk, u64)>>,
    written: mpsc::Receiver<std::io::Result<AlignedChunk>>,
    /// Buffers not in use (the second one is made on first need).
    spare: Vec<AlignedChunk>,
    buffers: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

const CHUNK_BUFFERS: usize = 2;

impl ChunkWriter {
    fn start(file: Arc<fs::File>) -> Self {
        let (chunks, to_write) = mpsc::sync_channel::<(AlignedChunk, u64)>(CHUNK_BUFFERS);
        let (done, written) = mpsc::sync_channel(CHUNK_BUFFERS);
        let thread_file = file.clone();
        let thread = std::thread::Builder::new()
            .name("featuredb-file-write".into())
            .spawn(move || {
                for (mut chunk, offset) in to_write {
                    let result = write_direct(&thread_file, chunk.bytes(), offset).map(|()| {
                        chunk.clear();
                        chunk
                    });
                    if done.send(result).is_err() {
                        return;
                    }
                }
            });
        let (chunks, thread) = match thread {
            Ok(thread) => (Some(chunks), Some(thread)),
            Err(e) => {
                tracing::debug!(error = %e, "could not start a file writer thread");
                (None, None)
            }
        };
        Self {
            file,
            chunks,
            written,
            spare: Vec::new(),
            buffers: 1,
            thread,
        }
    }

    /// An empty buffer: a spare one, a new one, or the next one written.
    fn next_buffer(&mut self) -> std::io::Result<AlignedChunk> {
        if let Some(buffer) = self.spare.pop() {
            return Ok(buffer);
        }
        if self.buffers < CHUNK_BUFFERS {
            self.buffers += 1;
            return Ok(AlignedChunk::new());
        }
        self.written
            .recv()
            .map_err(|_| std::io::Error::other("the file writer thread stopped"))?
    }

    fn submit(&mut self, chunk: AlignedChunk, offset: u64) -> std::io::Result<()> {
        let Some(chunks) = &self.chunks else {
            let mut chunk = chunk;
            write_direct(&self.file, chunk.bytes(), offset)?;
            chunk.clear();
            self.spare.push(chunk);
            return Ok(());
        };
        chunks
            .send((chunk, offset))
            .map_err(|_| std::io::Error::other("the file writer thread stopped"))
    }

    /// Waits until every submitted chunk is written.
    fn finish(mut self) -> std::io::Result<()> {
        drop(self.chunks.take());
        let mut result = Ok(());
        for written in self.written.iter() {
            if let Err(e) = written
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            return Err(std::io::Error::other("the file writer thread panicked"));
        }
        result
    }
}

/// Writes a whole chunk at `offset`, directly if the file allows it. A
/// direct write the kernel refuses (alignment, or a short write that left
/// the rest unaligned) is redone, and the rest of the file written,
/// through the page cache.
fn write_direct(file: &fs::File, chunk: &[u8], offset: u64) -> std::io::Result<()> {
    let mut written = 0;
    while written < chunk.len() {
        match file.write_at(&chunk[written..], offset + written as u64) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && is_direct(file) => {
                set_direct(file, false)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether `O_DIRECT` is on for an open file.
#[cfg(target_os = "linux")]
fn is_direct(file: &fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open (owned by `file`); F_GETFL only reads
    // its status flags.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    flags >= 0 && flags & libc::O_DIRECT != 0
}

#[cfg(not(target_os = "linux"))]
fn is_direct(_file: &fs::File) -> bool {
    false
}

/// Switches `O_DIRECT` on or off for an open file.
#[cfg(target_os = "linux")]
fn set_direct(file: &fs::File, direct: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is open (owned by `file`); F_GETFL/F_SETFL only read
    // and set the file's status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let flags = if direct {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        if libc::fcntl(fd, libc::F_SETFL, flags) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_file: &fs::File, direct: bool) -> std::io::Result<()> {
    if direct {
        Err(std::io::ErrorKind::Unsupported.into())
    } else {
        Ok(())
    }
}

/// Asks the kernel to start writing `from..to` out, without waiting. Only
/// a hint: errors are left to the fsync at close.
fn request_writeback(file: &fs::File, from: u64, to: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open (owned by `file`), and the call
        // only reads its arguments.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                from as libc::off64_t,
                (to - from) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, from, to);
}

/// A buffer of up to [`CHUNK`] bytes that starts at an [`ALIGN`]ed address.
#[derive(Debug)]
struct AlignedChunk {
    /// Padding up to the aligned start, then the pending bytes. Its
    /// capacity is never exceeded, so it never moves.
    memory: Vec<u8>,
    start: usize,
}

impl AlignedChunk {
    fn new() -> Self {
        let mut memory: Vec<u8> = Vec::with_capacity(CHUNK + ALIGN);
        let start = memory.as_ptr().align_offset(ALIGN);
        memory.resize(start, 0);
        Self { memory, start }
    }

    /// Appends what fits of `bytes`; returns how much that was.
    fn fill(&mut self, bytes: &[u8]) -> usize {
        let room = self.start + CHUNK - self.memory.len();
        let taken = room.min(bytes.len());
        self.memory.extend_from_slice(&bytes[..taken]);
        taken
    }

    fn is_full(&self) -> bool {
        self.memory.len() == self.start + CHUNK
    }

    fn bytes(&self) -> &[u8] {
        &self.memory[self.start..]
    }

    fn clear(&mut self) {
        self.memory.truncate(self.start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn written(sizes: &[usize]) -> (Vec<u8>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut writer = DurableFileWrite::new(fs::File::create(&path).unwrap(), path.clone());
        let mut expected = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let bytes: Vec<u8> = (0..size).map(|b| (b * 31 + i * 7) as u8).collect();
            writer.write(&bytes).unwrap();
            expected.extend_from_slice(&bytes);
        }
        writer.finish().unwrap();
        let mut actual = Vec::new();
        fs::File::open(&path)
            .unwrap()
            .read_to_end(&mut actual)
            .unwrap();
        (expected, actual)
    }

    #[test]
    fn small_files_are_written_whole() {
        let (expected, actual) = written(&[0, 1, 4095, 10]);
        assert_eq!(actual, expected);
    }

    #[test]
    fn large_files_are_written_whole_across_chunks_and_a_tail() {
        // Pieces that straddle chunk boundaries, an exact chunk, a tail.
        let (expected, actual) = written(&[CHUNK - 3, 5, CHUNK, 2 * CHUNK + 17, 1]);
        assert_eq!(actual.len(), expected.len());
        assert!(actual == expected, "contents differ");
    }

    #[test]
    fn the_buffer_is_aligned_and_never_moves() {
        let mut chunk = AlignedChunk::new();
        let address = chunk.bytes().as_ptr() as usize;
        assert_eq!(address % ALIGN, 0);
        assert_eq!(chunk.fill(&vec![1; CHUNK + 10]), CHUNK);
        assert!(chunk.is_full());
        assert_eq!(chunk.bytes().as_ptr() as usize, address);
        chunk.clear();
        assert_eq!(chunk.fill(&[2; 3]), 3);
        assert_eq!(chunk.bytes(), &[2, 2, 2]);
    }
}
