//! Lint `provider-pins`: the template's providers are pinned to the major
//! versions this repository tests, and a committed lock file (if any) is
//! one Coder can use.
//!
//! Coder runs `terraform init` without `-upgrade` on every build
//! (coder/coder `provisioner/terraform/executor.go`), so without a lock
//! file it installs the newest version the constraints allow. With
//! `hashicorp/aws >= 5.0` that is 6.x, which no run here has planned
//! (6.0.0 changed `aws_instance.user_data` to clear text in state, where the
//! agent token would then sit). So every provider of the root module must
//! admit the tested version ([`TESTED`]) and refuse the next major.
//!
//! A `.terraform.lock.hcl` in `templates/` is uploaded with the template
//! and honoured by Coder (`provisionersdk/archive.go` keeps it). A correct
//! one carries the registry's hashes for both platforms Coder provisioners
//! run on (`terraform providers lock -platform=linux_amd64
//! -platform=linux_arm64`): at least one `zh:` hash (only the registry
//! gives those) and two `h1:` hashes. This machine has no registry access,
//! so the repository ships none; `ci/provider-lock.sh` generates and checks
//! it where the registry is reachable (the nightly), and this lint checks
//! whatever lock is committed.

use std::collections::BTreeMap;
use std::path::Path;

use super::Finding;

pub const CHECK: &str = "provider-pins";

/// The lock file Coder uploads with the template.
pub const LOCK_FILE: &str = "templates/.terraform.lock.hcl";

/// The provider versions the tiers here run (`hashicorp/aws` from the
/// machine image's mirror, `/opt/tf-plugins`, which the AWS twin and the
/// `terraform test` of modules/ec2-instance use; `coder/coder` as
/// `ci/coder-provider.version` builds it), by `required_providers` name.
pub const TESTED: &[(&str, &str, &str)] = &[
    ("aws", "hashicorp/aws", "5.100.0"),
    ("coder", "coder/coder", "2.20.0"),
];

/// A version: numeric segments (missing ones are 0), no pre-release.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub Vec<u64>);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().trim_start_matches('v');
        if s.is_empty() {
            return None;
        }
        let parts: Option<Vec<u64>> = s.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| p.len() <= 3).map(Version)
    }

    fn seg(&self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }

    fn cmp3(&self, o: &Version) -> std::cmp::Ordering {
        (0..3)
            .map(|i| self.seg(i).cmp(&o.seg(i)))
            .find(|c| c.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    }

    /// The first version of the next major (6.0.0 for 5.100.0).
    pub fn next_major(&self) -> Version {
        Version(vec![self.seg(0) + 1, 0, 0])
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s: Vec<String> = (0..3).map(|i| self.seg(i).to_string()).collect();
        write!(f, "{}", s.join("."))
    }
}

/// Whether a Terraform version constraint (`"~> 5.100"`, `">= 2.4, < 3.0"`,
/// `"5.100.0"`) admits `v`; an error names what could not be parsed.
/// Semantics of Terraform's constraint syntax
/// (developer.hashicorp.com/terraform/language/expressions/version-constraints):
/// `~>` lets only the rightmost given segment grow (`~> 1.2` = `>= 1.2, < 2.0`;
/// `~> 1.2.3` = `>= 1.2.3, < 1.3.0`), a bare version means `=`.
pub fn admits(constraint: &str, v: &Version) -> Result<bool, String> {
    use std::cmp::Ordering::*;
    let mut all = true;
    for part in constraint.split(',') {
        let part = part.trim();
        let (op, ver) = ["~>", ">=", "<=", "!=", ">", "<", "="]
            .iter()
            .find_map(|op| part.strip_prefix(op).map(|r| (*op, r)))
            .unwrap_or(("=", part));
        let c = Version::parse(ver)
            .ok_or_else(|| format!("cannot read `{part}` in version constraint `{constraint}`"))?;
        let ord = v.cmp3(&c);
        let ok = match op {
            "=" => ord == Equal,
            "!=" => ord != Equal,
            ">" => ord == Greater,
            ">=" => ord != Less,
            "<" => ord == Less,
            "<=" => ord != Greater,
            _ => {
                // ~>: at least c, and equal in every segment but the last given.
                let fixed = c.0.len().saturating_sub(1).max(1);
                ord != Less && (0..fixed).all(|i| v.seg(i) == c.seg(i))
            }
        };
        all &= ok;
    }
    Ok(all)
}

/// `required_providers` entries (name → (source, version constraint)) of
/// the `.tf` files directly in `dir`.
pub fn required_providers(dir: &Path) -> BTreeMap<String, (String, Option<String>)> {
    let mut out = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    for f in files {
        let Some(body) = std::fs::read_to_string(&f)
            .ok()
            .and_then(|s| hcl::parse(&s).ok())
        else {
            continue;
        };
        let body: hcl::Body = body;
        for rp in body
            .blocks()
            .filter(|b| b.identifier() == "terraform")
            .flat_map(|b| {
                b.body()
                    .blocks()
                    .filter(|x| x.identifier() == "required_providers")
            })
        {
            for a in rp.body().attributes() {
                let hcl::Expression::Object(o) = a.expr() else {
                    continue;
                };
                let get = |k: &str| {
                    o.iter().find_map(|(key, v)| {
                        let name = match key {
                            hcl::ObjectKey::Identifier(i) => i.to_string(),
                            hcl::ObjectKey::Expression(hcl::Expression::String(s)) => s.clone(),
                            _ => return None,
                        };
                        match v {
                            hcl::Expression::String(s) if name == k => Some(s.clone()),
                            _ => None,
                        }
                    })
                };
                out.insert(
                    a.key().to_string(),
                    (get("source").unwrap_or_default(), get("version")),
                );
            }
        }
    }
    out
}

/// Every module directory of the template (root first).
fn module_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    let t = root.join("templates");
    let mut v = vec![t.clone()];
    let mut m: Vec<_> = std::fs::read_dir(t.join("modules"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    m.sort();
    v.extend(m);
    v
}

pub fn check(root: &Path) -> Vec<Finding> {
    let mut out = vec![];
    let main = root.join("templates/main.tf");
    let pins = required_providers(&root.join("templates"));
    for (name, source, tested) in TESTED {
        let tested = Version::parse(tested).expect("a version");
        let key = format!("required_providers.{name}");
        let Some((src, version)) = pins.get(*name) else {
            out.push(Finding::new(
                CHECK,
                &main,
                Some(&key),
                format!("expected `{name} = {{ source = \"{source}\", version = \"~> …\" }}`, seen none"),
            ));
            continue;
        };
        if src != source {
            out.push(Finding::new(
                CHECK,
                &main,
                Some(&key),
                format!("expected source \"{source}\", seen \"{src}\""),
            ));
        }
        let Some(c) = version else {
            out.push(Finding::new(
                CHECK,
                &main,
                Some(&key),
                format!("no version constraint: Coder would install the newest {source}; pin the tested major, e.g. \"~> {}.{}\"", tested.seg(0), tested.seg(1)),
            ));
            continue;
        };
        match (admits(c, &tested), admits(c, &tested.next_major())) {
            (Err(e), _) | (_, Err(e)) => out.push(Finding::new(CHECK, &main, Some(&key), e)),
            (Ok(false), _) => out.push(Finding::new(
                CHECK,
                &main,
                Some(&key),
                format!("`{c}` refuses {tested}, the version tested here"),
            )),
            (Ok(true), Ok(true)) => out.push(Finding::new(
                CHECK,
                &main,
                Some(&key),
                format!(
                    "`{c}` admits {}, a major no run here has tested (Coder installs the newest the constraint allows): pin the tested major, e.g. \"~> {}.{}\"",
                    tested.next_major(),
                    tested.seg(0),
                    tested.seg(1)
                ),
            )),
            (Ok(true), Ok(false)) => {}
        }
    }
    // A module's own constraint must not exclude the tested version.
    for dir in module_dirs(root).into_iter().skip(1) {
        for (name, (_, version)) in required_providers(&dir) {
            let (Some(c), Some((_, _, tested))) =
                (version, TESTED.iter().find(|(n, _, _)| *n == name))
            else {
                continue;
            };
            let tested = Version::parse(tested).expect("a version");
            if !admits(&c, &tested).unwrap_or(false) {
                out.push(Finding::new(
                    CHECK,
                    dir.join("main.tf"),
                    Some(&format!("required_providers.{name}")),
                    format!("`{c}` refuses {tested}, the version tested here"),
                ));
            }
        }
    }
    out.extend(check_lock(root, &pins));
    out
}

/// A committed lock file: every locked provider within the root module's
/// constraint, with the registry's hashes for two platforms.
fn check_lock(root: &Path, pins: &BTreeMap<String, (String, Option<String>)>) -> Vec<Finding> {
    let file = root.join(LOCK_FILE);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return vec![];
    };
    let body: hcl::Body = match hcl::parse(&text) {
        Ok(b) => b,
        Err(e) => {
            return vec![Finding::new(
                CHECK,
                &file,
                None,
                format!("not valid HCL: {e}"),
            )]
        }
    };
    let mut out = vec![];
    for b in body.blocks().filter(|b| b.identifier() == "provider") {
        let addr = b
            .labels()
            .first()
            .map(|l| l.as_str().to_string())
            .unwrap_or_default();
        let attr = |k: &str| {
            b.body()
                .attributes()
                .find(|a| a.key() == k)
                .map(|a| a.expr().clone())
        };
        let version = match attr("version") {
            Some(hcl::Expression::String(s)) => s,
            _ => String::new(),
        };
        let hashes: Vec<String> = match attr("hashes") {
            Some(hcl::Expression::Array(a)) => a
                .into_iter()
                .filter_map(|e| match e {
                    hcl::Expression::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        let short = addr.trim_start_matches("registry.terraform.io/");
        if let Some((_, (_, Some(c)))) = pins.iter().find(|(_, (src, _))| src == short) {
            match Version::parse(&version).map(|v| admits(c, &v)) {
                Some(Ok(true)) => {}
                _ => out.push(Finding::new(
                    CHECK,
                    &file,
                    Some(&addr),
                    format!("locks version \"{version}\", which the constraint `{c}` in templates/main.tf does not admit: regenerate it (bash ci/provider-lock.sh generate)"),
                )),
            }
        }
        let zh = hashes.iter().filter(|h| h.starts_with("zh:")).count();
        let h1 = hashes.iter().filter(|h| h.starts_with("h1:")).count();
        if zh == 0 || h1 < 2 {
            out.push(Finding::new(
                CHECK,
                &file,
                Some(&addr),
                format!("has {zh} zh: and {h1} h1: hashes: a lock Coder can verify on linux_amd64 and linux_arm64 provisioners carries the registry's zh: hashes and an h1: per platform (bash ci/provider-lock.sh generate, with registry access)"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn constraints_follow_terraforms_syntax() {
        let cases = [
            ("~> 5.100", "5.100.0", true),
            ("~> 5.100", "5.200.3", true),
            ("~> 5.100", "5.99.9", false),
            ("~> 5.100", "6.0.0", false),
            ("~> 5.100.0", "5.100.9", true),
            ("~> 5.100.0", "5.101.0", false),
            ("~> 2", "2.99.0", true),
            ("~> 2", "3.0.0", false),
            (">= 5.0", "6.0.0", true),
            (">= 2.4, < 3.0", "2.20.0", true),
            (">= 2.4, < 3.0", "3.0.0", false),
            ("5.100.0", "5.100.0", true),
            ("= 5.100.0", "5.100.1", false),
            ("!= 5.100.0", "5.100.1", true),
            ("<= 5.100", "5.100.0", true),
            ("> 5.100", "5.100.0", false),
        ];
        for (c, ver, want) in cases {
            assert_eq!(admits(c, &v(ver)), Ok(want), "{c} vs {ver}");
        }
        assert!(admits("~> five", &v("5.0.0")).unwrap_err().contains("five"));
        assert_eq!(v("5.100.0").next_major().to_string(), "6.0.0");
    }

    fn template(main_tf: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("templates/modules/x")).unwrap();
        std::fs::write(d.path().join("templates/main.tf"), main_tf).unwrap();
        d
    }

    fn keys(f: &[Finding]) -> Vec<String> {
        f.iter()
            .map(|f| format!("{}: {}", f.key.clone().unwrap_or_default(), f.message))
            .collect()
    }

    const PINNED: &str = "terraform {\n  required_providers {\n    coder = {\n      source  = \"coder/coder\"\n      version = \"~> 2.20\"\n    }\n    aws = {\n      source  = \"hashicorp/aws\"\n      version = \"~> 5.100\"\n    }\n  }\n}\n";

    #[test]
    fn the_old_open_ended_constraints_fail_and_pinned_majors_pass() {
        let old = template("terraform {\n  required_providers {\n    coder = {\n      source  = \"coder/coder\"\n      version = \">= 2.4\"\n    }\n    aws = {\n      source  = \"hashicorp/aws\"\n      version = \">= 5.0\"\n    }\n  }\n}\n");
        let f = keys(&check(old.path()));
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f[0].starts_with("required_providers.aws: `>= 5.0` admits 6.0.0"),
            "{f:?}"
        );
        assert!(
            f[1].starts_with("required_providers.coder: `>= 2.4` admits 3.0.0"),
            "{f:?}"
        );
        let new = template(PINNED);
        assert!(
            check(new.path()).is_empty(),
            "{:?}",
            keys(&check(new.path()))
        );
        // Too tight: refuses the tested version.
        let tight = template(&PINNED.replace("~> 5.100", "~> 5.90.0"));
        assert!(keys(&check(tight.path()))[0].contains("refuses 5.100.0"));
        // No constraint at all.
        let none = template(&PINNED.replace("      version = \"~> 5.100\"\n", ""));
        assert!(keys(&check(none.path()))[0].contains("no version constraint"));
        // A module that excludes the tested version.
        std::fs::write(
            new.path().join("templates/modules/x/main.tf"),
            "terraform {\n  required_providers {\n    aws = {\n      source  = \"hashicorp/aws\"\n      version = \">= 6.0\"\n    }\n  }\n}\n",
        )
        .unwrap();
        assert!(keys(&check(new.path()))[0].contains("refuses 5.100.0"));
    }

    #[test]
    fn a_committed_lock_needs_registry_hashes_for_two_platforms() {
        let d = template(PINNED);
        let lock = |version: &str, hashes: &[&str]| {
            let h: Vec<String> = hashes.iter().map(|h| format!("    \"{h}\",\n")).collect();
            format!("provider \"registry.terraform.io/hashicorp/aws\" {{\n  version     = \"{version}\"\n  constraints = \"~> 5.100\"\n  hashes = [\n{}  ]\n}}\n", h.concat())
        };
        let good = lock("5.100.0", &["h1:aaa=", "h1:bbb=", "zh:0123"]);
        std::fs::write(d.path().join(LOCK_FILE), &good).unwrap();
        assert!(check(d.path()).is_empty(), "{:?}", keys(&check(d.path())));
        // What `terraform providers lock` writes from a mirror: one h1:, no zh:.
        std::fs::write(d.path().join(LOCK_FILE), lock("5.100.0", &["h1:aaa="])).unwrap();
        assert!(keys(&check(d.path()))[0].contains("0 zh: and 1 h1:"));
        std::fs::write(
            d.path().join(LOCK_FILE),
            lock("6.2.0", &["h1:a=", "h1:b=", "zh:c"]),
        )
        .unwrap();
        assert!(keys(&check(d.path()))[0].contains("locks version \"6.2.0\""));
    }

    #[test]
    fn the_shipped_template_pins_the_tested_majors() {
        let root = crate::repo::root().unwrap();
        let f = check(&root);
        assert!(f.is_empty(), "{:?}", keys(&f));
        // The tested coder version is the one CI builds.
        let pinned = crate::template::provider_mirror::pinned_coder_version(&root).unwrap();
        assert_eq!(
            TESTED.iter().find(|(n, _, _)| *n == "coder").unwrap().2,
            pinned,
            "keep TESTED in step with ci/coder-provider.version"
        );
    }
}
