//! The report: what happened in a run, as stable JSON. Struct field order is
//! the byte order; there are no hash maps and no wall-clock values, so the
//! same scenario, seed and code give the same bytes.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::overlay::OverlayReport;
use crate::recorder::Recorder;
use crate::scenario::Check;

pub const SCHEMA_VERSION: u32 = 4;

/// Round to 6 decimals so reports read well and stay stable.
pub fn round6(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1e6).round() / 1e6
    } else {
        0.0
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub scenario: ScenarioInfo,
    pub seed: u64,
    pub reproduce: String,
    pub duration_s: f64,
    pub nodes: Nodes,
    pub faults_applied: Faults,
    pub network: NetworkReport,
    pub broadcast: BroadcastSummary,
    pub overlay: OverlayReport,
    /// Datagrams sent per node over the run (attackers left out).
    pub messages_per_node: MessagesPerNode,
    /// Hosts grouped by the NAT in front of them, in label order.
    pub nat_types: Vec<NatTypeReport>,
    /// NAT traversal, when the nodes run it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat: Option<crate::traversal::NatSection>,
    pub phases: Vec<Phase>,
    /// Samples on virtual time, every `measure.series_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeseries: Option<TimeSeries>,
    /// Datagrams and bytes by protocol, in all and per node-hour.
    pub traffic: TrafficReport,
    /// The session layer: crypto mode, handshakes and acks on the wire.
    pub transport: crate::transport::TransportSection,
    /// Node events that must never happen (each should be 0).
    pub integrity: Integrity,
    /// Sessions, departures and rejoins, when a group churns or arrives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnCounts>,
    /// The pub/sub workload, when the scenario has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pubsub: Option<crate::pubsub::PubSubReport>,
    /// The DHT, when the scenario has a `[dht]` workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dht: Option<crate::dht::DhtReport>,
    /// The knowledge commons: convergence, lost writes, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knowledge: Option<crate::knowledge::KnowledgeSection>,
    /// The attack workload: what the attackers sent and what it cost the
    /// honest nodes, when the scenario has attackers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attacks: Option<crate::attack::AttackSection>,
    pub broadcasts: Vec<BroadcastEntry>,
    pub checks: Vec<CheckResult>,
    pub passed: bool,
}

/// The world over time, one entry per sample. Sample `k` is taken at
/// `t_s[k]`; its broadcast figures cover the broadcasts sent in the
/// `interval_s` before it (None where none was sent).
#[derive(Clone, Debug, Default, Serialize)]
pub struct TimeSeries {
    pub interval_s: f64,
    pub t_s: Vec<f64>,
    /// Hosts running.
    pub live: Vec<u32>,
    /// Running hosts with at least one running active peer.
    pub connected: Vec<u32>,
    /// Running hosts in the largest component of the active-view graph.
    pub largest_component: Vec<u32>,
    /// Broadcasts sent in the interval.
    pub broadcasts: Vec<u32>,
    /// Their mean reliability (as in `broadcasts[].reliability`).
    pub reliability: Vec<Option<f64>>,
    /// Mean delivery latency over their non-origin deliveries.
    pub latency_ms_mean: Vec<Option<f64>>,
    /// The slowest of their deliveries.
    pub latency_ms_max: Vec<Option<f64>>,
}

/// What the nodes sent, by protocol.
#[derive(Clone, Debug, Serialize)]
pub struct TrafficReport {
    /// Host-hours of running nodes over the run.
    pub node_hours: f64,
    pub by_protocol: Vec<ProtocolTraffic>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProtocolTraffic {
    /// A protocol's name (`membership`, `broadcast`, `traversal`, ...),
    /// `session` (the session layer's own: handshakes, cookies, identify,
    /// acks), or `other` (not Grove's: NAT-PMP, garbage from attackers).
    pub protocol: &'static str,
    pub datagrams: u64,
    pub bytes: u64,
    pub datagrams_per_node_hour: f64,
    pub bytes_per_node_hour: f64,
}

/// Churn as applied: sessions and how they ended.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChurnCounts {
    /// Sessions begun by hosts of churning groups (first starts included).
    pub sessions_started: u64,
    /// Sessions ended by a graceful leave (neighbours told).
    pub departures_graceful: u64,
    /// Sessions ended by a crash.
    pub departures_crashed: u64,
    /// Hosts back with the same identity after being offline.
    pub rejoins: u64,
    /// Rejoins behind a router with a new public address.
    pub new_ips: u64,
    /// Hosts of `arrivals` groups that arrived during the run.
    pub arrivals: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub description: String,
    /// The swept parameter and its value in this cell, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<CellParam>,
    /// The scenario's `[[contrasts]]`: a cell cannot evaluate them alone,
    /// the merge of its sweep does, with every cell's report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contrasts: Vec<grove_analysis::contrast::Contrast>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CellParam {
    pub param: String,
    pub value: serde_json::Value,
}

/// Node events that must never happen, counted by the observer from the
/// events the nodes report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Integrity {
    /// Deliveries of a workload broadcast by a host that had delivered it
    /// already (in this life or an earlier one: a delivered message is
    /// handed to the application once).
    pub duplicate_deliveries: u64,
    /// `NeighborUp` events for a peer already up on that host: no
    /// `NeighborDown` for it since its last `NeighborUp` in the host's
    /// current life.
    pub repeated_neighbor_up: u64,
}

impl Integrity {
    #[must_use]
    pub fn of(rec: &Recorder) -> Integrity {
        Integrity {
            duplicate_deliveries: rec.duplicate_deliveries,
            repeated_neighbor_up: rec.repeated_neighbor_up,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Nodes {
    pub total: usize,
    pub started: usize,
    pub alive_at_end: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Faults {
    pub hosts_crashed: usize,
    pub hosts_restarted: usize,
    pub partitions: usize,
    pub heals: usize,
    /// NATs given a new outside address (`change-ip`).
    pub ip_changes: u64,
    pub datagrams: Datagrams,
    /// Datagrams nodes received but could not decode.
    pub malformed_dropped: u64,
}

/// Every datagram's fate, by cause.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Datagrams {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub dropped_partition: u64,
    pub dropped_dead_host: u64,
    pub dropped_no_route: u64,
    pub dropped_overflow: u64,
    /// Dropped by a NAT (filter, no mapping, refused hairpin, UDP blocked).
    pub dropped_filtered: u64,
}

/// What the network did besides carrying datagrams.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NetworkReport {
    /// The NAT boxes' counters, summed over all of them.
    pub nat: grove_netsim::NatCounters,
}

/// The hosts behind one kind of NAT (label as in the scenario, with
/// `+cgnat` behind a carrier-grade NAT; `public` without NAT).
#[derive(Clone, Debug, Serialize)]
pub struct NatTypeReport {
    pub label: String,
    pub hosts: usize,
    pub alive_at_end: usize,
    /// Alive at the end with an empty active view.
    pub isolated_at_end: usize,
    /// Over all broadcasts: deliveries these hosts were expected to make
    /// (running throughout the window), those they made, and the ratio.
    pub expected: u64,
    pub delivered: u64,
    pub reliability: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Stat3 {
    pub mean: f64,
    pub min: f64,
    pub p50: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MeanMax {
    pub mean: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BroadcastSummary {
    pub count: usize,
    /// Fraction of the hosts running throughout a broadcast's window that
    /// delivered it: mean, min and median over broadcasts.
    pub reliability: Stat3,
    /// Fraction of broadcasts every such host delivered.
    pub fully_delivered: f64,
    /// Delivery latency over all non-origin deliveries.
    pub latency_ms: Latency,
    /// The latency histogram itself (µs, 1 µs to 1 h, 3 significant
    /// digits): HdrHistogram V2 encoding in base64, so that runs can be
    /// merged exactly (`grove_analysis::hdr`).
    pub latency_us_hdr: String,
    /// Relative message redundancy per broadcast, m/(n-1) - 1, where m is
    /// payload messages sent and n the hosts that delivered.
    pub rmr: MeanMax,
    /// Last delivery hop per broadcast (hop 1 is the origin's first gossip).
    pub ldh: MeanMax,
    /// Datagrams sent during the interval: payload (gossip) and the rest.
    pub payload_msgs: u64,
    pub control_msgs: u64,
}

/// The distribution of datagrams sent per node: `quantiles[k]` is the
/// count at the `5 k`-th percentile (k = 0..=20: min, p5, .., max).
#[derive(Clone, Debug, Serialize)]
pub struct MessagesPerNode {
    pub nodes: usize,
    pub mean: f64,
    pub quantiles: Vec<u64>,
}

/// Percent step of [`MessagesPerNode::quantiles`].
pub const MESSAGES_QUANTILE_STEP: usize = 5;

pub fn messages_per_node(mut sent: Vec<u64>) -> MessagesPerNode {
    sent.sort_unstable();
    let quantiles = if sent.is_empty() {
        Vec::new()
    } else {
        (0..=100)
            .step_by(MESSAGES_QUANTILE_STEP)
            .map(|pct| sent[(pct * (sent.len() - 1)).div_ceil(100)])
            .collect()
    };
    MessagesPerNode {
        nodes: sent.len(),
        mean: round6(sent.iter().sum::<u64>() as f64 / sent.len().max(1) as f64),
        quantiles,
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub name: String,
    pub start_s: f64,
    pub end_s: f64,
    pub broadcast: BroadcastSummary,
    /// For a phase that begins with a crash and has broadcasts: when
    /// broadcast reliability was back at its level before the crash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

/// How far below the level before a crash a broadcast may stay and still
/// count as back (reliability is a fraction of the live hosts).
pub const RECOVERY_TOLERANCE: f64 = 0.01;

/// A recovered phase has, from the recovery on, at most
/// `RECOVERY_WINDOW_LAPSES` broadcasts below the threshold in any
/// `RECOVERY_WINDOW` consecutive ones, and at least `RECOVERY_WINDOW`
/// broadcasts to its end.
pub const RECOVERY_WINDOW: usize = 10;
pub const RECOVERY_WINDOW_LAPSES: usize = 1;

/// Broadcast reliability's return to its level before a crash, observed
/// from the per-broadcast reliabilities alone (see [`recovery`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recovery {
    /// The level to return to: the mean reliability of the broadcasts of
    /// the phase before the crash, or 1.0 when it had none.
    pub level: f64,
    /// `"before"` (the previous phase's mean) or `"none: 1.0 assumed"`.
    pub level_from: &'static str,
    /// `level - RECOVERY_TOLERANCE`: a broadcast at or above it is back.
    pub threshold: f64,
    /// Broadcasts in the phase.
    pub broadcasts: usize,
    /// Some broadcast of the phase is below the threshold.
    pub dipped: bool,
    /// There is a broadcast, back itself, from which at most 1 in every
    /// 10 consecutive broadcasts to the end of the phase is below the
    /// threshold, with at least 10 of them.
    pub recovered: bool,
    /// Seconds from the crash to that broadcast (0 when it is the phase's
    /// first); null when not recovered.
    pub after_s: Option<f64>,
    /// `after_s` in shuffle intervals, rounded up (membership cycles, as
    /// the HyParView paper counts healing time); null when not recovered.
    pub cycles: Option<u64>,
    pub shuffle_interval_s: f64,
    /// Broadcasts from the recovery to the end of the phase (0 when not
    /// recovered), and how many of them are below the threshold.
    pub tail_broadcasts: usize,
    pub lapses: usize,
    /// Seconds from the crash to the first broadcast at or above the
    /// threshold; null when none is.
    pub first_reached_s: Option<f64>,
    /// Mean reliability of the phase's last `last_count` broadcasts (its
    /// last 100, or all if fewer).
    pub last_mean: f64,
    pub last_count: usize,
}

/// When reliability came back after a crash at `crash_s`. The level is the
/// mean reliability of `before` (the previous phase's broadcasts), or 1.0
/// when there are none; a broadcast is back at `level - RECOVERY_TOLERANCE`
/// or more. The phase `after` (in send order) has recovered at the first
/// broadcast that is back and from which every run of `RECOVERY_WINDOW`
/// consecutive broadcasts to the end of the phase has at most
/// `RECOVERY_WINDOW_LAPSES` below the threshold (a rare outlier, such as a
/// broadcast from an isolated origin, is a lapse, not a relapse), with at
/// least `RECOVERY_WINDOW` broadcasts from it. A series that ends below
/// the threshold, flaps, or comes back only for its last few broadcasts is
/// not recovered. None when the phase has no broadcasts.
pub fn recovery(
    before: &[&BroadcastEntry],
    after: &[&BroadcastEntry],
    crash_s: f64,
    shuffle_interval_s: f64,
) -> Option<Recovery> {
    if after.is_empty() {
        return None;
    }
    let (level, level_from) = if before.is_empty() {
        (1.0, "none: 1.0 assumed")
    } else {
        let sum: f64 = before.iter().map(|e| e.reliability).sum();
        (round6(sum / before.len() as f64), "before")
    };
    let threshold = round6(level - RECOVERY_TOLERANCE);
    let back: Vec<bool> = after.iter().map(|e| e.reliability >= threshold).collect();
    let n = back.len();
    // below[i]: broadcasts below the threshold among the first i.
    let mut below = vec![0usize; n + 1];
    for (i, &b) in back.iter().enumerate() {
        below[i + 1] = below[i] + usize::from(!b);
    }
    // windows_ok_from[j]: every window starting at j or later is fine.
    let w = RECOVERY_WINDOW;
    let mut windows_ok_from = vec![true; n + 1];
    for j in (0..n).rev() {
        let fine = j + w > n || below[j + w] - below[j] <= RECOVERY_WINDOW_LAPSES;
        windows_ok_from[j] = fine && windows_ok_from[j + 1];
    }
    let start = (0..n).find(|&k| back[k] && n - k >= w && windows_ok_from[k]);
    let after_s = start.map(|k| {
        if k == 0 {
            0.0
        } else {
            round6((after[k].at_s - crash_s).max(0.0))
        }
    });
    let cycles = after_s.map(|t| {
        if shuffle_interval_s > 0.0 {
            // Rounded to 6 decimals first so that 2.000000001 is 2.
            round6(t / shuffle_interval_s).ceil() as u64
        } else {
            0
        }
    });
    let first_back = back.iter().position(|&b| b);
    let last = &after[n.saturating_sub(100)..];
    Some(Recovery {
        level,
        level_from,
        threshold,
        broadcasts: n,
        dipped: below[n] > 0,
        recovered: start.is_some(),
        after_s,
        cycles,
        shuffle_interval_s: round6(shuffle_interval_s),
        tail_broadcasts: start.map_or(0, |k| n - k),
        lapses: start.map_or(0, |k| below[n] - below[k]),
        first_reached_s: first_back.map(|g| round6((after[g].at_s - crash_s).max(0.0))),
        last_mean: round6(last.iter().map(|e| e.reliability).sum::<f64>() / last.len() as f64),
        last_count: last.len(),
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct BroadcastEntry {
    pub index: usize,
    pub at_s: f64,
    pub origin: u32,
    pub expected: u32,
    pub delivered: u32,
    pub reliability: f64,
    pub ldh: u16,
    pub rmr: Option<f64>,
    pub payload_msgs: u64,
    pub latency_ms_mean: f64,
    pub latency_ms_max: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub metric: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub value: Option<f64>,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Per-broadcast entries, with reliability over the hosts running
/// throughout each broadcast's window (`window_ns`, cut at `end_ns`).
pub fn broadcast_entries(rec: &Recorder, window_ns: u64, end_ns: u64) -> Vec<BroadcastEntry> {
    rec.broadcasts
        .iter()
        .enumerate()
        .map(|(index, b)| {
            let eligible = rec.running_throughout(b.at_ns, (b.at_ns + window_ns).min(end_ns));
            let expected: u32 = eligible.iter().map(|w| w.count_ones()).sum();
            let delivered: u32 = eligible
                .iter()
                .zip(&b.delivered)
                .map(|(e, d)| (e & d).count_ones())
                .sum();
            let others = b.deliveries.saturating_sub(1);
            BroadcastEntry {
                index,
                at_s: round6(b.at_ns as f64 / 1e9),
                origin: b.origin,
                expected,
                delivered,
                reliability: if expected == 0 {
                    0.0
                } else {
                    round6(delivered as f64 / expected as f64)
                },
                ldh: b.hops_max,
                rmr: (b.deliveries > 1)
                    .then(|| round6(b.payload_msgs as f64 / (b.deliveries - 1) as f64 - 1.0)),
                payload_msgs: b.payload_msgs,
                latency_ms_mean: if others == 0 {
                    0.0
                } else {
                    round6(b.latency_sum_ns as f64 / others as f64 / 1e6)
                },
                latency_ms_max: round6(b.latency_max_ns as f64 / 1e6),
            }
        })
        .collect()
}

/// One row per NAT label (`label_of[host]`), sorted by label.
/// Reliability counts as in [`broadcast_entries`].
pub fn nat_types(
    rec: &Recorder,
    label_of: &[&str],
    alive: &[bool],
    window_ns: u64,
    end_ns: u64,
) -> Vec<NatTypeReport> {
    let words = label_of.len().div_ceil(64);
    let mut masks: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (h, &l) in label_of.iter().enumerate() {
        masks.entry(l).or_insert_with(|| vec![0; words])[h / 64] |= 1 << (h % 64);
    }
    let eligible: Vec<Vec<u64>> = rec
        .broadcasts
        .iter()
        .map(|b| rec.running_throughout(b.at_ns, (b.at_ns + window_ns).min(end_ns)))
        .collect();
    masks
        .iter()
        .map(|(label, mask)| {
            let (mut expected, mut delivered) = (0u64, 0u64);
            for (b, eligible) in rec.broadcasts.iter().zip(&eligible) {
                for w in 0..words {
                    let e = eligible[w] & mask[w];
                    expected += u64::from(e.count_ones());
                    delivered += u64::from((e & b.delivered[w]).count_ones());
                }
            }
            let hosts: Vec<usize> = (0..label_of.len())
                .filter(|&h| label_of[h] == *label)
                .collect();
            NatTypeReport {
                label: (*label).to_owned(),
                hosts: hosts.len(),
                alive_at_end: hosts.iter().filter(|&&h| alive[h]).count(),
                isolated_at_end: hosts
                    .iter()
                    .filter(|&&h| alive[h] && rec.active[h].is_empty())
                    .count(),
                expected,
                delivered,
                reliability: if expected == 0 {
                    0.0
                } else {
                    round6(delivered as f64 / expected as f64)
                },
            }
        })
        .collect()
}

/// The time series from the recorder's samples, with each sample's
/// broadcast figures from the broadcasts sent in the interval before it.
pub fn timeseries(rec: &Recorder, entries: &[BroadcastEntry], interval_ns: u64) -> TimeSeries {
    let mut ts = TimeSeries {
        interval_s: round6(interval_ns as f64 / 1e9),
        ..TimeSeries::default()
    };
    // Broadcasts are recorded in the order they are sent, so each
    // interval's are a range found by binary search.
    let sent_before = |t: u64| rec.broadcasts.partition_point(|b| b.at_ns < t);
    for s in &rec.samples {
        let sent = sent_before(s.at_ns.saturating_sub(interval_ns))..sent_before(s.at_ns);
        let n = sent.len();
        let others: u64 = rec.broadcasts[sent.clone()]
            .iter()
            .map(|b| u64::from(b.deliveries.saturating_sub(1)))
            .sum();
        let latency_sum: u64 = rec.broadcasts[sent.clone()]
            .iter()
            .map(|b| b.latency_sum_ns)
            .sum();
        let latency_max = rec.broadcasts[sent.clone()]
            .iter()
            .map(|b| b.latency_max_ns)
            .max();
        ts.t_s.push(round6(s.at_ns as f64 / 1e9));
        ts.live.push(s.live);
        ts.connected.push(s.connected);
        ts.largest_component.push(s.largest_component);
        ts.broadcasts.push(n as u32);
        ts.reliability.push((n > 0).then(|| {
            round6(
                entries[sent.clone()]
                    .iter()
                    .map(|e| e.reliability)
                    .sum::<f64>()
                    / n as f64,
            )
        }));
        ts.latency_ms_mean
            .push((others > 0).then(|| round6(latency_sum as f64 / others as f64 / 1e6)));
        ts.latency_ms_max.push(
            latency_max
                .filter(|_| others > 0)
                .map(|m| round6(m as f64 / 1e6)),
        );
    }
    ts
}

/// Hours of running hosts up to `end_ns`, over all hosts.
pub fn node_hours(rec: &Recorder, end_ns: u64) -> f64 {
    let node_ns: u64 = rec
        .up
        .iter()
        .flatten()
        .map(|&(s, e)| e.unwrap_or(end_ns).min(end_ns).saturating_sub(s))
        .sum();
    node_ns as f64 / 3.6e12
}

/// Traffic by protocol, with per-node-hour rates over the hosts' running
/// time up to `end_ns`.
pub fn traffic(rec: &Recorder, end_ns: u64) -> TrafficReport {
    let node_hours = node_hours(rec, end_ns);
    let per_hour = |x: u64| {
        if node_hours > 0.0 {
            round6(x as f64 / node_hours)
        } else {
            0.0
        }
    };
    let names = grove_node::wire::Protocol::ALL
        .iter()
        .map(|p| p.name())
        .chain(["session", "other"]);
    TrafficReport {
        node_hours: round6(node_hours),
        by_protocol: names
            .zip(&rec.traffic)
            .map(|(protocol, t)| ProtocolTraffic {
                protocol,
                datagrams: t.datagrams,
                bytes: t.bytes,
                datagrams_per_node_hour: per_hour(t.datagrams),
                bytes_per_node_hour: per_hour(t.bytes),
            })
            .collect(),
    }
}

/// Summarise the broadcasts in `entries` with latencies from `latency_us`.
pub fn summarise(
    entries: &[&BroadcastEntry],
    latency_us: &Histogram<u64>,
    payload_msgs: u64,
    control_msgs: u64,
) -> BroadcastSummary {
    let mut rel: Vec<f64> = entries.iter().map(|e| e.reliability).collect();
    rel.sort_by(f64::total_cmp);
    let n = entries.len().max(1) as f64;
    let rmrs: Vec<f64> = entries.iter().filter_map(|e| e.rmr).collect();
    let q = |p: f64| {
        if latency_us.is_empty() {
            0.0
        } else {
            round6(latency_us.value_at_quantile(p) as f64 / 1000.0)
        }
    };
    BroadcastSummary {
        count: entries.len(),
        reliability: Stat3 {
            mean: round6(rel.iter().sum::<f64>() / n),
            min: rel.first().copied().unwrap_or(0.0),
            p50: percentile(&rel, 0.5),
        },
        fully_delivered: round6(
            entries
                .iter()
                .filter(|e| e.delivered == e.expected && e.expected > 0)
                .count() as f64
                / n,
        ),
        latency_ms: Latency {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: if latency_us.is_empty() {
                0.0
            } else {
                round6(latency_us.max() as f64 / 1000.0)
            },
        },
        latency_us_hdr: grove_analysis::hdr::encode(latency_us),
        rmr: MeanMax {
            mean: round6(rmrs.iter().sum::<f64>() / rmrs.len().max(1) as f64),
            max: round6(rmrs.iter().copied().fold(0.0, f64::max)),
        },
        ldh: MeanMax {
            mean: round6(entries.iter().map(|e| e.ldh as f64).sum::<f64>() / n),
            max: entries.iter().map(|e| e.ldh).max().unwrap_or(0) as f64,
        },
        payload_msgs,
        control_msgs,
    }
}

/// Evaluate `checks` against the report's JSON.
pub fn evaluate(checks: &[Check], report: &serde_json::Value) -> Vec<CheckResult> {
    checks
        .iter()
        .map(|c| {
            let mut v = Some(report);
            for part in c.metric.split('.') {
                v = v.and_then(|v| match v {
                    serde_json::Value::Array(a) => {
                        part.parse::<usize>().ok().and_then(|i| a.get(i))
                    }
                    _ => v.get(part),
                });
            }
            // A boolean counts as 1 (true) or 0 (false).
            let value = v.and_then(|v| {
                v.as_f64()
                    .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
            });
            let error = match (v, value) {
                (None, _) => Some(format!("`{}` is not in the report", c.metric)),
                (Some(_), None) => Some(format!("`{}` is not a number", c.metric)),
                _ => None,
            };
            let passed =
                value.is_some_and(|x| c.min.is_none_or(|m| x >= m) && c.max.is_none_or(|m| x <= m));
            CheckResult {
                metric: c.metric.clone(),
                min: c.min,
                max: c.max,
                value,
                passed,
                error,
            }
        })
        .collect()
}

impl Report {
    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let b = &self.broadcast;
        let mut s = format!(
            "{} (seed {}): {} nodes, {} alive at end, {} crashed, {} restarted\n",
            self.scenario.name,
            self.seed,
            self.nodes.total,
            self.nodes.alive_at_end,
            self.faults_applied.hosts_crashed,
            self.faults_applied.hosts_restarted,
        );
        for p in &self.phases {
            let b = &p.broadcast;
            if b.count == 0 {
                continue;
            }
            s += &format!(
                "  {:<28} {:>4} broadcasts  reliability mean {:.4} min {:.4}  latency p50 {:.0} ms p99 {:.0} ms  RMR {:.2}  LDH {:.1}\n",
                format!("{} [{}s-{}s]", p.name, p.start_s, p.end_s),
                b.count, b.reliability.mean, b.reliability.min, b.latency_ms.p50,
                b.latency_ms.p99, b.rmr.mean, b.ldh.mean,
            );
            if let Some(r) = &p.recovery {
                s += &match (r.after_s, r.cycles) {
                    (Some(t), Some(c)) => format!(
                        "    recovered to >= {:.4} ({}) {t} s after the crash ({c} shuffle cycles)\n",
                        r.threshold, r.level_from,
                    ),
                    _ => format!(
                        "    NOT recovered to >= {:.4} ({}); last {} broadcasts mean {:.4}\n",
                        r.threshold, r.level_from, r.last_count, r.last_mean,
                    ),
                };
            }
        }
        s += &format!(
            "  all: {} broadcasts, reliability mean {:.4}; overlay: {} components, {} isolated, avg path {:.2}, clustering {:.3}\n",
            b.count, b.reliability.mean, self.overlay.components, self.overlay.isolated,
            self.overlay.average_shortest_path, self.overlay.clustering_coefficient,
        );
        let d = &self.faults_applied.datagrams;
        s += &format!(
            "  datagrams: {} sent, {} delivered, {} lost, {} partitioned, {} to dead hosts, {} filtered by NATs\n",
            d.sent, d.delivered, d.lost, d.dropped_partition, d.dropped_dead_host, d.dropped_filtered
        );
        let nat = &self.network.nat;
        if nat.mappings_created > 0 || nat.blocked > 0 {
            s += &format!(
                "  nat: {} mappings, {} filtered, {} no mapping, {} expired, {} hairpinned, {} blocked, {} ip changes\n",
                nat.mappings_created, nat.filtered, nat.no_mapping, nat.expired, nat.hairpinned,
                nat.blocked, nat.ip_changes,
            );
            for t in &self.nat_types {
                s += &format!(
                    "    {:<28} {:>6} hosts  {:>6} alive  {:>5} isolated  reliability {:.4}\n",
                    t.label, t.hosts, t.alive_at_end, t.isolated_at_end, t.reliability,
                );
            }
        }
        s += &self.transport.summary();
        for c in &self.checks {
            s += &format!(
                "  check {} {}: {}{}\n",
                if c.passed { "PASS" } else { "FAIL" },
                c.metric,
                c.value.map_or("-".into(), |v| format!("{v}")),
                match (c.min, c.max) {
                    (Some(a), Some(b)) => format!(" (want {a}..={b})"),
                    (Some(a), None) => format!(" (want >= {a})"),
                    (None, Some(b)) => format!(" (want <= {b})"),
                    (None, None) => String::new(),
                },
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Broadcasts 125 ms apart from `t0` with these reliabilities.
    fn series(t0: f64, rel: &[f64]) -> Vec<BroadcastEntry> {
        rel.iter()
            .enumerate()
            .map(|(index, &reliability)| BroadcastEntry {
                index,
                at_s: round6(t0 + 0.125 * index as f64),
                origin: 0,
                expected: 1000,
                delivered: (reliability * 1000.0).round() as u32,
                reliability,
                ldh: 0,
                rmr: None,
                payload_msgs: 0,
                latency_ms_mean: 0.0,
                latency_ms_max: 0.0,
            })
            .collect()
    }

    /// The recovery of `after` (sent from 260.05 s, crash at 260 s, 1 s
    /// shuffles) against `before`.
    fn run(before: &[f64], after: &[f64]) -> Recovery {
        let b = series(100.0, before);
        let a = series(260.05, after);
        let b: Vec<&BroadcastEntry> = b.iter().collect();
        let a: Vec<&BroadcastEntry> = a.iter().collect();
        recovery(&b, &a, 260.0, 1.0).expect("broadcasts after")
    }

    fn concat(parts: &[(f64, usize)]) -> Vec<f64> {
        parts
            .iter()
            .flat_map(|&(r, n)| std::iter::repeat_n(r, n))
            .collect()
    }

    #[test]
    fn no_dip_is_zero_cycles() {
        let r = run(&[], &[1.0; 50]);
        assert_eq!(r.level, 1.0);
        assert_eq!(r.level_from, "none: 1.0 assumed");
        assert_eq!(r.threshold, 0.99);
        assert!(!r.dipped && r.recovered);
        assert_eq!((r.after_s, r.cycles), (Some(0.0), Some(0)));
        assert_eq!((r.tail_broadcasts, r.lapses), (50, 0));
        assert_eq!(r.first_reached_s, Some(0.05));
    }

    #[test]
    fn dip_then_back() {
        // 20 broadcasts (2.5 s) reach 30%, then every one 99.5%: back at
        // the 21st, sent at 260.05 + 20 x 0.125 = 262.55, 2.55 s after the
        // crash, in the third shuffle cycle.
        let r = run(&[], &concat(&[(0.3, 20), (0.995, 40)]));
        assert!(r.dipped && r.recovered);
        assert_eq!(r.after_s, Some(2.55));
        assert_eq!(r.cycles, Some(3));
        assert_eq!((r.tail_broadcasts, r.lapses), (40, 0));
        assert_eq!(r.first_reached_s, Some(2.55));
    }

    #[test]
    fn good_broadcasts_inside_the_dip_do_not_count() {
        // Back at 2, 5 and 6, below again from 7 to 9: recovered at 10.
        let mut rel = vec![0.0, 0.1, 1.0, 0.2, 0.5, 1.0, 1.0, 0.6, 0.7, 0.8];
        rel.extend([1.0; 30]);
        let r = run(&[], &rel);
        assert!(r.recovered);
        assert_eq!(r.after_s, Some(1.3)); // 260.05 + 10 x 0.125 - 260
        assert_eq!(r.cycles, Some(2));
        assert_eq!(r.first_reached_s, Some(0.3));
        assert_eq!(r.lapses, 0);
    }

    #[test]
    fn never_recovers_is_not_recovered() {
        // Settles at 0.97 of the live hosts: close, but never back.
        let r = run(&[], &concat(&[(0.0, 10), (0.97, 500)]));
        assert!(r.dipped && !r.recovered);
        assert_eq!((r.after_s, r.cycles), (None, None));
        assert_eq!((r.tail_broadcasts, r.lapses), (0, 0));
        assert_eq!(r.first_reached_s, None);
        assert_eq!((r.last_mean, r.last_count), (0.97, 100));
        // Flapping between back and not back is not recovered either.
        let flap: Vec<f64> = (0..400).map(|i| [1.0, 0.5][i % 2]).collect();
        let r = run(&[], &flap);
        assert!(!r.recovered);
        assert_eq!(r.cycles, None);
        assert_eq!(r.first_reached_s, Some(0.05));
        // Nor is a relapse: back for 200 broadcasts, then down for good.
        let r = run(&[], &concat(&[(0.1, 10), (1.0, 200), (0.6, 50)]));
        assert!(!r.recovered);
        assert_eq!((r.after_s, r.cycles), (None, None));
    }

    #[test]
    fn rare_outliers_are_lapses_not_relapses() {
        // Back from the 5th; every 20th after that comes from an isolated
        // origin and reaches only itself.
        let mut rel = vec![0.2; 4];
        rel.extend((0..200).map(|i| if i % 20 == 19 { 0.001 } else { 1.0 }));
        let r = run(&[], &rel);
        assert!(r.recovered);
        assert_eq!(r.after_s, Some(0.55)); // 260.05 + 4 x 0.125 - 260
        assert_eq!(r.cycles, Some(1));
        assert_eq!((r.tail_broadcasts, r.lapses), (200, 10));
        // Two in ten is a relapse: recovered only after the first of the two.
        let mut rel = vec![0.2; 4];
        rel.extend([1.0; 50]);
        rel.extend([0.001, 1.0, 1.0, 0.001]);
        rel.extend([1.0; 30]);
        let r = run(&[], &rel);
        assert!(r.recovered);
        assert_eq!(r.after_s, Some(6.925)); // index 55, after the first of them
        assert_eq!(r.cycles, Some(7));
        assert_eq!(r.lapses, 1);
        // ... and with fewer than 10 broadcasts after them, not recovered.
        let mut rel = vec![1.0; 90];
        rel.extend([0.001, 0.001]);
        rel.extend([1.0; 9]);
        let r = run(&[], &rel);
        assert!(!r.recovered);
        assert_eq!(r.cycles, None);
    }

    #[test]
    fn back_only_for_the_last_few_is_too_few() {
        let mut rel = vec![0.4; 100];
        rel.extend([1.0; RECOVERY_WINDOW - 1]);
        let r = run(&[], &rel);
        assert!(!r.recovered);
        assert_eq!(r.after_s, None);
        rel.push(1.0);
        let r = run(&[], &rel);
        assert!(r.recovered);
        assert_eq!(r.tail_broadcasts, RECOVERY_WINDOW);
        assert_eq!(r.after_s, Some(12.55));
        assert_eq!(r.cycles, Some(13));
    }

    #[test]
    fn level_from_the_broadcasts_before() {
        // Before: mean 0.95, so 0.94 and up is back.
        let after = [
            0.5, 0.93, 0.94, 0.96, 0.941, 0.95, 0.94, 0.97, 0.99, 1.0, 0.94, 0.95,
        ];
        let r = run(&[0.9, 1.0, 0.95, 0.95], &after);
        assert_eq!((r.level, r.level_from, r.threshold), (0.95, "before", 0.94));
        assert!(r.recovered);
        assert_eq!(r.after_s, Some(0.3));
        assert_eq!(r.cycles, Some(1));
        assert_eq!(r.tail_broadcasts, 10);
    }

    #[test]
    fn no_broadcasts_after_is_none() {
        let b = series(100.0, &[1.0]);
        let b: Vec<&BroadcastEntry> = b.iter().collect();
        assert_eq!(recovery(&b, &[], 260.0, 1.0), None);
    }
}
