//! Residential churn: how long hosts stay online and offline, and how new
//! hosts arrive.
//!
//! A group with `[groups.churn]` runs every host (but a `stable_fraction`
//! that never leaves) through sessions: online for a time drawn from
//! `session`, then it leaves (gracefully, telling its neighbours, with
//! probability `graceful_fraction`; else it crashes), stays offline for a
//! time drawn from `offline`, and rejoins with the same identity through a
//! random running host. With probability `new_ip_fraction` it comes back
//! with a new address, as residential lines do: a public host its own, a
//! host behind a NAT its router's (every mapping is lost). Without
//! `offline` a host that leaves never returns.
//!
//! A group with `arrivals` is not part of the initial join schedule: its
//! hosts arrive one at a time as a Poisson process (`rate_per_s` from
//! `start_s`), brand-new nodes joining a running network.
//!
//! Distributions follow measurement practice: sessions of peer-to-peer
//! hosts are heavy-tailed (Stutzbach and Rejaie, IMC 2006, fit Weibull
//! shapes of 0.3-0.6 and log-normals); half of the DHT servers newly seen
//! in IPFS measurements leave within about 2 h (Trautwein et al., SIGCOMM
//! 2022).
//!
//! Every draw comes from a ChaCha stream of its own, derived from the
//! scenario seed, the host and the host's session number, so one host's
//! churn never shifts another's.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal, Pareto, Weibull};
use serde::Deserialize;

/// A distribution of durations, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(tag = "dist", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Dist {
    /// Always the same.
    Fixed { s: f64 },
    /// Memoryless, with this mean.
    Exponential { mean_s: f64 },
    /// `P(X > x) = exp(-(x / scale)^shape)`; shape < 1 is heavy-tailed.
    Weibull { shape: f64, scale_s: f64 },
    /// `ln X` normal with median `median_s` and standard deviation `sigma`.
    LogNormal { median_s: f64, sigma: f64 },
    /// `P(X > x) = (scale / x)^shape` for `x >= scale` (the minimum).
    Pareto { shape: f64, scale_s: f64 },
}

/// Durations are clamped to this range: a session of at least 1 s, and at
/// most about 115 days (any heavy tail is cut far beyond any run).
const DURATION_MIN_S: f64 = 1.0;
const DURATION_MAX_S: f64 = 1e7;

impl Dist {
    /// Check the parameters; the message names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, x: f64| {
            if x.is_finite() && x > 0.0 {
                Ok(())
            } else {
                Err(format!("`{name}` must be a positive number, got {x}"))
            }
        };
        match *self {
            Dist::Fixed { s } => positive("s", s),
            Dist::Exponential { mean_s } => positive("mean_s", mean_s),
            Dist::Weibull { shape, scale_s } => {
                positive("shape", shape)?;
                positive("scale_s", scale_s)
            }
            Dist::LogNormal { median_s, sigma } => {
                positive("median_s", median_s)?;
                if sigma.is_finite() && sigma >= 0.0 {
                    Ok(())
                } else {
                    Err(format!("`sigma` must be >= 0, got {sigma}"))
                }
            }
            Dist::Pareto { shape, scale_s } => {
                positive("shape", shape)?;
                positive("scale_s", scale_s)
            }
        }
    }

    /// The median, in seconds (for reports and documentation).
    pub fn median_s(&self) -> f64 {
        let ln2 = std::f64::consts::LN_2;
        match *self {
            Dist::Fixed { s } => s,
            Dist::Exponential { mean_s } => mean_s * ln2,
            Dist::Weibull { shape, scale_s } => scale_s * ln2.powf(1.0 / shape),
            Dist::LogNormal { median_s, .. } => median_s,
            Dist::Pareto { shape, scale_s } => scale_s * 2f64.powf(1.0 / shape),
        }
    }

    /// One duration in seconds, within [1 s, 1e7 s]. The parameters must
    /// have passed [`Dist::validate`].
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> f64 {
        let x = match *self {
            Dist::Fixed { s } => s,
            Dist::Exponential { mean_s } => Exp::new(1.0 / mean_s).expect("validated").sample(rng),
            Dist::Weibull { shape, scale_s } => {
                Weibull::new(scale_s, shape).expect("validated").sample(rng)
            }
            Dist::LogNormal { median_s, sigma } => LogNormal::new(median_s.ln(), sigma)
                .expect("validated")
                .sample(rng),
            Dist::Pareto { shape, scale_s } => {
                Pareto::new(scale_s, shape).expect("validated").sample(rng)
            }
        };
        if x.is_finite() {
            x.clamp(DURATION_MIN_S, DURATION_MAX_S)
        } else {
            DURATION_MAX_S
        }
    }
}

/// A group's churn model (see the module docs).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// Churn starts here: a host running then begins its first session at
    /// this instant (hosts that start later, when they start).
    #[serde(default)]
    pub start_s: f64,
    /// No host departs after this instant (hosts away still come back), so
    /// that a run can end on a quiet network; none: churn to the end.
    #[serde(default)]
    pub stop_s: Option<f64>,
    /// How long a host stays online.
    pub session: Dist,
    /// How long it stays offline before it rejoins (none: it never does).
    #[serde(default)]
    pub offline: Option<Dist>,
    /// Share of the group's hosts that never leave (stable super-peers).
    #[serde(default)]
    pub stable_fraction: f64,
    /// Share of departures that are graceful (the node tells its
    /// neighbours) rather than crashes.
    #[serde(default)]
    pub graceful_fraction: f64,
    /// Share of rejoins with a new public address (a public host's own, or
    /// the router's of a host behind a NAT).
    #[serde(default)]
    pub new_ip_fraction: f64,
}

impl Churn {
    /// Check the model against a run of `duration_s`; errors name the key
    /// under `groups.N.churn`.
    pub fn validate(&self, duration_s: f64) -> Result<(), (&'static str, String)> {
        if !(self.start_s.is_finite() && self.start_s >= 0.0 && self.start_s <= duration_s) {
            return Err((
                "start_s",
                format!(
                    "must be within the run [0, {duration_s}] s, got {}",
                    self.start_s
                ),
            ));
        }
        if let Some(stop) = self.stop_s {
            if !(stop.is_finite() && stop >= self.start_s && stop <= duration_s) {
                return Err((
                    "stop_s",
                    format!("must be within [start_s, {duration_s}] s, got {stop}"),
                ));
            }
        }
        self.session.validate().map_err(|e| ("session", e))?;
        if let Some(o) = &self.offline {
            o.validate().map_err(|e| ("offline", e))?;
        }
        for (key, f) in [
            ("stable_fraction", self.stable_fraction),
            ("graceful_fraction", self.graceful_fraction),
            ("new_ip_fraction", self.new_ip_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return Err((key, format!("must be in [0, 1], got {f}")));
            }
        }
        Ok(())
    }
}

/// New hosts arriving as a Poisson process.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrivals {
    /// The first arrival is drawn from here on.
    #[serde(default)]
    pub start_s: f64,
    /// Mean arrivals per second.
    pub rate_per_s: f64,
}

impl Arrivals {
    pub fn validate(&self, duration_s: f64) -> Result<(), (&'static str, String)> {
        if !(self.start_s.is_finite() && self.start_s >= 0.0 && self.start_s < duration_s) {
            return Err((
                "start_s",
                format!(
                    "must be within the run [0, {duration_s}) s, got {}",
                    self.start_s
                ),
            ));
        }
        if !(self.rate_per_s.is_finite() && self.rate_per_s > 0.0 && self.rate_per_s <= 1e6) {
            return Err((
                "rate_per_s",
                format!("must be in (0, 1e6], got {}", self.rate_per_s),
            ));
        }
        Ok(())
    }

    /// Arrival instants (s) of `count` hosts, in order; those after
    /// `end_s` never arrive and are left out.
    pub fn instants_s(&self, count: usize, end_s: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
        let gap = Exp::new(self.rate_per_s).expect("validated");
        let mut t = self.start_s;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            t += gap.sample(rng);
            if t >= end_s {
                break;
            }
            out.push(t);
        }
        out
    }
}

/// What one session of a host draws: everything decided when it starts,
/// from the host's own stream for that session.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SessionPlan {
    /// Online time before it leaves (None: a stable host, never).
    pub online_s: Option<f64>,
    /// It leaves gracefully (else it crashes).
    pub graceful: bool,
    /// Offline time before it rejoins (None: it never does).
    pub offline_s: Option<f64>,
    /// Its NAT gets a new public address while it is away.
    pub new_ip: bool,
}

impl Churn {
    /// Whether a host is stable (never leaves): the first draw of its
    /// session-0 stream.
    pub fn is_stable(&self, session0: &mut ChaCha8Rng) -> bool {
        session0.gen::<f64>() < self.stable_fraction
    }

    /// The plan of one session of a host, drawn from that session's own
    /// stream.
    pub fn plan(&self, stable: bool, rng: &mut ChaCha8Rng) -> SessionPlan {
        if stable {
            return SessionPlan {
                online_s: None,
                graceful: false,
                offline_s: None,
                new_ip: false,
            };
        }
        let online_s = self.session.sample(rng);
        let graceful = rng.gen::<f64>() < self.graceful_fraction;
        let offline_s = self.offline.map(|d| d.sample(rng));
        let new_ip = rng.gen::<f64>() < self.new_ip_fraction;
        SessionPlan {
            online_s: Some(online_s),
            graceful,
            offline_s,
            new_ip,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn median_of(d: Dist, n: usize) -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut xs: Vec<f64> = (0..n).map(|_| d.sample(&mut rng)).collect();
        xs.sort_by(f64::total_cmp);
        xs[n / 2]
    }

    #[test]
    fn samples_follow_their_median() {
        for d in [
            Dist::Exponential { mean_s: 3600.0 },
            Dist::Weibull {
                shape: 0.5,
                scale_s: 15_000.0,
            },
            Dist::LogNormal {
                median_s: 7200.0,
                sigma: 1.2,
            },
            Dist::Pareto {
                shape: 1.5,
                scale_s: 600.0,
            },
        ] {
            let want = d.median_s();
            let got = median_of(d, 20_001);
            assert!(
                (got / want - 1.0).abs() < 0.05,
                "{d:?}: median {got}, expected {want}"
            );
        }
        assert_eq!(median_of(Dist::Fixed { s: 5.0 }, 11), 5.0);
    }

    #[test]
    fn durations_are_clamped() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let tiny = Dist::Exponential { mean_s: 1e-6 };
        assert!((0..100).all(|_| tiny.sample(&mut rng) == DURATION_MIN_S));
        let huge = Dist::Pareto {
            shape: 0.01,
            scale_s: 1e6,
        };
        assert!((0..100).all(|_| huge.sample(&mut rng) <= DURATION_MAX_S));
    }

    #[test]
    fn bad_parameters_are_named() {
        let bad = Dist::Weibull {
            shape: 0.0,
            scale_s: 1.0,
        };
        assert!(bad.validate().unwrap_err().contains("`shape`"));
        let churn = Churn {
            start_s: 0.0,
            stop_s: None,
            session: Dist::Fixed { s: 10.0 },
            offline: Some(Dist::LogNormal {
                median_s: 10.0,
                sigma: -1.0,
            }),
            stable_fraction: 0.0,
            graceful_fraction: 0.5,
            new_ip_fraction: 0.0,
        };
        assert_eq!(churn.validate(100.0).unwrap_err().0, "offline");
        let churn = Churn {
            offline: None,
            graceful_fraction: 1.5,
            ..churn
        };
        assert_eq!(churn.validate(100.0).unwrap_err().0, "graceful_fraction");
    }

    #[test]
    fn arrivals_are_poisson_and_stop_at_the_end() {
        let a = Arrivals {
            start_s: 10.0,
            rate_per_s: 2.0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let t = a.instants_s(100_000, 1010.0, &mut rng);
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        assert!(t[0] >= 10.0 && *t.last().unwrap() < 1010.0);
        // About 2,000 arrivals in 1,000 s (Poisson: sd ~45).
        assert!((1850..2150).contains(&t.len()), "{} arrivals", t.len());
    }

    #[test]
    fn plans_are_drawn_per_session() {
        let churn = Churn {
            start_s: 0.0,
            stop_s: None,
            session: Dist::Exponential { mean_s: 100.0 },
            offline: Some(Dist::Fixed { s: 30.0 }),
            stable_fraction: 0.0,
            graceful_fraction: 0.5,
            new_ip_fraction: 0.0,
        };
        let plan = |seed| churn.plan(false, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(plan(1), plan(1));
        assert_ne!(plan(1), plan(2));
        assert_eq!(plan(1).offline_s, Some(30.0));
        assert!(!plan(1).new_ip);
        let stable = churn.plan(true, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(stable.online_s, None);
    }
}
