//! One client connection: frames in, responses out, in request order.
//!
//! The reader cuts frames and starts a task per request, so a parked Fetch does not
//! hold up the Produce behind it; the writer awaits those tasks in arrival order and
//! writes each response, which is how Kafka's ordering guarantee per connection holds.
//! At most `MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION` requests are open; the reader
//! pauses when the window is full.
//!
//! Failure tiers: a frame that cannot be cut or a request that cannot be parsed closes
//! this connection only (after the responses already owed are written); errors of
//! individual partitions are data in the response and never close anything.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::encode::ResponseFrame;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use sluice_core::limits::MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION;
use sluice_rt::exec::{spawn, Task};
use sluice_rt::net::{write_all_vectored, AsRawFd, IoSlice};
use sluice_rt::sync::{bounded, Receiver};
use sluice_rt::time::timeout;

use crate::api::DispatchError;
use crate::frame::{FrameError, FrameReader};
use crate::shard::Shard;

type Pending = Task<Result<Option<ResponseFrame>, DispatchError>>;

/// How long a connection may keep answering requests in flight once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Serves one connection until the client closes it, its input is malformed, or the
/// shard shuts down (signalled by `shutdown` closing).
pub async fn serve<S>(shard: Rc<Shard>, stream: S, peer: SocketAddr, shutdown: Receiver<()>)
where
    S: AsyncRead + AsyncWrite + AsRawFd + Unpin + 'static,
{
    shard.metrics.connection_opened();
    // Frames of several parts (Fetch) are written with one gathering send on the socket.
    let fd = stream.as_raw_fd();
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let (pending_tx, pending_rx) = bounded::<Pending>(MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION);
    // The writer closes this when it stops early (a request it cannot answer, or a
    // socket error), which stops the reader too.
    let (writer_done_tx, writer_done_rx) = bounded::<()>(1);

    let writer_task = spawn(async move {
        let _done = writer_done_tx;
        while let Ok(task) = pending_rx.recv().await {
            match task.await {
                Ok(Some(response)) => {
                    let written = match response.as_single() {
                        Some(bytes) => writer.write_all(bytes).await,
                        None => {
                            let mut slices: Vec<IoSlice<'_>> =
                                response.parts().map(|p| IoSlice::new(p)).collect();
                            write_all_vectored(fd, &mut writer, &mut slices).await
                        }
                    };
                    if let Err(e) = written {
                        tracing::debug!(%peer, error = %e, "write failed");
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::info!(%peer, error = %e, "closing connection");
                    return;
                }
            }
            if pending_rx.is_empty() {
                if let Err(e) = writer.flush().await {
                    tracing::debug!(%peer, error = %e, "flush failed");
                    return;
                }
            }
        }
        let _ = writer.close().await;
    });

    let mut frames = FrameReader::new(shard.config.socket_request_max_bytes as usize);
    let stopping = Cell::new(false);
    loop {
        let next = future::or(
            async { Some(frames.next_frame(&mut reader).await) },
            future::or(
                async {
                    let _ = shutdown.recv().await;
                    stopping.set(true);
                    None
                },
                async {
                    let _ = writer_done_rx.recv().await;
                    None
                },
            ),
        )
        .await;
        let frame = match next {
            None | Some(Ok(None)) => break,
            Some(Ok(Some(frame))) => frame,
            Some(Err(FrameError::Io(e))) => {
                tracing::debug!(%peer, error = %e, "read failed");
                break;
            }
            Some(Err(e)) => {
                tracing::info!(%peer, error = %e, "closing connection");
                break;
            }
        };
        let task = spawn(crate::metrics::observed_dispatch(
            shard.clone(),
            peer,
            frame,
        ));
        if pending_tx.send(task).await.is_err() {
            break;
        }
    }
    drop(pending_tx);
    if stopping.get() {
        // Work in flight (appends) finishes in well under the grace; what is still
        // parked after it (a long-polling Fetch, a JoinGroup waiting for its group) is
        // dropped with the connection, as Kafka drops it at shutdown.
        if timeout(SHUTDOWN_GRACE, writer_task).await.is_none() {
            tracing::debug!(%peer, "dropping parked requests at shutdown");
        }
    } else {
        writer_task.await;
    }
    shard.metrics.connection_closed();
}
