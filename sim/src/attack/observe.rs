//! What an attack did, as observed from outside the nodes: session
//! datagram types on the wire (byte 0 is in clear), the nodes' drop and
//! traversal events, and the attackers' own counts; and the report's
//! `attacks` section made from them.
//!
//! Diffie-Hellman work is counted from what a victim does, never from its
//! state: every response it sends answers one initiation it computed a DH
//! for, and every initiation it dropped after its DH says so in its drop
//! event (`bad-handshake`, `replayed-initiation`). An initiation refused
//! for want of a cookie costs no DH and shows as a cookie reply.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;

use grove_node::transport::session::{self, kind};
use grove_node::transport::DropReason;
use serde::Serialize;

use super::is_spoofed;
use crate::report::{round6, BroadcastEntry};
use crate::scenario::AttackKind;

/// What the attackers count themselves (shared by all of them).
#[derive(Clone, Debug, Default)]
pub struct AttackerStats {
    /// Hostile messages issued, by kind.
    pub sent: BTreeMap<AttackKind, u64>,
    pub sybils_created: u64,
    pub sybils_alive_max: usize,
    /// Handshakes the Sybils completed with their targets.
    pub sybil_handshakes: u64,
    /// Throwaway identities that made the handshake flood's initiations.
    pub flood_identities: u64,
    pub received: ReceivedCounts,
    /// Datagrams not sent: the attacker's queue was full.
    pub out_dropped: u64,
    /// Datagrams the network refused (e.g. too large).
    pub send_errors: u64,
}

/// What reached the attackers' own addresses.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReceivedCounts {
    /// Opened by a Sybil's session.
    pub opened: u64,
    /// Handshake and cookie datagrams a Sybil's session took.
    pub control: u64,
    /// Data for a Sybil that was retired.
    pub for_retired: u64,
    /// Data under an index no Sybil chose: an honest session's traffic,
    /// sent to the attacker (it would have roamed there).
    pub not_ours: u64,
    /// Answers to replayed and forged datagrams, which nobody here wanted.
    pub unclaimed: u64,
}

/// Session datagrams by type.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TypeCounts {
    pub initiation: u64,
    pub response: u64,
    pub cookie_reply: u64,
    pub data: u64,
    pub identify: u64,
    /// Not a session datagram (plaintext, NAT-PMP).
    pub other: u64,
}

impl TypeCounts {
    fn add(&mut self, first: Option<u8>) {
        *match first {
            Some(kind::INITIATION) => &mut self.initiation,
            Some(kind::RESPONSE) => &mut self.response,
            Some(kind::COOKIE_REPLY) => &mut self.cookie_reply,
            Some(kind::DATA | kind::DATA_ACK_ELICITING) => &mut self.data,
            Some(kind::IDENTIFY_REQUEST | kind::IDENTIFY_REPLY) => &mut self.identify,
            _ => &mut self.other,
        } += 1;
    }
}

/// Per host, the handshakes it computed in the current second, and the
/// most in any second so far.
#[derive(Clone, Debug, Default)]
struct PerSecond {
    now: Vec<(u64, u32)>,
    max: u32,
}

impl PerSecond {
    fn new(hosts: usize) -> Self {
        PerSecond {
            now: vec![(0, 0); hosts],
            max: 0,
        }
    }

    fn count(&mut self, host: usize, now_ns: u64) {
        let second = now_ns / 1_000_000_000;
        let (s, n) = &mut self.now[host];
        if *s != second {
            (*s, *n) = (second, 0);
        }
        *n += 1;
        self.max = self.max.max(*n);
    }
}

/// The observations.
pub struct AttackRec {
    attacker: Vec<bool>,
    victim: Vec<bool>,
    first_start_ns: u64,
    /// When the handshake flood starts, and at how many targets.
    flood: Option<(u64, usize)>,
    per_s_before_cookies: u32,
    honest: TypeCounts,
    attackers: TypeCounts,
    victims: VictimDh,
    dh: PerSecond,
    spoofed: Spoofed,
    spoofed_dh: PerSecond,
    drops: BTreeMap<&'static str, u64>,
    rejected: BTreeMap<&'static str, u64>,
    pub stats: Rc<RefCell<AttackerStats>>,
}

impl AttackRec {
    /// `attacker[h]`, `victim[h]`: what host `h` is; attacks start at
    /// `first_start_ns`, the handshake flood (if any) at `flood.0` against
    /// `flood.1` targets; nodes send cookies past `per_s_before_cookies`.
    pub fn new(
        attacker: Vec<bool>,
        victim: Vec<bool>,
        first_start_ns: u64,
        flood: Option<(u64, usize)>,
        per_s_before_cookies: u32,
    ) -> Self {
        let hosts = attacker.len();
        AttackRec {
            attacker,
            victim,
            first_start_ns,
            flood,
            per_s_before_cookies,
            honest: TypeCounts::default(),
            attackers: TypeCounts::default(),
            victims: VictimDh::default(),
            dh: PerSecond::new(hosts),
            spoofed: Spoofed::default(),
            spoofed_dh: PerSecond::new(hosts),
            drops: BTreeMap::new(),
            rejected: BTreeMap::new(),
            stats: Rc::default(),
        }
    }

    /// Host `src` sent `bytes` to `dst` at `now_ns`.
    pub fn sent(&mut self, now_ns: u64, src: u32, dst: SocketAddr, bytes: &[u8]) {
        let host = src as usize;
        let first = bytes.first().copied();
        if self.attacker[host] {
            self.attackers.add(first);
            return;
        }
        self.honest.add(first);
        let spoofed = is_spoofed(dst.ip());
        match first {
            Some(kind::RESPONSE) if self.victim[host] => {
                self.victims.initiations_answered += 1;
                self.dh.count(host, now_ns);
                if spoofed {
                    self.spoofed.responses += 1;
                    self.spoofed_dh.count(host, now_ns);
                }
            }
            Some(kind::COOKIE_REPLY) if self.victim[host] => {
                self.victims.cookie_replies_sent += 1;
                self.spoofed.cookie_replies += u64::from(spoofed);
            }
            Some(kind::INITIATION) if self.victim[host] => self.victims.initiations_sent += 1,
            _ => {}
        }
    }

    /// Honest host `host` dropped a datagram at `now_ns`.
    pub fn dropped(&mut self, host: u32, now_ns: u64, reason: &DropReason) {
        let host = host as usize;
        if self.attacker[host] {
            return;
        }
        *self.drops.entry(reason_name(reason)).or_default() += 1;
        let after_dh = matches!(
            reason,
            DropReason::Session(session::Drop::BadHandshake | session::Drop::ReplayedInitiation)
        );
        if after_dh && self.victim[host] {
            self.victims.dh_without_response += 1;
            self.dh.count(host, now_ns);
        }
    }

    /// NAT traversal rejected a message (`what` it was).
    pub fn rejected(&mut self, what: &'static str) {
        *self.rejected.entry(what).or_default() += 1;
    }

    /// The report section, with the broadcasts' entries and the run's end.
    pub fn section(&self, entries: &[BroadcastEntry], end_ns: u64) -> AttackSection {
        let stats = self.stats.borrow();
        let mean = |during: bool| {
            let r: Vec<f64> = entries
                .iter()
                .filter(|e| (e.at_s * 1e9 >= self.first_start_ns as f64) == during)
                .map(|e| e.reliability)
                .collect();
            (!r.is_empty()).then(|| round6(r.iter().sum::<f64>() / r.len() as f64))
        };
        let (before, during) = (mean(false), mean(true));
        let mut victims_dh = self.victims.clone();
        victims_dh.handshakes_computed =
            victims_dh.initiations_answered + victims_dh.dh_without_response;
        victims_dh.per_victim_s_max = self.dh.max;
        let mut spoofed = self.spoofed.clone();
        spoofed.initiations = stats
            .sent
            .get(&AttackKind::HandshakeFlood)
            .copied()
            .unwrap_or(0);
        spoofed.per_victim_s_max = self.spoofed_dh.max;
        if let Some((start_ns, targets)) = self.flood {
            // The cookie jar admits `per_s` initiations without a cookie in
            // each window of at least a second: the windows that overlap
            // the flood, at most its length in seconds plus two.
            let windows = end_ns.saturating_sub(start_ns).div_ceil(1_000_000_000) + 2;
            spoofed.dh_allowance = u64::from(self.per_s_before_cookies) * windows * targets as u64;
            spoofed.dh_over_allowance = if spoofed.dh_allowance == 0 {
                spoofed.responses as f64
            } else {
                round6(spoofed.responses as f64 / spoofed.dh_allowance as f64)
            };
        }
        AttackSection {
            attackers: self.attacker.iter().filter(|a| **a).count(),
            victims: self.victim.iter().filter(|v| **v).count(),
            reliability: Reliability {
                before,
                during,
                drop: before.zip(during).map(|(b, d)| round6(b - d)),
            },
            sent: stats.sent.iter().map(|(k, n)| (k.name(), *n)).collect(),
            sybils: SybilCounts {
                created: stats.sybils_created,
                alive_max: stats.sybils_alive_max,
                handshakes_completed: stats.sybil_handshakes,
                flood_identities: stats.flood_identities,
            },
            wire: Wire {
                honest: self.honest,
                attackers: self.attackers,
            },
            victims_dh,
            spoofed,
            drops: self.drops.clone(),
            rejected: self.rejected.clone(),
            attackers_received: stats.received.clone(),
            out_dropped: stats.out_dropped,
            send_errors: stats.send_errors,
        }
    }
}

/// A stable name for a drop reason.
fn reason_name(reason: &DropReason) -> &'static str {
    use session::Drop as D;
    match reason {
        DropReason::Session(d) => match d {
            D::Malformed => "malformed",
            D::BadMac => "bad-mac",
            D::NeedCookie => "need-cookie",
            D::BadHandshake => "bad-handshake",
            D::UnknownSession => "unknown-session",
            D::BadSeal => "bad-seal",
            D::Replay => "replay",
            D::ReplayedInitiation => "replayed-initiation",
            D::Expired => "expired",
            D::WrongSource => "wrong-source",
        },
        DropReason::Decode(_) => "undecodable",
        DropReason::SenderMismatch => "sender-mismatch",
    }
}

/// The report's `attacks` section.
#[derive(Clone, Debug, Serialize)]
pub struct AttackSection {
    /// Attacker hosts, and hosts of the attacks' target groups.
    pub attackers: usize,
    pub victims: usize,
    pub reliability: Reliability,
    /// Hostile messages the attackers issued, by kind.
    pub sent: BTreeMap<&'static str, u64>,
    pub sybils: SybilCounts,
    /// Session datagrams on the wire by type, from honest hosts and from
    /// attackers.
    pub wire: Wire,
    /// The Diffie-Hellman work the victims did on initiations.
    pub victims_dh: VictimDh,
    /// The handshake flood from forged sources.
    pub spoofed: Spoofed,
    /// Datagrams the honest nodes dropped, by reason (their drop events).
    pub drops: BTreeMap<&'static str, u64>,
    /// Traversal messages the honest nodes rejected, by what they were.
    pub rejected: BTreeMap<&'static str, u64>,
    /// What reached the attackers' own addresses.
    pub attackers_received: ReceivedCounts,
    pub out_dropped: u64,
    pub send_errors: u64,
}

/// Honest broadcast reliability (mean over broadcasts, as in `broadcasts`)
/// of the broadcasts sent before the first attack started and after;
/// `drop` is the difference.
#[derive(Clone, Debug, Serialize)]
pub struct Reliability {
    pub before: Option<f64>,
    pub during: Option<f64>,
    pub drop: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SybilCounts {
    pub created: u64,
    /// Most alive at once on one attacker.
    pub alive_max: usize,
    pub handshakes_completed: u64,
    pub flood_identities: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Wire {
    pub honest: TypeCounts,
    pub attackers: TypeCounts,
}

/// Handshakes the victims computed (a DH each) on initiations: those they
/// answered with a response, and those they dropped after the DH; the
/// most one victim computed in one second; cookie replies instead of a
/// DH; and the victims' own initiations, for scale.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VictimDh {
    pub initiations_answered: u64,
    pub dh_without_response: u64,
    pub handshakes_computed: u64,
    pub per_victim_s_max: u32,
    pub cookie_replies_sent: u64,
    pub initiations_sent: u64,
}

/// The flood from forged sources: initiations sent; the responses (one DH
/// each) and cookie replies the victims sent to forged sources; the most
/// DH one victim did for them in one second; what the cookie threshold
/// allows at most over the flood (`per_s x (seconds + 2) x targets`), and
/// the responses as a fraction of it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Spoofed {
    pub initiations: u64,
    pub responses: u64,
    pub cookie_replies: u64,
    pub per_victim_s_max: u32,
    pub dh_allowance: u64,
    pub dh_over_allowance: f64,
}
