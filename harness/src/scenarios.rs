//! Expanding `features/*.feature` over the variants in `values/`, so a
//! new values file is covered by every scenario with no code change.
//!
//! A Scenario Outline that mentions one of these placeholders gets one
//! tagged `Examples:` block per value (crossed with any table it has):
//! - `<variant>`: every variant;
//! - `<spot-variant>`: every spot variant;
//! - `<arch-variant>`: the first variant of each architecture;
//! - `<first-spot-variant>`: the first spot variant only (for what the
//!   template's shared text decides the same way for every spot variant:
//!   the twin's mutations, its sweep and its stop-while-interrupted
//!   scenario run once, not once per architecture).
//!
//! Each generated block is tagged `@<arch> @spot|@on-demand @variant-<name>`,
//! so `--tags` selects a slice of the matrix.

use std::path::{Path, PathBuf};

use crate::template::variant::Variant;

pub const PLACEHOLDERS: [&str; 4] = [
    "variant",
    "spot-variant",
    "arch-variant",
    "first-spot-variant",
];

/// The variants a placeholder expands to.
pub fn values_for<'a>(placeholder: &str, variants: &'a [Variant]) -> Vec<&'a Variant> {
    match placeholder {
        "variant" => variants.iter().collect(),
        "spot-variant" => variants.iter().filter(|v| v.is_spot).collect(),
        "first-spot-variant" => variants.iter().filter(|v| v.is_spot).take(1).collect(),
        "arch-variant" => {
            let mut seen = Vec::new();
            let mut out = Vec::new();
            for v in variants {
                if !seen.contains(&v.arch) {
                    seen.push(v.arch);
                    out.push(v);
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

fn tags(v: &Variant) -> String {
    format!("@{} @{} @variant-{}", v.arch, v.market(), v.name)
}

/// Expand one feature file's text.
pub fn expand(text: &str, variants: &[Variant]) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if !l.trim_start().starts_with("Scenario Outline:") {
            out.push(l.to_string());
            i += 1;
            continue;
        }
        // Collect the outline block: up to the next scenario/tag line at
        // scenario indentation, or EOF.
        let indent = l.len() - l.trim_start().len();
        let mut j = i + 1;
        while j < lines.len() {
            let t = lines[j].trim_start();
            let ind = lines[j].len() - t.len();
            if ind <= indent
                && (t.starts_with("Scenario") || t.starts_with('@') || t.starts_with("Rule:"))
            {
                break;
            }
            j += 1;
        }
        let block = &lines[i..j];
        let placeholder = PLACEHOLDERS
            .iter()
            .find(|p| block.iter().any(|b| b.contains(&format!("<{p}>"))));
        let Some(ph) = placeholder else {
            out.extend(block.iter().map(|s| s.to_string()));
            i = j;
            continue;
        };
        // Split steps from an existing Examples table.
        let ex = block
            .iter()
            .position(|b| b.trim_start().starts_with("Examples"));
        let (steps, table): (&[&str], Vec<&str>) = match ex {
            Some(k) => (
                &block[..k],
                block[k + 1..]
                    .iter()
                    .copied()
                    .filter(|b| b.trim_start().starts_with('|'))
                    .collect(),
            ),
            None => (block, Vec::new()),
        };
        out.extend(steps.iter().map(|s| s.trim_end().to_string()));
        let pad = " ".repeat(indent + 2);
        for v in values_for(ph, variants) {
            out.push(String::new());
            out.push(format!("{pad}{}", tags(v)));
            out.push(format!("{pad}Examples: {}", v.name));
            if table.is_empty() {
                out.push(format!("{pad}  | {ph} |"));
                out.push(format!("{pad}  | {} |", v.name));
            } else {
                out.push(format!("{pad}  | {ph} {}", table[0].trim_start()));
                for row in &table[1..] {
                    out.push(format!("{pad}  | {} {}", v.name, row.trim_start()));
                }
            }
        }
        out.push(String::new());
        i = j;
    }
    out.join("\n") + "\n"
}

/// Expand every `*.feature` in `src` into `dst` (created); returns `dst`.
pub fn expand_dir(src: &Path, dst: &Path, variants: &[Variant]) -> anyhow::Result<PathBuf> {
    let _ = std::fs::remove_dir_all(dst);
    std::fs::create_dir_all(dst)?;
    let mut n = 0;
    for e in std::fs::read_dir(src)? {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) == Some("feature") {
            let text = std::fs::read_to_string(&p)?;
            std::fs::write(dst.join(p.file_name().unwrap()), expand(&text, variants))?;
            n += 1;
        }
    }
    anyhow::ensure!(n > 0, "no .feature files in {}", src.display());
    Ok(dst.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::variant::Arch;

    fn v(name: &str, arch: Arch, spot: bool) -> Variant {
        Variant {
            name: name.into(),
            arch,
            is_spot: spot,
            values: Default::default(),
            source: PathBuf::new(),
        }
    }

    const F: &str = "Feature: x\n\n  Scenario Outline: a (<variant>)\n    Given t \"<variant>\"\n\n  Scenario Outline: b <check>\n    Given t \"<arch-variant>\" \"<check>\"\n\n    Examples:\n      | check |\n      | one   |\n      | two   |\n\n  Scenario: plain\n    Given nothing\n";

    #[test]
    fn a_new_values_file_is_covered_with_no_code_change() {
        let three = [
            v("a", Arch::X86_64, false),
            v("b", Arch::Aarch64, true),
            v("c", Arch::X86_64, true),
        ];
        let out = expand(F, &three);
        for name in ["a", "b", "c"] {
            assert!(
                out.contains(&format!("| variant |\n      | {name} |")),
                "{out}"
            );
        }
        let four = [&three[..], &[v("d", Arch::Aarch64, false)]].concat();
        assert!(expand(F, &four).contains("@variant-d"));
    }

    #[test]
    fn arch_variant_crosses_the_table_and_tags_blocks() {
        let vs = [
            v("a", Arch::X86_64, false),
            v("c", Arch::X86_64, true),
            v("b", Arch::Aarch64, true),
        ];
        let out = expand(F, &vs);
        assert!(out.contains("| arch-variant | check |"), "{out}");
        assert!(
            out.contains("| a | one   |") && out.contains("| b | two   |"),
            "{out}"
        );
        assert!(
            !out.contains("| c | one"),
            "only the first variant per arch: {out}"
        );
        assert!(out.contains("@aarch64 @spot @variant-b"), "{out}");
        assert!(out.contains("Scenario: plain"), "{out}");
        assert_eq!(values_for("spot-variant", &vs).len(), 2);
        let first: Vec<&str> = values_for("first-spot-variant", &vs)
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(vs.iter().any(|v| v.is_spot && v.name == first[0]));
    }
}
