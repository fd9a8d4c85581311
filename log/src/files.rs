//! Small metadata files (index files at roll and close, checkpoints, producer
//! snapshots), written with `std::fs`.
//!
//! These are small, written rarely (at a roll, a close, a leader-epoch change, a
//! DeleteRecords), and never on the append or read path, so blocking the shard for the
//! few hundred microseconds they take is cheaper than the machinery to avoid it. Every
//! one is replaced atomically: write `<name>.tmp`, fsync it, rename over `<name>`,
//! fsync the directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Suffix of a file being replaced; leftovers are deleted at open.
pub const TMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `contents` durably (steps 1-4 of the crate's durability order).
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = Path::new(&tmp);
    {
        let mut f = File::create(tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// fsyncs a directory, making creations, renames and removals in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes `path` if it exists.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Reads a whole file; `None` when it does not exist.
pub fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(read_if_exists(&dir.path().join("g")).unwrap(), None);
        remove_if_exists(&p).unwrap();
        remove_if_exists(&p).unwrap();
        assert!(!p.exists());
    }
}
