//! `harness report --html`: `target/e2e/report.html`, one self-contained
//! page (inline CSS and SVG, no script, no network: a Content-Security-Policy
//! of `default-src 'none'` forbids anything else) with the variant × check
//! matrix coloured by verdict and by evidence: a passed cell is filled by
//! the strongest tier that passed in it ([`pass_fill`]: striped and pale
//! for files and doubles — static, contract, twin —, solid green for a
//! real NixOS workspace — nixos, ec2), so a pass on a double never looks
//! like a real one; a legend says which is which.
//! Failed cells are red, skipped cells grey with their reason.  Each cell
//! opens (`<details>`) onto its scenarios: verdict, tier, the failure
//! message or skip reason, and relative links to what the scenario's
//! evidence folder holds (serial console, user-data, metadata log, agent
//! log).  The distinct skip reasons follow the table once each; time to
//! agent and to ready per variant and arch are a small SVG chart.
//!
//! All text from the summary is escaped ([`esc`]); the page is checked in
//! headless Chromium by `harness/tests/report_html.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use super::matrix::Matrix;
use super::tier::{Tier, Verdict};
use crate::report::summary::Summary;

/// File name of the page inside the e2e output directory.
pub const FILE: &str = "report.html";

/// Escape text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// Percent-encode a relative path for an `href` (slashes kept).
fn href(rel: &str) -> String {
    let mut o = String::new();
    for b in rel.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// Known evidence files, in the order they are linked, with their labels.
const KNOWN: [(&str, &str); 4] = [
    ("serial.log", "serial console"),
    ("user-data", "user-data"),
    ("imds.jsonl", "metadata log"),
    ("agent-logs.txt", "agent log"),
];

/// An evidence folder relative to the report's directory: the path under
/// `out_dir`, or (a summary recorded on another machine, e.g. a CI runner)
/// the part from the last `scenarios` component on.
pub fn relative_artifacts(out_dir: &Path, artifacts: &Path) -> PathBuf {
    if let Ok(rel) = artifacts.strip_prefix(out_dir) {
        return rel.to_path_buf();
    }
    let comps: Vec<Component> = artifacts.components().collect();
    if let Some(i) = comps.iter().rposition(|c| c.as_os_str() == "scenarios") {
        return comps[i..].iter().collect();
    }
    artifacts.to_path_buf()
}

/// (label, relative link) of every file in a scenario's evidence folder:
/// the known ones first (EC2's `console-<id>.log` as the serial console),
/// then any other file by name.  None when the folder is not next to the report.
pub fn evidence_links(out_dir: &Path, artifacts: &Path) -> Option<Vec<(String, String)>> {
    let rel = relative_artifacts(out_dir, artifacts);
    let dir = out_dir.join(&rel);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let link = |name: &str| {
        let p = rel.join(name);
        p.to_string_lossy().replace('\\', "/")
    };
    let mut out = Vec::new();
    for (file, label) in KNOWN {
        if let Some(i) = names.iter().position(|n| n == file) {
            out.push((label.to_string(), link(&names.remove(i))));
        }
        if file == "serial.log" {
            while let Some(i) = names
                .iter()
                .position(|n| n.starts_with("console-") && n.ends_with(".log"))
            {
                let n = names.remove(i);
                out.push((format!("serial console ({n})"), link(&n)));
            }
        }
    }
    for n in names {
        out.push((n.clone(), link(&n)));
    }
    Some(out)
}

const CSS: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1b1b;background:#fff}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}
.tally{font-weight:600;margin:.2em 0 .8em}
table.matrix{border-collapse:collapse}
.matrix th,.matrix td{border:1px solid #bbb;padding:4px 6px;vertical-align:top;text-align:left}
.matrix thead th{background:#f0f0f0}
td.cell{min-width:7em;border-left-width:6px}
td.failed{background:#f4b6b0}td.skipped{background:#dcdcdc;color:#444}
td.empty{background:#fafafa;color:#999}
td.tier-static{border-left-color:#7a8a99}
td.tier-contract{border-left-color:#8e44ad}td.tier-twin{border-left-color:#0e7c86}td.tier-nixos{border-left-color:#1f6feb}td.tier-ec2{border-left-color:#0b7a3e}
.badge{display:inline-block;border-radius:3px;padding:0 4px;margin:1px;font-size:12px;color:#fff}
.t-static{background:#7a8a99}.t-contract{background:#8e44ad}.t-twin{background:#0e7c86}.t-nixos{background:#1f6feb}.t-ec2{background:#0b7a3e}
.why{display:block;font-size:12px}
details>summary{cursor:pointer}
ul.items{margin:.3em 0 0;padding-left:1.1em;max-width:40em}
li.item{margin-bottom:.4em}
pre.msg{white-space:pre-wrap;background:#fff8f7;border:1px solid #e0b4b0;padding:4px;margin:.2em 0;font-size:12px}
li.skipped pre.msg{background:#f6f6f6;border-color:#ccc}
.links a{margin-right:.8em}
#reasons li{margin-bottom:.4em}
.legend span{margin-right:1em}
#colours .key{display:inline-block;margin:0 1em .3em 0}
.swatch{display:inline-block;width:1.6em;height:.9em;border:1px solid #999;vertical-align:middle;margin-right:.3em}
.swatch.sw-failed{background:#f4b6b0}.swatch.sw-skipped{background:#dcdcdc}
"#;

/// The failed and skipped fills (the legend's last two swatches).
pub const FAILED_RGB: [u8; 3] = [0xf4, 0xb6, 0xb0];
pub const SKIPPED_RGB: [u8; 3] = [0xdc, 0xdc, 0xdc];

/// How a passed cell is filled, from the strongest tier that passed in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassFill {
    /// The fill, or the colour of the stripes.
    pub colour: [u8; 3],
    /// `Some(between)`: striped (`colour` and `between` alternate), the
    /// mark of evidence from files or a double; `None`: solid.
    pub stripes: Option<[u8; 3]>,
}

/// The fill of a passed cell whose strongest passing tier is `t`: pale
/// stripes growing darker from `static` to `twin` (files, the
/// NixOS-contract double, moto), solid green for `nixos` and a
/// darker solid green for `ec2`.  Every tier's fill differs from every
/// other's and from the failed and skipped fills.
pub fn pass_fill(t: Tier) -> PassFill {
    const WHITE: [u8; 3] = [0xff, 0xff, 0xff];
    match t {
        Tier::Static => PassFill {
            colour: [0xe3, 0xec, 0xe5],
            stripes: Some(WHITE),
        },
        Tier::Contract => PassFill {
            colour: [0xb0, 0xe0, 0xbc],
            stripes: Some(WHITE),
        },
        Tier::Twin => PassFill {
            colour: [0x96, 0xd4, 0xa6],
            stripes: Some([0xea, 0xf6, 0xed]),
        },
        Tier::Nixos => PassFill {
            colour: [0x6c, 0xc8, 0x83],
            stripes: None,
        },
        Tier::Ec2 => PassFill {
            colour: [0x3f, 0xa8, 0x62],
            stripes: None,
        },
    }
}

fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// One CSS rule per tier, `.ev-<tier>{background:…}`: the passed cells
/// and the legend's swatches.
fn evidence_css() -> String {
    let mut css = String::new();
    for t in Tier::ALL {
        let f = pass_fill(t);
        let bg = match f.stripes {
            Some(b) => format!(
                "repeating-linear-gradient(135deg,{c} 0 7px,{b} 7px 12px)",
                c = hex(f.colour),
                b = hex(b)
            ),
            None => hex(f.colour),
        };
        let _ = writeln!(css, ".ev-{t}{{background:{bg}}}");
    }
    css
}

/// The whole page for `summary`, links relative to `out_dir` (where the
/// page is written).
pub fn render(summary: &Summary, out_dir: &Path) -> String {
    let m = summary.matrix();
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n");
    h.push_str(
        "<meta name=\"viewport\" content=\"width=device-width\">\n<title>e2e report</title>\n",
    );
    let _ = writeln!(h, "<style>{CSS}{}</style>\n</head><body>", evidence_css());
    h.push_str("<h1>e2e report: variant × check</h1>\n");
    let _ = writeln!(
        h,
        "<p class=\"tally\" id=\"tally\">{}</p>",
        esc(&m.tally().line())
    );
    h.push_str("<p class=\"legend\">");
    for t in Tier::ALL {
        let _ = write!(
            h,
            "<span><span class=\"badge t-{t}\">{t}</span> {}</span> ",
            esc(t.meaning())
        );
    }
    h.push_str("</p>\n");
    colour_legend(&mut h);
    matrix_table(&mut h, &m, out_dir);
    reasons(&mut h, &m);
    h.push_str("<section id=\"timings\"><h2>Time to agent and to ready</h2>\n");
    h.push_str(&chart(&m));
    h.push_str("</section>\n</body></html>\n");
    h
}

/// Write [`render`]'s page to `out_dir/report.html`.
pub fn write(summary: &Summary, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let p = out_dir.join(FILE);
    std::fs::write(&p, render(summary, out_dir))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
    Ok(p)
}

/// What the cell colours mean: one swatch per tier, then failed and skipped.
fn colour_legend(h: &mut String) {
    h.push_str("<p class=\"legend\" id=\"colours\">A passed cell is filled by the strongest tier that passed in it; striped: files or a double (never a real workspace), solid: a real NixOS workspace.<br>");
    for t in Tier::ALL {
        let kind = if pass_fill(t).stripes.is_some() {
            "striped"
        } else {
            "solid"
        };
        let _ = write!(
            h,
            "<span class=\"key\" data-tier=\"{t}\"><span class=\"swatch ev-{t}\"></span>{t} passed ({kind})</span>"
        );
    }
    h.push_str("<span class=\"key\"><span class=\"swatch sw-failed\"></span>failed (any tier)</span><span class=\"key\"><span class=\"swatch sw-skipped\"></span>skipped</span></p>\n");
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "passed",
        Verdict::Failed => "failed",
        Verdict::Skipped => "skipped",
    }
}

fn matrix_table(h: &mut String, m: &Matrix, out_dir: &Path) {
    let checks = m.checks();
    h.push_str("<table class=\"matrix\" id=\"matrix\"><thead><tr><th>variant</th>");
    for c in &checks {
        let _ = write!(h, "<th data-check=\"{0}\">{0}</th>", esc(c));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for v in m.variants() {
        let _ = writeln!(
            h,
            "<tr data-variant=\"{0}\"><th scope=\"row\">{0}</th>",
            esc(v)
        );
        for c in &checks {
            cell(h, m, v, c, out_dir);
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table>\n");
}

fn cell(h: &mut String, m: &Matrix, variant: &str, check: &str, out_dir: &Path) {
    let idx = m.cell(variant, check, None);
    let attrs = format!(
        "data-variant=\"{}\" data-check=\"{}\"",
        esc(variant),
        esc(check)
    );
    if idx.is_empty() {
        let _ = writeln!(h, "<td class=\"cell empty\" {attrs}>–</td>");
        return;
    }
    let c = m.counts(&idx);
    let verdict = if c.failed > 0 {
        Verdict::Failed
    } else if c.passed > 0 {
        Verdict::Passed
    } else {
        Verdict::Skipped
    };
    // The border shows the strongest tier that has a verdict other than skipped.
    let tier = idx
        .iter()
        .map(|&n| &m.items[n])
        .filter(|i| i.verdict != Verdict::Skipped)
        .map(|i| i.tier)
        .max()
        .unwrap_or_else(|| m.items[idx[0]].tier);
    // A passed cell's fill shows the strongest tier that passed in it (a
    // skipped real scenario beside a contract pass leaves it a contract pass).
    let evidence = idx
        .iter()
        .map(|&n| &m.items[n])
        .filter(|i| i.verdict == Verdict::Passed)
        .map(|i| i.tier)
        .max();
    let (ev_class, ev_attr) = match (verdict, evidence) {
        (Verdict::Passed, Some(t)) => (format!(" ev-{t}"), format!(" data-evidence=\"{t}\"")),
        _ => (String::new(), String::new()),
    };
    let _ = write!(
        h,
        "<td class=\"cell {v} tier-{tier}{ev_class}\" data-verdict=\"{v}\"{ev_attr} {attrs}><details><summary>",
        v = verdict_word(verdict)
    );
    let mut by_tier: BTreeMap<Tier, Vec<usize>> = BTreeMap::new();
    for &n in &idx {
        by_tier.entry(m.items[n].tier).or_default().push(n);
    }
    for (t, ids) in &by_tier {
        let cc = m.counts(ids);
        let mut parts = Vec::new();
        if cc.failed > 0 {
            parts.push(format!("✗{}", cc.failed));
        }
        if cc.passed > 0 {
            parts.push(format!("✓{}", cc.passed));
        }
        if cc.skipped > 0 {
            let keys = m.keys_of(ids);
            parts.push(format!(
                "skipped [{}]",
                keys.iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        let _ = write!(
            h,
            "<span class=\"badge t-{t}\">{t} {}</span>",
            esc(&parts.join(" "))
        );
    }
    if verdict == Verdict::Skipped {
        for k in m.keys_of(&idx) {
            let e = &m.reasons.entries()[k - 1];
            let _ = write!(h, "<span class=\"why\">[{k}] {}</span>", esc(&e.title));
        }
    }
    h.push_str("</summary><ul class=\"items\">");
    for &n in &idx {
        let i = &m.items[n];
        let _ = write!(
            h,
            "<li class=\"item {v}\" data-tier=\"{t}\" data-verdict=\"{v}\"><b>{s}</b> — {v}, {t}{arch}, {secs:.1} s",
            v = verdict_word(i.verdict),
            t = i.tier,
            s = esc(i.scenario.as_deref().unwrap_or(&i.check)),
            arch = i
                .arch
                .as_deref()
                .map(|a| format!(", {}", esc(a)))
                .unwrap_or_default(),
            secs = i.seconds
        );
        if let Some(k) = m.keys[n] {
            let _ = write!(h, " <a href=\"#reason-{k}\">[{k}]</a>");
        }
        if let Some(msg) = &i.message {
            let _ = write!(h, "<pre class=\"msg\">{}</pre>", esc(msg));
        }
        if let Some(a) = &i.artifacts {
            match evidence_links(out_dir, a) {
                Some(links) if !links.is_empty() => {
                    h.push_str("<p class=\"links\">");
                    for (label, rel) in links {
                        let _ = write!(h, "<a href=\"{}\">{}</a>", esc(&href(&rel)), esc(&label));
                    }
                    h.push_str("</p>");
                }
                Some(_) => {
                    let _ = write!(
                        h,
                        "<p class=\"links\">evidence folder {} is empty</p>",
                        esc(&relative_artifacts(out_dir, a).to_string_lossy())
                    );
                }
                None => {
                    let _ = write!(
                        h,
                        "<p class=\"links\">evidence: {} (not next to this report)</p>",
                        esc(&a.to_string_lossy())
                    );
                }
            }
        }
        h.push_str("</li>");
    }
    h.push_str("</ul></details></td>\n");
}

fn reasons(h: &mut String, m: &Matrix) {
    if m.reasons.is_empty() {
        return;
    }
    h.push_str("<section id=\"reasons\"><h2>Skipped, why, and what to do</h2><ol>\n");
    for e in m.reasons.entries() {
        let _ = write!(
            h,
            "<li id=\"reason-{k}\" data-key=\"{k}\"><b>[{k}] {}</b> ({} row{})",
            esc(&e.title),
            e.rows,
            if e.rows == 1 { "" } else { "s" },
            k = e.key
        );
        if let Some(a) = &e.action {
            let _ = write!(h, "<br>→ {}", esc(a));
        }
        if super::reasons::short(&e.example) != e.example.trim() {
            let _ = write!(
                h,
                "<details><summary>full text</summary><pre class=\"msg\">{}</pre></details>",
                esc(&e.example)
            );
        }
        h.push_str("</li>\n");
    }
    h.push_str("</ol></section>\n");
}

/// Horizontal bars: per variant and arch, the longest time to agent and to ready.
fn chart(m: &Matrix) -> String {
    let mut by: BTreeMap<(String, String), (Option<f64>, Option<f64>)> = BTreeMap::new();
    for i in &m.items {
        if i.time_to_agent_s.is_none() && i.time_to_ready_s.is_none() {
            continue;
        }
        let e = by
            .entry((i.variant.clone(), i.arch.clone().unwrap_or_default()))
            .or_default();
        let mx = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        e.0 = mx(e.0, i.time_to_agent_s);
        e.1 = mx(e.1, i.time_to_ready_s);
    }
    if by.is_empty() {
        return "<p id=\"no-timings\">no timings recorded (no workspace reached its agent in this run)</p>\n".into();
    }
    let max = by
        .values()
        .flat_map(|(a, r)| [*a, *r])
        .flatten()
        .fold(1.0_f64, f64::max);
    let (label_w, bar_w, row_h) = (260.0, 420.0, 34.0);
    let height = 24.0 + row_h * by.len() as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"chart\" width=\"{w}\" height=\"{height}\" role=\"img\" aria-label=\"time to agent and to ready\" font-family=\"sans-serif\" font-size=\"12\">\n",
        w = label_w + bar_w + 70.0
    );
    let _ = writeln!(
        s,
        "<rect x=\"{label_w}\" y=\"4\" width=\"10\" height=\"10\" fill=\"#1f6feb\"/><text x=\"{}\" y=\"13\">time to agent</text><rect x=\"{}\" y=\"4\" width=\"10\" height=\"10\" fill=\"#0b7a3e\"/><text x=\"{}\" y=\"13\">time to ready</text>",
        label_w + 14.0,
        label_w + 120.0,
        label_w + 134.0
    );
    for (n, ((variant, arch), (agent, ready))) in by.iter().enumerate() {
        let y = 22.0 + row_h * n as f64;
        let _ = writeln!(
            s,
            "<text x=\"0\" y=\"{}\" class=\"bar-label\">{} ({})</text>",
            y + 18.0,
            esc(variant),
            esc(arch)
        );
        for (k, (v, colour, what)) in [(agent, "#1f6feb", "agent"), (ready, "#0b7a3e", "ready")]
            .into_iter()
            .enumerate()
        {
            let by = y + 2.0 + 14.0 * k as f64;
            match v {
                Some(v) => {
                    let w = (v / max * bar_w).max(1.0);
                    let _ = writeln!(
                        s,
                        "<rect x=\"{label_w}\" y=\"{by}\" width=\"{w:.1}\" height=\"12\" fill=\"{colour}\"><title>{} ({}): time to {what} {v:.1} s</title></rect><text x=\"{:.1}\" y=\"{}\">{v:.0} s</text>",
                        esc(variant),
                        esc(arch),
                        label_w + w + 4.0,
                        by + 10.0
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "<text x=\"{label_w}\" y=\"{}\" fill=\"#777\">no time to {what}</text>",
                        by + 10.0
                    );
                }
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::{Outcome, Row};

    fn row(variant: &str, check: &str, outcome: Outcome, reason: Option<&str>) -> Row {
        Row {
            variant: variant.into(),
            arch: "x86_64".into(),
            backend: "qemu".into(),
            image: "contract".into(),
            tier: None,
            check: check.into(),
            scenario: format!("{check} on {variant}"),
            outcome,
            reason: reason.map(str::to_string),
            seconds: 1.0,
            time_to_agent_s: Some(12.0),
            time_to_ready_s: None,
            artifacts: None,
        }
    }

    #[test]
    fn every_text_is_escaped() {
        let evil = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&";
        let mut r = row(evil, evil, Outcome::Failed, Some(evil));
        r.arch = evil.into();
        r.scenario = evil.into();
        let s = Summary {
            rows: vec![r, row("b", "c", Outcome::Skipped, Some(evil))],
        };
        let page = render(&s, Path::new("/nowhere"));
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&quot;&#39;&amp;"));
    }

    #[test]
    fn doubles_are_striped_real_tiers_solid_and_every_fill_differs() {
        let fills: Vec<PassFill> = Tier::ALL.iter().map(|t| pass_fill(*t)).collect();
        for (t, f) in Tier::ALL.iter().zip(&fills) {
            assert_eq!(f.stripes.is_some(), *t < Tier::Nixos, "{t}: {f:?}");
            assert!(f.colour != FAILED_RGB && f.colour != SKIPPED_RGB, "{t}");
        }
        for (i, a) in fills.iter().enumerate() {
            for b in &fills[i + 1..] {
                assert_ne!(a.colour, b.colour);
            }
        }
        // Stronger evidence, darker green.
        let lum = |c: [u8; 3]| 0.2126 * c[0] as f64 + 0.7152 * c[1] as f64 + 0.0722 * c[2] as f64;
        for w in fills.windows(2) {
            assert!(lum(w[0].colour) > lum(w[1].colour), "{w:?}");
        }
    }

    #[test]
    fn a_cell_is_filled_by_the_strongest_tier_that_passed() {
        let mut contract = row("a", "home mount", Outcome::Passed, None);
        let mut nixos_skip = row("a", "home mount", Outcome::Skipped, Some("no image"));
        nixos_skip.image = "nixos".into();
        let mut nixos_pass = row("b", "home mount", Outcome::Passed, None);
        nixos_pass.image = "nixos".into();
        contract.scenario = "contract".into();
        let s = Summary {
            rows: vec![
                contract.clone(),
                nixos_skip,
                Row {
                    variant: "b".into(),
                    ..contract
                },
                nixos_pass,
            ],
        };
        let page = render(&s, Path::new("/nowhere"));
        let td = |v: &str| {
            let i = page
                .find(&format!("data-variant=\"{v}\" data-check=\"home mount\""))
                .unwrap();
            let start = page[..i].rfind("<td").unwrap();
            page[start..i].to_string()
        };
        assert!(
            td("a").contains("ev-contract") && td("a").contains("data-evidence=\"contract\""),
            "{}",
            td("a")
        );
        assert!(
            td("b").contains("ev-nixos") && td("b").contains("data-evidence=\"nixos\""),
            "{}",
            td("b")
        );
        for t in Tier::ALL {
            assert!(
                page.contains(&format!("<span class=\"swatch ev-{t}\">")),
                "legend lacks {t}"
            );
            assert!(
                page.contains(&format!(".ev-{t}{{background:")),
                "no CSS for {t}"
            );
        }
    }

    #[test]
    fn evidence_links_are_relative_and_list_what_exists() {
        let d = tempfile::tempdir().unwrap();
        let sc = d.path().join("scenarios/a b");
        std::fs::create_dir_all(&sc).unwrap();
        for f in ["imds.jsonl", "serial.log", "console-i-1.log", "extra.txt"] {
            std::fs::write(sc.join(f), "x").unwrap();
        }
        let l = evidence_links(d.path(), &sc).unwrap();
        let labels: Vec<&str> = l.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            labels,
            [
                "serial console",
                "serial console (console-i-1.log)",
                "metadata log",
                "extra.txt"
            ]
        );
        assert_eq!(l[0].1, "scenarios/a b/serial.log");
        assert_eq!(href(&l[0].1), "scenarios/a%20b/serial.log");
        // Recorded on a CI runner, read here.
        let remote = Path::new("/home/runner/work/x/target/e2e/scenarios/a b");
        assert_eq!(
            relative_artifacts(d.path(), remote),
            Path::new("scenarios/a b")
        );
        assert!(evidence_links(d.path(), Path::new("/elsewhere/none")).is_none());
    }
}
