//! Local-filesystem storage for Iceberg that makes every write durable.
//!
//! iceberg-rust's own local storage does not fsync whole-file writes (table
//! metadata, manifests) and never fsyncs directories, so a power loss can
//! lose files that a committed snapshot points to. This storage fsyncs each
//! file before reporting it written and fsyncs the directory entries of new
//! files and directories, so that when the catalog commit (which follows)
//! returns, everything it references is on disk.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use super::file_write::DurableFileWrite;

/// Storage for `file://` locations with fsync-on-write.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DurableFsStorage;

/// Builds [`DurableFsStorage`] for the SQL catalog's `FileIO`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DurableFsStorageFactory;

#[typetag::serde]
impl StorageFactory for DurableFsStorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(DurableFsStorage))
    }
}

/// Strips the `file:` scheme: `file:///a/b` and `file:/a/b` become `/a/b`.
pub fn local_path(location: &str) -> PathBuf {
    let path = location
        .strip_prefix("file://")
        .or_else(|| location.strip_prefix("file:"))
        .unwrap_or(location);
    if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        PathBuf::from(format!("/{path}"))
    }
}

fn io_error(action: &str, path: &Path, err: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Unexpected,
        format!("failed to {action} {}: {err}", path.display()),
    )
}

/// Fsyncs a directory so that entries created in it survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing ancestors, fsyncing each parent whose
/// entries changed.
pub fn create_dir_durable(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_dir_durable(parent).map_err(|e| io_error("create directory", parent, e))?;
    }
    Ok(())
}

fn sync_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        sync_dir(parent).map_err(|e| io_error("sync directory", parent, e))?;
    }
    Ok(())
}

#[async_trait]
#[typetag::serde]
impl Storage for DurableFsStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        Ok(local_path(path).exists())
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let path = local_path(path);
        let metadata = fs::metadata(&path).map_err(|e| io_error("stat", &path, e))?;
        Ok(FileMetadata {
            size: metadata.len(),
        })
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let path = local_path(path);
        fs::read(&path)
            .map(Bytes::from)
            .map_err(|e| io_error("read", &path, e))
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        let path = local_path(path);
        let file = fs::File::open(&path).map_err(|e| io_error("open", &path, e))?;
        Ok(Box::new(LocalFileRead {
            file: std::sync::Mutex::new(file),
            path,
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let path = local_path(path);
        create_parent(&path)?;
        let mut file = fs::File::create(&path).map_err(|e| io_error("create", &path, e))?;
        file.write_all(&bs)
            .map_err(|e| io_error("write", &path, e))?;
        file.sync_all().map_err(|e| io_error("sync", &path, e))?;
        sync_parent(&path)
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        let path = local_path(path);
        create_parent(&path)?;
        let file = fs::File::create(&path).map_err(|e| io_error("create", &path, e))?;
        Ok(Box::new(NewFileWrite {
            file: Some(DurableFileWrite::new(file, path)),
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let path = local_path(path);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("delete", &path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let path = local_path(path);
        if path.is_dir() {
            fs::remove_dir_all(&path).map_err(|e| io_error("delete directory", &path, e))?;
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

#[derive(Debug)]
struct LocalFileRead {
    file: std::sync::Mutex<fs::File>,
    path: PathBuf,
}

#[async_trait]
impl FileRead for LocalFileRead {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        let mut file = self
            .file
            .lock()
            .map_err(|_| Error::new(ErrorKind::Unexpected, "file lock poisoned"))?;
        file.seek(SeekFrom::Start(range.start))
            .map_err(|e| io_error("seek", &self.path, e))?;
        let mut buffer = vec![0u8; (range.end - range.start) as usize];
        file.read_exact(&mut buffer)
            .map_err(|e| io_error("read", &self.path, e))?;
        Ok(Bytes::from(buffer))
    }
}

/// A file being written, fsynced (with its directory entry) on close.
#[derive(Debug)]
struct NewFileWrite {
    file: Option<DurableFileWrite>,
}

#[async_trait]
impl FileWrite for NewFileWrite {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::DataInvalid, "write to a closed file"))?;
        file.write(&bs)
            .map_err(|e| io_error("write", file.path(), e))
    }

    async fn close(&mut self) -> Result<()> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| Error::new(ErrorKind::DataInvalid, "file already closed"))?;
        file.finish()
            .map_err(|e| io_error("write and sync", file.path(), e))?;
        sync_parent(file.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_file_scheme() {
        assert_eq!(local_path("file:///a/b"), PathBuf::from("/a/b"));
        assert_eq!(local_path("file:/a/b"), PathBuf::from("/a/b"));
        assert_eq!(local_path("/a/b"), PathBuf::from("/a/b"));
    }

    #[tokio::test]
    async fn writes_are_readable_and_directories_created() {
        let dir = tempfile::tempdir().unwrap();
        let storage = DurableFsStorage;
        let path = format!("file://{}/x/y/z.json", dir.path().display());
        storage
            .write(&path, Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(
            storage.read(&path).await.unwrap(),
            Bytes::from_static(b"hello")
        );

        let path2 = format!("file://{}/x/w.bin", dir.path().display());
        let mut writer = storage.writer(&path2).await.unwrap();
        writer.write(Bytes::from_static(b"ab")).await.unwrap();
        writer.write(Bytes::from_static(b"cd")).await.unwrap();
        writer.close().await.unwrap();
        let reader = storage.reader(&path2).await.unwrap();
        assert_eq!(reader.read(1..3).await.unwrap(), Bytes::from_static(b"bc"));
        assert_eq!(storage.metadata(&path2).await.unwrap().size, 4);

        storage.delete(&path2).await.unwrap();
        assert!(!storage.exists(&path2).await.unwrap());
        storage.delete(&path2).await.unwrap();
    }
}
