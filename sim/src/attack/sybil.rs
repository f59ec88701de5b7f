//! An attacker's Sybils: fresh identities, each with its own sessions,
//! at most [`MAX_SYBILS`] alive at once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use grove_node::transport::session::{self, kind, Dest, Event, Incoming, Sessions, Via};
use grove_node::{Identity, PeerId, Time};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::OWN_INDICES;

/// Sybils one attacker keeps alive at once.
pub const MAX_SYBILS: usize = 16;

/// One Sybil: an identity and its sessions, and where its peers are.
struct Sybil {
    id: PeerId,
    sessions: Sessions,
    /// The addresses of the peers it talks to, for datagrams its sessions
    /// send on their own (acks, probes, rekeys).
    peers: BTreeMap<PeerId, SocketAddr>,
}

/// A datagram a Sybil's sessions want sent.
pub struct Transmit {
    pub dst: SocketAddr,
    pub bytes: Vec<u8>,
    pub label: u64,
}

/// What became of a datagram handed to the Sybils.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Opened by a Sybil's session (data, an ack).
    Opened,
    /// A handshake or cookie datagram a Sybil's session took.
    Control,
    /// Data under an index a retired Sybil chose.
    ForRetired,
    /// Data under an index no Sybil of this attacker ever chose: traffic
    /// of someone else's session sent here.
    NotOurs,
    /// Anything else none of them wanted (answers to replays and forgeries).
    Unclaimed,
}

/// The pool.
pub struct Sybils {
    alive: VecDeque<Sybil>,
    config: session::Config,
    /// Indices the Sybils chose (from their initiations and responses), to
    /// recognise data for a retired one; the oldest forgotten first.
    own: VecDeque<u32>,
    own_set: BTreeSet<u32>,
    buf: Vec<u8>,
    plain: Vec<u8>,
}

impl Sybils {
    pub fn new(config: session::Config) -> Self {
        Sybils {
            alive: VecDeque::new(),
            config,
            own: VecDeque::new(),
            own_set: BTreeSet::new(),
            buf: Vec::new(),
            plain: Vec::new(),
        }
    }

    /// A fresh Sybil (the oldest retires if [`MAX_SYBILS`] are alive); its
    /// position.
    pub fn fresh(&mut self, rng: &mut ChaCha8Rng) -> usize {
        if self.alive.len() >= MAX_SYBILS {
            self.alive.pop_front();
        }
        let identity = Identity::from_seed(rng.gen());
        let sessions = Sessions::new(&identity, self.config.clone(), rng.gen());
        self.alive.push_back(Sybil {
            id: identity.peer_id(),
            sessions,
            peers: BTreeMap::new(),
        });
        self.alive.len() - 1
    }

    /// Sybils alive.
    pub fn len(&self) -> usize {
        self.alive.len()
    }

    /// A Sybil to send with: a fresh one while fewer than [`MAX_SYBILS`]
    /// are alive, else a random one of them.
    pub fn pick(&mut self, rng: &mut ChaCha8Rng) -> usize {
        if self.alive.len() < MAX_SYBILS {
            return self.fresh(rng);
        }
        rng.gen_range(0..self.alive.len())
    }

    pub fn id(&self, sybil: usize) -> PeerId {
        self.alive[sybil].id
    }

    /// Seal `plaintext` from Sybil `sybil` to `peer` at `addr` (queued
    /// behind a handshake if need be).
    pub fn send(
        &mut self,
        now: Time,
        sybil: usize,
        peer: PeerId,
        addr: SocketAddr,
        plaintext: &[u8],
        label: u64,
    ) {
        let s = &mut self.alive[sybil];
        s.peers.insert(peer, addr);
        let path = Some(Via::Direct(addr));
        s.sessions
            .send_labeled(now, peer, path, plaintext, true, label);
    }

    /// A datagram from `from`: offered to each Sybil until one takes it.
    pub fn handle(&mut self, now: Time, from: SocketAddr, bytes: &[u8]) -> Received {
        for k in 0..self.alive.len() {
            let incoming =
                self.alive[k]
                    .sessions
                    .handle(now, Via::Direct(from), bytes, &mut self.plain);
            match incoming {
                Incoming::Dropped(session::Drop::UnknownSession | session::Drop::BadMac) => {}
                Incoming::Data { .. } => return Received::Opened,
                Incoming::Control | Incoming::Dropped(_) => return Received::Control,
            }
        }
        let data = matches!(
            bytes.first(),
            Some(&(kind::DATA | kind::DATA_ACK_ELICITING))
        );
        let index = bytes
            .get(1..5)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
        match index {
            Some(i) if data && self.own_set.contains(&i) => Received::ForRetired,
            Some(_) if data => Received::NotOurs,
            _ => Received::Unclaimed,
        }
    }

    /// Fire the Sybils' session timers due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        for s in &mut self.alive {
            if s.sessions.poll_timeout().is_some_and(|t| t <= now) {
                s.sessions.handle_timeout(now);
            }
        }
    }

    /// The earliest session deadline of any Sybil.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.alive
            .iter()
            .filter_map(|s| s.sessions.poll_timeout())
            .min()
    }

    /// Every datagram the Sybils' sessions want sent, to `out`; the
    /// handshakes they completed meanwhile.
    pub fn drain(&mut self, mut out: impl FnMut(Transmit)) -> u64 {
        let mut established = 0;
        for k in 0..self.alive.len() {
            while let Some(e) = self.alive[k].sessions.poll_event() {
                if let Event::Established { .. } = e {
                    established += 1;
                }
            }
            while let Some(t) = self.alive[k].sessions.poll_transmit(&mut self.buf) {
                let s = &self.alive[k];
                let dst = match t.dest {
                    Dest::Peer {
                        path: Some(Via::Direct(a)),
                        ..
                    }
                    | Dest::Reply(Via::Direct(a)) => Some(a),
                    Dest::Peer { peer, path: None } => s.peers.get(&peer).copied(),
                    // Sybils never open relayed sessions.
                    Dest::Peer { .. } | Dest::Reply(Via::Relayed { .. }) => None,
                };
                let bytes = std::mem::take(&mut self.buf);
                self.note_own_index(&bytes);
                if let Some(dst) = dst {
                    out(Transmit {
                        dst,
                        bytes,
                        label: t.label,
                    });
                }
            }
        }
        established
    }

    /// Remember the index a Sybil chose, if `bytes` is its initiation or
    /// response.
    fn note_own_index(&mut self, bytes: &[u8]) {
        let chosen = matches!(bytes.first(), Some(&(kind::INITIATION | kind::RESPONSE)));
        let Some(index) = bytes.get(1..5).filter(|_| chosen) else {
            return;
        };
        let index = u32::from_le_bytes(index.try_into().expect("4 bytes"));
        if self.own_set.insert(index) {
            self.own.push_back(index);
            if self.own.len() > OWN_INDICES {
                let old = self.own.pop_front().expect("non-empty");
                self.own_set.remove(&old);
            }
        }
    }
}
