//! GossipSub settings: the mesh degrees and timers of gossipsub v1.0, the
//! v1.1 hardening (backoff, PX, flood publishing, opportunistic grafting,
//! peer scoring) and the v1.2 IDONTWANT threshold, with [`Config::validate`]
//! checking every invariant the specs state.
//!
//! Defaults are the specs' (libp2p `specs/pubsub/gossipsub/gossipsub-v1.0.md`
//! "Parameters", `gossipsub-v1.1.md` "Overview of New Parameters" and
//! "Extended Validators", `gossipsub-v1.2.md`), as go-libp2p-pubsub and
//! rust-libp2p ship them, unless a line says otherwise. The spec leaves the
//! score parameters to the application; ours follow the spec's guidance
//! ("Guidelines for Tuning the Scoring Function") for one topic carrying a
//! few messages a second, and are documented on [`ScoreParams`].

// Negated comparisons on purpose: a NaN fails every check.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the GossipSub core. Degrees are at most [`MAX_DEGREE`];
/// durations are 1 ms to 720 h ([`crate::config::MIN_INTERVAL`],
/// [`crate::config::MAX_DURATION`]) unless their line says otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Run GossipSub (off: the node ignores its messages and sends none).
    pub enabled: bool,
    /// Target mesh degree, D (v1.0: 6).
    pub d: usize,
    /// Fewest mesh peers before grafting more, D_lo (v1.0: 4).
    pub d_lo: usize,
    /// Most mesh peers before pruning some, D_hi (v1.0: 12).
    pub d_hi: usize,
    /// Fewest peers to gossip IHAVE to per heartbeat, D_lazy (v1.0: 6).
    pub d_lazy: usize,
    /// Mesh peers kept by score when pruning an oversubscribed mesh,
    /// D_score (v1.1: 4).
    pub d_score: usize,
    /// Outbound mesh peers kept at least, D_out (v1.1: 2).
    pub d_out: usize,
    /// Time between heartbeats (v1.0: 1 s; [`MIN_HEARTBEAT`] to 720 h here).
    #[serde(with = "crate::duration")]
    pub heartbeat_interval: Duration,
    /// How long a fanout topic is kept after the last publish (v1.0: 60 s).
    #[serde(with = "crate::duration")]
    pub fanout_ttl: Duration,
    /// Heartbeats of history in the message cache, mcache_len (v1.0: 5);
    /// 1 to [`MAX_MCACHE_LEN`].
    pub mcache_len: usize,
    /// Heartbeats of history gossiped in IHAVE, mcache_gossip (v1.0: 3).
    pub mcache_gossip: usize,
    /// How long a message id stays in the seen cache (v1.0: 120 s); at
    /// least `mcache_len` heartbeats.
    #[serde(with = "crate::duration")]
    pub seen_ttl: Duration,
    /// Share of eligible non-mesh peers gossiped to (v1.1: 0.25).
    pub gossip_factor: f64,
    /// Most message ids asked for with IWANT per peer per heartbeat
    /// (v1.1 max_ihave_length: 5000); 1 to [`MAX_IHAVE_LENGTH`].
    pub max_ihave_length: usize,
    /// Most IHAVE messages heeded per peer per heartbeat (v1.1: 10); 1 to
    /// [`MAX_IHAVE_MESSAGES`].
    pub max_ihave_messages: usize,
    /// Time a peer has to answer our IWANT before the promise counts as
    /// broken, P7 (v1.1 iwant_followup_time: 3 s).
    #[serde(with = "crate::duration")]
    pub iwant_followup_time: Duration,
    /// Most times one message is sent to one peer on IWANT (v1.1: 3); 1 to
    /// [`MAX_RETRANSMISSION`].
    pub gossip_retransmission: u32,
    /// Backoff after a PRUNE before either side may GRAFT again (v1.1: 60 s);
    /// at least one heartbeat.
    #[serde(with = "crate::duration")]
    pub prune_backoff: Duration,
    /// Backoff after leaving a topic (v1.1: 10 s; 0 to 720 h).
    #[serde(with = "crate::duration")]
    pub unsubscribe_backoff: Duration,
    /// Peers offered in a PRUNE's peer exchange (v1.1: 16); at most
    /// [`super::MAX_PX_PEERS`].
    pub prune_peers: usize,
    /// A GRAFT this soon after our PRUNE counts twice towards P7 (v1.1: 10 s;
    /// 0 to 720 h).
    #[serde(with = "crate::duration")]
    pub graft_flood_threshold: Duration,
    /// Publish our own messages to every topic peer above the publish
    /// threshold, not only the mesh (v1.1: on).
    pub flood_publish: bool,
    /// Heartbeats between opportunistic grafting rounds (v1.1: 60); 1 to
    /// [`MAX_OPPORTUNISTIC_GRAFT_TICKS`].
    pub opportunistic_graft_ticks: u32,
    /// Peers grafted per opportunistic round (v1.1: 2).
    pub opportunistic_graft_peers: usize,
    /// Messages with at least this many data bytes make us send IDONTWANT
    /// to our mesh (v1.2; rust-libp2p: 1000 bytes).
    pub idontwant_threshold_bytes: usize,
    /// Most message ids remembered per peer from its IDONTWANTs (v1.2
    /// implementations cap this; Grove: 64); at most [`MAX_IDONTWANT_IDS`].
    pub idontwant_max_ids: usize,
    /// Peers in the topic-peer table (bounded; Grove: 64, see the module
    /// docs on where peers come from); `d_hi` to [`MAX_TOPIC_PEERS`].
    pub max_peers: usize,
    /// We tell a peer our subscriptions again when we sent it nothing for
    /// this long, so that it keeps us (Grove: 20 s; over UDP there is no
    /// connection whose life says a peer is there).
    #[serde(with = "crate::duration")]
    pub announce_interval: Duration,
    /// A peer not heard from for this long leaves the table (Grove: 60 s,
    /// three announce intervals).
    #[serde(with = "crate::duration")]
    pub peer_timeout: Duration,
    /// Most messages in the message cache (bounded; oldest out first); 1 to
    /// [`MAX_MCACHE_CAPACITY`].
    pub mcache_capacity: usize,
    /// Most ids in the seen cache (bounded; oldest out first); 1 to
    /// [`MAX_SEEN_CAPACITY`].
    pub seen_capacity: usize,
    /// Most outstanding IWANT promises tracked (bounded); 1 to
    /// [`MAX_PROMISES`].
    pub max_promises: usize,
    /// Most topics we subscribe to, and remember per peer; 1 to
    /// [`super::MAX_SUBSCRIPTIONS`].
    pub max_topics: usize,
    /// Peer scoring (v1.1). Off: every score is 0 (v1.0 behaviour).
    pub scoring: bool,
    pub score: ScoreParams,
    pub thresholds: Thresholds,
    /// Emit every peer's score as an event this often (zero: never); for
    /// observers such as the simulator; at most 720 h.
    #[serde(with = "crate::duration")]
    pub score_report_interval: Duration,
    /// Simulation only: misbehave as configured. Never read from a file;
    /// the simulator sets it on its attacker hosts.
    #[serde(skip)]
    pub adversary: super::Adversary,
}

/// Score thresholds (v1.1 "Score Thresholds"). The spec requires
/// `gossip <= 0`, `publish <= gossip`, `graylist < publish`,
/// `accept_px >= 0`, `opportunistic_graft >= 0`. Values: go-libp2p-pubsub's
/// test and Lotus parameterisation, scaled to our score weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Below this, no gossip is sent to or accepted from a peer (-10).
    pub gossip: f64,
    /// Below this, our own messages are not flood-published to a peer (-50).
    pub publish: f64,
    /// Below this, everything from a peer is ignored (-80).
    pub graylist: f64,
    /// PX from a pruning peer is heeded only at or above this (10).
    pub accept_px: f64,
    /// Opportunistic grafting when the mesh's median score is below (5).
    pub opportunistic_graft: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            gossip: -10.0,
            publish: -50.0,
            graylist: -80.0,
            accept_px: 10.0,
            opportunistic_graft: 5.0,
        }
    }
}

/// Score function parameters (v1.1 "The Score Function"), the same for
/// every topic. Weights of P2 and P1 positive, of P3, P3b, P4, P6, P7
/// negative, decays in (0, 1), applied every `decay_interval`. Every
/// number finite; the P1 quantum 1 ms to 720 h, the P3 activation and
/// `decay_interval` 1 s to 720 h, the P3 window and `retain_score` 0 to
/// 720 h.
///
/// Values (Grove, after the spec's tuning guidance): a peer that stays in
/// the mesh and forwards earns up to +10 (P1) and +20 (P2); a mesh peer
/// whose decaying count of mesh deliveries (decay 0.9 a second, so about
/// the last 10 s; capped at 20, so a peer that stops forwarding falls
/// below the threshold within ~20 s) is under 3 loses up to 2 x 3^2 = 18
/// (P3) and keeps that as a sticky P3b after it is pruned. The topic must
/// carry at least ~0.5 message a second for honest peers to stay above
/// the threshold. Each invalid message costs its count
/// squared times 100 (P4), so two put a peer below the graylist; each
/// behaviour fault beyond 2 costs its square times 10 (P7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreParams {
    /// Weight of the topic's score in the total.
    pub topic_weight: f64,
    /// Cap on the sum of topic scores (0: none).
    pub topic_score_cap: f64,
    /// P1 weight, per `time_in_mesh_quantum` spent in the mesh.
    pub time_in_mesh_weight: f64,
    #[serde(with = "crate::duration")]
    pub time_in_mesh_quantum: Duration,
    /// P1 cap, in quanta.
    pub time_in_mesh_cap: f64,
    /// P2 weight per first delivery (decaying counter).
    pub first_message_deliveries_weight: f64,
    pub first_message_deliveries_decay: f64,
    pub first_message_deliveries_cap: f64,
    /// P3 weight (negative), on the squared deficit below the threshold.
    pub mesh_message_deliveries_weight: f64,
    pub mesh_message_deliveries_decay: f64,
    pub mesh_message_deliveries_threshold: f64,
    pub mesh_message_deliveries_cap: f64,
    /// P3 starts counting this long after a peer joins the mesh.
    #[serde(with = "crate::duration")]
    pub mesh_message_deliveries_activation: Duration,
    /// A duplicate this soon after the first delivery still counts for P3.
    #[serde(with = "crate::duration")]
    pub mesh_message_deliveries_window: Duration,
    /// P3b weight (negative) and decay: the deficit kept when pruned.
    pub mesh_failure_penalty_weight: f64,
    pub mesh_failure_penalty_decay: f64,
    /// P4 weight (negative) on the squared count of invalid messages.
    pub invalid_message_deliveries_weight: f64,
    pub invalid_message_deliveries_decay: f64,
    /// P5 weight of the application's own score.
    pub app_specific_weight: f64,
    /// P6 weight (negative) on the squared surplus of peers on one IP.
    pub ip_colocation_factor_weight: f64,
    pub ip_colocation_factor_threshold: f64,
    /// P7 weight (negative) on the squared surplus of behaviour faults.
    pub behaviour_penalty_weight: f64,
    pub behaviour_penalty_threshold: f64,
    pub behaviour_penalty_decay: f64,
    /// How often counters decay (v1.1: 1 s).
    #[serde(with = "crate::duration")]
    pub decay_interval: Duration,
    /// A counter that decays below this is zeroed (v1.1: 0.01).
    pub decay_to_zero: f64,
    /// How long a departed peer's score is remembered, so that leaving
    /// and coming back does not wash it (v1.1 retain_score; Grove: 10 min).
    #[serde(with = "crate::duration")]
    pub retain_score: Duration,
}

impl Default for ScoreParams {
    fn default() -> Self {
        ScoreParams {
            topic_weight: 1.0,
            topic_score_cap: 50.0,
            time_in_mesh_weight: 0.01,
            time_in_mesh_quantum: Duration::from_secs(1),
            time_in_mesh_cap: 1000.0,
            first_message_deliveries_weight: 1.0,
            first_message_deliveries_decay: 0.97,
            first_message_deliveries_cap: 20.0,
            mesh_message_deliveries_weight: -2.0,
            mesh_message_deliveries_decay: 0.9,
            mesh_message_deliveries_threshold: 3.0,
            mesh_message_deliveries_cap: 20.0,
            mesh_message_deliveries_activation: Duration::from_secs(10),
            mesh_message_deliveries_window: Duration::from_secs(2),
            mesh_failure_penalty_weight: -2.0,
            mesh_failure_penalty_decay: 0.99,
            invalid_message_deliveries_weight: -100.0,
            invalid_message_deliveries_decay: 0.99,
            app_specific_weight: 1.0,
            ip_colocation_factor_weight: -10.0,
            ip_colocation_factor_threshold: 4.0,
            behaviour_penalty_weight: -10.0,
            behaviour_penalty_threshold: 2.0,
            behaviour_penalty_decay: 0.99,
            decay_interval: Duration::from_secs(1),
            decay_to_zero: 0.01,
            retain_score: Duration::from_secs(600),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: false,
            d: 6,
            d_lo: 4,
            d_hi: 12,
            d_lazy: 6,
            d_score: 4,
            d_out: 2,
            heartbeat_interval: Duration::from_secs(1),
            fanout_ttl: Duration::from_secs(60),
            mcache_len: 5,
            mcache_gossip: 3,
            seen_ttl: Duration::from_secs(120),
            gossip_factor: 0.25,
            max_ihave_length: 5000,
            max_ihave_messages: 10,
            iwant_followup_time: Duration::from_secs(3),
            gossip_retransmission: 3,
            prune_backoff: Duration::from_secs(60),
            unsubscribe_backoff: Duration::from_secs(10),
            prune_peers: 16,
            graft_flood_threshold: Duration::from_secs(10),
            flood_publish: true,
            opportunistic_graft_ticks: 60,
            opportunistic_graft_peers: 2,
            idontwant_threshold_bytes: 1000,
            idontwant_max_ids: 64,
            max_peers: 64,
            announce_interval: Duration::from_secs(20),
            peer_timeout: Duration::from_secs(60),
            mcache_capacity: 4096,
            seen_capacity: 16384,
            max_promises: 1024,
            max_topics: 16,
            scoring: true,
            score: ScoreParams::default(),
            thresholds: Thresholds::default(),
            score_report_interval: Duration::ZERO,
            adversary: super::Adversary::default(),
        }
    }
}

impl Config {
    /// The hardened profile: the spec defaults, tightened where an attack
    /// scenario showed it pays. More outbound and score-kept mesh peers
    /// (D_out 3 = D/2, D_score 5), at most 2 retransmissions and 5 IHAVEs
    /// a heartbeat per peer, IWANT promises due after 2 s, a higher
    /// graylist (-40: one invalid message with a P3 deficit is enough),
    /// opportunistic grafting every 30 heartbeats, and P3 active after
    /// 5 s in the mesh. Enabled (the default profile is off).
    pub fn hardened() -> Config {
        let mut c = Config {
            enabled: true,
            d_score: 5,
            d_out: 3,
            gossip_retransmission: 2,
            max_ihave_messages: 5,
            max_ihave_length: 500,
            iwant_followup_time: Duration::from_secs(2),
            opportunistic_graft_ticks: 30,
            ..Config::default()
        };
        c.thresholds.graylist = -40.0;
        c.thresholds.publish = -20.0;
        c.score.mesh_message_deliveries_activation = Duration::from_secs(5);
        c
    }

    /// Check every invariant of the specs, and Grove's bounds (on each
    /// field's doc line).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first field that breaks one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_sizes()?;
        self.validate_durations()?;
        let bad = |field: &'static str, rule: &str| Err(ConfigError::new(field, rule));
        if !(self.d_lo <= self.d && self.d <= self.d_hi) {
            return bad("d", "must satisfy d_lo <= d <= d_hi");
        }
        if self.d_out >= self.d_lo {
            return bad("d_out", "must be below d_lo");
        }
        if self.d_out > self.d / 2 {
            return bad("d_out", "must be at most d / 2");
        }
        if self.d_score > self.d {
            return bad("d_score", "must be at most d");
        }
        if self.mcache_gossip == 0 || self.mcache_gossip > self.mcache_len {
            return bad("mcache_gossip", "must be in 1..=mcache_len");
        }
        let history = self
            .heartbeat_interval
            .saturating_mul(u32::try_from(self.mcache_len).unwrap_or(u32::MAX));
        if self.seen_ttl < history {
            return bad(
                "seen_ttl",
                "must cover the message cache (mcache_len heartbeats)",
            );
        }
        if !(0.0..=1.0).contains(&self.gossip_factor) {
            return bad("gossip_factor", "must be in [0, 1]");
        }
        if self.prune_backoff < self.heartbeat_interval {
            return bad("prune_backoff", "must be at least one heartbeat");
        }
        if self.max_peers < self.d_hi {
            return bad("max_peers", "must be at least d_hi");
        }
        if self.peer_timeout <= self.announce_interval {
            return bad("peer_timeout", "must exceed announce_interval");
        }
        self.thresholds.validate()?;
        self.score.validate()
    }

    /// Every degree, count and capacity within its bounds.
    fn validate_sizes(&self) -> Result<(), ConfigError> {
        use crate::config::range;
        let degrees = [
            ("d", self.d, 1),
            ("d_hi", self.d_hi, 1),
            ("d_lo", self.d_lo, 0),
            ("d_lazy", self.d_lazy, 0),
            ("d_score", self.d_score, 0),
            ("d_out", self.d_out, 0),
            (
                "opportunistic_graft_peers",
                self.opportunistic_graft_peers,
                0,
            ),
        ];
        for (field, value, min) in degrees {
            range(value, min, MAX_DEGREE).map_err(ConfigError::at(field))?;
        }
        let sizes = [
            ("mcache_len", self.mcache_len, 1, MAX_MCACHE_LEN),
            (
                "max_ihave_length",
                self.max_ihave_length,
                1,
                MAX_IHAVE_LENGTH,
            ),
            (
                "max_ihave_messages",
                self.max_ihave_messages,
                1,
                MAX_IHAVE_MESSAGES,
            ),
            ("prune_peers", self.prune_peers, 0, super::MAX_PX_PEERS),
            (
                "idontwant_max_ids",
                self.idontwant_max_ids,
                0,
                MAX_IDONTWANT_IDS,
            ),
            ("max_peers", self.max_peers, 1, MAX_TOPIC_PEERS),
            (
                "mcache_capacity",
                self.mcache_capacity,
                1,
                MAX_MCACHE_CAPACITY,
            ),
            ("seen_capacity", self.seen_capacity, 1, MAX_SEEN_CAPACITY),
            ("max_promises", self.max_promises, 1, MAX_PROMISES),
            ("max_topics", self.max_topics, 1, super::MAX_SUBSCRIPTIONS),
        ];
        for (field, value, min, max) in sizes {
            range(value, min, max).map_err(ConfigError::at(field))?;
        }
        range(self.gossip_retransmission, 1, MAX_RETRANSMISSION)
            .map_err(ConfigError::at("gossip_retransmission"))?;
        range(
            self.opportunistic_graft_ticks,
            1,
            MAX_OPPORTUNISTIC_GRAFT_TICKS,
        )
        .map_err(ConfigError::at("opportunistic_graft_ticks"))
    }

    /// Every duration within its bounds.
    fn validate_durations(&self) -> Result<(), ConfigError> {
        use crate::config::{delay, duration_range, interval, MAX_DURATION};
        duration_range(self.heartbeat_interval, MIN_HEARTBEAT, MAX_DURATION)
            .map_err(ConfigError::at("heartbeat_interval"))?;
        for (field, d) in [
            ("fanout_ttl", self.fanout_ttl),
            ("seen_ttl", self.seen_ttl),
            ("iwant_followup_time", self.iwant_followup_time),
            ("prune_backoff", self.prune_backoff),
            ("announce_interval", self.announce_interval),
            ("peer_timeout", self.peer_timeout),
        ] {
            interval(d).map_err(ConfigError::at(field))?;
        }
        for (field, d) in [
            ("unsubscribe_backoff", self.unsubscribe_backoff),
            ("graft_flood_threshold", self.graft_flood_threshold),
            ("score_report_interval", self.score_report_interval),
        ] {
            delay(d).map_err(ConfigError::at(field))?;
        }
        Ok(())
    }
}

/// Largest mesh degree (D, D_lo, D_hi, D_lazy, ...) a configuration may ask
/// for (v1.0's D_hi is 12).
pub const MAX_DEGREE: usize = 64;
/// Most heartbeats of history in the message cache (v1.0: 5).
pub const MAX_MCACHE_LEN: usize = 64;
/// Largest `max_ihave_length` (v1.1's default, 5000, is the most).
pub const MAX_IHAVE_LENGTH: usize = 5000;
/// Largest `max_ihave_messages` (v1.1: 10).
pub const MAX_IHAVE_MESSAGES: usize = 1000;
/// Largest `idontwant_max_ids` per peer.
pub const MAX_IDONTWANT_IDS: usize = 4096;
/// Largest topic-peer table.
pub const MAX_TOPIC_PEERS: usize = 1024;
/// Largest message cache (payloads).
pub const MAX_MCACHE_CAPACITY: usize = 65_536;
/// Largest seen cache (ids).
pub const MAX_SEEN_CAPACITY: usize = 1 << 20;
/// Most IWANT promises tracked.
pub const MAX_PROMISES: usize = 65_536;
/// Largest `gossip_retransmission` (v1.1: 3).
pub const MAX_RETRANSMISSION: u32 = 100;
/// Largest `opportunistic_graft_ticks` (a day of 1 s heartbeats).
pub const MAX_OPPORTUNISTIC_GRAFT_TICKS: u32 = 86_400;
/// Shortest heartbeat (Grove: below 700 ms, the heartbeat-driven limits
/// are too fast for residential round trips).
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(700);

impl Thresholds {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, rule: &str| Err(ConfigError::new(field, rule));
        for (field, v) in [
            ("thresholds.gossip", self.gossip),
            ("thresholds.publish", self.publish),
            ("thresholds.graylist", self.graylist),
            ("thresholds.accept_px", self.accept_px),
            ("thresholds.opportunistic_graft", self.opportunistic_graft),
        ] {
            if !v.is_finite() {
                return bad(field, "must be a finite number");
            }
        }
        if !(self.gossip <= 0.0) {
            return bad("thresholds.gossip", "must be <= 0");
        }
        if !(self.publish <= self.gossip) {
            return bad("thresholds.publish", "must be <= thresholds.gossip");
        }
        if !(self.graylist < self.publish) {
            return bad("thresholds.graylist", "must be < thresholds.publish");
        }
        if !(self.accept_px >= 0.0) {
            return bad("thresholds.accept_px", "must be >= 0");
        }
        if !(self.opportunistic_graft >= 0.0) {
            return bad("thresholds.opportunistic_graft", "must be >= 0");
        }
        Ok(())
    }
}

impl ScoreParams {
    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_durations()?;
        let bad = |field: &'static str, rule: &str| Err(ConfigError::new(field, rule));
        for (field, v) in [
            ("score.topic_weight", self.topic_weight),
            ("score.topic_score_cap", self.topic_score_cap),
            ("score.time_in_mesh_weight", self.time_in_mesh_weight),
            ("score.time_in_mesh_cap", self.time_in_mesh_cap),
            (
                "score.first_message_deliveries_weight",
                self.first_message_deliveries_weight,
            ),
            (
                "score.first_message_deliveries_cap",
                self.first_message_deliveries_cap,
            ),
            (
                "score.mesh_message_deliveries_weight",
                self.mesh_message_deliveries_weight,
            ),
            (
                "score.mesh_message_deliveries_threshold",
                self.mesh_message_deliveries_threshold,
            ),
            (
                "score.mesh_message_deliveries_cap",
                self.mesh_message_deliveries_cap,
            ),
            (
                "score.mesh_failure_penalty_weight",
                self.mesh_failure_penalty_weight,
            ),
            (
                "score.invalid_message_deliveries_weight",
                self.invalid_message_deliveries_weight,
            ),
            ("score.app_specific_weight", self.app_specific_weight),
            (
                "score.ip_colocation_factor_weight",
                self.ip_colocation_factor_weight,
            ),
            (
                "score.ip_colocation_factor_threshold",
                self.ip_colocation_factor_threshold,
            ),
            (
                "score.behaviour_penalty_weight",
                self.behaviour_penalty_weight,
            ),
            (
                "score.behaviour_penalty_threshold",
                self.behaviour_penalty_threshold,
            ),
        ] {
            if !v.is_finite() {
                return bad(field, "must be a finite number");
            }
        }
        let decay = |d: f64| d > 0.0 && d < 1.0;
        if !(self.topic_weight >= 0.0) {
            return bad("score.topic_weight", "must be >= 0");
        }
        if !(self.topic_score_cap >= 0.0) {
            return bad("score.topic_score_cap", "must be >= 0");
        }
        if !(self.time_in_mesh_weight >= 0.0) {
            return bad("score.time_in_mesh_weight", "must be >= 0");
        }
        if !(self.time_in_mesh_cap > 0.0) {
            return bad("score.time_in_mesh_cap", "must be positive");
        }
        if !(self.first_message_deliveries_weight >= 0.0) {
            return bad("score.first_message_deliveries_weight", "must be >= 0");
        }
        if !decay(self.first_message_deliveries_decay) {
            return bad("score.first_message_deliveries_decay", "must be in (0, 1)");
        }
        if !(self.first_message_deliveries_cap > 0.0) {
            return bad("score.first_message_deliveries_cap", "must be positive");
        }
        if !(self.mesh_message_deliveries_weight <= 0.0) {
            return bad("score.mesh_message_deliveries_weight", "must be <= 0");
        }
        if !decay(self.mesh_message_deliveries_decay) {
            return bad("score.mesh_message_deliveries_decay", "must be in (0, 1)");
        }
        if !(self.mesh_message_deliveries_threshold > 0.0) {
            return bad(
                "score.mesh_message_deliveries_threshold",
                "must be positive",
            );
        }
        if !(self.mesh_message_deliveries_cap >= self.mesh_message_deliveries_threshold) {
            return bad(
                "score.mesh_message_deliveries_cap",
                "must be >= mesh_message_deliveries_threshold",
            );
        }
        if !(self.mesh_failure_penalty_weight <= 0.0) {
            return bad("score.mesh_failure_penalty_weight", "must be <= 0");
        }
        if !decay(self.mesh_failure_penalty_decay) {
            return bad("score.mesh_failure_penalty_decay", "must be in (0, 1)");
        }
        if !(self.invalid_message_deliveries_weight <= 0.0) {
            return bad("score.invalid_message_deliveries_weight", "must be <= 0");
        }
        if !decay(self.invalid_message_deliveries_decay) {
            return bad(
                "score.invalid_message_deliveries_decay",
                "must be in (0, 1)",
            );
        }
        if !(self.ip_colocation_factor_weight <= 0.0) {
            return bad("score.ip_colocation_factor_weight", "must be <= 0");
        }
        if !(self.ip_colocation_factor_threshold >= 1.0) {
            return bad("score.ip_colocation_factor_threshold", "must be >= 1");
        }
        if !(self.behaviour_penalty_weight <= 0.0) {
            return bad("score.behaviour_penalty_weight", "must be <= 0");
        }
        if !(self.behaviour_penalty_threshold >= 0.0) {
            return bad("score.behaviour_penalty_threshold", "must be >= 0");
        }
        if !decay(self.behaviour_penalty_decay) {
            return bad("score.behaviour_penalty_decay", "must be in (0, 1)");
        }
        if !(self.decay_to_zero > 0.0 && self.decay_to_zero < 1.0) {
            return bad("score.decay_to_zero", "must be in (0, 1)");
        }
        Ok(())
    }
}

impl ScoreParams {
    /// Every duration within its bounds (see the type's doc).
    fn validate_durations(&self) -> Result<(), ConfigError> {
        use crate::config::{delay, duration_range, interval, MAX_DURATION};
        let second = Duration::from_secs(1);
        interval(self.time_in_mesh_quantum)
            .map_err(ConfigError::at("score.time_in_mesh_quantum"))?;
        for (field, d) in [
            (
                "score.mesh_message_deliveries_activation",
                self.mesh_message_deliveries_activation,
            ),
            ("score.decay_interval", self.decay_interval),
        ] {
            duration_range(d, second, MAX_DURATION).map_err(ConfigError::at(field))?;
        }
        for (field, d) in [
            (
                "score.mesh_message_deliveries_window",
                self.mesh_message_deliveries_window,
            ),
            ("score.retain_score", self.retain_score),
        ] {
            delay(d).map_err(ConfigError::at(field))?;
        }
        Ok(())
    }
}

/// A setting that breaks a spec invariant or one of Grove's bounds: the
/// field (dotted below `gossipsub`, e.g. `score.decay_interval`) and the
/// rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("gossipsub.{field} {rule}")]
pub struct ConfigError {
    pub field: &'static str,
    pub rule: String,
}

impl ConfigError {
    fn new(field: &'static str, rule: &str) -> Self {
        ConfigError {
            field,
            rule: rule.to_owned(),
        }
    }

    /// For `map_err`: the error of `field` with a rule from
    /// [`crate::config::range`] and friends.
    fn at(field: &'static str) -> impl FnOnce(String) -> ConfigError {
        move |rule| ConfigError { field, rule }
    }
}
