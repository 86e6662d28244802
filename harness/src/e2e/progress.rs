//! Progress of an e2e run: a line when each scenario starts and ends (its
//! verdict, its duration, and an estimate of what is left), and a heartbeat
//! while scenarios run, so no wait is silent for more than 30 s. On a
//! terminal the same facts drive an `indicatif` bar; cucumber's own output
//! goes through [`Progress::writer`], which keeps the bar intact. Without a
//! terminal (CI logs) every line is plain.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::report::summary::Outcome;

/// The longest stretch without a line while scenarios run.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// How many scenario runs an accepted (outline) scenario stands for: one
/// per Examples row, or one for a plain scenario.
pub fn runs_of(scenario: &cucumber::gherkin::Scenario) -> usize {
    scenario
        .examples
        .iter()
        .map(|e| {
            e.table
                .as_ref()
                .map_or(1, |t| t.rows.len().saturating_sub(1))
        })
        .sum::<usize>()
        .max(1)
}

#[derive(Default)]
struct State {
    planned: usize,
    done: usize,
    failed: usize,
    running: BTreeMap<String, Instant>,
    durations: Vec<Duration>,
    last_line: Option<Instant>,
    finished: bool,
    /// How many scenarios may run at once (both passes together).
    parallel: usize,
}

/// Shared by the hooks, the writer and the heartbeat thread.
pub struct Progress {
    state: Arc<Mutex<State>>,
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise; starts the
    /// heartbeat. `parallel`: how many scenarios may run at once (the
    /// estimate divides by it).
    pub fn new(parallel: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} e2e {pos}/{len} scenarios [{elapsed}] {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(500));
            b
        });
        let p = Progress {
            state: Arc::new(Mutex::new(State {
                parallel,
                ..State::default()
            })),
            bar,
            started: Instant::now(),
        };
        if p.bar.is_none() {
            let state = p.state.clone();
            let started = p.started;
            std::thread::spawn(move || heartbeat(state, started));
        }
        p
    }

    /// `n` more scenario runs were accepted by the filter.
    pub fn planned(&self, n: usize) {
        let mut s = self.state.lock().unwrap();
        s.planned += n;
        if let Some(b) = &self.bar {
            b.set_length(s.planned as u64);
        }
    }

    pub fn started(&self, scenario: &str) {
        let line = {
            let mut s = self.state.lock().unwrap();
            s.running.insert(scenario.to_string(), Instant::now());
            format!(
                "e2e: [{}/{}] started: {scenario}",
                s.done + s.running.len(),
                s.planned.max(s.done + s.running.len())
            )
        };
        self.line(&line);
    }

    pub fn finished(
        &self,
        scenario: &str,
        outcome: Outcome,
        took: Duration,
        artifacts: Option<&Path>,
    ) {
        let line = {
            let mut s = self.state.lock().unwrap();
            s.running.remove(scenario);
            s.done += 1;
            s.durations.push(took);
            if outcome == Outcome::Failed {
                s.failed += 1;
            }
            let verdict = match outcome {
                Outcome::Passed => "passed",
                Outcome::Failed => "FAILED",
                Outcome::Skipped => "skipped",
            };
            let evidence = match (outcome, artifacts) {
                (Outcome::Failed, Some(a)) => format!(" (evidence: {})", a.display()),
                _ => String::new(),
            };
            format!(
                "e2e: [{}/{}] {verdict} in {}: {scenario}{evidence}; {}",
                s.done,
                s.planned.max(s.done),
                secs(took),
                left(&s)
            )
        };
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        self.line(&line);
    }

    /// The run is over: stop the bar and the heartbeat.
    pub fn finish(&self) {
        self.state.lock().unwrap().finished = true;
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn line(&self, text: &str) {
        self.state.lock().unwrap().last_line = Some(Instant::now());
        match &self.bar {
            Some(b) => {
                let s = self.state.lock().unwrap();
                b.set_message(left(&s));
                drop(s);
                b.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// Where cucumber writes its step lines: stdout, with the bar (if any)
    /// hidden while a line is written; counts as output for the heartbeat.
    pub fn writer(&'static self) -> ProgressWriter {
        ProgressWriter { progress: self }
    }
}

/// An estimate of what is left: the mean scenario time so far × the
/// scenarios still to run, over as many as run at once (at most those
/// left).
fn left(s: &State) -> String {
    let remaining = s.planned.saturating_sub(s.done);
    if remaining == 0 {
        return "nothing left".into();
    }
    if s.durations.is_empty() {
        return format!("{remaining} left");
    }
    let mean = s.durations.iter().sum::<Duration>() / s.durations.len() as u32;
    let at_once = s.parallel.clamp(1, remaining);
    let est = mean * remaining as u32 / at_once as u32;
    format!("{remaining} left, about {} (estimate)", mins(est))
}

fn secs(d: Duration) -> String {
    format!("{:.0} s", d.as_secs_f64())
}

fn mins(d: Duration) -> String {
    if d < Duration::from_secs(90) {
        secs(d)
    } else {
        format!("{:.0} min", d.as_secs_f64() / 60.0)
    }
}

/// Plain mode: a line naming what runs whenever nothing was printed for
/// [`HEARTBEAT`].
fn heartbeat(state: Arc<Mutex<State>>, started: Instant) {
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let mut s = state.lock().unwrap();
        if s.finished {
            return;
        }
        let quiet = s.last_line.unwrap_or(started).elapsed();
        if quiet < HEARTBEAT || s.running.is_empty() {
            continue;
        }
        let running: Vec<String> = s
            .running
            .iter()
            .map(|(n, t)| format!("{n} ({})", secs(t.elapsed())))
            .collect();
        let waiting: Vec<String> = crate::machine::qemu::slots::global()
            .waiting()
            .into_iter()
            .map(|(g, t)| format!("{g} ({})", secs(t)))
            .collect();
        eprintln!(
            "e2e: still running after {}: {}; {} of {} done, {}{}",
            mins(started.elapsed()),
            running.join(", "),
            s.done,
            s.planned,
            left(&s),
            if waiting.is_empty() {
                String::new()
            } else {
                format!("; waiting for a guest slot: {}", waiting.join(", "))
            }
        );
        s.last_line = Some(Instant::now());
    }
}

pub struct ProgressWriter {
    progress: &'static Progress,
}

impl Write for ProgressWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.progress.state.lock().unwrap().last_line = Some(Instant::now());
        match &self.progress.bar {
            Some(b) => b.suspend(|| std::io::stdout().write(buf)),
            None => std::io::stdout().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_uses_the_mean_over_those_at_once() {
        let mut s = State {
            planned: 5,
            done: 1,
            parallel: 2,
            ..State::default()
        };
        assert_eq!(left(&s), "4 left");
        s.durations.push(Duration::from_secs(120));
        // 4 × 120 s / 2 = 240 s
        assert_eq!(left(&s), "4 left, about 4 min (estimate)");
        // Six at once, four left: all four at once, 120 s.
        s.parallel = 6;
        assert_eq!(left(&s), "4 left, about 2 min (estimate)");
        s.done = 5;
        assert_eq!(left(&s), "nothing left");
    }

    #[test]
    fn an_outline_counts_one_run_per_examples_row() {
        let feature = cucumber::gherkin::Feature::parse(
            "Feature: f\n  Scenario Outline: s <x>\n    Given a <x>\n\n    Examples:\n      | x |\n      | 1 |\n      | 2 |\n      | 3 |\n\n  Scenario: plain\n    Given b\n",
            cucumber::gherkin::GherkinEnv::default(),
        )
        .unwrap();
        assert_eq!(runs_of(&feature.scenarios[0]), 3);
        assert_eq!(runs_of(&feature.scenarios[1]), 1);
    }
}
