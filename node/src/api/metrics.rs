//! `GET /metrics`: the node's counters and gauges in the Prometheus text
//! exposition format (version 0.0.4), written by hand: a few dozen
//! families from one snapshot need no registry, and a registry crate
//! would hold a second copy of counters the node already keeps.
//!
//! Every family is named `grove_*` and has its HELP and TYPE lines;
//! counters end in `_total`. Label values come from fixed sets (protocol
//! names, causes, route templates, status codes), never from the network.

use std::fmt::Write;

use super::hub::Counters;
use super::view::{path_name, protocol_names};
use crate::status::Status;
use crate::transport::nat::{PathKind, Reach};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.out, "{}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }
}

fn family<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out, name }
}

/// A label value escaped as the format wants (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition of `status` and the API's `counters`; `streams`: the
/// event streams open.
#[must_use]
pub(super) fn render(status: &Status, counters: &Counters, streams: usize) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let o = &mut out;
    let peer = super::hub::hex(status.advertised.id.as_bytes());
    family(o, "grove_info", "gauge", "The node's identity (always 1).")
        .sample(&[("peer", &peer)], 1);
    family(
        o,
        "grove_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
    )
    .sample(&[], status.now.as_secs_f64());
    let mut f = family(
        o,
        "grove_reachability",
        "gauge",
        "1 for the node's reachability as NAT traversal found it, 0 for the others.",
    );
    for (reach, name) in [
        (Reach::Unknown, "unknown"),
        (Reach::Private, "private"),
        (Reach::Public, "public"),
        (Reach::PortMapped, "port-mapped"),
    ] {
        f.sample(&[("state", name)], u8::from(status.reach == reach));
    }

    // Traffic.
    family(
        o,
        "grove_datagrams_in_total",
        "counter",
        "Datagrams received.",
    )
    .sample(&[], status.stats.datagrams_in);
    let mut f = family(
        o,
        "grove_datagrams_out_total",
        "counter",
        "Datagrams sent, by protocol (session: the session layer's own handshakes and acks).",
    );
    match &status.traffic {
        Some(t) => {
            for (name, n) in protocol_names().zip(t.datagrams_out) {
                f.sample(&[("protocol", name)], n);
            }
        }
        None => {
            f.sample(&[("protocol", "all")], status.stats.datagrams_out);
        }
    }
    if let Some(t) = &status.traffic {
        let mut f = family(
            o,
            "grove_messages_in_total",
            "counter",
            "Messages received from authenticated peers, by protocol.",
        );
        for (name, n) in protocol_names().zip(t.messages_in) {
            f.sample(&[("protocol", name)], n);
        }
    }
    family(
        o,
        "grove_relayed_in_total",
        "counter",
        "Datagrams that arrived inside relay frames.",
    )
    .sample(&[], status.stats.relayed_in);

    // Drops, by cause: the session layer's counts, the transport's and the
    // node's own.
    let s = &status.session_stats;
    let undecodable = status.traffic.map_or(0, |t| t.undecodable);
    let mut f = family(
        o,
        "grove_drops_total",
        "counter",
        "Datagrams and messages dropped, by cause.",
    );
    for (cause, n) in [
        ("malformed", s.dropped_malformed),
        ("auth", s.dropped_auth),
        ("replay", s.dropped_replay),
        ("unknown_session", s.dropped_unknown),
        ("expired", s.dropped_expired),
        ("send", s.dropped_send),
        ("undecodable", undecodable),
        ("unroutable", status.unroutable),
        ("event_overflow", status.stats.event_overflow),
        ("session_events", s.events_dropped),
    ] {
        f.sample(&[("cause", cause)], n);
    }

    // Views and paths.
    family(
        o,
        "grove_active_view_peers",
        "gauge",
        "Peers in the active view (neighbours).",
    )
    .sample(&[], status.active.len());
    family(
        o,
        "grove_passive_view_peers",
        "gauge",
        "Peers in the passive view.",
    )
    .sample(&[], status.passive.len());
    let mut f = family(
        o,
        "grove_peers",
        "gauge",
        "Peers of each view by the kind of path that reaches them.",
    );
    for (view, peers) in [("active", &status.active), ("passive", &status.passive)] {
        for kind in [PathKind::Direct, PathKind::Relayed] {
            let n = peers.iter().filter(|p| p.path == kind).count();
            f.sample(&[("view", view), ("path", path_name(kind))], n);
        }
    }
    family(
        o,
        "grove_peer_cache_peers",
        "gauge",
        "Peers in the cache a restart rejoins through.",
    )
    .sample(&[], status.cached_peers);
    family(
        o,
        "grove_rejoin_rounds_total",
        "counter",
        "Rejoin rounds (the active view stayed empty, or at start).",
    )
    .sample(&[], status.stats.rejoin_rounds);

    // Relays and sessions.
    family(
        o,
        "grove_relay_reservations",
        "gauge",
        "Relays this node holds an active reservation with.",
    )
    .sample(&[], status.relays.len());
    family(
        o,
        "grove_relay_serving",
        "gauge",
        "1 when this node serves relay reservations.",
    )
    .sample(&[], u8::from(status.relay_serving));
    let mut f = family(
        o,
        "grove_reservation_outcomes_total",
        "counter",
        "Relay reservation outcomes since start.",
    );
    for what in ["ok", "expired", "refused"] {
        f.sample(
            &[("outcome", what)],
            counters.reservations.get(what).copied().unwrap_or(0),
        );
    }
    family(
        o,
        "grove_sessions",
        "gauge",
        "Sessions held (established or being set up).",
    )
    .sample(&[], status.sessions);
    family(
        o,
        "grove_handshakes_completed_total",
        "counter",
        "Session handshakes completed.",
    )
    .sample(&[], s.handshakes_completed);

    // The cores.
    if let Some(d) = &status.dht {
        family(
            o,
            "grove_dht_routing_table_size",
            "gauge",
            "Entries in the DHT routing table.",
        )
        .sample(&[], d.table_size);
        family(
            o,
            "grove_dht_provider_records",
            "gauge",
            "Provider records held for others.",
        )
        .sample(&[], d.provider_records);
        family(
            o,
            "grove_dht_server",
            "gauge",
            "1 when the DHT answers requests (publicly reachable).",
        )
        .sample(&[], u8::from(d.server));
    }
    if let Some(p) = &status.pubsub {
        family(
            o,
            "grove_pubsub_topics",
            "gauge",
            "GossipSub topics subscribed to.",
        )
        .sample(&[], p.topics.len());
        family(
            o,
            "grove_pubsub_mesh_peers",
            "gauge",
            "Mesh peers over all subscribed topics.",
        )
        .sample(&[], p.topics.iter().map(|(_, n)| n).sum::<usize>());
        family(
            o,
            "grove_pubsub_published_total",
            "counter",
            "GossipSub messages published here.",
        )
        .sample(&[], p.stats.published);
        family(
            o,
            "grove_pubsub_delivered_total",
            "counter",
            "GossipSub messages delivered here.",
        )
        .sample(&[], p.stats.delivered);
    }
    if let Some(k) = &status.knowledge {
        family(
            o,
            "grove_knowledge_documents",
            "gauge",
            "Knowledge documents held.",
        )
        .sample(&[], k.documents.len());
        family(
            o,
            "grove_knowledge_bytes",
            "gauge",
            "Size of full snapshots of every knowledge document, in bytes.",
        )
        .sample(&[], k.documents.iter().map(|d| d.2).sum::<usize>());
        family(
            o,
            "grove_knowledge_operations",
            "gauge",
            "Operations held over every knowledge document.",
        )
        .sample(&[], k.documents.iter().map(|d| d.1).sum::<usize>());
        family(
            o,
            "grove_knowledge_writes_total",
            "counter",
            "Knowledge edits made here.",
        )
        .sample(&[], k.stats.writes);
        family(
            o,
            "grove_knowledge_imports_total",
            "counter",
            "Knowledge updates imported from peers.",
        )
        .sample(&[], k.stats.imports);
    }

    let mut f = family(
        o,
        "grove_events_total",
        "counter",
        "Events the node reported, by kind.",
    );
    for (kind, n) in &counters.events {
        f.sample(&[("kind", kind)], n);
    }

    // The API itself.
    let mut f = family(
        o,
        "grove_api_requests_total",
        "counter",
        "API requests, by route and status code.",
    );
    for ((route, code), n) in &counters.requests {
        f.sample(&[("route", route), ("code", &code.to_string())], n);
    }
    family(o, "grove_api_streams", "gauge", "Event streams open.").sample(&[], streams);
    family(
        o,
        "grove_api_stream_lagged_total",
        "counter",
        "Stream events lost because a consumer fell behind.",
    )
    .sample(&[], counters.lagged);
    out
}
