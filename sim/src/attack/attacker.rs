//! One attacker host, sans-IO: its plans (one per attack of its group), its
//! Sybils, and the datagrams it wants sent. The async task
//! ([`super::task`]) feeds it time and datagrams; tests drive it by hand.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use grove_node::message::{self, Datagram, Message};
use grove_node::proto::hyparview;
use grove_node::transport::nat::Message as Nat;
use grove_node::transport::session::{self, kind, Sessions, Via};
use grove_node::wire::Label;
use grove_node::{Identity, Peer, PeerId, Time};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::observe::AttackerStats;
use super::sybil::{Received, SybilId, Sybils, Transmit};
use super::{spoofed_source, Capture, FLOOD_INITIATIONS_PER_TARGET, MAX_OUT, REPLAY_AFTER_NS};
use crate::scenario::AttackKind;

/// A host under attack, as the attacker knows it.
#[derive(Clone, Debug)]
pub struct Target {
    pub host: u32,
    pub id: PeerId,
    /// Where it is reached from the internet.
    pub addr: SocketAddr,
    /// Peers that advertise a reservation with it (a relay), as their
    /// records say.
    pub reserved: Vec<Peer>,
}

/// One attack of the attacker's group: what, at whom, how often.
#[derive(Clone, Debug)]
pub struct Plan {
    pub kind: AttackKind,
    pub targets: Vec<Target>,
    pub gap_ns: u64,
    /// When the next message goes.
    pub next_ns: u64,
    /// Messages issued so far (kinds that alternate take turns by it).
    pub round: u64,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    pub dst: SocketAddr,
    /// The forged source, for a datagram sent as if from another address.
    pub spoofed_from: Option<SocketAddr>,
    pub bytes: Vec<u8>,
    pub label: Label,
}

/// The attacker.
pub struct Attacker {
    plans: Vec<Plan>,
    sybils: Sybils,
    config: session::Config,
    /// Every honest peer's id (whom to claim to be, whom to CONNECT to).
    honest: Rc<[PeerId]>,
    capture: Option<Rc<RefCell<Capture>>>,
    /// Handshake initiations made for each flooded target (by host).
    flood: BTreeMap<u32, Vec<Vec<u8>>>,
    rng: ChaCha8Rng,
    out: VecDeque<Out>,
    stats: Rc<RefCell<AttackerStats>>,
    plain: Vec<u8>,
}

impl Attacker {
    /// An attacker running `plans` with sessions set as `config`, drawing
    /// every identity, key and choice from `rng`.
    pub fn new(
        plans: Vec<Plan>,
        config: session::Config,
        honest: Rc<[PeerId]>,
        capture: Option<Rc<RefCell<Capture>>>,
        rng: ChaCha8Rng,
        stats: Rc<RefCell<AttackerStats>>,
    ) -> Self {
        let plans: Vec<Plan> = plans
            .into_iter()
            .filter(|p| !p.targets.is_empty())
            .collect();
        Attacker {
            sybils: Sybils::new(plans.len(), config.clone()),
            plans,
            config,
            honest,
            capture,
            flood: BTreeMap::new(),
            rng,
            out: VecDeque::new(),
            stats,
            plain: Vec::new(),
        }
    }

    /// When [`Attacker::handle_timeout`] must next run (ns).
    pub fn poll_timeout(&self) -> Option<u64> {
        let plans = self.plans.iter().map(|p| p.next_ns).min();
        let sessions = self.sybils.poll_timeout().map(|t| t.as_nanos() as u64);
        plans.into_iter().chain(sessions).min()
    }

    /// Send what is due at `now_ns`; fire the Sybils' timers.
    pub fn handle_timeout(&mut self, now_ns: u64) {
        let now = Time::from_nanos(now_ns);
        self.sybils.handle_timeout(now);
        while let Some(p) = (0..self.plans.len())
            .filter(|&p| self.plans[p].next_ns <= now_ns)
            .min_by_key(|&p| self.plans[p].next_ns)
        {
            self.plans[p].next_ns += self.plans[p].gap_ns;
            self.fire(now, p);
            self.plans[p].round += 1;
        }
        self.drain_sybils();
    }

    /// A datagram for the attacker's address.
    pub fn handle_datagram(&mut self, now_ns: u64, from: SocketAddr, bytes: &[u8]) {
        let received = self.sybils.handle(Time::from_nanos(now_ns), from, bytes);
        {
            let mut stats = self.stats.borrow_mut();
            let r = &mut stats.received;
            *match received {
                Received::Opened => &mut r.opened,
                Received::Control => &mut r.control,
                Received::ForRetired => &mut r.for_retired,
                Received::NotOurs => &mut r.not_ours,
                Received::Unclaimed => &mut r.unclaimed,
            } += 1;
        }
        self.drain_sybils();
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    /// The network refused a datagram of [`Attacker::poll_transmit`]'s.
    pub fn send_error(&mut self) {
        self.stats.borrow_mut().send_errors += 1;
    }

    // ---- one message of each kind ----

    fn fire(&mut self, now: Time, p: usize) {
        let plan = &self.plans[p];
        let (kind, round) = (plan.kind, plan.round);
        let target = plan
            .targets
            .choose(&mut self.rng)
            .expect("plans have targets")
            .clone();
        let sent = match kind {
            AttackKind::ReserveFlood => {
                let s = self.fresh_sybil(p);
                self.seal(
                    now,
                    s,
                    None,
                    &target.id,
                    target.addr,
                    Message::Nat(Nat::Reserve),
                )
            }
            AttackKind::CircuitFlood => {
                let s = self.pick_sybil(p);
                let victim = self.random_honest();
                let m = Message::Nat(Nat::Connect { target: victim });
                self.seal(now, s, None, &target.id, target.addr, m)
            }
            AttackKind::Garbage => self.garbage(now, p, &target),
            AttackKind::SpoofId => self.spoof_id(now, p, &target, round),
            AttackKind::Replay => self.replay(now),
            AttackKind::HandshakeFlood => self.handshake_flood(now, &target),
            AttackKind::RelayTakeover => self.relay_takeover(now, p, &target, round),
        };
        if sent {
            *self.stats.borrow_mut().sent.entry(kind).or_default() += 1;
        }
    }

    /// Relay and hole-punch tags with random bodies, sealed by a Sybil.
    fn garbage(&mut self, now: Time, p: usize, target: &Target) -> bool {
        let s = self.pick_sybil(p);
        let me = self.sybils.id(s);
        self.encode(me, Message::Nat(Nat::KeepAlive));
        self.plain[1] = self.rng.gen_range(0x20..=0x31);
        let extra = self.rng.gen_range(1..64);
        self.plain.extend((0..extra).map(|_| 0));
        let rng = &mut self.rng;
        self.plain[34..].iter_mut().for_each(|b| *b = rng.gen());
        let label = Label::of(&self.plain).0;
        self.sybils
            .send(now, s, target.id, target.addr, &self.plain, label);
        true
    }

    /// Another peer's id, three ways in turn: in an old-style plaintext
    /// header; as a data datagram under a sniffed (or random) index; in
    /// the header of a message sealed in a Sybil's own session.
    fn spoof_id(&mut self, now: Time, p: usize, target: &Target, round: u64) -> bool {
        let claimed = self.random_honest_but(&target.id);
        let disconnect = Message::HyParView(hyparview::Message::Disconnect { alive: false });
        match round % 3 {
            0 => {
                self.encode(claimed, disconnect);
                let bytes = self.plain.clone();
                self.push(target.addr, None, bytes, Label::FOREIGN);
            }
            1 => {
                let sniffed = self.sniffed_index(|c| c.dst == target.addr);
                let index = sniffed.map_or_else(|| self.rng.gen(), |(_, index)| index);
                let bytes = self.forged_data(index);
                self.push(target.addr, None, bytes, Label::FOREIGN);
            }
            _ => {
                let s = self.pick_sybil(p);
                return self.seal(now, s, Some(claimed), &target.id, target.addr, disconnect);
            }
        }
        true
    }

    /// A captured datagram sent at least [`REPLAY_AFTER_NS`] ago, resent
    /// to where it went, from here.
    fn replay(&mut self, now: Time) -> bool {
        let Some(capture) = &self.capture else {
            return false;
        };
        let now_ns = now.as_nanos() as u64;
        let picked = {
            let capture = capture.borrow();
            let old: Vec<&super::Captured> = capture
                .held()
                .iter()
                .filter(|c| c.at_ns + REPLAY_AFTER_NS <= now_ns)
                .collect();
            old.choose(&mut self.rng).map(|c| (c.dst, c.bytes.clone()))
        };
        let Some((dst, bytes)) = picked else {
            return false;
        };
        self.push(dst, None, bytes, Label::FOREIGN);
        true
    }

    /// An initiation for `target` (valid mac1, no mac2) from a forged
    /// source: a new one from a throwaway identity until the target has
    /// [`FLOOD_INITIATIONS_PER_TARGET`], then one of those again.
    fn handshake_flood(&mut self, now: Time, target: &Target) -> bool {
        let made = self.flood.get(&target.host).map_or(0, Vec::len);
        let bytes = if made < FLOOD_INITIATIONS_PER_TARGET {
            let identity = Identity::from_seed(self.rng.gen());
            let mut s = Sessions::new(&identity, self.config.clone(), self.rng.gen());
            s.send(now, target.id, Some(Via::Direct(target.addr)), &[], true);
            let mut initiation = Vec::new();
            if s.poll_transmit(&mut initiation).is_none() {
                return false;
            }
            debug_assert_eq!(initiation.first(), Some(&kind::INITIATION));
            self.stats.borrow_mut().flood_identities += 1;
            self.flood
                .entry(target.host)
                .or_default()
                .push(initiation.clone());
            initiation
        } else {
            let made = &self.flood[&target.host];
            made[self.rng.gen_range(0..made.len())].clone()
        };
        let from = spoofed_source(&mut self.rng);
        self.push(target.addr, Some(from), bytes, Label::FOREIGN);
        true
    }

    /// One of five attempts on the reservations `relay` holds: RESERVE
    /// naming a reserved peer; STOP naming the relay as sender; RELAY-FROM
    /// from a Sybil; data forged from the relay's address; CONNECT.
    fn relay_takeover(&mut self, now: Time, p: usize, relay: &Target, round: u64) -> bool {
        let victim = relay.reserved.choose(&mut self.rng).copied();
        let victim_id = victim.map_or_else(|| self.random_honest_but(&relay.id), |p| p.id);
        match (round % 5, victim) {
            (0, _) => {
                let s = self.pick_sybil(p);
                let m = Message::Nat(Nat::Reserve);
                self.seal(now, s, Some(victim_id), &relay.id, relay.addr, m)
            }
            (1, Some(v)) => {
                let s = self.pick_sybil(p);
                let stop = Nat::Stop {
                    source: self.random_honest_but(&v.id),
                    source_addr: relay.addr,
                };
                self.seal(now, s, Some(relay.id), &v.id, v.addr, Message::Nat(stop))
            }
            (2, Some(v)) => {
                let s = self.pick_sybil(p);
                let index = self.rng.gen();
                let inner = self.forged_data(index);
                let frame = Nat::RelayFrom {
                    source: self.random_honest_but(&v.id),
                    source_addr: relay.addr,
                    data: Bytes::from(inner),
                };
                self.seal(now, s, None, &v.id, v.addr, Message::Nat(frame))
            }
            (3, _) => {
                let Some((dst, index)) = self.sniffed_index(|c| c.src == relay.host) else {
                    return false;
                };
                let bytes = self.forged_data(index);
                self.push(dst, Some(relay.addr), bytes, Label::FOREIGN);
                true
            }
            (4, _) => {
                let s = self.pick_sybil(p);
                let m = Message::Nat(Nat::Connect { target: victim_id });
                self.seal(now, s, None, &relay.id, relay.addr, m)
            }
            _ => false, // no reserved peer known to address
        }
    }

    // ---- helpers ----

    /// A fresh Sybil in plan `p`'s pool.
    fn fresh_sybil(&mut self, p: usize) -> SybilId {
        let s = self.sybils.fresh(p, &mut self.rng);
        self.note_sybils(p);
        s
    }

    /// A Sybil of plan `p`'s pool (a fresh one while the pool fills).
    fn pick_sybil(&mut self, p: usize) -> SybilId {
        let before = self.sybils.len(p);
        let s = self.sybils.pick(p, &mut self.rng);
        if self.sybils.len(p) > before {
            self.note_sybils(p);
        }
        s
    }

    fn note_sybils(&mut self, p: usize) {
        let mut stats = self.stats.borrow_mut();
        stats.sybils_created += 1;
        stats.sybils_alive_max = stats.sybils_alive_max.max(self.sybils.len(p));
    }

    fn random_honest(&mut self) -> PeerId {
        *self.honest.choose(&mut self.rng).expect("honest peers")
    }

    /// A random honest id other than `not` (if there is one).
    fn random_honest_but(&mut self, not: &PeerId) -> PeerId {
        for _ in 0..8 {
            let p = self.random_honest();
            if p != *not {
                return p;
            }
        }
        self.random_honest()
    }

    /// Encode `message` with `from` in its header into `self.plain`.
    fn encode(&mut self, from: PeerId, message: Message) {
        self.plain.clear();
        message::encode(&Datagram { from, message }, &mut self.plain)
            .expect("small messages encode");
    }

    /// Seal `message` from Sybil `s` to `peer` at `addr`, its header naming
    /// `claimed` (or the Sybil itself).
    fn seal(
        &mut self,
        now: Time,
        s: SybilId,
        claimed: Option<PeerId>,
        peer: &PeerId,
        addr: SocketAddr,
        message: Message,
    ) -> bool {
        let from = claimed.unwrap_or(self.sybils.id(s));
        self.encode(from, message);
        let label = Label::of(&self.plain).0;
        self.sybils.send(now, s, *peer, addr, &self.plain, label);
        true
    }

    /// A data datagram under `index` whose counter and body are random:
    /// it cannot open.
    fn forged_data(&mut self, index: u32) -> Vec<u8> {
        let mut d = vec![kind::DATA_ACK_ELICITING];
        d.extend_from_slice(&index.to_le_bytes());
        d.extend_from_slice(&self.rng.gen::<u64>().to_le_bytes());
        d.extend((0..48).map(|_| self.rng.gen::<u8>()));
        d
    }

    /// The destination and receiver index of a random captured data
    /// datagram that `wanted` picks.
    fn sniffed_index(
        &mut self,
        wanted: impl Fn(&super::Captured) -> bool,
    ) -> Option<(SocketAddr, u32)> {
        let capture = self.capture.as_ref()?.borrow();
        let data: Vec<(SocketAddr, u32)> = capture
            .held()
            .iter()
            .filter(|c| matches!(c.bytes[0], kind::DATA | kind::DATA_ACK_ELICITING) && wanted(c))
            .map(|c| {
                let index = u32::from_le_bytes(c.bytes[1..5].try_into().expect("4 bytes"));
                (c.dst, index)
            })
            .collect();
        data.choose(&mut self.rng).copied()
    }

    fn push(
        &mut self,
        dst: SocketAddr,
        spoofed_from: Option<SocketAddr>,
        bytes: Vec<u8>,
        label: Label,
    ) {
        if self.out.len() >= MAX_OUT {
            self.stats.borrow_mut().out_dropped += 1;
            return;
        }
        self.out.push_back(Out {
            dst,
            spoofed_from,
            bytes,
            label,
        });
    }

    fn drain_sybils(&mut self) {
        let mut sent = Vec::new();
        let established = self.sybils.drain(|t: Transmit| sent.push(t));
        self.stats.borrow_mut().sybil_handshakes += established;
        for t in sent {
            self.push(t.dst, None, t.bytes, Label(t.label));
        }
    }
}
