//! What the `selftest` and `contract` benchmarks share: two strategies
//! (a fresh machine per scenario against one restored from a snapshot)
//! run over the same scenarios, timed, and their verdicts compared
//! scenario by scenario (a mismatch means reuse leaked state).

use std::time::Duration;

use super::Stats;
use crate::checks::Verdict;

/// The pass/fail pattern of one scenario: (check, passed).
pub type Outcome = Vec<(String, bool)>;

/// One strategy's result for one architecture, its scenarios keyed by
/// `K` (a fixture defect, a fixture flake name).
#[derive(Debug)]
pub struct Run<K> {
    pub total: Duration,
    /// Per scenario: from boot or restore to the point each strategy times.
    pub per_scenario: Vec<Duration>,
    pub outcomes: Vec<(K, Outcome)>,
    /// Reuse strategies that report it: the one cold boot up to the saved
    /// snapshot.
    pub cold: Option<Duration>,
}

impl<K> Default for Run<K> {
    fn default() -> Self {
        Run {
            total: Duration::ZERO,
            per_scenario: Vec::new(),
            outcomes: Vec::new(),
            cold: None,
        }
    }
}

impl<K> Run<K> {
    /// One scenario done: how long it `took` and its verdicts.
    pub fn record(&mut self, key: K, took: Duration, verdicts: &[Verdict]) {
        self.per_scenario.push(took);
        self.outcomes.push((
            key,
            verdicts
                .iter()
                .map(|v| (v.check.to_string(), v.passed))
                .collect(),
        ));
    }
}

/// Scenarios whose verdicts differ between strategies `a` and `b`
/// (each a label and its run), named by `name`.
pub fn mismatches<K>(
    (a_label, a): (&str, &Run<K>),
    (b_label, b): (&str, &Run<K>),
    name: impl Fn(&K) -> String,
) -> Vec<String> {
    a.outcomes
        .iter()
        .zip(&b.outcomes)
        .filter(|((_, oa), (_, ob))| oa != ob)
        .map(|((k, oa), (_, ob))| format!("{}: {a_label} {oa:?} vs {b_label} {ob:?}", name(k)))
        .collect()
}

/// Print one architecture's comparison: `title` (the header, whose
/// columns the rows line up under with labels padded to `width`), a row
/// per strategy, the reuse strategy's cold boot if it has one, and the
/// ratio of the totals.
pub fn print<K>(
    title: &str,
    width: usize,
    (a_label, a): (&str, &Run<K>),
    (b_label, b): (&str, &Run<K>),
) {
    println!("\n{title}");
    for (name, r) in [(a_label, a), (b_label, b)] {
        if let Some(st) = Stats::of(&r.per_scenario) {
            println!(
                "  {name:<width$} per scenario {st}  {:>7.1}s",
                r.total.as_secs_f64()
            );
        }
    }
    if let Some(c) = b.cold {
        println!(
            "  ({b_label}: one cold boot to the clean snapshot took {:.1}s)",
            c.as_secs_f64()
        );
    }
    println!(
        "  ratio {a_label} / {b_label} (total): {:.2}x",
        a.total.as_secs_f64() / b.total.as_secs_f64().max(1e-9)
    );
}
