//! Seeded dice for the faults in [`FaultConfig`].

use rand::{RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use crate::config::FaultConfig;

/// One independent random stream: the same seed with another `stream` gives unrelated numbers.
pub fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// What to do to one `/v2` request before handling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestFaults {
    /// Close the connection without answering.
    pub drop: bool,
    /// Answer 500 without doing anything.
    pub server_error: bool,
    /// Answer 408 without doing anything.
    pub timeout: bool,
    /// Answer 429 without doing anything.
    pub rate_limit: bool,
    /// Answer late.
    pub slow: bool,
}

/// The fault that replaces a request's answer, when several rolled: the first of these wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerFault {
    /// No answer at all.
    Drop,
    /// 500.
    ServerError,
    /// 408.
    Timeout,
    /// 429 with `Retry-After`.
    RateLimit,
}

impl AnswerFault {
    /// The kind recorded in the injected-fault log.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::ServerError => "serverError",
            Self::Timeout => "timeout",
            Self::RateLimit => "rateLimit",
        }
    }
}

impl RequestFaults {
    /// What replaces the answer: a dropped connection, then a 500, a 408, a 429, in that order
    /// of precedence; `None` lets the request through (perhaps slowly).
    pub fn answer(self) -> Option<AnswerFault> {
        [
            (self.drop, AnswerFault::Drop),
            (self.server_error, AnswerFault::ServerError),
            (self.timeout, AnswerFault::Timeout),
            (self.rate_limit, AnswerFault::RateLimit),
        ]
        .into_iter()
        .find_map(|(on, fault)| on.then_some(fault))
    }
}

/// How an applied create loses its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostAnswer {
    /// A 500 after the objects were created.
    ServerError,
    /// A cut connection after the objects were created.
    Drop,
}

/// The current fault settings and one RNG per fault kind. Every roll draws from its stream even
/// when the rate is 0, so the n-th request meets the same dice whatever else is switched on.
#[derive(Debug)]
pub struct FaultDice {
    /// The settings in force.
    pub config: FaultConfig,
    server_error: ChaCha8Rng,
    slow: ChaCha8Rng,
    drop: ChaCha8Rng,
    lost: ChaCha8Rng,
    duplicate: ChaCha8Rng,
    reorder: ChaCha8Rng,
    rotation: ChaCha8Rng,
    timeout: ChaCha8Rng,
    rate_limit: ChaCha8Rng,
    lost_webhook: ChaCha8Rng,
}

impl FaultDice {
    /// Dice seeded from `config.seed`.
    pub fn new(config: FaultConfig) -> Self {
        let seed = config.seed;
        Self {
            config,
            server_error: stream(seed, 101),
            slow: stream(seed, 102),
            drop: stream(seed, 103),
            lost: stream(seed, 104),
            duplicate: stream(seed, 105),
            reorder: stream(seed, 106),
            rotation: stream(seed, 107),
            timeout: stream(seed, 108),
            rate_limit: stream(seed, 109),
            lost_webhook: stream(seed, 110),
        }
    }

    /// Rolls the faults of one incoming request.
    pub fn roll_request(&mut self) -> RequestFaults {
        let c = &self.config;
        RequestFaults {
            drop: self.drop.random_bool(c.drop_rate),
            server_error: self.server_error.random_bool(c.server_error_rate),
            timeout: self.timeout.random_bool(c.timeout_rate),
            rate_limit: self.rate_limit.random_bool(c.rate_limit_rate),
            slow: self.slow.random_bool(c.slow_rate),
        }
    }

    /// Rolls whether a successful create loses its answer, and how.
    pub fn roll_lost_answer(&mut self) -> Option<LostAnswer> {
        let lost = self.lost.random_bool(self.config.lost_answer_rate);
        let as_500 = self.lost.random_bool(0.5);
        lost.then_some(if as_500 {
            LostAnswer::ServerError
        } else {
            LostAnswer::Drop
        })
    }

    /// Rolls whether a delivered webhook is sent again.
    pub fn roll_duplicate(&mut self) -> bool {
        self.duplicate
            .random_bool(self.config.duplicate_delivery_rate)
    }

    /// Rolls whether an event's webhook is lost (every attempt fails).
    pub fn roll_lost_webhook(&mut self) -> bool {
        self.lost_webhook.random_bool(self.config.lost_webhook_rate)
    }

    /// Rolls whether an event's first delivery is held back.
    pub fn roll_out_of_order(&mut self) -> bool {
        self.reorder.random_bool(self.config.out_of_order_rate)
    }

    /// Rolls whether the signing key rotates before a delivery.
    pub fn roll_key_rotation(&mut self) -> bool {
        self.rotation.random_bool(self.config.key_rotation_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_faults_and_streams_are_independent() {
        let config = FaultConfig {
            seed: 7,
            server_error_rate: 0.3,
            drop_rate: 0.2,
            ..Default::default()
        };
        let run = |config: FaultConfig| {
            let mut dice = FaultDice::new(config);
            (0..200).map(|_| dice.roll_request()).collect::<Vec<_>>()
        };
        let a = run(config.clone());
        assert_eq!(a, run(config.clone()));
        assert!(a.iter().any(|f| f.server_error) && a.iter().any(|f| !f.server_error));
        let other_seed = run(FaultConfig {
            seed: 8,
            ..config.clone()
        });
        assert_ne!(a, other_seed);
        let with_slow = run(FaultConfig {
            slow_rate: 0.5,
            ..config
        });
        let errors = |v: &[RequestFaults]| {
            v.iter()
                .map(|f| (f.server_error, f.drop))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            errors(&a),
            errors(&with_slow),
            "turning on slow answers must not move other faults"
        );
    }
}
