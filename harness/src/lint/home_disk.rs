//! Lint `home-disk`: `/home` is declared so that it survives and grows, in
//! the bootstrap configuration and in the snippet users copy into their
//! flake.
//!
//! Raising the `home_disk_size` parameter grows the EBS volume
//! (`aws_ebs_volume.home`, ModifyVolume in place), not ext4. NixOS's
//! `fileSystems.<name>.autoResize` becomes the fstab option
//! `x-systemd.growfs` (nixpkgs `nixos/modules/tasks/filesystems.nix`:
//! `mkIf config.autoResize [ "x-systemd.growfs" ]`), so systemd-growfs
//! grows the file system each time it is mounted. So `bootstrap.nix`'s
//! `fileSystems."/home"` must set every attribute of [`REQUIRED`], and every
//! `fileSystems."/home"` snippet in README.md and docs/*.md (what users
//! paste into their flake, which replaces the bootstrap configuration) must
//! declare exactly the same attributes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Finding;

pub const CHECK: &str = "home-disk";

/// `attribute = value` pairs `/home` needs, as written in Nix.
pub const REQUIRED: &[(&str, &str)] = &[
    ("device", "\"/dev/xvdb\""),
    ("fsType", "\"ext4\""),
    ("autoFormat", "true"),
    ("autoResize", "true"),
];

const HEAD: &str = "fileSystems.\"/home\" = {";

/// The `key = value;` attributes of every `fileSystems."/home" = { … };`
/// block in `text`, in order.
pub fn home_blocks(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = vec![];
    let mut rest = text;
    while let Some(i) = rest.find(HEAD) {
        let after = &rest[i + HEAD.len()..];
        let Some(end) = after.find("};") else { break };
        let attrs = after[..end]
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.trim_end_matches(';').split_once('=')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        out.push(attrs);
        rest = &after[end..];
    }
    out
}

fn docs(root: &Path) -> Vec<PathBuf> {
    let mut v = vec![root.join("README.md")];
    let mut d: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    d.sort();
    v.extend(d);
    v
}

pub fn check(root: &Path) -> Vec<Finding> {
    let nix = root.join("templates/modules/bootstrap/bootstrap.nix");
    let text = match std::fs::read_to_string(&nix) {
        Ok(t) => t,
        Err(e) => return vec![Finding::new(CHECK, &nix, None, format!("cannot read: {e}"))],
    };
    let mut out = vec![];
    let Some(boot) = home_blocks(&text).into_iter().next() else {
        return vec![Finding::new(
            CHECK,
            &nix,
            Some("fileSystems./home"),
            "expected a `fileSystems.\"/home\" = { … };` declaration, seen none",
        )];
    };
    for (k, v) in REQUIRED {
        if boot.get(*k).map(String::as_str) != Some(*v) {
            out.push(Finding::new(
                CHECK,
                &nix,
                Some(&format!("fileSystems./home.{k}")),
                format!(
                    "expected `{k} = {v};`, seen {}{}",
                    boot.get(*k)
                        .map_or("none".to_string(), |s| format!("`{s}`")),
                    if *k == "autoResize" {
                        " (without it a larger home_disk_size grows the volume but not ext4)"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    let mut snippets = 0;
    for doc in docs(root) {
        let Ok(t) = std::fs::read_to_string(&doc) else {
            continue;
        };
        for (n, b) in home_blocks(&t).into_iter().enumerate() {
            snippets += 1;
            if b != boot {
                out.push(Finding::new(
                    CHECK,
                    &doc,
                    Some(&format!("fileSystems./home#{}", n + 1)),
                    format!(
                        "the snippet users copy declares {b:?}; bootstrap.nix declares {boot:?}: keep them the same (the user's flake replaces the bootstrap configuration)"
                    ),
                ));
            }
        }
    }
    if snippets == 0 {
        out.push(Finding::new(
            CHECK,
            root.join("README.md"),
            Some("fileSystems./home"),
            "expected a `fileSystems.\"/home\"` snippet for users' flakes in README.md or docs/*.md, seen none",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "  fileSystems.\"/home\" = {\n    device = \"/dev/xvdb\";\n    fsType = \"ext4\";\n    autoFormat = true;\n    autoResize = true;\n  };\n";

    fn repo(nix: &str, readme: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("templates/modules/bootstrap")).unwrap();
        std::fs::create_dir_all(d.path().join("docs")).unwrap();
        std::fs::write(
            d.path().join("templates/modules/bootstrap/bootstrap.nix"),
            nix,
        )
        .unwrap();
        std::fs::write(d.path().join("README.md"), readme).unwrap();
        d
    }

    fn keys(f: &[Finding]) -> Vec<String> {
        f.iter()
            .map(|f| f.key.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn the_old_declaration_without_auto_resize_fails_in_both_places() {
        let old = GOOD.replace("    autoResize = true;\n", "");
        let d = repo(&format!("{{\n{old}}}\n"), &format!("add:\n\n{old}"));
        let f = check(d.path());
        assert_eq!(keys(&f), ["fileSystems./home.autoResize"], "{f:?}");
        assert!(
            f[0].message.contains("grows the volume but not ext4"),
            "{f:?}"
        );
        let d = repo(&format!("{{\n{GOOD}}}\n"), &format!("add:\n\n{old}"));
        let f = check(d.path());
        assert_eq!(keys(&f), ["fileSystems./home#1"], "{f:?}");
        assert!(f[0].file.ends_with("README.md"));
    }

    #[test]
    fn matching_declarations_pass_and_a_missing_snippet_fails() {
        let d = repo(&format!("{{\n{GOOD}}}\n"), &format!("add:\n\n{GOOD}"));
        assert!(check(d.path()).is_empty(), "{:?}", check(d.path()));
        std::fs::write(d.path().join("docs/more.md"), GOOD.replace("ext4", "xfs")).unwrap();
        assert_eq!(keys(&check(d.path())), ["fileSystems./home#1"]);
        let d = repo(&format!("{{\n{GOOD}}}\n"), "no snippet here\n");
        assert_eq!(keys(&check(d.path())), ["fileSystems./home"]);
    }

    #[test]
    fn the_shipped_bootstrap_and_readme_agree() {
        let root = crate::repo::root().unwrap();
        let f = check(&root);
        assert!(f.is_empty(), "{f:?}");
    }
}
