//! Response frames whose record sets are referenced, not copied.
//!
//! A Fetch response is mostly record bytes the log has already put in `Bytes`.
//! Encoding it into one contiguous buffer would copy them a second time. [`FrameBuf`]
//! is the encode target instead: it copies the small fields into a growing head, and
//! when the codec writes a slice that *is* one of the registered record sets (same
//! address and length), it ends the head there and keeps the record set itself as the
//! next part. The connection writes the parts with one gathering send
//! ([`sluice_rt::net::write_all_vectored`]), so record data crosses user space once:
//! from the log's buffer (a slice of the read cache) into the socket.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Slices shorter than this are copied even when registered: a part costs a write.
const ZERO_COPY_MIN_BYTES: usize = 4096;

/// Whether a record set is large enough to be referenced rather than copied; a handler
/// registers only those, so a response of small sets stays one buffer.
pub fn worth_referencing(records: &Bytes) -> bool {
    records.len() >= ZERO_COPY_MIN_BYTES
}

/// An encoded response frame: its bytes in order, as one or more parts. Most frames
/// are one buffer (`tail` alone, nothing allocated beside it); a Fetch frame is the
/// record sets it references with the encoded fields between them.
#[derive(Debug)]
pub struct ResponseFrame {
    /// The parts before `tail`, in order.
    leading: Vec<Bytes>,
    tail: Bytes,
}

impl ResponseFrame {
    /// The frame's one buffer, if it has only one.
    pub fn as_single(&self) -> Option<&Bytes> {
        self.leading.is_empty().then_some(&self.tail)
    }

    pub fn parts(&self) -> impl Iterator<Item = &Bytes> {
        self.leading.iter().chain(std::iter::once(&self.tail))
    }

    /// Total bytes of the frame, size prefix included.
    pub fn byte_len(&self) -> usize {
        self.parts().map(Bytes::len).sum()
    }

    /// The frame as one buffer (tests and tools; copies when there are several parts).
    pub fn to_bytes(&self) -> Bytes {
        match self.as_single() {
            Some(one) => one.clone(),
            None => {
                let mut whole = BytesMut::with_capacity(self.byte_len());
                self.parts().for_each(|p| whole.extend_from_slice(p));
                whole.freeze()
            }
        }
    }
}

/// An encode target that references registered `Bytes` instead of copying them.
pub struct FrameBuf {
    done: Vec<Bytes>,
    done_len: usize,
    head: BytesMut,
    registered: Vec<Bytes>,
}

impl FrameBuf {
    /// `capacity` sizes the head; `registered` are the record sets to reference.
    pub fn new(capacity: usize, registered: Vec<Bytes>) -> FrameBuf {
        FrameBuf {
            done: Vec::new(),
            done_len: 0,
            head: BytesMut::with_capacity(capacity),
            registered,
        }
    }

    pub fn finish(self) -> ResponseFrame {
        ResponseFrame {
            leading: self.done,
            tail: self.head.freeze(),
        }
    }

    fn registered(&self, src: &[u8]) -> Option<Bytes> {
        if src.len() < ZERO_COPY_MIN_BYTES {
            return None;
        }
        self.registered
            .iter()
            .find(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len())
            .cloned()
    }
}

// SAFETY: every method delegates to the head `BytesMut`, whose own implementation
// upholds `BufMut`'s contract; `put_slice` only adds whole parts around it.
unsafe impl BufMut for FrameBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is the head's.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.registered(src) {
            Some(part) => {
                let head = self.head.split().freeze();
                self.done_len += head.len() + part.len();
                if !head.is_empty() {
                    self.done.push(head);
                }
                self.done.push(part);
            }
            None => self.head.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for FrameBuf {
    fn offset(&self) -> usize {
        self.done_len + self.head.len()
    }

    /// Message codecs only append; seeking (used by the record-batch encoder's length
    /// gaps) is supported within the current head, forward or back.
    fn seek(&mut self, offset: usize) {
        assert!(
            offset >= self.done_len,
            "seek into a finished part of a response frame"
        );
        self.head.resize(offset - self.done_len, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        assert!(
            r.start >= self.done_len,
            "range in a finished part of a response frame"
        );
        &mut self.head[r.start - self.done_len..r.end - self.done_len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn response(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_records(Some(r.clone()))
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions)])
    }

    #[test]
    fn same_bytes_as_a_contiguous_encode_without_copying_records() {
        let big = Bytes::from(vec![7u8; 64 * 1024]);
        let small = Bytes::from(vec![9u8; 100]);
        let records = [
            big.clone(),
            small.clone(),
            Bytes::new(),
            big.slice(..10_000),
        ];
        let fetch = response(&records);
        for version in [4i16, 11, 12] {
            let mut contiguous = BytesMut::new();
            fetch.encode(&mut contiguous, version).unwrap();
            let mut buf = FrameBuf::new(128, records.to_vec());
            fetch.encode(&mut buf, version).unwrap();
            assert_eq!(buf.offset(), contiguous.len());
            let frame = buf.finish();
            assert_eq!(frame.to_bytes(), contiguous.freeze(), "v{version}");
            // The large record sets are the registered buffers themselves.
            assert!(frame
                .parts()
                .any(|p| p.as_ptr() == big.as_ptr() && p.len() == big.len()));
            assert!(frame
                .parts()
                .any(|p| p.as_ptr() == big.as_ptr() && p.len() == 10_000));
            assert!(
                !frame.parts().any(|p| p.as_ptr() == small.as_ptr()),
                "small sets are copied"
            );
        }
    }

    #[test]
    fn unregistered_equal_bytes_are_copied() {
        let registered = Bytes::from(vec![1u8; 8192]);
        let other = Bytes::from(vec![1u8; 8192]);
        let mut buf = FrameBuf::new(16, vec![registered]);
        buf.put_slice(&other);
        let frame = buf.finish();
        assert!(frame.as_single().is_some());
        assert_eq!(frame.byte_len(), 8192);
    }
}
