//! NAT traversal as observed: what the nodes' traversal events say (their
//! reachability, reservations, paths and how they came about, the relays'
//! work), and the report's `nat` section built from them. Like the rest of
//! the recorder, it sees node events only, never protocol state.

use std::collections::{BTreeMap, BTreeSet};

use grove_node::transport::nat::{self, Method, PathKind, Reach, RelayEvent, ReservationOutcome};
use grove_node::{Peer, PeerId};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::report::round6;

/// The first direct path and the latest kind of path from a host to a peer.
#[derive(Clone, Copy, Debug)]
pub struct PathRec {
    pub kind: PathKind,
    /// When the first direct path came up, how, and at which hole-punch
    /// attempt.
    pub first_direct: Option<(u64, Method, u8)>,
}

/// A connection attempt the world asked for (the NAT matrix).
#[derive(Clone, Debug)]
pub struct PairRec {
    pub initiator: u32,
    pub responder: u32,
    pub responder_id: PeerId,
    pub at_ns: u64,
}

/// Everything NAT traversal told the observer.
#[derive(Default)]
pub struct NatRec {
    /// Per host: its latest reachability and advertised record.
    pub reach: Vec<Option<Reach>>,
    pub advertised: Vec<Option<Peer>>,
    pub paths: BTreeMap<(u32, PeerId), PathRec>,
    /// Unordered host pairs that hole-punched, with the attempt.
    pub punched: BTreeMap<(u32, u32), u8>,
    /// Unordered host pairs whose upgrade gave up.
    pub upgrade_failed: BTreeSet<(u32, u32)>,
    pub reservations_ok: u64,
    pub reservations_refused: BTreeMap<&'static str, u64>,
    pub reservations_expired: u64,
    pub relay_accepted: u64,
    pub relay_refused: BTreeMap<&'static str, u64>,
    pub circuits_opened: u64,
    pub circuits_refused: BTreeMap<&'static str, u64>,
    pub circuit_bytes: u64,
    pub frames_refused: u64,
    pub port_mappings_public: u64,
    pub port_mappings_unusable: u64,
    pub rejected: u64,
    pub pairs: Vec<PairRec>,
}

fn unordered(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

impl NatRec {
    pub fn new(hosts: usize) -> Self {
        NatRec {
            reach: vec![None; hosts],
            advertised: vec![None; hosts],
            ..NatRec::default()
        }
    }

    /// Host `host` reported `event` at `now`; `peer_host` maps peer ids to
    /// hosts.
    pub fn event(
        &mut self,
        host: u32,
        now: u64,
        event: nat::Event,
        peer_host: impl Fn(&PeerId) -> Option<u32>,
    ) {
        match event {
            nat::Event::Reachability { reach, advertised } => {
                self.reach[host as usize] = Some(reach);
                self.advertised[host as usize] = Some(advertised);
            }
            nat::Event::Reservation { outcome, .. } => match outcome {
                ReservationOutcome::Ok => self.reservations_ok += 1,
                ReservationOutcome::Expired => self.reservations_expired += 1,
                ReservationOutcome::Refused(s) => {
                    *self.reservations_refused.entry(s.name()).or_default() += 1;
                }
            },
            nat::Event::Path {
                peer,
                kind,
                method,
                attempt,
                ..
            } => {
                let rec = self.paths.entry((host, peer)).or_insert(PathRec {
                    kind,
                    first_direct: None,
                });
                rec.kind = kind;
                if kind == PathKind::Direct && rec.first_direct.is_none() {
                    rec.first_direct = Some((now, method, attempt));
                }
                if kind == PathKind::Direct && method == Method::HolePunch {
                    if let Some(other) = peer_host(&peer) {
                        let a = self
                            .punched
                            .entry(unordered(host, other))
                            .or_insert(attempt);
                        *a = (*a).min(attempt);
                    }
                }
            }
            nat::Event::UpgradeFailed { peer, .. } => {
                if let Some(other) = peer_host(&peer) {
                    self.upgrade_failed.insert(unordered(host, other));
                }
            }
            nat::Event::PortMapping { public, .. } => {
                if public {
                    self.port_mappings_public += 1;
                } else {
                    self.port_mappings_unusable += 1;
                }
            }
            nat::Event::Relay(r) => match r {
                RelayEvent::ReservationAccepted => self.relay_accepted += 1,
                RelayEvent::ReservationRefused(s) => {
                    *self.relay_refused.entry(s.name()).or_default() += 1;
                }
                RelayEvent::CircuitOpened => self.circuits_opened += 1,
                RelayEvent::CircuitRefused(s) => {
                    *self.circuits_refused.entry(s.name()).or_default() += 1;
                }
                RelayEvent::CircuitClosed { bytes } => self.circuit_bytes += bytes,
                RelayEvent::FrameRefused => self.frames_refused += 1,
            },
            nat::Event::Rejected { .. } => self.rejected += 1,
        }
    }
}

/// The report's `nat` section.
#[derive(Clone, Debug, Serialize)]
pub struct NatSection {
    /// Per NAT label, the reachability the live hosts ended with.
    pub reach: BTreeMap<String, ReachCounts>,
    /// Per `initiator/responder` label pair (the NAT matrix).
    pub matrix: BTreeMap<String, MatrixCell>,
    /// The whole matrix in one line, when the scenario has `[pairs]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairs: Option<PairsSummary>,
    pub holepunch: HolePunch,
    pub links: Links,
    pub relay: RelayReport,
    pub port_mappings: PortMappings,
    /// Traversal messages that made no sense, dropped.
    pub rejected: u64,
}

/// Every connection attempt of the NAT matrix, summed over its cells.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PairsSummary {
    pub pairs: usize,
    pub direct: usize,
    pub relayed: usize,
    /// Pairs with no path at all: relays exist so that this stays 0.
    pub failed: usize,
    pub direct_fraction: f64,
    /// Pairs with a path of either kind.
    pub connected_fraction: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ReachCounts {
    pub hosts: usize,
    pub public: usize,
    pub port_mapped: usize,
    pub private: usize,
    pub unknown: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct MatrixCell {
    pub pairs: usize,
    /// Pairs that reached a direct path, by any method.
    pub direct: usize,
    pub direct_fraction: f64,
    /// Pairs that stayed on a relayed path.
    pub relayed: usize,
    /// Pairs with no path at all.
    pub failed: usize,
    /// Direct pairs by method: `direct-dial`, `reversal`, `port-mapping`,
    /// `hole-punch-1` .. `hole-punch-3`.
    pub methods: BTreeMap<String, usize>,
    /// From the connect request to the first direct datagram.
    pub time_to_direct_ms: Percentiles,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct HolePunch {
    /// Host pairs that tried to hole-punch (succeeded or gave up).
    pub attempted: usize,
    pub succeeded: usize,
    pub success_rate: f64,
    /// Successes at the first attempt, as a share of successes.
    pub first_attempt_share: f64,
    /// Successes at attempt 1, 2, 3, ...
    pub by_attempt: Vec<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Links {
    /// Active-view links at the end (each direction counted).
    pub active: usize,
    pub direct: usize,
    pub relayed: usize,
    /// Links whose path no event described.
    pub unknown: usize,
    pub direct_fraction: f64,
    pub relayed_fraction: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RelayReport {
    /// As the clients saw them.
    pub reservations: u64,
    pub reservations_refused: BTreeMap<&'static str, u64>,
    pub reservations_expired: u64,
    /// As the relays did them.
    pub reservations_accepted: u64,
    pub reservation_refusals: BTreeMap<&'static str, u64>,
    pub circuits: u64,
    pub circuit_refusals: BTreeMap<&'static str, u64>,
    /// Bytes carried by circuits that closed during the run.
    pub circuit_bytes: u64,
    pub frames_refused: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PortMappings {
    pub public: u64,
    /// Granted on a non-public address (behind a carrier-grade NAT).
    pub unusable: u64,
}

fn fraction(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        round6(n as f64 / d as f64)
    }
}

fn method_key(method: Method, attempt: u8) -> String {
    match method {
        Method::DirectDial => "direct-dial".into(),
        Method::Reversal => "reversal".into(),
        Method::PortMapping => "port-mapping".into(),
        Method::HolePunch => format!("hole-punch-{attempt}"),
        Method::Relay => "relay".into(),
    }
}

/// Build the section. `labels[i]` is host `i`'s NAT label, `alive[i]`
/// whether it runs at the end, `active[i]` its active view at the end.
pub fn section(
    rec: &NatRec,
    labels: &[&str],
    alive: &[bool],
    active: &[Vec<PeerId>],
) -> NatSection {
    let mut reach: BTreeMap<String, ReachCounts> = BTreeMap::new();
    for (i, label) in labels.iter().enumerate() {
        if !alive[i] {
            continue;
        }
        let c = reach.entry((*label).to_owned()).or_default();
        c.hosts += 1;
        match rec.reach[i] {
            Some(Reach::Public) => c.public += 1,
            Some(Reach::PortMapped) => c.port_mapped += 1,
            Some(Reach::Private) => c.private += 1,
            Some(Reach::Unknown) | None => c.unknown += 1,
        }
    }

    let mut cells: BTreeMap<String, (MatrixCell, Histogram<u64>)> = BTreeMap::new();
    for p in &rec.pairs {
        let key = format!(
            "{}/{}",
            labels[p.initiator as usize], labels[p.responder as usize]
        );
        let (cell, hist) = cells.entry(key).or_insert_with(|| {
            (
                MatrixCell {
                    pairs: 0,
                    direct: 0,
                    direct_fraction: 0.0,
                    relayed: 0,
                    failed: 0,
                    methods: BTreeMap::new(),
                    time_to_direct_ms: Percentiles::default(),
                },
                Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid bounds"),
            )
        });
        cell.pairs += 1;
        match rec.paths.get(&(p.initiator, p.responder_id)) {
            Some(PathRec {
                first_direct: Some((t, method, attempt)),
                ..
            }) => {
                cell.direct += 1;
                *cell
                    .methods
                    .entry(method_key(*method, *attempt))
                    .or_default() += 1;
                let ms = t.saturating_sub(p.at_ns) / 1_000_000;
                hist.saturating_record(ms.max(1));
            }
            Some(_) => cell.relayed += 1,
            None => cell.failed += 1,
        }
    }
    let pairs = (!cells.is_empty()).then(|| {
        let mut sum = PairsSummary::default();
        for (cell, _) in cells.values() {
            sum.pairs += cell.pairs;
            sum.direct += cell.direct;
            sum.relayed += cell.relayed;
            sum.failed += cell.failed;
        }
        sum.direct_fraction = fraction(sum.direct, sum.pairs);
        sum.connected_fraction = fraction(sum.direct + sum.relayed, sum.pairs);
        sum
    });
    let matrix = cells
        .into_iter()
        .map(|(k, (mut cell, hist))| {
            cell.direct_fraction = fraction(cell.direct, cell.pairs);
            if cell.direct > 0 {
                cell.time_to_direct_ms = Percentiles {
                    p50: hist.value_at_quantile(0.5) as f64,
                    p90: hist.value_at_quantile(0.9) as f64,
                    max: hist.max() as f64,
                };
            }
            (k, cell)
        })
        .collect();

    let succeeded = rec.punched.len();
    let gave_up = rec
        .upgrade_failed
        .iter()
        .filter(|p| !rec.punched.contains_key(p))
        .count();
    let mut by_attempt = Vec::new();
    for &a in rec.punched.values() {
        let a = usize::from(a.max(1));
        if by_attempt.len() < a {
            by_attempt.resize(a, 0);
        }
        by_attempt[a - 1] += 1;
    }
    let holepunch = HolePunch {
        attempted: succeeded + gave_up,
        succeeded,
        success_rate: fraction(succeeded, succeeded + gave_up),
        first_attempt_share: fraction(by_attempt.first().copied().unwrap_or(0), succeeded),
        by_attempt,
    };

    let (mut total, mut direct, mut relayed, mut unknown) = (0, 0, 0, 0);
    for (i, view) in active.iter().enumerate() {
        if !alive[i] {
            continue;
        }
        for peer in view {
            total += 1;
            match rec.paths.get(&(i as u32, *peer)).map(|p| p.kind) {
                Some(PathKind::Direct) => direct += 1,
                Some(PathKind::Relayed) => relayed += 1,
                None => unknown += 1,
            }
        }
    }
    let links = Links {
        active: total,
        direct,
        relayed,
        unknown,
        direct_fraction: fraction(direct, total),
        relayed_fraction: fraction(relayed, total),
    };

    NatSection {
        reach,
        matrix,
        pairs,
        holepunch,
        links,
        relay: RelayReport {
            reservations: rec.reservations_ok,
            reservations_refused: rec.reservations_refused.clone(),
            reservations_expired: rec.reservations_expired,
            reservations_accepted: rec.relay_accepted,
            reservation_refusals: rec.relay_refused.clone(),
            circuits: rec.circuits_opened,
            circuit_refusals: rec.circuits_refused.clone(),
            circuit_bytes: rec.circuit_bytes,
            frames_refused: rec.frames_refused,
        },
        port_mappings: PortMappings {
            public: rec.port_mappings_public,
            unusable: rec.port_mappings_unusable,
        },
        rejected: rec.rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn id(i: u8) -> PeerId {
        PeerId([i; 32])
    }

    #[test]
    fn the_matrix_classifies_pairs_by_their_first_direct_path() {
        let mut rec = NatRec::new(4);
        let host = |p: &PeerId| Some(u32::from(p.0[0]));
        let addr: SocketAddr = "198.51.100.1:7000".parse().unwrap();
        let path = |kind, method, attempt| nat::Event::Path {
            peer: id(1),
            kind,
            method,
            attempt,
            addr,
        };
        // Host 0 -> 1: relayed, then hole-punched at attempt 2.
        rec.event(
            0,
            1_000_000_000,
            path(PathKind::Relayed, Method::Relay, 0),
            host,
        );
        rec.event(
            0,
            1_500_000_000,
            path(PathKind::Direct, Method::HolePunch, 2),
            host,
        );
        // Host 2 -> 3: relayed, gave up.
        rec.event(
            2,
            2_000_000_000,
            nat::Event::Path {
                peer: id(3),
                kind: PathKind::Relayed,
                method: Method::Relay,
                attempt: 0,
                addr,
            },
            host,
        );
        rec.event(
            2,
            9_000_000_000,
            nat::Event::UpgradeFailed {
                peer: id(3),
                attempts: 3,
            },
            host,
        );
        rec.pairs = vec![
            PairRec {
                initiator: 0,
                responder: 1,
                responder_id: id(1),
                at_ns: 1_000_000_000,
            },
            PairRec {
                initiator: 2,
                responder: 3,
                responder_id: id(3),
                at_ns: 1_000_000_000,
            },
            PairRec {
                initiator: 1,
                responder: 2,
                responder_id: id(2),
                at_ns: 1_000_000_000,
            },
        ];
        let labels = ["a", "b", "a", "b"];
        let s = section(&rec, &labels, &[true; 4], &vec![vec![]; 4]);
        let ab = &s.matrix["a/b"];
        assert_eq!((ab.pairs, ab.direct, ab.relayed, ab.failed), (2, 1, 1, 0));
        assert_eq!(ab.methods["hole-punch-2"], 1);
        assert_eq!(ab.time_to_direct_ms.p50, 500.0);
        assert_eq!(s.matrix["b/a"].failed, 1);
        assert_eq!(s.holepunch.attempted, 2);
        assert_eq!(s.holepunch.succeeded, 1);
        assert_eq!(s.holepunch.by_attempt, vec![0, 1]);
        assert_eq!(s.holepunch.first_attempt_share, 0.0);
    }
}
