//! Direct-I/O files for the segment log.
//!
//! Thin wrappers over glommio's `DmaFile` that speak `std::io::Result`, so callers never
//! see glommio's error type. Buffers handed to [`DmaFile::write_at`] must come from
//! [`DmaFile::alloc_dma_buffer`] (aligned for `O_DIRECT`), and write positions must be
//! multiples of [`DmaFile::alignment`].

use std::io;
use std::path::Path;
use std::rc::Rc;

pub use glommio::io::{DmaBuffer, DmaFile, ReadResult};

thread_local! {
    /// Devices (`st_dev`) whose iopoll probe this thread has primed.
    static PRIMED_DEVICES: std::cell::RefCell<std::collections::HashSet<u64>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// glommio decides once per thread and device whether the device supports polled
/// I/O, by reading the first page of the first file opened there. When that file is
/// empty the probe read "succeeds" without reaching the device, polling is wrongly
/// enabled, and every later read fails with `EOPNOTSUPP` on devices without poll
/// queues (virtio disks, most cloud volumes). So before the first direct-I/O open on a
/// device, open a one-page file there to make the probe real.
async fn prime_iopoll_probe(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let dev = std::fs::metadata(dir)?.dev();
    if PRIMED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let probe = dir.join(format!(".sluice-iopoll-probe-{}", std::process::id()));
    std::fs::write(&probe, [0u8; 4096])?;
    let opened = DmaFile::open(&probe).await;
    let _ = std::fs::remove_file(&probe);
    opened?.close().await?;
    PRIMED_DEVICES.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}

/// Opens `path` for reading and writing with direct I/O, creating it when missing.
/// Existing contents are kept.
pub async fn open_read_write(path: &Path) -> io::Result<DmaFile> {
    prime_iopoll_probe(path).await?;
    Ok(glommio::io::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await?)
}

/// Opens an existing file for reading only, with direct I/O.
pub async fn open_read(path: &Path) -> io::Result<DmaFile> {
    prime_iopoll_probe(path).await?;
    Ok(DmaFile::open(path).await?)
}

/// Writes the whole of `buf` at `pos` (both aligned); a short write is an error.
pub async fn write_all_at(file: &DmaFile, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<()> {
    let len = buf.len();
    let written = file.write_rc_at(buf, pos).await?;
    if written != len {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short direct write: {written} of {len} bytes at {pos}"),
        ));
    }
    Ok(())
}

/// Reads up to `size` bytes at `pos` (any alignment; glommio widens the read to the
/// device alignment). Fewer bytes come back at end of file.
pub async fn read_at(file: &DmaFile, pos: u64, size: usize) -> io::Result<ReadResult> {
    Ok(file.read_at(pos, size).await?)
}

/// `fdatasync(2)`.
pub async fn fdatasync(file: &DmaFile) -> io::Result<()> {
    Ok(file.fdatasync().await?)
}

/// Reserves the first `size` bytes of the file and makes that its size (`fallocate`
/// with mode 0, as Kafka's `log.preallocate` sets the file length). The new range reads
/// as zeroes. Direct writes into it neither allocate blocks nor move the file's size,
/// so ext4 takes them under its shared inode lock; writes past the end (and into
/// space reserved with `FALLOC_FL_KEEP_SIZE`, which still moves the size) serialize on
/// the exclusive lock. fio measured the gap on this machine (BENCHMARKS.md). Callers
/// own the logical end of the data and must cut the file to it (see [`truncate`])
/// when they stop writing.
pub async fn preallocate(file: &DmaFile, size: u64) -> io::Result<()> {
    Ok(file.pre_allocate(size, false).await?)
}

/// `ftruncate(2)`.
pub async fn truncate(file: &DmaFile, size: u64) -> io::Result<()> {
    Ok(file.truncate(size).await?)
}

/// Current size of the file as the file system reports it.
pub async fn file_size(file: &DmaFile) -> io::Result<u64> {
    Ok(file.file_size().await?)
}

/// Closes a file shared through `Rc`; a no-op while other references remain.
pub async fn close_rc(file: Rc<DmaFile>) -> io::Result<()> {
    file.close_rc().await?;
    Ok(())
}

/// Allocates an aligned buffer for direct I/O on the current shard (its contents are
/// uninitialised garbage, not zeroes). `size` must be non-zero.
pub fn alloc_buffer(size: usize) -> DmaBuffer {
    assert!(size > 0, "zero-sized DMA buffer");
    glommio::allocate_dma_buffer(size)
}
