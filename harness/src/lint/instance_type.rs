//! Lint: each variant's `default_instance_type` is listed for its arch in
//! `templates/instance-types.json` and has at least 2 GiB of memory
//! (1 GiB runs out while evaluating a NixOS configuration).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::Finding;
use crate::template::variant::Variant;

/// Minimum memory for evaluating and switching a NixOS configuration.
pub const MIN_MEMORY_GIB: f64 = 2.0;

#[derive(Debug, Deserialize)]
pub struct TypeInfo {
    pub memory_gib: f64,
}

/// arch → instance type → info.
pub type Table = BTreeMap<String, BTreeMap<String, TypeInfo>>;

pub fn check(root: &Path, variants: &[Variant]) -> Vec<Finding> {
    let file = root.join("templates/instance-types.json");
    let table: Table = match std::fs::read_to_string(&file)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(t) => t,
        Err(e) => {
            return vec![Finding::new(
                "instance-type",
                &file,
                None,
                format!("cannot load: {e}"),
            )]
        }
    };
    let mut out = vec![];
    for v in variants {
        let key = "default_instance_type";
        let Some(ty) = v.value_str(key) else {
            continue; // a missing/mistyped key is the `values` check's finding
        };
        let arch = v.arch.as_str();
        let here = table.get(arch);
        match here.and_then(|t| t.get(ty)) {
            Some(info) if info.memory_gib < MIN_MEMORY_GIB => out.push(Finding::new(
                "instance-type",
                &v.source,
                Some(key),
                format!(
                    "`{ty}` has {} GiB of memory; expected at least {MIN_MEMORY_GIB} GiB (1 GiB runs out evaluating NixOS)",
                    info.memory_gib
                ),
            )),
            Some(_) => {}
            None => {
                let other = table
                    .iter()
                    .find(|(a, t)| a.as_str() != arch && t.contains_key(ty))
                    .map(|(a, _)| format!(" (`{ty}` is a {a} type)"))
                    .unwrap_or_default();
                out.push(Finding::new(
                    "instance-type",
                    &v.source,
                    Some(key),
                    format!(
                        "`{ty}` is not an {arch} instance type in {}{other}; expected one of: {}",
                        file.display(),
                        here.map(|t| t.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default()
                    ),
                ));
            }
        }
    }
    out
}
