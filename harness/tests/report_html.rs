//! `harness report --html` in a real browser: the page for a recorded
//! `summary.json` (`tests/fixtures/report/`) is loaded by Debian's headless
//! Chromium from a `file://` URL; the DOM it builds must show every variant
//! and check, each failing cell its message and links to the evidence that
//! exists, each skipped cell its reason (and every distinct reason once),
//! with no script and nothing from the network; the screenshot must not be
//! blank and must show the failed and skipped colours.
//!
//! Colours follow the evidence: a passed cell is filled by the strongest
//! tier that passed in it (striped for files and doubles, solid for a real
//! NixOS workspace), with a legend.  The checker derives each cell's tier
//! from the summary and rejects a page where a contract (double) pass wears a real
//! pass's fill, by class or by CSS; in Chromium a page with one cell per
//! tier must paint every tier's own fill.
//!
//! The checker ([`check_dom`]) derives what must be there from the summary,
//! not from the page, and is shown to reject pages that drop a variant, a
//! check, a reason or a failing cell's links, or that let markup through
//! unescaped — in the browser too.  Without Chromium the browser test is
//! skipped with the reason (`HARNESS_STRICT=1` fails it); the DOM checks on
//! the page source always run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::report::html;
use harness::report::reasons;
use harness::report::summary::{Outcome, Row, Summary};
use harness::report::Tier;
use tl::{HTMLTag, VDom};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report")
}

/// The fixture copied to a temp dir, as `target/e2e/` would hold it.
fn staged() -> (tempfile::TempDir, Summary) {
    let d = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(), d.path());
    let s = Summary::load(d.path()).unwrap();
    (d, s)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// The few entities the page and Chromium's serialiser write.
fn decode(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Elements of `dom` (or, with `within`, under that element) matching `sel`.
fn all<'a>(dom: &'a VDom<'a>, within: Option<&'a HTMLTag<'a>>, sel: &str) -> Vec<&'a HTMLTag<'a>> {
    let p = dom.parser();
    let handles: Vec<tl::NodeHandle> = match within {
        Some(t) => t.query_selector(p, sel).expect("selector").collect(),
        None => dom.query_selector(sel).expect("selector").collect(),
    };
    handles
        .into_iter()
        .filter_map(|h| h.get(p))
        .filter_map(|n| n.as_tag())
        .collect()
}

fn attr(t: &HTMLTag, name: &str) -> Option<String> {
    t.attributes()
        .get(name)
        .flatten()
        .map(|b| decode(&b.as_utf8_str()))
}

fn has_class(t: &HTMLTag, class: &str) -> bool {
    attr(t, "class").is_some_and(|c| c.split_whitespace().any(|x| x == class))
}

fn text(dom: &VDom, t: &HTMLTag) -> String {
    decode(&t.inner_text(dom.parser()))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// The column a summary row lands in (repository-wide rows: `repo`).
fn variant_of(v: &str) -> &str {
    match v {
        "" | "*" | "-" => "repo",
        v => v,
    }
}

/// Everything the page must show for `summary`, found in `dom` (a page
/// source or Chromium's `--dump-dom`); links must resolve under `out_dir`.
/// Err lists every problem.
fn check_dom(dom: &str, summary: &Summary, out_dir: &Path) -> Result<(), Vec<String>> {
    let doc = match tl::parse(dom, tl::ParserOptions::default()) {
        Ok(d) => d,
        Err(e) => return Err(vec![format!("cannot parse the page: {e}")]),
    };
    let doc = &doc;
    let mut bad = Vec::new();

    // Nothing runs, nothing is fetched.
    for tag in ["script", "iframe", "object", "embed", "link", "img"] {
        if !all(doc, None, tag).is_empty() {
            bad.push(format!("the page has a {tag} element"));
        }
    }
    for e in doc.nodes().iter().filter_map(|n| n.as_tag()) {
        for (name, value) in e.attributes().iter() {
            let value = value.map(|v| decode(&v)).unwrap_or_default();
            if name.starts_with("on") {
                bad.push(format!(
                    "<{}> has an event handler {name}",
                    e.name().as_utf8_str()
                ));
            }
            if (name == "src" || name == "href")
                && (value.contains("://") || value.starts_with("//") || value.starts_with('/'))
            {
                bad.push(format!(
                    "<{}> {name}={value} is not a relative link",
                    e.name().as_utf8_str()
                ));
            }
        }
    }
    for a in all(doc, None, "a[href]") {
        let h = attr(a, "href").unwrap_or_default();
        if let Some(id) = h.strip_prefix('#') {
            if doc.get_element_by_id(id).is_none() {
                bad.push(format!("link {h} points nowhere"));
            }
        } else if !out_dir.join(percent_decode(&h)).is_file() {
            bad.push(format!("link {h} does not resolve next to the report"));
        }
    }

    // Every variant (row) and check (column).
    let variants: BTreeSet<&str> = summary
        .rows
        .iter()
        .map(|r| variant_of(&r.variant))
        .collect();
    let checks: BTreeSet<&str> = summary.rows.iter().map(|r| r.check.as_str()).collect();
    let row_heads: BTreeMap<String, String> = all(doc, None, "tr[data-variant]")
        .into_iter()
        .map(|tr| {
            let head = all(doc, Some(tr), "th")
                .first()
                .map(|t| text(doc, t))
                .unwrap_or_default();
            (attr(tr, "data-variant").unwrap_or_default(), head)
        })
        .collect();
    for v in &variants {
        match row_heads.get(*v) {
            None => bad.push(format!("variant {v}: no row")),
            Some(h) if h != v => bad.push(format!("variant {v}: row headed {h:?}")),
            Some(_) => {}
        }
    }
    let col_heads: BTreeSet<String> = all(doc, None, "th[data-check]")
        .into_iter()
        .map(|t| text(doc, t))
        .collect();
    for c in &checks {
        if !col_heads.contains(*c) {
            bad.push(format!("check {c}: no column"));
        }
    }

    // Every row in its cell, with its verdict, tier and evidence.
    let cells = all(doc, None, "td.cell");
    let reason_items: Vec<String> = match doc
        .get_element_by_id("reasons")
        .and_then(|h| h.get(doc.parser()))
        .and_then(|n| n.as_tag())
    {
        Some(sec) => all(doc, Some(sec), "li")
            .into_iter()
            .map(|li| text(doc, li))
            .collect(),
        None => Vec::new(),
    };
    let mut titles: BTreeSet<String> = BTreeSet::new();
    for r in &summary.rows {
        let v = variant_of(&r.variant);
        let where_ = format!("{v} / {} / {}", r.check, r.scenario);
        let Some(cell) = cells.iter().find(|c| {
            attr(c, "data-variant").as_deref() == Some(v)
                && attr(c, "data-check").as_deref() == Some(r.check.as_str())
        }) else {
            bad.push(format!("{where_}: no cell"));
            continue;
        };
        let outcome = r.outcome.as_str();
        // The same scenario may run in two tiers (nixos on QEMU, ec2): match both.
        let Some(item) = all(doc, Some(cell), "li.item").into_iter().find(|li| {
            all(doc, Some(li), "b")
                .first()
                .map(|b| text(doc, b))
                .as_deref()
                == Some(r.scenario.as_str())
                && attr(li, "data-tier").as_deref() == Some(r.tier().as_str())
        }) else {
            bad.push(format!(
                "{where_}: scenario not in its cell with tier {}",
                r.tier()
            ));
            continue;
        };
        if attr(item, "data-verdict").as_deref() != Some(outcome) {
            bad.push(format!(
                "{where_}: expected verdict {outcome}, seen {:?}",
                attr(item, "data-verdict")
            ));
        }
        let item_text = text(doc, item);
        match r.outcome {
            Outcome::Failed => {
                let msg = r.reason.clone().unwrap_or_default();
                if !item_text.contains(&msg) {
                    bad.push(format!(
                        "{where_}: failure message missing (expected {msg:?})"
                    ));
                }
                if !has_class(cell, "failed") {
                    bad.push(format!("{where_}: failing cell not marked failed"));
                }
                // A link to every file of its evidence folder.
                let rel = html::relative_artifacts(
                    out_dir,
                    r.artifacts.as_deref().unwrap_or(Path::new("")),
                );
                let files: BTreeSet<String> = std::fs::read_dir(out_dir.join(&rel))
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                if files.is_empty() {
                    bad.push(format!(
                        "{where_}: fixture has no evidence files under {}",
                        rel.display()
                    ));
                }
                let links: BTreeSet<String> = all(doc, Some(item), "a[href]")
                    .into_iter()
                    .map(|a| percent_decode(&attr(a, "href").unwrap_or_default()))
                    .collect();
                for f in files {
                    let want = rel.join(&f).to_string_lossy().into_owned();
                    if !links.contains(&want) {
                        bad.push(format!("{where_}: no link to {want}"));
                    }
                }
            }
            Outcome::Skipped => {
                let title = reasons::short(r.reason.as_deref().unwrap_or("no reason given"));
                let all_skipped = summary
                    .rows
                    .iter()
                    .filter(|o| variant_of(&o.variant) == v && o.check == r.check)
                    .all(|o| o.outcome == Outcome::Skipped);
                if all_skipped {
                    let shown = all(doc, Some(cell), "summary")
                        .first()
                        .map(|t| text(doc, t))
                        .unwrap_or_default();
                    if !shown.contains(&title) {
                        bad.push(format!(
                            "{where_}: skipped cell does not show its reason {title:?}"
                        ));
                    }
                    if !has_class(cell, "skipped") {
                        bad.push(format!("{where_}: skipped cell not marked skipped"));
                    }
                }
                if !item_text.contains(&reasons::scrub(r.reason.as_deref().unwrap_or(""))) {
                    bad.push(format!("{where_}: skip reason missing from the cell"));
                }
                titles.insert(title);
            }
            Outcome::Passed => {}
        }
    }
    // Each distinct reason exactly once below the table.
    for t in &titles {
        let n = reason_items
            .iter()
            .filter(|li| li.contains(&format!("] {t} (")))
            .count();
        if n != 1 {
            bad.push(format!(
                "reason {t:?}: listed {n} times below the table, expected once"
            ));
        }
    }
    if reason_items.len() != titles.len() {
        bad.push(format!(
            "{} reasons listed, {} distinct",
            reason_items.len(),
            titles.len()
        ));
    }
    if dom.contains("Attempted:") {
        bad.push("the AWS credential-chain dump is on the page".into());
    }
    // Colours follow the evidence: the fill of a passed cell is the
    // strongest tier that passed in it; failed and skipped cells have none.
    for cell in &cells {
        let v = attr(cell, "data-variant").unwrap_or_default();
        let c = attr(cell, "data-check").unwrap_or_default();
        let here: Vec<&Row> = summary
            .rows
            .iter()
            .filter(|r| variant_of(&r.variant) == v && r.check == c)
            .collect();
        let want = if here.iter().any(|r| r.outcome == Outcome::Failed) {
            None
        } else {
            here.iter()
                .filter(|r| r.outcome == Outcome::Passed)
                .map(|r| r.tier())
                .max()
        };
        let classes: Vec<Tier> = Tier::ALL
            .into_iter()
            .filter(|t| has_class(cell, &format!("ev-{t}")))
            .collect();
        let seen_attr = attr(cell, "data-evidence");
        if classes != want.into_iter().collect::<Vec<_>>()
            || seen_attr.as_deref() != want.map(Tier::as_str)
        {
            bad.push(format!(
                "{v} / {c}: expected the fill of {} (the strongest tier that passed), seen class {:?} and data-evidence {seen_attr:?}",
                want.map(|t| format!("ev-{t}")).unwrap_or_else(|| "no tier".into()),
                classes.iter().map(|t| format!("ev-{t}")).collect::<Vec<_>>()
            ));
        }
    }
    bad.extend(fill_problems(doc));
    // Every tier named in the tally.
    let tally = doc
        .get_element_by_id("tally")
        .and_then(|h| h.get(doc.parser()))
        .map(|n| decode(&n.inner_text(doc.parser())))
        .unwrap_or_default();
    for t in harness::report::Tier::ALL {
        if !tally.contains(t.as_str()) {
            bad.push(format!("tally {tally:?} does not name tier {t}"));
        }
    }
    // The chart: one labelled bar group per variant and arch with timings.
    let labels: BTreeSet<String> = all(doc, None, "text.bar-label")
        .into_iter()
        .map(|t| text(doc, t))
        .collect();
    for r in summary
        .rows
        .iter()
        .filter(|r| r.time_to_agent_s.is_some() || r.time_to_ready_s.is_some())
    {
        let l = format!("{} ({})", variant_of(&r.variant), r.arch);
        if !labels.contains(&l) {
            bad.push(format!("chart: no bars for {l}"));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad)
    }
}

/// The body of the CSS rule `.ev-<tier>{…}` in the page's style.
fn fill_rule(style: &str, t: Tier) -> Option<String> {
    let head = format!(".ev-{t}{{");
    let i = style.find(&head)? + head.len();
    let j = i + style[i..].find('}')?;
    Some(style[i..j].trim().to_string())
}

/// Each tier has its own fill, doubles (and files alone) striped, real
/// tiers solid, and the legend shows a swatch of each.
fn fill_problems(doc: &VDom) -> Vec<String> {
    let mut bad = Vec::new();
    let style: String = all(doc, None, "style")
        .into_iter()
        .map(|t| t.inner_text(doc.parser()).into_owned())
        .collect();
    let rules: Vec<(Tier, Option<String>)> = Tier::ALL
        .into_iter()
        .map(|t| (t, fill_rule(&style, t)))
        .collect();
    for (i, (t, r)) in rules.iter().enumerate() {
        let Some(r) = r else {
            bad.push(format!("no fill for ev-{t} in the page's style"));
            continue;
        };
        let striped = r.contains("repeating-linear-gradient");
        if *t < Tier::Nixos && !striped {
            bad.push(format!(
                "ev-{t} is evidence from files or a double but its fill is not striped: {r}"
            ));
        }
        if *t >= Tier::Nixos && striped {
            bad.push(format!(
                "ev-{t} is a real workspace but its fill is striped: {r}"
            ));
        }
        for (u, o) in &rules[i + 1..] {
            if o.as_deref() == Some(r.as_str()) {
                bad.push(format!("ev-{t} is filled like ev-{u}: {r}"));
            }
        }
    }
    let legend = doc
        .get_element_by_id("colours")
        .and_then(|h| h.get(doc.parser()))
        .and_then(|n| n.as_tag());
    match legend {
        None => bad.push("no colour legend (#colours)".into()),
        Some(l) => {
            let swatches = all(doc, Some(l), "span");
            for t in Tier::ALL {
                if !swatches
                    .iter()
                    .any(|s| has_class(s, "swatch") && has_class(s, &format!("ev-{t}")))
                {
                    bad.push(format!("the colour legend has no swatch for {t}"));
                }
            }
        }
    }
    bad
}

/// Remove the first element starting with `start` up to and including the
/// next `end`.
fn cut(page: &str, start: &str, end: &str) -> String {
    let i = page
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in the page"));
    let j = i + page[i..].find(end).unwrap() + end.len();
    format!("{}{}", &page[..i], &page[j..])
}

fn cut_all(page: &str, start: &str, end: &str) -> String {
    let mut p = page.to_string();
    while p.contains(start) {
        p = cut(&p, start, end);
    }
    p
}

/// Pages a broken renderer could produce, each with what the checker must say.
fn mutants(page: &str) -> Vec<(&'static str, String, &'static str)> {
    let failing = page.find("data-verdict=\"failed\"").unwrap();
    let links = failing + page[failing..].find("<p class=\"links\">").unwrap();
    let links_end = links + page[links..].find("</p>").unwrap() + 4;
    vec![
        (
            "a variant dropped",
            cut(page, "<tr data-variant=\"aws-nixos-spot\">", "</tr>"),
            "variant aws-nixos-spot: no row",
        ),
        (
            "a reason dropped",
            cut(page, "<li id=\"reason-2\"", "</li>"),
            "listed 0 times below the table",
        ),
        (
            "a check column dropped",
            cut(page, "<th data-check=\"stop/start\"", "</th>"),
            "check stop/start: no column",
        ),
        (
            "a failing cell without its links",
            format!("{}{}", &page[..links], &page[links_end..]),
            "no link to scenarios/",
        ),
        (
            "markup not escaped",
            page.replacen("&lt;script&gt;", "<script>", 1),
            "script",
        ),
        (
            "skip reasons not shown in skipped cells",
            cut_all(page, "<span class=\"why\">", "</span>"),
            "does not show its reason",
        ),
        (
            "a contract pass filled as a real (nixos) pass",
            page.replacen(
                "tier-contract ev-contract\" data-verdict=\"passed\" data-evidence=\"contract\"",
                "tier-contract ev-nixos\" data-verdict=\"passed\" data-evidence=\"nixos\"",
                1,
            ),
            "expected the fill of ev-contract",
        ),
        (
            "the contract fill made the real-pass colour",
            real_fill_for_contract(page),
            "ev-contract is evidence from files or a double but its fill is not striped",
        ),
        (
            "the colour legend dropped",
            cut(page, "<p class=\"legend\" id=\"colours\"", "</p>"),
            "no colour legend",
        ),
    ]
}

/// `page` with the contract tier's fill replaced by the nixos tier's.
fn real_fill_for_contract(page: &str) -> String {
    let nixos = fill_rule(page, Tier::Nixos).expect("a nixos fill");
    let contract = fill_rule(page, Tier::Contract).expect("a contract fill");
    page.replacen(
        &format!(".ev-contract{{{contract}}}"),
        &format!(".ev-contract{{{nixos}}}"),
        1,
    )
}

/// One variant, one check per tier passing there (and two mixed cells):
/// the page that must show every tier's fill.
fn tiers_summary() -> Summary {
    let row = |check: &str, t: Tier, outcome: Outcome| {
        let (image, backend) = match t {
            Tier::Static => ("static", ""),
            Tier::Contract => ("contract", "qemu"),
            Tier::Twin => ("twin", "moto"),
            Tier::Nixos => ("nixos", "qemu"),
            Tier::Ec2 => ("nixos AMI", "ec2"),
        };
        Row {
            variant: "aws-nixos".into(),
            arch: "x86_64".into(),
            backend: backend.into(),
            image: image.into(),
            tier: Some(t),
            check: check.into(),
            scenario: format!("{check}: {t} {}", outcome.as_str()),
            outcome,
            reason: (outcome == Outcome::Skipped).then(|| "no NixOS image".to_string()),
            seconds: 1.0,
            time_to_agent_s: None,
            time_to_ready_s: None,
            artifacts: None,
        }
    };
    let mut rows: Vec<Row> = Tier::ALL
        .into_iter()
        .map(|t| row(t.as_str(), t, Outcome::Passed))
        .collect();
    rows.push(row(
        "contract, nixos skipped",
        Tier::Contract,
        Outcome::Passed,
    ));
    rows.push(row(
        "contract, nixos skipped",
        Tier::Nixos,
        Outcome::Skipped,
    ));
    rows.push(row("contract and ec2", Tier::Contract, Outcome::Passed));
    rows.push(row("contract and ec2", Tier::Ec2, Outcome::Passed));
    Summary { rows }
}

/// Every tier's fill painted over at least a cell's worth of pixels (the
/// legend's swatches alone stay far below).
fn fills_painted(px: &[[u8; 3]], tiers: &[Tier]) -> Result<(), Vec<String>> {
    let bad: Vec<String> = tiers
        .iter()
        .filter_map(|t| {
            let f = html::pass_fill(*t);
            let n = count_colour(px, f.colour);
            (n < 800).then(|| format!("{t} pass fill {:?}: only {n} pixels", f.colour))
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad)
    }
}

#[test]
fn the_page_source_passes_the_dom_check() {
    let (d, s) = staged();
    let page = html::render(&s, d.path());
    if let Err(e) = check_dom(&page, &s, d.path()) {
        panic!("{}", e.join("\n"));
    }
}

#[test]
fn every_tier_has_its_fill_and_the_strongest_pass_colours_a_cell() {
    let d = tempfile::tempdir().unwrap();
    let s = tiers_summary();
    let page = html::render(&s, d.path());
    if let Err(e) = check_dom(&page, &s, d.path()) {
        panic!("{}", e.join("\n"));
    }
    for (check, t) in [
        ("contract, nixos skipped", "contract"),
        ("contract and ec2", "ec2"),
    ] {
        assert!(
            page.contains(&format!(
                "ev-{t}\" data-verdict=\"passed\" data-evidence=\"{t}\" data-variant=\"aws-nixos\" data-check=\"{check}\""
            )),
            "{check}: expected the {t} fill"
        );
    }
    let e = check_dom(&real_fill_for_contract(&page), &s, d.path())
        .expect_err("contract filled like nixos")
        .join("\n");
    assert!(e.contains("ev-contract is filled like ev-nixos"), "{e}");
}

#[test]
fn the_checker_rejects_pages_that_drop_a_variant_a_check_a_reason_or_links() {
    let (d, s) = staged();
    let page = html::render(&s, d.path());
    for (what, mutant, expect) in mutants(&page) {
        assert_ne!(mutant, page, "{what}: mutation changed nothing");
        let e = check_dom(&mutant, &s, d.path()).expect_err(what).join("\n");
        assert!(e.contains(expect), "{what}: expected {expect:?} in\n{e}");
    }
}

// ------------------------------------------------------------- browser

/// Headless Chromium, or why not.
fn chromium() -> Result<PathBuf, String> {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(p) = harness::tools::find(name) {
            return Ok(p);
        }
    }
    Err("no Chromium: apt-get install -y --no-install-recommends chromium (ci/setup-debian.sh does), or set HARNESS_CHROMIUM".into())
}

/// Run Chromium headless on `page` with `extra` arguments; its stdout.
fn run_chromium(bin: &Path, page: &Path, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(format!("file://{}", page.display()))
    .stdin(Stdio::null())
    .stdout(out.reopen().unwrap())
    .stderr(err.reopen().unwrap());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within 120 s on {}; stderr:\n{}",
                page.display(),
                std::fs::read_to_string(err.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "chromium {extra:?} {}: {status}; stderr:\n{}",
        page.display(),
        std::fs::read_to_string(err.path()).unwrap_or_default()
    );
    std::fs::read_to_string(out.path()).unwrap()
}

/// RGB pixels of a PNG.
fn pixels(png_path: &Path) -> Vec<[u8; 3]> {
    let file = std::io::BufReader::new(std::fs::File::open(png_path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    buf[..info.buffer_size()]
        .chunks(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect()
}

/// Why a screenshot counts as blank (`None`: it shows something).
fn blank(px: &[[u8; 3]]) -> Option<String> {
    let lum: Vec<f64> = px
        .iter()
        .map(|p| 0.2126 * p[0] as f64 + 0.7152 * p[1] as f64 + 0.0722 * p[2] as f64)
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len().max(1) as f64;
    let sd = (lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len().max(1) as f64).sqrt();
    let distinct: BTreeSet<[u8; 3]> = px.iter().copied().collect();
    (sd < 5.0 || distinct.len() < 16).then(|| {
        format!(
            "luminance standard deviation {sd:.1}, {} distinct colours",
            distinct.len()
        )
    })
}

/// How many pixels are within 3 of `rgb` in every channel.
fn count_colour(px: &[[u8; 3]], rgb: [u8; 3]) -> usize {
    px.iter()
        .filter(|p| (0..3).all(|i| (p[i] as i16 - rgb[i] as i16).abs() <= 3))
        .count()
}

#[test]
fn chromium_renders_the_report() {
    let bin = match chromium() {
        Ok(b) => b,
        Err(why) => {
            if std::env::var("HARNESS_STRICT").is_ok_and(|v| v == "1") {
                panic!("HARNESS_STRICT=1: {why}");
            }
            eprintln!("SKIPPED chromium_renders_the_report: {why}");
            return;
        }
    };
    let (d, s) = staged();
    let page = html::write(&s, d.path()).unwrap();

    // The DOM Chromium built from the file.
    let dom = run_chromium(&bin, &page, &["--dump-dom".into()]);
    assert!(dom.contains("<table"), "chromium printed no DOM:\n{dom}");
    if let Err(e) = check_dom(&dom, &s, d.path()) {
        panic!("the report as Chromium sees it:\n{}", e.join("\n"));
    }

    // The screenshot is not blank and shows verdict colours (failed, skipped, passed).
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-html");
    std::fs::create_dir_all(&shots).unwrap();
    let png_path = shots.join("report.png");
    let _ = std::fs::remove_file(&png_path);
    run_chromium(
        &bin,
        &page,
        &[
            format!("--screenshot={}", png_path.display()),
            "--window-size=1280,900".into(),
        ],
    );
    let px = pixels(&png_path);
    assert_eq!(px.len(), 1280 * 900, "screenshot size");
    if let Some(why) = blank(&px) {
        panic!("screenshot {} is blank: {why}", png_path.display());
    }
    for (what, rgb) in [
        ("failed", html::FAILED_RGB),
        ("skipped", html::SKIPPED_RGB),
        ("passed (contract)", html::pass_fill(Tier::Contract).colour),
    ] {
        let n = count_colour(&px, rgb);
        assert!(
            n > 500,
            "screenshot {}: only {n} pixels of the {what} colour",
            png_path.display()
        );
    }
    eprintln!("screenshot: {}", png_path.display());

    // A mutated page loaded in the browser is rejected.
    let mutant = d.path().join("mutant.html");
    let (what, m, expect) = mutants(&std::fs::read_to_string(&page).unwrap()).remove(0);
    std::fs::write(&mutant, m).unwrap();
    let dom = run_chromium(&bin, &mutant, &["--dump-dom".into()]);
    let e = check_dom(&dom, &s, d.path()).expect_err(what).join("\n");
    assert!(e.contains(expect), "{what}: {e}");

    // Every tier's own fill, in the browser, on a page with a cell per tier;
    // the same page with the contract fill made the real one is rejected.
    let td = d.path().join("tiers");
    std::fs::create_dir_all(&td).unwrap();
    let ts = tiers_summary();
    let tiers_page = html::write(&ts, &td).unwrap();
    let dom = run_chromium(&bin, &tiers_page, &["--dump-dom".into()]);
    if let Err(e) = check_dom(&dom, &ts, &td) {
        panic!("the tiers page as Chromium sees it:\n{}", e.join("\n"));
    }
    let shot = |page: &Path, name: &str| {
        let png = shots.join(name);
        let _ = std::fs::remove_file(&png);
        run_chromium(
            &bin,
            page,
            &[
                format!("--screenshot={}", png.display()),
                "--window-size=1280,900".into(),
            ],
        );
        pixels(&png)
    };
    let px = shot(&tiers_page, "tiers.png");
    if let Err(e) = fills_painted(&px, &Tier::ALL) {
        panic!(
            "screenshot {}: {}",
            shots.join("tiers.png").display(),
            e.join("; ")
        );
    }
    let fake = td.join("contract-as-real.html");
    std::fs::write(
        &fake,
        real_fill_for_contract(&std::fs::read_to_string(&tiers_page).unwrap()),
    )
    .unwrap();
    let e = fills_painted(&shot(&fake, "contract-as-real.png"), &Tier::ALL)
        .expect_err("a contract pass painted with the real fill")
        .join("; ");
    assert!(e.contains("contract pass fill"), "{e}");
    let dom = run_chromium(&bin, &fake, &["--dump-dom".into()]);
    let e = check_dom(&dom, &ts, &td)
        .expect_err("contract filled like nixos")
        .join("\n");
    assert!(e.contains("ev-contract is filled like ev-nixos"), "{e}");

    // And an empty page's screenshot counts as blank.
    let empty = d.path().join("empty.html");
    std::fs::write(&empty, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let empty_png = shots.join("empty.png");
    run_chromium(
        &bin,
        &empty,
        &[
            format!("--screenshot={}", empty_png.display()),
            "--window-size=1280,900".into(),
        ],
    );
    assert!(
        blank(&pixels(&empty_png)).is_some(),
        "an empty page must count as blank"
    );
}
