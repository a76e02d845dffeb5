//! Benchmarks of the pipeline that need more than criterion: a load generator for the
//! webhook-ingester and a start-up timer for the service binaries. See `BENCHMARKS.md` at the
//! repository root for the numbers and `scripts/bench.sh` to rerun them. Linux only: memory
//! and CPU time come from `/proc`.
//!
//! # Layout
//! - [`procfs`]: peak and current RSS (`VmHWM`, `VmRSS`), CPU time of a process, a thread or a
//!   whole process tree, and the cores a process may run on.
//! - [`Percentiles`]: latency summaries.
//! - [`parse_duration`], [`free_port`]: command-line and networking helpers.
//!
//! The binaries: `ingest-load` (throughput, latency, memory of the ingester, against the raw
//! verify rate measured in the same run), `startup` (exec to first `200` on `/healthz`, idle
//! memory) and `side-by-side` (the ingester release binary publishing to the Pub/Sub emulator
//! against the seed's Python webhook in `seed/`, under the same `wrk` load in one run).
#![forbid(unsafe_code)]

pub mod procfs;

use std::time::Duration;

pub use pipeline_service::config::parse_duration;
pub use pipeline_service::serve::free_port;

/// Latency percentiles, nearest-rank over every sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Percentiles {
    /// Summarizes `samples` (sorted in place). `None` when there are none.
    pub fn of(samples: &mut [Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |p: f64| {
            let index = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[index - 1]
        };
        Some(Self {
            count: samples.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: samples[samples.len() - 1],
        })
    }
}

/// Milliseconds with three decimals, for tables.
pub fn ms(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut samples).unwrap();
        assert_eq!(p.count, 100);
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p90, Duration::from_millis(90));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));
        assert_eq!(Percentiles::of(&mut []), None);
        let p = Percentiles::of(&mut [Duration::from_millis(7)]).unwrap();
        assert_eq!(
            (p.p50, p.p99),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
    }
}
