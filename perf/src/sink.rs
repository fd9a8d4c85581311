//! A discard server on loopback: it reads Produce request frames, throws them away and
//! answers each with an empty success response (none at acks=0). Producing into it
//! measures the load generator's own ceiling on this machine, printed beside every
//! result so a figure close to it says "the tool was the bottleneck".
//!
//! One thread per accepted connection; the sink shares the machine's cores with the
//! tool, as a broker on the same host would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use anyhow::Result;
use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ProduceResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;

/// Size of the reads the sink makes; large so discarding costs few system calls.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// The sink's address; it serves until the process exits.
pub fn start(produce_version: i16, acks: i16) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let template = response_template(produce_version)?;
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let template = template.clone();
            thread::spawn(move || {
                let _ = serve(stream, &template, acks);
            });
        }
    });
    Ok(addr)
}

/// An empty ProduceResponse frame; bytes 4..8 are the correlation id.
fn response_template(version: i16) -> Result<Vec<u8>> {
    let header_version = ApiKey::Produce.response_header_version(version);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    ResponseHeader::default().encode(&mut buf, header_version)?;
    ProduceResponse::default().encode(&mut buf, version)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.to_vec())
}

/// Cuts frames out of the byte stream without copying them anywhere: only the 4-byte
/// size and the correlation id are looked at.
fn serve(mut stream: TcpStream, template: &[u8], acks: i16) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    // Bytes of the current frame still to skip, and the partial header being assembled.
    let mut skip: usize = 0;
    let mut header = [0u8; 12];
    let mut header_len = 0usize;
    let mut out: Vec<u8> = Vec::with_capacity(64 * template.len());
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut data = &buf[..n];
        while !data.is_empty() {
            if skip > 0 {
                let take = skip.min(data.len());
                skip -= take;
                data = &data[take..];
                continue;
            }
            let take = (header.len() - header_len).min(data.len());
            header[header_len..header_len + take].copy_from_slice(&data[..take]);
            header_len += take;
            data = &data[take..];
            if header_len < header.len() {
                break;
            }
            header_len = 0;
            let size = i32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let size = usize::try_from(size).unwrap_or(0);
            skip = size.saturating_sub(header.len() - 4);
            if acks != 0 {
                let start = out.len();
                out.extend_from_slice(template);
                out[start + 4..start + 8].copy_from_slice(&header[8..12]);
            }
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
    }
}
