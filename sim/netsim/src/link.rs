//! Access links: the delay and loss a host's datagrams see on the way out
//! and on the way in.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

/// Extra per-datagram delay on top of an access link's base latency.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    /// No jitter: every datagram sees the base latency.
    None,
    /// Uniform in `[0, max]`.
    Uniform { max: Duration },
    /// Exponential with the given mean (queueing delay; heavy right tail).
    Exponential { mean: Duration },
}

/// One host's access link. A datagram from `a` to `b` takes
/// `a.latency + jitter_a + b.latency + jitter_b` and is lost with
/// probability `1 - (1 - a.loss)(1 - b.loss)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// One-way base latency of the access link.
    pub latency: Duration,
    pub jitter: Jitter,
    /// Probability in `[0, 1]` that a datagram crossing this link is lost.
    pub loss: f64,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            latency: Duration::from_millis(10),
            jitter: Jitter::None,
            loss: 0.0,
        }
    }
}

impl Link {
    /// Delay in nanoseconds for one crossing of this link.
    pub(crate) fn sample_delay_ns(&self, rng: &mut ChaCha8Rng) -> u64 {
        let base = self.latency.as_nanos() as u64;
        let extra = match self.jitter {
            Jitter::None => 0,
            Jitter::Uniform { max } => {
                let max = max.as_nanos() as u64;
                if max == 0 {
                    0
                } else {
                    rng.gen_range(0..=max)
                }
            }
            Jitter::Exponential { mean } => {
                let mean = mean.as_nanos() as f64;
                if mean <= 0.0 {
                    0
                } else {
                    // Exp::new only fails for a non-positive rate.
                    let exp = Exp::new(1.0 / mean).expect("positive rate");
                    // Cap the tail at 20 means so one sample cannot stall a run.
                    exp.sample(rng).min(mean * 20.0) as u64
                }
            }
        };
        base + extra
    }

    /// Whether one crossing of this link loses the datagram.
    pub(crate) fn sample_loss(&self, rng: &mut ChaCha8Rng) -> bool {
        self.loss > 0.0 && rng.gen_bool(self.loss.clamp(0.0, 1.0))
    }
}
