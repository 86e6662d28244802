//! Benchmarks that print side-by-side ratios measured in one run (never
//! asserted on by tests): `vm` (cold boot, stop/start, snapshot restore)
//! and `contract` (a contract scenario's phases, cold boot against
//! snapshot restore).

pub mod compare;
pub mod contract;
pub mod vm;

use std::time::Duration;

use crate::template::variant::{Arch, Variant};

/// min / median / max of a series of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub min: Duration,
    pub median: Duration,
    pub max: Duration,
}

impl Stats {
    /// `None` for an empty series.
    pub fn of(samples: &[Duration]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort();
        Some(Stats {
            min: s[0],
            median: s[s.len() / 2],
            max: s[s.len() - 1],
        })
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>7.2}s {:>7.2}s {:>7.2}s",
            self.min.as_secs_f64(),
            self.median.as_secs_f64(),
            self.max.as_secs_f64()
        )
    }
}

/// How many times faster `fast` is than `slow` (median over median).
pub fn ratio(slow: &Stats, fast: &Stats) -> f64 {
    slow.median.as_secs_f64() / fast.median.as_secs_f64().max(1e-9)
}

/// The first variant of each requested architecture (a benchmark measures
/// the machine, not the market: spot and on-demand boot the same way).
pub fn variants_for(all: &[Variant], arch: Option<Arch>) -> Vec<Variant> {
    let mut out: Vec<Variant> = Vec::new();
    for v in all {
        if arch.is_some_and(|a| a != v.arch) || out.iter().any(|o| o.arch == v.arch) {
            continue;
        }
        out.push(v.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn stats_take_min_median_max() {
        let s = Stats::of(&[d(300), d(100), d(200)]).unwrap();
        assert_eq!((s.min, s.median, s.max), (d(100), d(200), d(300)));
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn ratio_is_median_over_median() {
        let slow = Stats::of(&[d(4000)]).unwrap();
        let fast = Stats::of(&[d(500)]).unwrap();
        assert!((ratio(&slow, &fast) - 8.0).abs() < 1e-9);
    }
}
