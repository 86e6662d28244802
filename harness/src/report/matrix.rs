//! The variant × check matrix every report prints (the gate's terminal
//! table, `harness report`, its Markdown and HTML forms): rows of any
//! origin become [`Item`]s with a [`Tier`], cells aggregate the items of
//! one variant and check, and skip reasons become keys listed once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::reasons::Reasons;
use super::tier::{Tally, Tier, Verdict};

/// One verdict, from a gate row or an e2e summary row.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// A variant name; `*`, `-` or empty for repository-wide rows.
    pub variant: String,
    pub arch: Option<String>,
    pub check: String,
    /// The scenario (e2e) or the full gate check name when it was grouped.
    pub scenario: Option<String>,
    pub tier: Tier,
    pub verdict: Verdict,
    /// Why it failed or was skipped (full text).
    pub message: Option<String>,
    /// A passed item's warning (something to act on soon).
    pub warning: Option<String>,
    pub seconds: f64,
    pub time_to_agent_s: Option<f64>,
    pub time_to_ready_s: Option<f64>,
    pub artifacts: Option<PathBuf>,
}

/// Column label of repository-wide rows.
pub const REPO: &str = "repo";

/// Items plus the keys of their skip reasons.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub items: Vec<Item>,
    /// The reason key of each item (skipped items only).
    pub keys: Vec<Option<usize>>,
    pub reasons: Reasons,
}

/// Everything the matrix shows about one variant × check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CellCounts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Matrix {
    /// Normalises variants (repository-wide rows named after a variant,
    /// e.g. `coder-import aws-nixos`, go to that variant) and grouped
    /// checks (`terraform-test <dir>` → `terraform-test`), then keys the
    /// skip reasons in order.
    pub fn new(mut items: Vec<Item>) -> Matrix {
        let variants: Vec<String> = items
            .iter()
            .filter(|i| !is_repo(&i.variant))
            .map(|i| i.variant.clone())
            .collect();
        for i in &mut items {
            if is_repo(&i.variant) {
                i.variant = REPO.to_string();
                if let Some((check, last)) = i.check.rsplit_once(' ') {
                    if variants.iter().any(|v| v == last) {
                        i.scenario.get_or_insert_with(|| i.check.clone());
                        i.variant = last.to_string();
                        i.check = check.to_string();
                    }
                }
            }
            if let Some(rest) = i.check.strip_prefix("terraform-test ") {
                if !rest.is_empty() {
                    i.scenario.get_or_insert_with(|| i.check.clone());
                    i.check = "terraform-test".into();
                }
            }
        }
        for i in &mut items {
            i.message = i.message.as_deref().map(super::reasons::scrub);
            i.warning = i.warning.as_deref().map(super::reasons::scrub);
        }
        let mut reasons = Reasons::default();
        let keys = items
            .iter()
            .map(|i| match (i.verdict, &i.message) {
                (Verdict::Skipped, Some(m)) => Some(reasons.key(m)),
                (Verdict::Skipped, None) => Some(reasons.key("no reason given")),
                _ => None,
            })
            .collect();
        Matrix {
            items,
            keys,
            reasons,
        }
    }

    pub fn tally(&self) -> Tally {
        Tally::new(self.items.iter().map(|i| (i.tier, i.verdict)))
    }

    /// Variants, sorted, the repository-wide column last.
    pub fn variants(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.items.iter().map(|i| i.variant.as_str()).collect();
        v.sort_by_key(|x| (*x == REPO, *x));
        v.dedup();
        v
    }

    /// Checks in order of first appearance.
    pub fn checks(&self) -> Vec<&str> {
        let mut c: Vec<&str> = Vec::new();
        for i in &self.items {
            if !c.contains(&i.check.as_str()) {
                c.push(&i.check);
            }
        }
        c
    }

    /// (tier, check) pairs, by tier, then in order of first appearance.
    pub fn tier_checks(&self) -> Vec<(Tier, &str)> {
        let mut c: Vec<(Tier, &str)> = Vec::new();
        for i in &self.items {
            if !c.contains(&(i.tier, i.check.as_str())) {
                c.push((i.tier, &i.check));
            }
        }
        c.sort_by_key(|(t, _)| *t);
        c
    }

    /// Indices of the items of one cell (`tier` = None: every tier).
    pub fn cell(&self, variant: &str, check: &str, tier: Option<Tier>) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&n| {
                let i = &self.items[n];
                i.variant == variant && i.check == check && tier.is_none_or(|t| i.tier == t)
            })
            .collect()
    }

    pub fn counts(&self, idx: &[usize]) -> CellCounts {
        let mut c = CellCounts::default();
        for &n in idx {
            match self.items[n].verdict {
                Verdict::Passed => c.passed += 1,
                Verdict::Failed => c.failed += 1,
                Verdict::Skipped => c.skipped += 1,
            }
        }
        c
    }

    /// Distinct reason keys of some items, ascending.
    pub fn keys_of(&self, idx: &[usize]) -> Vec<usize> {
        let mut k: Vec<usize> = idx.iter().filter_map(|&n| self.keys[n]).collect();
        k.sort();
        k.dedup();
        k
    }

    /// Terminal cell: `pass`, `pass×3`, `FAIL`, `FAIL×2 pass`, `skip[1]`,
    /// `WARN` (a pass with a warning, listed under the table).
    fn text_cell(&self, idx: &[usize]) -> String {
        let mut c = self.counts(idx);
        let warned = idx
            .iter()
            .filter(|&&n| {
                self.items[n].verdict == Verdict::Passed && self.items[n].warning.is_some()
            })
            .count();
        c.passed -= warned;
        let n = |w: &str, k: usize| {
            if k > 1 {
                format!("{w}×{k}")
            } else {
                w.to_string()
            }
        };
        let mut parts = Vec::new();
        if c.failed > 0 {
            parts.push(n("FAIL", c.failed));
        }
        if warned > 0 {
            parts.push(n("WARN", warned));
        }
        if c.passed > 0 {
            parts.push(n("pass", c.passed));
        }
        if c.skipped > 0 {
            let keys = self.keys_of(idx);
            parts.push(format!(
                "skip[{}]",
                keys.iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        parts.join(" ")
    }

    /// The terminal table: one line per tier × check, one column per
    /// variant (lettered, with a legend, so four long names fit 80 columns).
    pub fn table_text(&self) -> String {
        let variants = self.variants();
        let letters: Vec<String> = variants
            .iter()
            .enumerate()
            .map(|(n, v)| {
                if *v == REPO {
                    REPO.to_string()
                } else {
                    column_letter(n)
                }
            })
            .collect();
        let mut s = String::new();
        let legend: Vec<String> = variants
            .iter()
            .zip(&letters)
            .filter(|(v, _)| **v != REPO)
            .map(|(v, l)| format!("{l} {v}"))
            .collect();
        if !legend.is_empty() {
            let _ = writeln!(s, "variants: {}", legend.join(" · "));
        }
        let head: Vec<String> = ["tier", "check"]
            .iter()
            .map(|h| h.to_string())
            .chain(letters.iter().cloned())
            .collect();
        let mut lines: Vec<Vec<String>> = vec![head];
        for (tier, check) in self.tier_checks() {
            let mut line = vec![tier.as_str().to_string(), check.to_string()];
            for v in &variants {
                line.push(self.text_cell(&self.cell(v, check, Some(tier))));
            }
            lines.push(line);
        }
        let cols = lines[0].len();
        let w: Vec<usize> = (0..cols)
            .map(|c| {
                lines
                    .iter()
                    .map(|l| l[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for l in &lines {
            let mut out = String::new();
            for (c, cell) in l.iter().enumerate() {
                let cell = if cell.is_empty() && c >= 2 {
                    "·"
                } else {
                    cell
                };
                let _ = write!(out, "{cell:w$}  ", w = w[c]);
            }
            let _ = writeln!(s, "{}", out.trim_end());
        }
        s
    }

    /// One line per failed item: where, which tier, the first line of why.
    pub fn failures_text(&self) -> String {
        let mut s = String::new();
        for i in self.items.iter().filter(|i| i.verdict == Verdict::Failed) {
            let what = i.scenario.as_deref().unwrap_or(&i.check);
            let why = i
                .message
                .as_deref()
                .and_then(|m| m.lines().next())
                .unwrap_or("");
            let _ = writeln!(s, "FAILED {} / {} ({}): {why}", i.variant, what, i.tier);
        }
        s
    }

    /// Each warning: `WARNING <variant> / <check> (<tier>):`, then the
    /// text wrapped and indented.
    pub fn warnings_text(&self) -> String {
        let mut s = String::new();
        for i in &self.items {
            if let Some(w) = &i.warning {
                let what = i.scenario.as_deref().unwrap_or(&i.check);
                let _ = writeln!(s, "WARNING {} / {} ({}):", i.variant, what, i.tier);
                for line in super::reasons::wrap(w, super::reasons::WIDTH - 4) {
                    let _ = writeln!(s, "    {line}");
                }
            }
        }
        s
    }

    /// Table, distinct skip reasons, warnings, failures, and the per-tier
    /// tally last.
    pub fn text(&self) -> String {
        let mut s = self.table_text();
        let r = self.reasons.text();
        if !r.is_empty() {
            s.push_str(&r);
        }
        s.push_str(&self.warnings_text());
        s.push_str(&self.failures_text());
        let _ = writeln!(s, "{}", self.tally().line());
        s
    }

    /// Markdown for the CI job summary: the per-tier tally as heading, a
    /// variant × check table whose cells name their tier, time to agent and
    /// to ready, the distinct skip reasons once, then the failures with
    /// their evidence folders.
    pub fn markdown(&self, title: &str) -> String {
        let md = super::reasons::md_escape;
        let mut out = String::new();
        let _ = writeln!(out, "### {title}: {}\n", self.tally().line());
        let checks = self.checks();
        let timed = self
            .items
            .iter()
            .any(|i| i.time_to_agent_s.is_some() || i.time_to_ready_s.is_some());
        out.push_str("| variant |");
        for c in &checks {
            let _ = write!(out, " {} |", md(c));
        }
        if timed {
            out.push_str(" time to agent | time to ready |");
        }
        out.push_str("\n|---|");
        for _ in &checks {
            out.push_str("---|");
        }
        if timed {
            out.push_str("---|---|");
        }
        out.push('\n');
        for v in self.variants() {
            let _ = write!(out, "| {} |", md(v));
            for c in &checks {
                let _ = write!(out, " {} |", self.md_cell(&self.cell(v, c, None)));
            }
            if timed {
                let rows: Vec<&Item> = self.items.iter().filter(|i| i.variant == v).collect();
                let max = |f: fn(&Item) -> Option<f64>| {
                    rows.iter()
                        .filter_map(|r| f(r))
                        .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))))
                        .map(|s| format!("{s:.0} s"))
                        .unwrap_or_else(|| "–".into())
                };
                let _ = write!(
                    out,
                    " {} | {} |",
                    max(|r| r.time_to_agent_s),
                    max(|r| r.time_to_ready_s)
                );
            }
            out.push('\n');
        }
        out.push_str(&self.reasons.markdown());
        let warned: Vec<&Item> = self.items.iter().filter(|i| i.warning.is_some()).collect();
        if !warned.is_empty() {
            out.push_str("\n**Warnings**\n\n");
            for i in warned {
                let _ = writeln!(
                    out,
                    "- {} / {} ({}): {}",
                    md(&i.variant),
                    md(i.scenario.as_deref().unwrap_or(&i.check)),
                    i.tier,
                    md(i.warning.as_deref().unwrap_or(""))
                );
            }
        }
        let failed: Vec<&Item> = self
            .items
            .iter()
            .filter(|i| i.verdict == Verdict::Failed)
            .collect();
        if !failed.is_empty() {
            out.push_str("\n**Failed**\n\n| variant | tier | check | reason | evidence |\n|---|---|---|---|---|\n");
            for i in failed {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    md(&i.variant),
                    i.tier,
                    md(i.scenario.as_deref().unwrap_or(&i.check)),
                    md(i.message
                        .as_deref()
                        .and_then(|m| m.lines().next())
                        .unwrap_or("")),
                    i.artifacts
                        .as_ref()
                        .map(|p| format!("`{}`", p.display()))
                        .unwrap_or_default()
                );
            }
        }
        out
    }

    /// Markdown cell: one part per tier, e.g. `✅ contract ×3 · ⏭ nixos [1]`.
    fn md_cell(&self, idx: &[usize]) -> String {
        if idx.is_empty() {
            return "–".into();
        }
        let mut by_tier: BTreeMap<Tier, Vec<usize>> = BTreeMap::new();
        for &n in idx {
            by_tier.entry(self.items[n].tier).or_default().push(n);
        }
        by_tier
            .iter()
            .map(|(t, idx)| {
                let c = self.counts(idx);
                let n = |k: usize| {
                    if k > 1 {
                        format!(" ×{k}")
                    } else {
                        String::new()
                    }
                };
                let mut p = Vec::new();
                if c.failed > 0 {
                    p.push(format!("❌ {t}{}", n(c.failed)));
                }
                if c.passed > 0 {
                    p.push(format!("✅ {t}{}", n(c.passed)));
                }
                if c.skipped > 0 {
                    let k = self.keys_of(idx);
                    p.push(format!(
                        "⏭ {t} [{}]",
                        k.iter()
                            .map(|k| k.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    ));
                }
                p.join(" ")
            })
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

fn is_repo(v: &str) -> bool {
    matches!(v, "" | "*" | "-" | REPO)
}

/// `A`, `B`, … `Z`, `AA`, …
fn column_letter(n: usize) -> String {
    let mut n = n;
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).expect("ascii")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn item(
        variant: &str,
        check: &str,
        tier: Tier,
        verdict: Verdict,
        msg: Option<&str>,
    ) -> Item {
        Item {
            variant: variant.into(),
            arch: None,
            check: check.into(),
            scenario: None,
            tier,
            verdict,
            message: msg.map(str::to_string),
            warning: None,
            seconds: 0.0,
            time_to_agent_s: None,
            time_to_ready_s: None,
            artifacts: None,
        }
    }

    #[test]
    fn repository_rows_named_after_a_variant_and_grouped_checks_are_normalised() {
        let m = Matrix::new(vec![
            item("a", "render", Tier::Static, Verdict::Passed, None),
            item("*", "coder-import a", Tier::Static, Verdict::Passed, None),
            item(
                "*",
                "terraform-test templates/modules/x",
                Tier::Static,
                Verdict::Skipped,
                Some("needs provider(s) aws, which cannot be installed offline"),
            ),
            item(
                "*",
                "terraform-test templates",
                Tier::Static,
                Verdict::Passed,
                None,
            ),
        ]);
        assert_eq!(m.variants(), vec!["a", REPO]);
        assert_eq!(m.checks(), vec!["render", "coder-import", "terraform-test"]);
        assert_eq!(m.items[1].variant, "a");
        assert_eq!(m.items[1].scenario.as_deref(), Some("coder-import a"));
        let t = m.table_text();
        assert!(
            t.contains("static  terraform-test  ·     pass skip[1]"),
            "{t}"
        );
        assert_eq!(column_letter(0), "A");
        assert_eq!(column_letter(26), "AA");
    }

    #[test]
    fn a_warning_shows_in_its_cell_and_under_the_table() {
        let mut warned = item("*", "nixos-release", Tier::Static, Verdict::Passed, None);
        warned.warning = Some("NixOS 26.05 reaches its end of life in 25 days".into());
        let m = Matrix::new(vec![
            item("a", "render", Tier::Static, Verdict::Passed, None),
            warned,
        ]);
        let t = m.table_text();
        let line = t.lines().find(|l| l.contains("nixos-release")).unwrap();
        assert!(line.ends_with(" WARN") && !line.contains("pass"), "{t}");
        let all = m.text();
        assert!(
            all.contains("WARNING repo / nixos-release (static):\n    NixOS 26.05 reaches its end of life in 25 days\n"),
            "{all}"
        );
        // A warning is a pass in the tally.
        assert_eq!(m.tally().0[&Tier::Static].passed, 2);
    }
}
