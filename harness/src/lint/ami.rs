//! Lint: the AMI table covers both arches in every region, and its regions
//! are exactly the `region` parameter's options (when those are listed in
//! `templates/*.tf` rather than derived from the table).

use std::collections::BTreeSet;
use std::path::Path;

use hcl::Body;

use super::Finding;
use crate::ami::{self, AmiTable};
use crate::variant::Arch;

pub fn check(root: &Path) -> Vec<Finding> {
    let file = ami::path(root);
    let table = match AmiTable::load(&file) {
        Ok(t) => t,
        Err(e) => return vec![Finding::new("ami-coverage", &file, None, format!("{e:#}"))],
    };
    let mut out = vec![];
    if table.regions.is_empty() {
        out.push(Finding::new(
            "ami-coverage",
            &file,
            Some("regions"),
            "no regions",
        ));
    }
    for (region, arches) in &table.regions {
        for a in Arch::ALL {
            match arches.get(a.as_str()) {
                Some(id) if id.starts_with("ami-") => {}
                Some(id) => out.push(Finding::new(
                    "ami-coverage",
                    &file,
                    Some(&format!("regions.{region}.{a}")),
                    format!("expected an `ami-…` id, seen `{id}`"),
                )),
                None => out.push(Finding::new(
                    "ami-coverage",
                    &file,
                    Some(&format!("regions.{region}")),
                    format!("no {a} AMI"),
                )),
            }
        }
    }
    for (tf, options) in region_options(root) {
        let listed: BTreeSet<_> = table.regions.keys().cloned().collect();
        for o in options.difference(&listed) {
            out.push(Finding::new(
                "ami-coverage",
                &tf,
                Some("region"),
                format!("region option `{o}` has no entry in {}", file.display()),
            ));
        }
        for o in listed.difference(&options) {
            out.push(Finding::new(
                "ami-coverage",
                &file,
                Some(&format!("regions.{o}")),
                format!("not an option of the region parameter in {}", tf.display()),
            ));
        }
    }
    out
}

/// Literal `option { value = "…" }` blocks of `data "coder_parameter" "region"`.
fn region_options(root: &Path) -> Vec<(std::path::PathBuf, BTreeSet<String>)> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(root.join("templates")) else {
        return out;
    };
    for p in rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
    {
        let Ok(body) = std::fs::read_to_string(&p)
            .map_err(|_| ())
            .and_then(|s| hcl::parse(&s).map_err(|_| ()))
        else {
            continue;
        };
        let body: Body = body;
        for b in body.blocks().filter(|b| {
            b.identifier() == "data"
                && b.labels().iter().map(|l| l.as_str()).collect::<Vec<_>>()
                    == ["coder_parameter", "region"]
        }) {
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
            if !opts.is_empty() {
                out.push((p.clone(), opts));
            }
        }
    }
    out
}
