//! The socket facade: the one place where the driver meets the network.
//!
//! Natively this is `tokio::net::UdpSocket` with tokio's timer. Built with
//! `--cfg madsim` it is the simulator's virtual socket, whose deadline lives
//! in the virtual network's own heap (one entry per deadline, instead of a
//! madsim timer registered on every poll). Both offer the same signatures,
//! so the driver is the same code in both worlds.

use std::io;
use std::net::SocketAddr;

use crate::wire::Label;
use crate::Time;

/// What [`Socket::recv`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    Datagram {
        len: usize,
        from: SocketAddr,
    },
    /// The deadline passed with no datagram waiting.
    Timeout,
}

/// Whether a socket error means the host itself is gone (in the simulator:
/// it crashed), so the driver must stop. Every other error concerns one
/// datagram or one destination (an ICMP port-unreachable echoed back to a
/// UDP socket, a destination of the wrong address family, a broadcast the
/// OS refuses) and the driver carries on.
pub fn is_host_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotConnected
}

#[cfg(not(madsim))]
mod imp {
    use super::*;
    use crate::transport::MAX_WIRE_BYTES;
    use tokio::time::Instant;

    /// A UDP socket and the node's clock (real mode: tokio's).
    pub struct Socket {
        inner: tokio::net::UdpSocket,
        epoch: Instant,
    }

    impl Socket {
        pub async fn bind(addr: SocketAddr) -> io::Result<Socket> {
            Ok(Socket {
                inner: tokio::net::UdpSocket::bind(addr).await?,
                epoch: Instant::now(),
            })
        }

        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            self.inner.local_addr()
        }

        /// Time since the socket was bound.
        pub fn now(&self) -> Time {
            self.epoch.elapsed()
        }

        /// Send a datagram (`label` is for the simulator's observer).
        pub async fn send_to(&self, buf: &[u8], dst: SocketAddr, label: Label) -> io::Result<()> {
            let _ = label;
            self.inner.send_to(buf, dst).await.map(drop)
        }

        /// Wait for a datagram, or until `deadline` passes. `buf` is made
        /// one byte longer than the largest datagram (so a larger one
        /// shows as such); the datagram is `buf[..len]`.
        pub async fn recv(&self, buf: &mut Vec<u8>, deadline: Option<Time>) -> io::Result<Recv> {
            if buf.len() <= MAX_WIRE_BYTES {
                buf.resize(MAX_WIRE_BYTES + 1, 0);
            }
            let Some(deadline) = deadline else {
                let (len, from) = self.inner.recv_from(buf).await?;
                return Ok(Recv::Datagram { len, from });
            };
            tokio::select! {
                biased;
                r = self.inner.recv_from(buf) => {
                    let (len, from) = r?;
                    Ok(Recv::Datagram { len, from })
                }
                () = tokio::time::sleep_until(self.epoch + deadline) => Ok(Recv::Timeout),
            }
        }
    }
}

#[cfg(madsim)]
mod imp {
    use super::*;
    use grove_netsim::sim;
    use std::cell::Cell;
    use std::future::poll_fn;
    use std::task::Poll;

    thread_local! {
        /// The receive buffer of the thread's hosts: lent to a host's
        /// buffer when a datagram is ready for it and handed back when the
        /// host next waits, so that a waiting host (nearly all of them, at
        /// any instant) holds none. All hosts run on one thread.
        static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    }

    /// A virtual UDP socket and the node's clock (simulation: the network's).
    pub struct Socket {
        inner: sim::Socket,
    }

    impl Socket {
        pub async fn bind(addr: SocketAddr) -> io::Result<Socket> {
            Ok(Socket {
                inner: sim::Socket::bind(addr)?,
            })
        }

        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok(self.inner.local_addr())
        }

        /// Time since the virtual network was installed.
        pub fn now(&self) -> Time {
            Time::from_nanos(self.inner.now_ns())
        }

        /// Send a datagram; the network's observer sees `label`.
        pub async fn send_to(&self, buf: &[u8], dst: SocketAddr, label: Label) -> io::Result<()> {
            self.inner.send_labeled(buf, dst, label.0)
        }

        /// Wait for a datagram, or until `deadline` passes. The network
        /// makes `buf` the datagram, so it grows only to the largest one
        /// this host receives; the datagram is `buf[..len]`.
        pub async fn recv(&self, buf: &mut Vec<u8>, deadline: Option<Time>) -> io::Result<Recv> {
            let deadline_ns = deadline.map(|d| d.as_nanos().min(u64::MAX as u128) as u64);
            if buf.capacity() > 0 {
                SPARE.set(std::mem::take(buf));
            }
            let r = poll_fn(|cx| {
                *buf = SPARE.take();
                let r = self.inner.poll_recv(cx, buf, deadline_ns);
                if !matches!(r, Poll::Ready(Ok(sim::Recv::Datagram(_)))) {
                    SPARE.set(std::mem::take(buf));
                }
                r
            });
            match r.await? {
                sim::Recv::Datagram(d) => Ok(Recv::Datagram {
                    len: d.len,
                    from: d.from,
                }),
                sim::Recv::Timeout => Ok(Recv::Timeout),
            }
        }
    }
}

pub use imp::Socket;
