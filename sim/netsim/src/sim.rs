//! The network on madsim: one pump task, and the virtual UDP socket.
//!
//! The pump sleeps on madsim's clock until the earliest queued instant,
//! moves everything due into inboxes and wakes each receiving task once.
//! Sockets send without awaiting (a push onto the heap) and keep their
//! task's next deadline in the same heap, so a node costs the executor one
//! wake-up per instant at which it has something to do.
//!
//! Everything here runs on madsim's single thread; the network is shared as
//! `Rc<RefCell<_>>` through a thread-local installed by the world builder.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use madsim::time::{Instant, Sleep};

use crate::network::{Delivery, Fate, HostId, Network, SendError};

/// A datagram as the network's observer sees it when it is sent.
#[derive(Clone, Copy, Debug)]
pub struct Sent<'a> {
    pub now_ns: u64,
    /// The sending host (for a spoofed datagram, the host that really sent
    /// it, whatever source it claims).
    pub src: HostId,
    /// The destination the sender addressed.
    pub dst: SocketAddr,
    pub bytes: &'a [u8],
    /// What the sender says the datagram carries (its plaintext's message
    /// kind), which sealed bytes no longer show.
    pub label: u64,
    /// The fate decided at send time.
    pub fate: Fate,
}

/// Called for every datagram sent.
pub type Observer = Box<dyn FnMut(Sent<'_>)>;

struct Shared {
    net: RefCell<Network>,
    epoch: Instant,
    /// madsim's clock, held so that reading it skips the `clock_gettime`
    /// override (thread-local lookup, two Arc clones and drops).
    time: madsim::time::TimeHandle,
    /// `time.elapsed()` at install.
    epoch_elapsed: Duration,
    observer: RefCell<Option<Observer>>,
}

/// A handle on the installed network.
#[derive(Clone)]
pub struct NetHandle(Rc<Shared>);

thread_local! {
    static CURRENT: RefCell<Option<NetHandle>> = const { RefCell::new(None) };
}

impl NetHandle {
    /// Install `net` as this thread's network, with time zero now.
    pub fn install(net: Network) -> NetHandle {
        let time = madsim::time::TimeHandle::current();
        let h = NetHandle(Rc::new(Shared {
            net: RefCell::new(net),
            epoch: Instant::now(),
            epoch_elapsed: time.elapsed(),
            time,
            observer: RefCell::new(None),
        }));
        CURRENT.with(|c| *c.borrow_mut() = Some(h.clone()));
        h
    }

    /// The installed network, if any.
    pub fn current() -> Option<NetHandle> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// Remove the installed network from this thread.
    pub fn uninstall() {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }

    /// Observe every datagram sent from now on.
    pub fn set_observer(&self, observer: Observer) {
        *self.0.observer.borrow_mut() = Some(observer);
    }

    /// Nanoseconds since the network was installed.
    pub fn now_ns(&self) -> u64 {
        (self.0.time.elapsed() - self.0.epoch_elapsed).as_nanos() as u64
    }

    /// Run `f` on the network.
    pub fn with<R>(&self, f: impl FnOnce(&mut Network) -> R) -> R {
        f(&mut self.0.net.borrow_mut())
    }

    fn instant(&self, ns: u64) -> Instant {
        self.0.epoch + Duration::from_nanos(ns)
    }

    /// Sleep until `ns` after the network was installed, exactly (madsim's
    /// `sleep_until` alone rounds short sleeps up to 1 ms).
    pub async fn sleep_until_ns(&self, ns: u64) {
        let mut s = Box::pin(madsim::time::sleep_until(self.instant(ns)));
        s.as_mut().reset(self.instant(ns));
        s.await
    }

    /// The pump: runs forever, delivering datagrams and deadlines at their
    /// instants. Spawn it once per run.
    pub async fn pump(self) {
        let mut sleep: Option<Pin<Box<Sleep>>> = None;
        let mut armed: Option<u64> = None;
        loop {
            poll_fn(|cx| self.poll_pump(cx, &mut sleep, &mut armed)).await;
        }
    }

    fn poll_pump(
        &self,
        cx: &mut Context<'_>,
        sleep: &mut Option<Pin<Box<Sleep>>>,
        armed: &mut Option<u64>,
    ) -> Poll<()> {
        let now = self.now_ns();
        let mut net = self.0.net.borrow_mut();
        if net.next_instant().is_some_and(|t| t <= now) {
            net.advance(now);
        }
        let Some(next) = net.next_instant() else {
            *armed = None;
            net.set_pump(cx.waker().clone(), None);
            return Poll::Pending;
        };
        if *armed != Some(next) || sleep.is_none() {
            // `sleep_until` rounds up to 1 ms; `reset` sets the exact instant.
            let mut s = Box::pin(madsim::time::sleep_until(self.instant(next)));
            s.as_mut().reset(self.instant(next));
            *sleep = Some(s);
            *armed = Some(next);
        }
        net.set_pump(cx.waker().clone(), Some(next));
        drop(net);
        match sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                *sleep = None;
                *armed = None;
                Poll::Ready(())
            }
            _ => Poll::Pending,
        }
    }
}

/// What [`Socket::recv`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    Datagram(Delivery),
    /// The deadline passed with no datagram waiting.
    Timeout,
}

/// A virtual UDP socket on one host of the installed network.
pub struct Socket {
    net: NetHandle,
    host: HostId,
    incarnation: u32,
    local: SocketAddr,
}

impl Socket {
    /// Bind `addr` on the host that owns its IP (port 0: ephemeral).
    pub fn bind(addr: SocketAddr) -> io::Result<Socket> {
        let net = NetHandle::current().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "no virtual network installed")
        })?;
        let (host, port, incarnation) = net.with(|n| {
            let host = n.host_by_ip(addr.ip()).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("no virtual host has address {}", addr.ip()),
                )
            })?;
            let port = n.bind(host, addr.port())?;
            Ok::<_, io::Error>((host, port, n.incarnation(host)))
        })?;
        Ok(Socket {
            net,
            host,
            incarnation,
            local: SocketAddr::new(addr.ip(), port),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn host(&self) -> HostId {
        self.host
    }

    /// Nanoseconds since the network was installed.
    pub fn now_ns(&self) -> u64 {
        self.net.now_ns()
    }

    fn check_alive(&self, n: &Network) -> io::Result<()> {
        if n.incarnation(self.host) != self.incarnation || !n.is_up(self.host) {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the host crashed",
            ));
        }
        Ok(())
    }

    /// Send a datagram; never waits. A datagram the network drops is not an
    /// error (UDP does not know either).
    pub fn send_to(&self, buf: &[u8], dst: SocketAddr) -> io::Result<()> {
        self.send_labeled(buf, dst, 0)
    }

    /// Send a datagram whose observer label (what it carries, as its
    /// sender read it before sealing) is `label`.
    pub fn send_labeled(&self, buf: &[u8], dst: SocketAddr, label: u64) -> io::Result<()> {
        self.send_as(None, buf, dst, label)
    }

    /// Send a datagram claiming the source address `from` (IP spoofing, see
    /// [`Network::send_spoofed`]). For the simulator's attack hosts only:
    /// no node does this, and a host behind a NAT cannot.
    pub fn send_spoofed(
        &self,
        from: SocketAddr,
        buf: &[u8],
        dst: SocketAddr,
        label: u64,
    ) -> io::Result<()> {
        self.send_as(Some(from), buf, dst, label)
    }

    fn send_as(
        &self,
        forged: Option<SocketAddr>,
        buf: &[u8],
        dst: SocketAddr,
        label: u64,
    ) -> io::Result<()> {
        let now = self.net.now_ns();
        let fate = self.net.with(|n| {
            self.check_alive(n)?;
            let sent = match forged {
                None => n.send(now, self.host, dst, buf),
                Some(from) => n.send_spoofed(now, self.host, from, dst, buf),
            };
            sent.map_err(|e| match e {
                SendError::TooLarge { len } => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("datagram of {len} bytes is too large"),
                ),
                SendError::HostDown => {
                    io::Error::new(io::ErrorKind::NotConnected, "the host is down")
                }
                SendError::SpoofBehindNat => io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    "a host behind a NAT cannot forge its source address",
                ),
            })
        })?;
        if let Some(obs) = self.net.0.observer.borrow_mut().as_mut() {
            obs(Sent {
                now_ns: now,
                src: self.host,
                dst,
                bytes: buf,
                label,
                fate,
            });
        }
        Ok(())
    }

    /// Wait for a datagram, or until `deadline_ns` (if any) passes. `buf`
    /// becomes the datagram (see [`Network::take_vec`]).
    pub fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
        deadline_ns: Option<u64>,
    ) -> Poll<io::Result<Recv>> {
        let now = self.net.now_ns();
        self.net
            .with(|n| {
                self.check_alive(n)?;
                if let Some(d) = n.take_vec(self.host, buf) {
                    return Ok(Some(Recv::Datagram(d)));
                }
                match deadline_ns {
                    Some(d) if d <= now => {
                        n.clear_deadline(self.host);
                        Ok(Some(Recv::Timeout))
                    }
                    Some(d) => {
                        n.set_deadline(self.host, d);
                        n.set_waker(self.host, cx.waker());
                        Ok(None)
                    }
                    None => {
                        n.clear_deadline(self.host);
                        n.set_waker(self.host, cx.waker());
                        Ok(None)
                    }
                }
            })
            .map_or_else(
                |e| Poll::Ready(Err(e)),
                |r| r.map_or(Poll::Pending, |r| Poll::Ready(Ok(r))),
            )
    }

    /// Wait for a datagram, or until `deadline_ns` (if any) passes. `buf`
    /// becomes the datagram.
    pub async fn recv(&self, buf: &mut Vec<u8>, deadline_ns: Option<u64>) -> io::Result<Recv> {
        poll_fn(|cx| self.poll_recv(cx, buf, deadline_ns)).await
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.net.with(|n| n.unbind(self.host, self.incarnation));
    }
}
