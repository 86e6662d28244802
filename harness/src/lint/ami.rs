//! Lint `ami-coverage`: the AMI is resolved at plan time, never listed.
//!
//! - `templates/regions.json` is a non-empty list of known AWS regions
//!   without duplicates, and the region parameter's default is one of them;
//! - literal `option` blocks of the region parameter (if any) are exactly
//!   that list;
//! - `nixos_release` pins a release (`YY.05` or `YY.11`) in
//!   `templates/variables.tf` (whether NixOS still supports it, and so
//!   still publishes its AMIs, is the `nixos-release` row: `lint::release`);
//! - `modules/ec2-instance` looks the image up with `data "aws_ami"`: owner
//!   427812963091, `most_recent = true`, a name filter on the release
//!   variable and an architecture filter;
//! - no `.tf` file under `templates/` hard-codes an `ami-…` id.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hcl::Body;

use super::Finding;
use crate::template::ami::{self, NIXOS_OWNER, RELEASE_VAR};

const RULE: &str = "ami-coverage";

pub fn check(root: &Path) -> Vec<Finding> {
    let mut out = vec![];
    let regions_file = root.join(ami::REGIONS_FILE);
    match ami::regions(root) {
        Err(e) => out.push(Finding::new(RULE, &regions_file, None, format!("{e:#}"))),
        Ok(list) => {
            if list.is_empty() {
                out.push(Finding::new(RULE, &regions_file, None, "no regions"));
            }
            let mut seen = BTreeSet::new();
            for r in &list {
                if crate::machine::ec2::config::check_region(r).is_err() {
                    out.push(Finding::new(
                        RULE,
                        &regions_file,
                        Some(r),
                        format!("`{r}` is not a known AWS region"),
                    ));
                }
                if !seen.insert(r.clone()) {
                    out.push(Finding::new(RULE, &regions_file, Some(r), "listed twice"));
                }
            }
            check_region_parameter(root, &seen, &mut out);
        }
    }
    if let Err(e) = ami::release(root) {
        out.push(Finding::new(
            RULE,
            root.join("templates/variables.tf"),
            Some(RELEASE_VAR),
            format!("{e:#}"),
        ));
    }
    check_lookup(root, &mut out);
    check_no_literal_ids(&root.join("templates"), &mut out);
    out
}

fn parse(p: &Path) -> Option<Body> {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| hcl::parse(&s).ok())
}

fn tf_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "tf"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Literal region options equal the list; `default_region`'s default is listed.
fn check_region_parameter(root: &Path, listed: &BTreeSet<String>, out: &mut Vec<Finding>) {
    for p in tf_files(&root.join("templates")) {
        let Some(body) = parse(&p) else { continue };
        for b in body.blocks() {
            let labels: Vec<&str> = b.labels().iter().map(|l| l.as_str()).collect();
            if b.identifier() == "data" && labels == ["coder_parameter", "region"] {
                let opts: BTreeSet<String> = b
                    .body()
                    .blocks()
                    .filter(|o| o.identifier() == "option")
                    .filter_map(|o| {
                        o.body()
                            .attributes()
                            .find(|a| a.key() == "value")
                            .and_then(|a| match a.expr() {
                                hcl::Expression::String(s) => Some(s.clone()),
                                _ => None,
                            })
                    })
                    .collect();
                if opts.is_empty() {
                    continue;
                }
                for o in opts.difference(listed) {
                    out.push(Finding::new(
                        RULE,
                        &p,
                        Some("region"),
                        format!("region option `{o}` is not in {}", ami::REGIONS_FILE),
                    ));
                }
                for o in listed.difference(&opts) {
                    out.push(Finding::new(
                        RULE,
                        &p,
                        Some("region"),
                        format!("{} lists `{o}`, which is not an option", ami::REGIONS_FILE),
                    ));
                }
            }
            if b.identifier() == "variable" && labels == ["default_region"] {
                if let Some(hcl::Expression::String(d)) = b
                    .body()
                    .attributes()
                    .find(|a| a.key() == "default")
                    .map(|a| a.expr())
                {
                    if !listed.contains(d) {
                        out.push(Finding::new(
                            RULE,
                            &p,
                            Some("default_region"),
                            format!("default `{d}` is not in {}", ami::REGIONS_FILE),
                        ));
                    }
                }
            }
        }
    }
}

/// The `data "aws_ami"` lookup in modules/ec2-instance, as the harness's
/// own DescribeImages sends it.
fn check_lookup(root: &Path, out: &mut Vec<Finding>) {
    let dir = root.join("templates/modules/ec2-instance");
    let file = dir.join("main.tf");
    let text: String = tf_files(&dir)
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect::<Vec<_>>()
        .join("\n");
    let Ok(body) = hcl::parse(&text) else {
        out.push(Finding::new(RULE, &file, None, "cannot parse the module"));
        return;
    };
    let body: Body = body;
    let lookups: Vec<_> = body
        .blocks()
        .filter(|b| {
            b.identifier() == "data" && b.labels().first().map(|l| l.as_str()) == Some("aws_ami")
        })
        .collect();
    let Some(b) = lookups.first() else {
        out.push(Finding::new(
            RULE,
            &file,
            None,
            "expected a `data \"aws_ami\"` lookup of the official NixOS AMI, seen none",
        ));
        return;
    };
    let name = format!(
        "data.aws_ami.{}",
        b.labels().get(1).map_or("", |l| l.as_str())
    );
    // Expressions as text, with locals substituted once (the module names
    // its owner and patterns in `locals`).
    let locals: Vec<(String, String)> = body
        .blocks()
        .filter(|b| b.identifier() == "locals")
        .flat_map(|b| b.body().attributes())
        .map(|a| (format!("local.{}", a.key()), expr_text(a.expr())))
        .collect();
    let resolve = |s: String| {
        locals.iter().fold(s, |acc, (k, v)| {
            if acc.contains(k) {
                acc.replace(k, v)
            } else {
                acc
            }
        })
    };
    let attr = |k: &str| {
        b.body()
            .attributes()
            .find(|a| a.key() == k)
            .map(|a| resolve(expr_text(a.expr())))
    };
    if !attr("owners").is_some_and(|o| o.contains(NIXOS_OWNER)) {
        out.push(Finding::new(
            RULE,
            &file,
            Some(&name),
            format!("expected owners = [\"{NIXOS_OWNER}\"] (the NixOS project's account)"),
        ));
    }
    if attr("most_recent").as_deref() != Some("true") {
        out.push(Finding::new(
            RULE,
            &file,
            Some(&name),
            "expected most_recent = true",
        ));
    }
    let filter = |n: &str| {
        b.body()
            .blocks()
            .filter(|f| f.identifier() == "filter")
            .find(|f| {
                f.body()
                    .attributes()
                    .any(|a| a.key() == "name" && expr_text(a.expr()) == format!("\"{n}\""))
            })
            .and_then(|f| f.body().attributes().find(|a| a.key() == "values"))
            .map(|a| resolve(expr_text(a.expr())))
    };
    match filter("name") {
        Some(v) if v.contains("nixos/") && v.contains(&format!("var.{RELEASE_VAR}")) => {}
        seen => out.push(Finding::new(
            RULE,
            &file,
            Some(&name),
            format!(
                "expected a `name` filter `nixos/${{var.{RELEASE_VAR}}}.*`, seen {}",
                seen.as_deref().unwrap_or("none")
            ),
        )),
    }
    match filter("architecture") {
        Some(v) if v.contains("arm64") && v.contains("x86_64") => {}
        seen => out.push(Finding::new(
            RULE,
            &file,
            Some(&name),
            format!(
                "expected an `architecture` filter choosing arm64 or x86_64 by var.arch, seen {}",
                seen.as_deref().unwrap_or("none")
            ),
        )),
    }
}

fn expr_text(e: &hcl::Expression) -> String {
    hcl::format::to_string(e).unwrap_or_default()
}

/// No `ami-<hex>` literal in any `.tf` under `dir` (tests excluded).
fn check_no_literal_ids(dir: &Path, out: &mut Vec<Finding>) {
    let re = regex::Regex::new(r"\bami-[0-9a-f]{8,17}\b").expect("regex");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "tests") {
                check_no_literal_ids(&p, out);
            }
            continue;
        }
        if p.extension().is_none_or(|e| e != "tf") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        for m in re.find_iter(&text) {
            out.push(Finding::new(
                RULE,
                &p,
                None,
                format!(
                    "hard-coded AMI id `{}`: AMIs are resolved at plan time by modules/ec2-instance",
                    m.as_str()
                ),
            ));
        }
    }
}
