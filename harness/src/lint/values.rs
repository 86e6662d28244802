//! Lint: every values file against `templates/variables.tf` — unknown key,
//! missing required key, wrong type, bad enum value; each names file and key.

use std::path::Path;

use super::variables;
use super::Finding;
use crate::template::values::ValuesError;

/// Turn a load error of `template/values.rs` into a finding.
pub fn finding_from_error(file: &Path, e: ValuesError) -> Finding {
    let key = match &e {
        ValuesError::Key { key, .. } => Some(key.clone()),
        _ => None,
    };
    Finding::new("values", file, key.as_deref(), e.to_string())
}

/// Check every values file of the repository at `root`.
pub fn check(root: &Path) -> Vec<Finding> {
    let vars_file = root.join("templates/variables.tf");
    let spec = match variables::parse_file(&vars_file) {
        Ok(s) => s,
        Err(e) => return vec![Finding::new("values", &vars_file, None, format!("{e:#}"))],
    };
    let files = match crate::template::values::files(&root.join("values")) {
        Ok(f) => f,
        Err(e) => {
            return vec![Finding::new(
                "values",
                root.join("values"),
                None,
                e.to_string(),
            )]
        }
    };
    let mut out = vec![];
    for f in files {
        out.extend(check_file(&f, &spec, &vars_file));
    }
    out
}

/// Check one values file against the parsed variables.
pub fn check_file(file: &Path, spec: &[variables::VarSpec], vars_file: &Path) -> Vec<Finding> {
    let raw = match crate::template::values::load_raw(file) {
        Ok(r) => r,
        Err(e) => return vec![finding_from_error(file, e)],
    };
    let mut out = vec![];
    let known: Vec<&str> = spec.iter().map(|s| s.name.as_str()).collect();
    for (k, v) in &raw {
        let Some(s) = spec.iter().find(|s| &s.name == k) else {
            out.push(Finding::new(
                "values",
                file,
                Some(k),
                format!(
                    "unknown key: {} declares no variable `{k}` (known: {})",
                    vars_file.display(),
                    known.join(", ")
                ),
            ));
            continue;
        };
        if !s.ty.accepts(v) {
            out.push(Finding::new(
                "values",
                file,
                Some(k),
                format!("wrong type: expected {}, seen {v}", s.ty.name()),
            ));
            continue;
        }
        for p in &s.patterns {
            // Terraform's regex is RE2; Rust's `regex` shares its syntax.
            match (regex::Regex::new(p), v.as_str()) {
                (Ok(re), Some(text)) if !re.is_match(text) => out.push(Finding::new(
                    "values",
                    file,
                    Some(k),
                    format!("bad value: expected a match of /{p}/, seen {v}"),
                )),
                (Err(e), _) => out.push(Finding::new(
                    "values",
                    vars_file,
                    Some(k),
                    format!("validation regex /{p}/ does not compile: {e}"),
                )),
                _ => {}
            }
        }
        if let Some(allowed) = &s.allowed {
            if !allowed.contains(v) {
                out.push(Finding::new(
                    "values",
                    file,
                    Some(k),
                    format!(
                        "bad value: expected one of {}, seen {v}",
                        allowed
                            .iter()
                            .map(|a| a.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    for s in spec.iter().filter(|s| s.required()) {
        if !raw.contains_key(&s.name) {
            out.push(Finding::new(
                "values",
                file,
                Some(&s.name),
                format!(
                    "missing required key (a {} with no default in {})",
                    s.ty.name(),
                    vars_file.display()
                ),
            ));
        }
    }
    out
}
