//! TCP for the Kafka listener.
//!
//! Every shard binds the same address; the listener sets `SO_REUSEPORT`, so the kernel
//! spreads incoming connections over the shards.

pub use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
pub use glommio::net::{TcpListener, TcpStream};

use std::io;
use std::net::{IpAddr, SocketAddr};

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
}
