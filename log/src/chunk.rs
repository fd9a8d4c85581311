//! [`ChunkWriter`]: an append-only buffer whose written bytes are handed out as
//! [`Bytes`] while it is still being appended to.
//!
//! The read cache keeps the bytes of every completed write. Copying each write into a
//! fresh allocation, or merging small writes by copying them together, costs a
//! `malloc` and a copy per write and a `free` per eviction; a producer's stream of
//! writes instead goes into one chunk after another, each written once, and the
//! cache's entry for the run of writes in a chunk grows with every write as a longer
//! [`Bytes`] over the same memory, with no copy.
//!
//! Soundness rests on one rule: a byte is written once, before any [`Bytes`] covers it,
//! and never written again while any [`Bytes`] over the chunk lives. The writer
//! (unique, `&mut`) only writes past `filled`; every [`Bytes`] handed out covers bytes
//! before `filled`, which nobody writes any more, so they may be read from any thread.
//!
//! A chunk whose writer has moved on is [`Retired`]; once no [`Bytes`] over it is left
//! (every entry over it evicted, every reader done) it can be
//! [reclaimed](Retired::reclaim) and written again from its start. Reusing chunks
//! instead of freeing them keeps the write path off fresh memory: an allocation of
//! this size comes from `mmap`, and the kernel faults in and zeroes every page of it on
//! first write (about a tenth of the broker's CPU in a 100 B produce before chunks were
//! reused), then unmaps it on free, interrupting the other CPUs to flush their TLBs.

use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Bytes;

/// The memory of a chunk. Only [`ChunkWriter`] writes it, and only past what it has
/// filled.
struct Chunk {
    ptr: NonNull<u8>,
    capacity: usize,
}

// SAFETY: the bytes a `Chunk` shares (through `ChunkView`) are never written while a
// view covers them: the only writer (`ChunkWriter`, unique and `&mut`) writes past
// every view, and a retired chunk is written again only once its `Arc` is unique
// (`Retired::reclaim`), when no view is left. Reading immutable memory from several
// threads is sound, and the allocation is freed once, by the last `Arc`.
unsafe impl Send for Chunk {}
unsafe impl Sync for Chunk {}

impl Chunk {
    fn new(capacity: usize) -> Chunk {
        let mut memory = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(capacity));
        Chunk {
            ptr: NonNull::new(memory.as_mut_ptr()).expect("a Vec's pointer is never null"),
            capacity: memory.capacity(),
        }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `capacity` are those of the Vec taken apart in `new`.
        drop(unsafe { Vec::from_raw_parts(self.ptr.as_ptr(), 0, self.capacity) });
    }
}

/// The owner behind a [`Bytes`] over `[start, start + len)` of a chunk, all of it
/// written before the view was made.
struct ChunkView {
    chunk: Arc<Chunk>,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for ChunkView {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the range was filled before this view was made (see `ChunkWriter::
        // bytes`) and is never written again, so it is initialised and immutable.
        unsafe { std::slice::from_raw_parts(self.chunk.ptr.as_ptr().add(self.start), self.len) }
    }
}

/// The single writer of a chunk: appends bytes, and hands out the written ones.
pub(crate) struct ChunkWriter {
    chunk: Arc<Chunk>,
    filled: usize,
}

impl ChunkWriter {
    /// A chunk with room for at least `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> ChunkWriter {
        ChunkWriter {
            chunk: Arc::new(Chunk::new(capacity)),
            filled: 0,
        }
    }

    /// Bytes written so far.
    pub(crate) fn filled(&self) -> usize {
        self.filled
    }

    /// Bytes it holds in all.
    pub(crate) fn capacity(&self) -> usize {
        self.chunk.capacity
    }

    /// Room left.
    pub(crate) fn remaining(&self) -> usize {
        self.chunk.capacity - self.filled
    }

    /// Appends as much of `data` as fits; returns how much that was.
    pub(crate) fn append(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.remaining());
        // SAFETY: `[filled, filled + n)` is inside the allocation, and no view covers
        // it (views end at or before `filled`); `data` cannot overlap it, since that
        // memory is not yet reachable as a slice.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.chunk.ptr.as_ptr().add(self.filled),
                n,
            );
        }
        self.filled += n;
        n
    }

    /// The written bytes `[start, end)` as [`Bytes`] (no copy).
    ///
    /// # Panics
    /// If the range is not written yet.
    pub(crate) fn bytes(&self, start: usize, end: usize) -> Bytes {
        assert!(
            start <= end && end <= self.filled,
            "only written bytes are shared"
        );
        Bytes::from_owner(ChunkView {
            chunk: self.chunk.clone(),
            start,
            len: end - start,
        })
    }

    /// Stops writing: the chunk lives on while views of it do.
    pub(crate) fn retire(self) -> Retired {
        Retired(self.chunk)
    }
}

/// A chunk no longer written, kept to be written again once nothing reads it.
pub(crate) struct Retired(Arc<Chunk>);

impl Retired {
    /// The chunk as a writer from its start again, if no [`Bytes`] over it is left;
    /// else the chunk back.
    pub(crate) fn reclaim(mut self) -> Result<ChunkWriter, Retired> {
        // `get_mut` succeeds only for the last reference, and synchronises with the
        // drops of every other (on any thread): no view can read what is written next.
        if Arc::get_mut(&mut self.0).is_some() {
            Ok(ChunkWriter {
                chunk: self.0,
                filled: 0,
            })
        } else {
            Err(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_bytes_stay_valid_while_the_chunk_grows_and_after_the_writer_is_gone() {
        let mut w = ChunkWriter::new(16);
        assert_eq!(w.append(b"hello"), 5);
        let hello = w.bytes(0, 5);
        let room = w.remaining();
        let more = b" world, and more than sixteen bytes hold";
        assert_eq!(w.append(more), more.len().min(room));
        assert_eq!(w.remaining(), 0, "filled to the brim");
        let all = w.bytes(0, w.filled());
        let world = w.bytes(5, 11);
        drop(w);
        assert_eq!(&hello[..], b"hello");
        assert_eq!(&world[..], b" world");
        assert_eq!(&all[..16], b"hello world, and");
        // A view can be sent to and read on another thread.
        let joined = std::thread::spawn(move || world.to_vec()).join().unwrap();
        assert_eq!(joined, b" world");
    }

    #[test]
    fn a_retired_chunk_is_written_again_only_when_nothing_reads_it() {
        let mut w = ChunkWriter::new(8);
        w.append(b"old!");
        let view = w.bytes(0, 4);
        let Err(retired) = w.retire().reclaim() else {
            panic!("a view is alive");
        };
        // The last view goes on another thread.
        std::thread::spawn(move || assert_eq!(&view[..], b"old!"))
            .join()
            .unwrap();
        let Ok(mut w) = retired.reclaim() else {
            panic!("no view is left");
        };
        assert_eq!((w.filled(), w.remaining(), w.capacity()), (0, 8, 8));
        w.append(b"new");
        assert_eq!(&w.bytes(0, 3)[..], b"new");
    }

    #[test]
    #[should_panic(expected = "only written bytes are shared")]
    fn unwritten_bytes_are_never_shared() {
        let mut w = ChunkWriter::new(16);
        w.append(b"abc");
        let _ = w.bytes(0, 4);
    }
}
