//! TCP for the Kafka listener.
//!
//! Every shard binds the same address; the listener sets `SO_REUSEPORT`, so the kernel
//! spreads incoming connections over the shards. An [`AcceptedTcpStream`] (from
//! `TcpListener::shared_accept`) may be sent to another shard, which binds it there.

pub use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
pub use glommio::net::{AcceptedTcpStream, TcpListener, TcpStream};
pub use std::io::IoSlice;
pub use std::os::fd::{AsRawFd, RawFd};

use std::io;
use std::net::{IpAddr, SocketAddr};

use futures_lite::io::AsyncWrite;

/// The most buffers one `sendmsg` takes (Linux's `UIO_MAXIOV`).
const MAX_IOVECS: usize = 1024;

/// Writes every byte of `bufs`, in order, to the socket `fd` that `writer` writes to.
///
/// glommio 0.9 has no vectored write, and writing the parts one by one costs a system
/// call (and a poll when the socket is full) per part. This gathers them: one
/// non-blocking `sendmsg` takes as many parts as the socket has room for; only when it
/// has none does it wait, through `writer`, whose write polls the socket the runtime's
/// way and sends the first part. `bufs` is consumed (advanced) as it is written.
pub async fn write_all_vectored<W>(
    fd: RawFd,
    writer: &mut W,
    mut bufs: &mut [IoSlice<'_>],
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let written = match send_nonblocking(fd, bufs) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => writer.write(&bufs[0]).await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, written);
    }
    Ok(())
}

/// One `sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL)` of up to [`MAX_IOVECS`] buffers.
fn send_nonblocking(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix (std guarantees it);
    // the message points at `bufs`, which outlives the call, and names no address or
    // control data. The kernel only reads the buffers.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len().min(MAX_IOVECS) as _;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// An ephemeral port held for the shards: a socket bound with `SO_REUSEPORT` but not
/// listening, so the kernel picks the port and no connection is ever queued on it.
/// Shards bind the same port with their own listeners; drop this once they have.
pub struct PortReservation {
    fd: libc::c_int,
    pub port: u16,
}

impl Drop for PortReservation {
    fn drop(&mut self) {
        // SAFETY: `fd` is a socket this value owns and closes exactly once.
        unsafe { libc::close(self.fd) };
    }
}

/// Reserves an ephemeral port on `ip` (for `listeners=...:0`).
pub fn reserve_port(ip: IpAddr) -> io::Result<PortReservation> {
    let addr = SocketAddr::new(ip, 0);
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket calls on a descriptor owned here; every pointer passed
    // points at a live, correctly sized value.
    unsafe {
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let reservation = PortReservation { fd, port: 0 };
        let one: libc::c_int = 1;
        for option in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            let rc = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let len = match addr {
            SocketAddr::V4(v4) => {
                let sin =
                    &mut *(&mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in);
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = 0;
                sin.sin_addr = libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                };
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                let sin6 =
                    &mut *(&mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6);
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = 0;
                sin6.sin6_addr = libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                };
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        if libc::bind(
            fd,
            &storage as *const _ as *const libc::sockaddr,
            len as libc::socklen_t,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut bound: libc::sockaddr_storage = std::mem::zeroed();
        let mut bound_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(
            fd,
            &mut bound as *mut _ as *mut libc::sockaddr,
            &mut bound_len,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        // sin_port and sin6_port sit at the same offset, in network byte order.
        let port = u16::from_be(
            (*(&bound as *const libc::sockaddr_storage as *const libc::sockaddr_in)).sin_port,
        );
        let mut reservation = reservation;
        reservation.port = port;
        Ok(reservation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_port_is_shared_by_reuseport_listeners_and_refuses_nothing_itself() {
        let reservation = reserve_port("127.0.0.1".parse().unwrap()).unwrap();
        assert_ne!(reservation.port, 0);
        let port = reservation.port;
        crate::exec::block_on(async move {
            let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
            let client = std::thread::spawn(move || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            let _accepted = listener.accept().await.unwrap();
            assert!(client.join().unwrap());
        });
        drop(reservation);
    }

    #[test]
    fn vectored_write_delivers_every_part_in_order_past_a_full_socket() {
        // 1500 parts (more than one sendmsg takes) of varied sizes, some empty. The
        // socket is filled first while the reader waits, so the write has to wait for
        // room as well as gather.
        let parts: Vec<Vec<u8>> = (0..1500u32)
            .map(|i| {
                let len = match i % 3 {
                    0 => 0,
                    1 => 17,
                    _ => 16 * 1024 + i as usize,
                };
                (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
            })
            .collect();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let (mut s, _) = listener.accept().unwrap();
            go_rx.recv().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        let (filler, expected) = crate::exec::block_on(async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let fd = stream.as_raw_fd();
            let chunk = [0xa5u8; 64 * 1024];
            let mut filler = 0usize;
            loop {
                match send_nonblocking(fd, &[IoSlice::new(&chunk)]) {
                    Ok(n) => filler += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            go_tx.send(()).unwrap();
            let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            write_all_vectored(fd, &mut stream, &mut slices)
                .await
                .unwrap();
            stream.close().await.unwrap();
            (filler, parts.concat())
        });
        let got = reader.join().unwrap();
        assert!(filler > 0);
        assert_eq!(got.len(), filler + expected.len());
        assert!(got[..filler].iter().all(|&b| b == 0xa5));
        assert!(got[filler..] == expected[..], "bytes differ");
    }
}
