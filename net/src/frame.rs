//! Kafka request framing: a 4-byte big-endian size, then that many bytes.
//!
//! Frames are cut out of a per-connection read buffer. "Incomplete" is the normal case,
//! not an error: [`FrameReader::next_frame`] reads until a whole frame is buffered. The
//! size prefix is checked against `socket.request.max.bytes` as soon as its four bytes
//! arrive, before any room is made for the body, so an oversized claim costs nothing.

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::io::{AsyncRead, AsyncReadExt};

use sluice_core::limits::MIN_REQUEST_FRAME_BYTES;

/// Bytes asked of the socket per read when no frame size says more.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a connection's input cannot be framed. Every variant closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("request of {size} bytes exceeds socket.request.max.bytes ({limit})")]
    TooLarge { size: i64, limit: usize },
    #[error("request size {size} is smaller than a request header")]
    TooSmall { size: i64 },
    #[error("connection closed inside a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Cuts frames out of a byte stream. Lives in one connection task.
pub struct FrameReader {
    /// `buf[..filled]` holds received bytes; `buf[filled..]` is zeroed room for reads,
    /// kept across calls so no byte is zeroed twice.
    buf: BytesMut,
    filled: usize,
    max_frame_bytes: usize,
}

impl FrameReader {
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameReader {
            buf: BytesMut::new(),
            filled: 0,
            max_frame_bytes,
        }
    }

    /// Checks the buffered bytes for a whole frame. `Ok(Some)` is a frame body (size
    /// prefix removed); `Ok(None)` means more bytes are needed, and how many at least.
    fn parse(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.filled < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as i64;
        if size > self.max_frame_bytes as i64 {
            return Err(FrameError::TooLarge {
                size,
                limit: self.max_frame_bytes,
            });
        }
        if size < MIN_REQUEST_FRAME_BYTES as i64 {
            return Err(FrameError::TooSmall { size });
        }
        let size = size as usize;
        if self.filled < 4 + size {
            return Ok(None);
        }
        self.buf.advance(4);
        self.filled -= 4 + size;
        Ok(Some(self.buf.split_to(size).freeze()))
    }

    /// Bytes the socket should be asked for: the rest of the current frame if its size
    /// is known (so a large frame is read with few calls), else a chunk.
    fn wanted(&self) -> usize {
        if self.filled >= 4 {
            let size = i32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
            (4 + size).saturating_sub(self.filled).max(READ_CHUNK_BYTES)
        } else {
            READ_CHUNK_BYTES
        }
    }

    /// Reads the next whole frame. `Ok(None)` is a clean end of stream between frames.
    pub async fn next_frame<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(Some(frame));
            }
            // Reads land in initialised memory. Room is grown (and zeroed) only past what
            // exists, by at most the rest of the current frame, whose size the check in
            // `parse` has already bounded by the frame limit.
            let wanted = self.wanted();
            if self.buf.len() < self.filled + wanted {
                self.buf.resize(self.filled + wanted, 0);
            }
            let n = reader.read(&mut self.buf[self.filled..]).await?;
            if n == 0 {
                return if self.filled == 0 {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated {
                        buffered: self.filled,
                    })
                };
            }
            self.filled += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use futures_lite::io::Cursor;

    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in bodies {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    #[test]
    fn reads_pipelined_frames_then_clean_eof() {
        let a = [1u8; 10];
        let b = [2u8; 300_000];
        let mut input = Cursor::new(framed(&[&a, &b]));
        let mut reader = FrameReader::new(1 << 20);
        block_on(async {
            assert_eq!(
                reader.next_frame(&mut input).await.unwrap().unwrap(),
                &a[..]
            );
            assert_eq!(
                reader.next_frame(&mut input).await.unwrap().unwrap(),
                &b[..]
            );
            assert!(reader.next_frame(&mut input).await.unwrap().is_none());
        });
    }

    #[test]
    fn oversized_prefix_is_refused_before_reading_the_body() {
        let mut input = Cursor::new(0x7fff_ffffi32.to_be_bytes().to_vec());
        let mut reader = FrameReader::new(1 << 20);
        let err = block_on(reader.next_frame(&mut input)).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                size: 0x7fff_ffff,
                ..
            }
        ));
        assert!(reader.buf.capacity() <= READ_CHUNK_BYTES + 4);
    }

    #[test]
    fn negative_and_tiny_sizes_are_refused() {
        for size in [-1i32, 0, 3] {
            let mut input = Cursor::new(size.to_be_bytes().to_vec());
            let err = block_on(FrameReader::new(1024).next_frame(&mut input)).unwrap_err();
            assert!(
                matches!(
                    err,
                    FrameError::TooSmall { .. } | FrameError::TooLarge { .. }
                ),
                "{size}: {err}"
            );
        }
    }

    #[test]
    fn eof_inside_a_frame_is_an_error() {
        let mut bytes = framed(&[&[7u8; 100]]);
        bytes.truncate(50);
        let err = block_on(FrameReader::new(1024).next_frame(&mut Cursor::new(bytes))).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { buffered: 50 }));
    }
}
