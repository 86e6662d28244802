//! A scenario's timeline: where its time went, from the harness's own
//! clock (scenario start, guest taken or booted, user-data served, the
//! agent API double's receipts, each check) and from the guest's journal
//! (amazon-init, the bootstrap switch, the agent's unit), mapped to the
//! host's clock through an anchor taken over the probe (the guest's clock
//! after a snapshot restore is the snapshot's, not the host's).
//!
//! Written into each scenario's artifacts (`timeline.txt`, `timeline.json`)
//! and printed by `harness bench contract`. Phases between milestones:
//! guest (boot or restore) → to amazon-init → bootstrap switch → agent
//! start → startup script → checks; a scenario that restarts its guest
//! has one set per start.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Phase boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Milestone {
    /// A start begins (scenario start, or a stop/start).
    Start,
    /// The guest is up: probe ready after a boot, or restored and checked.
    GuestReady,
    AmazonInitStart,
    BootstrapStart,
    BootstrapEnd,
    AgentHello,
    ScriptStart,
    ScriptEnd,
    ChecksStart,
    ChecksEnd,
}

/// The phases, as (name, from, to).
pub const PHASES: [(&str, Milestone, Milestone); 6] = [
    (
        "guest (boot or restore)",
        Milestone::Start,
        Milestone::GuestReady,
    ),
    (
        "to amazon-init",
        Milestone::GuestReady,
        Milestone::AmazonInitStart,
    ),
    (
        "bootstrap switch",
        Milestone::BootstrapStart,
        Milestone::BootstrapEnd,
    ),
    (
        "agent start",
        Milestone::BootstrapEnd,
        Milestone::AgentHello,
    ),
    (
        "startup script",
        Milestone::ScriptStart,
        Milestone::ScriptEnd,
    ),
    ("checks", Milestone::ChecksStart, Milestone::ChecksEnd),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The harness's clock.
    Harness,
    /// The guest's journal, mapped to the host's clock.
    Guest,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(serialize_with = "epoch")]
    pub at: SystemTime,
    pub source: Source,
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub milestone: Option<Milestone>,
}

fn secs_since_epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn epoch<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(secs_since_epoch(*t))
}

/// One phase of one start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    /// 1 for the first start, 2 after a stop/start, …
    pub start: usize,
    pub name: &'static str,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    pub events: Vec<Event>,
}

/// Maps the guest's clock to the host's: both read at (about) the same
/// moment over the probe.
#[derive(Debug, Clone, Copy)]
pub struct Anchor {
    pub host: SystemTime,
    pub guest_epoch: f64,
}

impl Anchor {
    pub fn to_host(&self, guest_epoch: f64) -> SystemTime {
        let d = guest_epoch - self.guest_epoch;
        if d >= 0.0 {
            self.host + Duration::from_secs_f64(d)
        } else {
            self.host - Duration::from_secs_f64(-d)
        }
    }
}

/// Guest journal lines that mark a milestone or say where time goes:
/// (substring, label, milestone). The first line matching each entry counts.
pub const GUEST_MARKS: &[(&str, &str, Option<Milestone>)] = &[
    (
        "Starting fetch-ec2-metadata",
        "fetch-ec2-metadata starts",
        None,
    ),
    (
        "getting EC2 instance metadata...",
        "IMDS: fetching metadata",
        None,
    ),
    (
        "Starting amazon-init",
        "amazon-init starts",
        Some(Milestone::AmazonInitStart),
    ),
    (
        "attempting to fetch configuration from EC2 user data",
        "amazon-init runs the user-data",
        None,
    ),
    (
        "switching to the bootstrap configuration",
        "bootstrap switch starts",
        Some(Milestone::BootstrapStart),
    ),
    (
        "building the system configuration...",
        "nixos-rebuild: build",
        None,
    ),
    (
        "nixos-system-contract.drv'...",
        "nixos-rebuild: building the system derivation",
        None,
    ),
    (
        "activating the configuration...",
        "nixos-rebuild: activation",
        None,
    ),
    ("formatting blank /dev/xvdb", "home disk: mkfs", None),
    ("mounted /dev/xvdb on /home", "home disk mounted", None),
    (
        "starting the coder agent as",
        "bootstrap done: agent unit starts",
        Some(Milestone::BootstrapEnd),
    ),
    ("Started coder-agent", "coder-agent.service started", None),
    ("Finished amazon-init", "amazon-init finished", None),
    (
        "amazon-init.service: Main process exited",
        "amazon-init exited",
        None,
    ),
    ("Failed to start amazon-init", "amazon-init failed", None),
];

/// The probe command that reads the guest's clock (seconds since the epoch).
pub const ANCHOR_CMD: &str = "date +%s.%N";

/// The probe command that lists the journal lines of `units` since guest
/// time `since` (`None`: this boot), as `short-unix`:
/// `<epoch> <host> <ident>: <message>`.
pub fn journal_cmd(since: Option<f64>, units: &[&str]) -> String {
    let u: Vec<String> = units.iter().map(|u| format!("-u '{u}'")).collect();
    let since = match since {
        Some(t) => format!("--since @{t:.6}"),
        None => "-b".to_string(),
    };
    format!(
        "journalctl --no-pager -o short-unix {since} {} 2>/dev/null | tail -n 2000",
        u.join(" ")
    )
}

/// Events from `journalctl -o short-unix` output, mapped through `anchor`.
pub fn guest_events(journal: &str, anchor: &Anchor) -> Vec<Event> {
    let mut seen = vec![false; GUEST_MARKS.len()];
    let mut out = Vec::new();
    for line in journal.lines() {
        let Some((ts, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(t) = ts.parse::<f64>() else { continue };
        for (i, (needle, label, m)) in GUEST_MARKS.iter().enumerate() {
            if !seen[i] && rest.contains(needle) {
                seen[i] = true;
                out.push(Event {
                    at: anchor.to_host(t),
                    source: Source::Guest,
                    what: (*label).to_string(),
                    milestone: *m,
                });
            }
        }
    }
    out
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline::default()
    }

    pub fn mark(&mut self, what: impl Into<String>) {
        self.push(SystemTime::now(), Source::Harness, what, None);
    }

    pub fn milestone(&mut self, m: Milestone, what: impl Into<String>) {
        self.push(SystemTime::now(), Source::Harness, what, Some(m));
    }

    pub fn push(
        &mut self,
        at: SystemTime,
        source: Source,
        what: impl Into<String>,
        milestone: Option<Milestone>,
    ) {
        self.events.push(Event {
            at,
            source,
            what: what.into(),
            milestone,
        });
    }

    pub fn extend(&mut self, events: impl IntoIterator<Item = Event>) {
        self.events.extend(events);
    }

    /// Events in time order.
    pub fn sorted(&self) -> Vec<Event> {
        let mut e = self.events.clone();
        e.sort_by_key(|e| e.at);
        e
    }

    /// Phases per start: each [`Milestone::Start`] opens a start; a phase
    /// runs from its first `from` milestone to the first `to` after it
    /// (checks: to the last check's end).
    pub fn phases(&self) -> Vec<Phase> {
        let events = self.sorted();
        let starts: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.milestone == Some(Milestone::Start))
            .map(|(i, _)| i)
            .collect();
        let mut out = Vec::new();
        for (n, &s) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(events.len());
            let span = &events[s..end];
            for (name, from, to) in PHASES {
                let Some(a) = span.iter().position(|e| e.milestone == Some(from)) else {
                    continue;
                };
                let mut ends = span[a..].iter().filter(|e| e.milestone == Some(to));
                let b = if to == Milestone::ChecksEnd {
                    ends.next_back()
                } else {
                    ends.next()
                };
                let Some(b) = b else {
                    continue;
                };
                let d = b.at.duration_since(span[a].at).unwrap_or_default();
                out.push(Phase {
                    start: n + 1,
                    name,
                    seconds: d.as_secs_f64(),
                });
            }
        }
        out
    }

    /// Seconds from the first event to the last.
    pub fn total(&self) -> f64 {
        let e = self.sorted();
        match (e.first(), e.last()) {
            (Some(a), Some(b)) => b.at.duration_since(a.at).unwrap_or_default().as_secs_f64(),
            _ => 0.0,
        }
    }

    /// Human-readable: every event at its offset, then the phases.
    pub fn render(&self, title: &str) -> String {
        let events = self.sorted();
        let mut s = String::new();
        let Some(t0) = events.first().map(|e| e.at) else {
            return format!("timeline of {title}: no events\n");
        };
        let _ = writeln!(
            s,
            "timeline of {title} (t=0 at {:.3} s since the epoch; guest events from its journal, mapped to the host's clock)",
            secs_since_epoch(t0)
        );
        for e in &events {
            let off = e.at.duration_since(t0).unwrap_or_default().as_secs_f64();
            let src = match e.source {
                Source::Harness => "harness",
                Source::Guest => "guest  ",
            };
            let _ = writeln!(s, "  {off:>8.1} s  {src}  {}", e.what);
        }
        let _ = writeln!(s, "phases:");
        for p in self.phases() {
            let _ = writeln!(s, "  start {} {:<26} {:>7.1} s", p.start, p.name, p.seconds);
        }
        let _ = writeln!(s, "  {:<34} {:>7.1} s", "total", self.total());
        s
    }

    /// `timeline.txt` and `timeline.json` in `dir`.
    pub fn save(&self, dir: &Path, title: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("timeline.txt"), self.render(title))?;
        let json = serde_json::json!({
            "title": title,
            "events": self.sorted(),
            "phases": self.phases(),
            "total_s": self.total(),
        });
        std::fs::write(
            dir.join("timeline.json"),
            serde_json::to_string_pretty(&json)?,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(1_000_000.0 + s)
    }

    #[test]
    fn guest_lines_map_through_the_anchor_and_phases_follow_the_milestones() {
        // The guest's clock is 500 s behind the host's (a restored snapshot).
        let anchor = Anchor {
            host: at(10.0),
            guest_epoch: 1_000_000.0 - 490.0,
        };
        let journal = "\
999510.5 contract systemd[1]: Starting amazon-init.service - Reconfigure the system from EC2 userdata...
999512.0 contract amazon-init[400]: coder-bootstrap: switching to the bootstrap configuration (agent user coder)
999513.0 contract amazon-init[427]: building the system configuration...
999600.0 contract amazon-init[400]: coder-bootstrap: starting the coder agent as coder
999600.5 contract amazon-init[400]: coder-bootstrap: starting the coder agent as coder
not a journal line
";
        let ev = guest_events(journal, &anchor);
        assert_eq!(ev.len(), 4, "{ev:?}");
        assert_eq!(ev[0].at, at(10.5));
        assert_eq!(ev[0].milestone, Some(Milestone::AmazonInitStart));
        assert_eq!(ev[3].at, at(100.0));

        let mut t = Timeline::new();
        t.push(
            at(0.0),
            Source::Harness,
            "scenario start",
            Some(Milestone::Start),
        );
        t.push(
            at(8.0),
            Source::Harness,
            "restored",
            Some(Milestone::GuestReady),
        );
        t.extend(ev);
        t.push(
            at(105.0),
            Source::Harness,
            "hello",
            Some(Milestone::AgentHello),
        );
        t.push(
            at(106.0),
            Source::Harness,
            "starting",
            Some(Milestone::ScriptStart),
        );
        t.push(
            at(130.0),
            Source::Harness,
            "ready",
            Some(Milestone::ScriptEnd),
        );
        t.push(
            at(131.0),
            Source::Harness,
            "checks",
            Some(Milestone::ChecksStart),
        );
        t.push(
            at(140.0),
            Source::Harness,
            "checks done",
            Some(Milestone::ChecksEnd),
        );
        // A second start (stop/start) gets its own phases.
        t.push(
            at(150.0),
            Source::Harness,
            "stop/start",
            Some(Milestone::Start),
        );
        t.push(
            at(170.0),
            Source::Harness,
            "probe ready",
            Some(Milestone::GuestReady),
        );
        let p = t.phases();
        let get = |start, name| {
            p.iter()
                .find(|x| x.start == start && x.name == name)
                .map(|x| x.seconds)
        };
        assert_eq!(get(1, "guest (boot or restore)"), Some(8.0));
        assert_eq!(get(1, "to amazon-init"), Some(2.5));
        assert_eq!(get(1, "bootstrap switch"), Some(88.0));
        assert_eq!(get(1, "agent start"), Some(5.0));
        assert_eq!(get(1, "startup script"), Some(24.0));
        assert_eq!(get(1, "checks"), Some(9.0));
        assert_eq!(get(2, "guest (boot or restore)"), Some(20.0));
        assert_eq!(get(2, "bootstrap switch"), None);
        let text = t.render("s");
        assert!(text.contains("bootstrap switch starts"), "{text}");
        assert!(text.contains("start 1 bootstrap switch"), "{text}");
        let d = tempfile::tempdir().unwrap();
        t.save(d.path(), "s").unwrap();
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.path().join("timeline.json")).unwrap())
                .unwrap();
        assert_eq!(j["phases"][0]["name"], "guest (boot or restore)");
        assert_eq!(j["total_s"], 170.0);
    }
}
