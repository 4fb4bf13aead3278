//! The file layer under the TSDB's writers: how WAL segments and block files are created, written,
//! synced and truncated. [`RealFs`] is the operating system; [`FaultyFs`] wraps it with a byte
//! budget that runs out like a full disk (short write, then `ENOSPC`), so tests can check that
//! appends fail loudly, nothing acknowledged is damaged, and writing resumes when space returns.
//!
//! Directory operations (create, rename, remove, directory fsync) go straight to `std::fs`: they
//! are not where a full disk first shows.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Opens files for writing.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Creates (or truncates) `path` for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    /// Opens an existing `path` for appending at its end.
    fn append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
}

/// A file being written. Writes are unbuffered: when `write_all` returns, the bytes are in the
/// kernel (they survive the death of the process, not yet a power loss).
pub trait WriteFile: Send {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// `fdatasync`: the bytes written so far survive a power loss.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (used to take back a partial write).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// A second handle on the same open file, to sync it without holding the writer's lock.
    fn sync_handle(&self) -> io::Result<Box<dyn WriteFile>>;
}

/// The operating system's files.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealFile(File);

impl WriteFile for RealFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)?;
        // The file is opened for appending, so the next write lands at the new end anyway.
        Ok(())
    }
    fn sync_handle(&self) -> io::Result<Box<dyn WriteFile>> {
        Ok(Box::new(RealFile(self.0.try_clone()?)))
    }
}

impl FileSystem for RealFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let f = OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
        drop(f);
        self.append(path)
    }

    fn append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(Box::new(RealFile(OpenOptions::new().append(true).open(path)?)))
    }
}

/// Fsyncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// [`RealFs`] with a shared budget of bytes that may still be written: a write that does not fit
/// writes what fits and fails with `ENOSPC`, like a filling disk. Clones share the budget.
#[derive(Debug, Clone, Default)]
pub struct FaultyFs {
    state: Arc<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    limited: AtomicBool,
    left: AtomicU64,
    fail_sync: AtomicBool,
}

impl FaultyFs {
    pub fn new() -> FaultyFs {
        FaultyFs::default()
    }

    /// From now on at most `bytes` more bytes can be written (`None`: no limit).
    pub fn set_space(&self, bytes: Option<u64>) {
        self.state.left.store(bytes.unwrap_or(0), Ordering::SeqCst);
        self.state.limited.store(bytes.is_some(), Ordering::SeqCst);
    }

    /// Makes every `sync_data` fail with `EIO` (or succeed again).
    pub fn set_fail_sync(&self, fail: bool) {
        self.state.fail_sync.store(fail, Ordering::SeqCst);
    }

    /// Takes up to `want` bytes from the budget; returns how many may be written.
    fn reserve(&self, want: usize) -> usize {
        if !self.state.limited.load(Ordering::SeqCst) {
            return want;
        }
        let mut left = self.state.left.load(Ordering::SeqCst);
        loop {
            let take = left.min(want as u64);
            match self.state.left.compare_exchange(left, left - take, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return take as usize,
                Err(now) => left = now,
            }
        }
    }
}

struct FaultyFile {
    inner: Box<dyn WriteFile>,
    fs: FaultyFs,
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28)
}

impl WriteFile for FaultyFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let n = self.fs.reserve(buf.len());
        self.inner.write_all(&buf[..n])?;
        if n < buf.len() { Err(enospc()) } else { Ok(()) }
    }
    fn sync_data(&mut self) -> io::Result<()> {
        if self.fs.state.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_handle(&self) -> io::Result<Box<dyn WriteFile>> {
        Ok(Box::new(FaultyFile { inner: self.inner.sync_handle()?, fs: self.fs.clone() }))
    }
}

impl FileSystem for FaultyFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(Box::new(FaultyFile { inner: RealFs.create(path)?, fs: self.clone() }))
    }
    fn append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(Box::new(FaultyFile { inner: RealFs.append(path)?, fs: self.clone() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faulty_fs_writes_what_fits_then_fails() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let fs = FaultyFs::new();
        let mut f = fs.create(&p).unwrap();
        f.write_all(b"abc").unwrap();
        fs.set_space(Some(2));
        let e = f.write_all(b"defg").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        assert_eq!(std::fs::read(&p).unwrap(), b"abcde");
        f.set_len(3).unwrap();
        fs.set_space(None);
        f.write_all(b"xy").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abcxy");
        fs.set_fail_sync(true);
        assert!(f.sync_data().is_err());
    }
}
