//! An attacker's Sybils: fresh identities, each with its own sessions, in
//! one pool per attack the attacker runs (so that a flood of fresh ones
//! does not retire those another attack keeps using), at most
//! [`MAX_SYBILS`] alive at once in each.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use grove_node::transport::session::{self, kind, Dest, Event, Incoming, Sessions, Via};
use grove_node::{Identity, PeerId, Time};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::OWN_INDICES;

/// Sybils one attacker keeps alive at once, per attack.
pub const MAX_SYBILS: usize = 16;

/// One Sybil: an identity and its sessions, and where its peers are.
struct Sybil {
    id: PeerId,
    sessions: Sessions,
    /// The addresses of the peers it talks to, for datagrams its sessions
    /// send on their own (acks, probes, rekeys).
    peers: BTreeMap<PeerId, SocketAddr>,
}

/// A Sybil: its pool and its place there (valid until that pool changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SybilId {
    pool: usize,
    k: usize,
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

/// The pools.
pub struct Sybils {
    pools: Vec<VecDeque<Sybil>>,
    config: session::Config,
    /// Indices the Sybils chose (from their initiations and responses), to
    /// recognise data for a retired one; the oldest forgotten first.
    own: VecDeque<u32>,
    own_set: BTreeSet<u32>,
    buf: Vec<u8>,
    plain: Vec<u8>,
}

impl Sybils {
    /// `pools` empty pools of Sybils whose sessions are set as `config`.
    pub fn new(pools: usize, config: session::Config) -> Self {
        Sybils {
            pools: (0..pools).map(|_| VecDeque::new()).collect(),
            config,
            own: VecDeque::new(),
            own_set: BTreeSet::new(),
            buf: Vec::new(),
            plain: Vec::new(),
        }
    }

    /// A fresh Sybil in `pool` (its oldest retires if [`MAX_SYBILS`] are
    /// alive there).
    pub fn fresh(&mut self, pool: usize, rng: &mut ChaCha8Rng) -> SybilId {
        let alive = &mut self.pools[pool];
        if alive.len() >= MAX_SYBILS {
            alive.pop_front();
        }
        let identity = Identity::from_seed(rng.gen());
        let sessions = Sessions::new(&identity, self.config.clone(), rng.gen());
        alive.push_back(Sybil {
            id: identity.peer_id(),
            sessions,
            peers: BTreeMap::new(),
        });
        SybilId {
            pool,
            k: alive.len() - 1,
        }
    }

    /// A Sybil of `pool` to send with: a fresh one while fewer than
    /// [`MAX_SYBILS`] are alive there, else a random one of them.
    pub fn pick(&mut self, pool: usize, rng: &mut ChaCha8Rng) -> SybilId {
        let alive = self.pools[pool].len();
        if alive < MAX_SYBILS {
            return self.fresh(pool, rng);
        }
        SybilId {
            pool,
            k: rng.gen_range(0..alive),
        }
    }

    /// Sybils alive in `pool`.
    pub fn len(&self, pool: usize) -> usize {
        self.pools[pool].len()
    }

    pub fn id(&self, sybil: SybilId) -> PeerId {
        self.pools[sybil.pool][sybil.k].id
    }

    /// Seal `plaintext` from `sybil` to `peer` at `addr` (queued behind a
    /// handshake if need be).
    pub fn send(
        &mut self,
        now: Time,
        sybil: SybilId,
        peer: PeerId,
        addr: SocketAddr,
        plaintext: &[u8],
        label: u64,
    ) {
        let s = &mut self.pools[sybil.pool][sybil.k];
        s.peers.insert(peer, addr);
        let path = Some(Via::Direct(addr));
        s.sessions
            .send_labeled(now, peer, path, plaintext, true, label);
    }

    /// A datagram from `from`: offered to each Sybil until one takes it.
    pub fn handle(&mut self, now: Time, from: SocketAddr, bytes: &[u8]) -> Received {
        for s in self.pools.iter_mut().flatten() {
            let via = Via::Direct(from);
            match s.sessions.handle(now, via, bytes, &mut self.plain) {
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
        for s in self.pools.iter_mut().flatten() {
            if s.sessions.poll_timeout().is_some_and(|t| t <= now) {
                s.sessions.handle_timeout(now);
            }
        }
    }

    /// The earliest session deadline of any Sybil.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.pools
            .iter()
            .flatten()
            .filter_map(|s| s.sessions.poll_timeout())
            .min()
    }

    /// Every datagram the Sybils' sessions want sent, to `out`; the
    /// handshakes they completed meanwhile.
    pub fn drain(&mut self, mut out: impl FnMut(Transmit)) -> u64 {
        let mut established = 0;
        let mut own = Vec::new();
        for s in self.pools.iter_mut().flatten() {
            while let Some(e) = s.sessions.poll_event() {
                if let Event::Established { .. } = e {
                    established += 1;
                }
            }
            while let Some(t) = s.sessions.poll_transmit(&mut self.buf) {
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
                own.extend(own_index(&bytes));
                if let Some(dst) = dst {
                    out(Transmit {
                        dst,
                        bytes,
                        label: t.label,
                    });
                }
            }
        }
        for index in own {
            self.note_own_index(index);
        }
        established
    }

    /// Remember an index a Sybil chose (the oldest forgotten past
    /// [`OWN_INDICES`]).
    fn note_own_index(&mut self, index: u32) {
        if self.own_set.insert(index) {
            self.own.push_back(index);
            if self.own.len() > OWN_INDICES {
                let old = self.own.pop_front().expect("non-empty");
                self.own_set.remove(&old);
            }
        }
    }
}

/// The index a Sybil chose, if `bytes` is its initiation or response.
fn own_index(bytes: &[u8]) -> Option<u32> {
    let chosen = matches!(bytes.first(), Some(&(kind::INITIATION | kind::RESPONSE)));
    let index = bytes.get(1..5).filter(|_| chosen)?;
    Some(u32::from_le_bytes(index.try_into().expect("4 bytes")))
}
