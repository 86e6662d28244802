//! Discovering variants from `values/*.yml`: the only place variants are
//! defined.  Adding a file adds a variant everywhere.
//!
//! This module types the two keys every consumer needs (`arch`,
//! `is_spot`); `lint` validates the rest against `templates/variables.tf`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::template::variant::{Arch, Variant};

#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: malformed YAML: {message}")]
    Yaml { file: PathBuf, message: String },
    #[error("{file}: expected a mapping of template variables at the top level")]
    NotAMapping { file: PathBuf },
    #[error("{file}: key `{key}`: {message}")]
    Key {
        file: PathBuf,
        key: String,
        message: String,
    },
    #[error("{dir}: no values files (*.yml / *.yaml) found")]
    Empty { dir: PathBuf },
    #[error("{file}: template name `{name}` must match ^[a-z0-9][a-z0-9-]*$ (it becomes the Coder template name)")]
    BadName { file: PathBuf, name: String },
}

/// Every `*.yml`/`*.yaml` in `dir`, sorted by name.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, ValuesError> {
    let rd = std::fs::read_dir(dir).map_err(|source| ValuesError::Read {
        file: dir.to_path_buf(),
        source,
    })?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yml") | Some("yaml")
                )
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(ValuesError::Empty {
            dir: dir.to_path_buf(),
        });
    }
    Ok(out)
}

/// Load every variant in `dir` (normally `<repo>/values`).
pub fn discover(dir: &Path) -> Result<Vec<Variant>, ValuesError> {
    files(dir)?.iter().map(|f| load(f)).collect()
}

/// Load every variant of the repository at `root`.
pub fn discover_repo(root: &Path) -> Result<Vec<Variant>, ValuesError> {
    discover(&root.join("values"))
}

/// Find one variant by name, with the list of known names in the error.
pub fn find(root: &Path, name: &str) -> anyhow::Result<Variant> {
    let all = discover_repo(root)?;
    let names: Vec<_> = all.iter().map(|v| v.name.clone()).collect();
    all.into_iter().find(|v| v.name == name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown variant `{name}`; values/ defines: {}",
            names.join(", ")
        )
    })
}

/// Parse the raw mapping of a values file (no typing beyond YAML).
pub fn load_raw(file: &Path) -> Result<BTreeMap<String, serde_json::Value>, ValuesError> {
    let text = std::fs::read_to_string(file).map_err(|source| ValuesError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| ValuesError::Yaml {
            file: file.to_path_buf(),
            message: e.to_string(),
        })?;
    let json = serde_json::to_value(&yaml).map_err(|e| ValuesError::Yaml {
        file: file.to_path_buf(),
        message: e.to_string(),
    })?;
    match json {
        serde_json::Value::Object(m) => Ok(m.into_iter().collect()),
        _ => Err(ValuesError::NotAMapping {
            file: file.to_path_buf(),
        }),
    }
}

/// Load one values file as a variant, typing `arch` and `is_spot`.
pub fn load(file: &Path) -> Result<Variant, ValuesError> {
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(ValuesError::BadName {
            file: file.to_path_buf(),
            name,
        });
    }
    let values = load_raw(file)?;
    let key_err = |key: &str, message: String| ValuesError::Key {
        file: file.to_path_buf(),
        key: key.to_string(),
        message,
    };
    let arch = match values.get("arch") {
        None => return Err(key_err("arch", "missing required key".into())),
        Some(serde_json::Value::String(s)) => s
            .parse::<Arch>()
            .map_err(|e| key_err("arch", e.to_string()))?,
        Some(other) => {
            return Err(key_err(
                "arch",
                format!("expected a string (x86_64 or aarch64), got {other}"),
            ))
        }
    };
    let is_spot = match values.get("is_spot") {
        None => return Err(key_err("is_spot", "missing required key".into())),
        Some(serde_json::Value::Bool(b)) => *b,
        Some(other) => {
            return Err(key_err(
                "is_spot",
                format!("expected a bool (true or false), got {other}"),
            ))
        }
    };
    Ok(Variant {
        name,
        arch,
        is_spot,
        values,
        source: file.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn discovers_sorted_variants_and_types_them() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "b-spot.yml", "arch: aarch64\nis_spot: true\n");
        write(d.path(), "a.yaml", "arch: x86_64\nis_spot: false\n");
        write(d.path(), "README.md", "not a values file");
        let v = discover(d.path()).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "a");
        assert_eq!(v[0].arch, Arch::X86_64);
        assert!(!v[0].is_spot);
        assert_eq!(v[1].name, "b-spot");
        assert_eq!(v[1].arch, Arch::Aarch64);
        assert!(v[1].is_spot);
    }

    #[test]
    fn errors_name_file_and_key() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "x.yml", "arch: riscv64\nis_spot: false\n");
        let e = load(&f).unwrap_err().to_string();
        assert!(
            e.contains("x.yml") && e.contains("`arch`") && e.contains("riscv64"),
            "{e}"
        );
        let f = write(d.path(), "y.yml", "arch: x86_64\nis_spot: \"yes\"\n");
        let e = load(&f).unwrap_err().to_string();
        assert!(
            e.contains("y.yml") && e.contains("`is_spot`") && e.contains("bool"),
            "{e}"
        );
        let f = write(d.path(), "z.yml", "arch: [x86_64\n");
        let e = load(&f).unwrap_err().to_string();
        assert!(e.contains("z.yml") && e.contains("malformed YAML"), "{e}");
        let f = write(d.path(), "w.yml", "is_spot: false\n");
        let e = load(&f).unwrap_err().to_string();
        assert!(e.contains("`arch`") && e.contains("missing"), "{e}");
        let f = write(d.path(), "Bad Name.yml", "arch: x86_64\nis_spot: false\n");
        assert!(matches!(load(&f), Err(ValuesError::BadName { .. })));
    }

    #[test]
    fn empty_dir_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(discover(d.path()), Err(ValuesError::Empty { .. })));
    }
}
