//! What the e2e tier pushes to Coder, per backend ([`Source`]):
//!
//! - `qemu`: the *template test build*, a copy of `templates/` whose
//!   `module "instance"` (`./modules/ec2-instance`, the AWS resources) is
//!   swapped for the test-only local module `harness/e2e/local-instance`,
//!   which writes the rendered user-data into a directory shared with the
//!   harness instead of launching an EC2 instance;
//! - `ec2`: the template exactly as `push-all.sh` pushes it
//!   (`coder templates push --yes -d templates --variables-file values/<v>.yml <v>`):
//!   the directory unchanged ([`pushed`]) and the values file's keys as
//!   template variables, as the CLI reads them ([`push_all_variables`]).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Which template a run pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The test build (local instance module), for QEMU guests.
    TestBuild,
    /// `templates/` as `push-all.sh` pushes it, for real AWS.
    Pushed,
}

/// The template variables `coder templates push --variables-file <file>`
/// sends for `variant`: every key of its values file, the YAML scalar as a
/// string (the CLI unmarshals the file into `map[string]string`, so `true`
/// becomes `"true"`), sorted by name; nothing added, nothing dropped
/// (coder/coder `cli/templatevariables.go`, `createVariablesMapFromFile`,
/// `combineVariableValues`).  `templates/` holds no `*.tfvars` the CLI
/// would also read (a test keeps it so).
pub fn push_all_variables(
    variant: &crate::template::variant::Variant,
) -> Vec<super::types::VariableValue> {
    variant
        .values
        .iter()
        .map(|(k, v)| super::types::VariableValue {
            name: k.clone(),
            value: match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        })
        .collect()
}

/// A copy of `<repo>/templates` as it is (what `-d templates` tars),
/// without Terraform's local state the CLI would not send either.
pub fn pushed(repo_root: &Path, dest: &Path) -> anyhow::Result<PathBuf> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).with_context(|| format!("clearing {}", dest.display()))?;
    }
    copy_dir(&repo_root.join("templates"), dest)?;
    Ok(dest.to_path_buf())
}

/// The local stand-in module (`harness/e2e/local-instance/main.tf`).
pub const LOCAL_INSTANCE_TF: &str = include_str!("../../../e2e/local-instance/main.tf");
/// Where the swapped module lives inside the copy.
pub const LOCAL_MODULE_DIR: &str = "modules/local-instance";
const EC2_SOURCE: &str = "\"./modules/ec2-instance\"";

/// The instance name the template gives a workspace (`local.name` in
/// `templates/main.tf`); the local module writes under
/// `<shared_dir>/<instance_name>/`.
pub fn instance_name(owner: &str, workspace: &str) -> String {
    format!("coder-{owner}-{workspace}")
}

/// The expression in `templates/main.tf` that [`instance_name`] mirrors.
pub const INSTANCE_NAME_EXPR: &str =
    "\"coder-${data.coder_workspace_owner.me.name}-${data.coder_workspace.me.name}\"";

fn copy_dir(src: &Path, dst: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src).with_context(|| format!("listing {}", src.display()))? {
        let e = e?;
        let name = e.file_name();
        if name == ".terraform" || name == "terraform.tfstate" || name == ".terraform.lock.hcl" {
            continue;
        }
        let (s, d) = (e.path(), dst.join(&name));
        if e.file_type()?.is_dir() {
            copy_dir(&s, &d)?;
        } else {
            std::fs::copy(&s, &d).with_context(|| format!("copying {}", s.display()))?;
        }
    }
    Ok(())
}

/// Copy `<repo>/templates` to `dest` with the instance module swapped;
/// the local module writes under `shared_dir/<name>/`.  Returns `dest`.
pub fn prepare(repo_root: &Path, dest: &Path, shared_dir: &Path) -> anyhow::Result<PathBuf> {
    let shared = shared_dir.display().to_string();
    if shared.contains('"') || shared.contains('$') || shared.contains('\\') {
        anyhow::bail!(
            "shared dir {shared:?}: expected a plain path without quotes, $ or backslashes"
        );
    }
    let src = repo_root.join("templates");
    if dest.exists() {
        std::fs::remove_dir_all(dest).with_context(|| format!("clearing {}", dest.display()))?;
    }
    copy_dir(&src, dest)?;
    let main = dest.join("main.tf");
    let text =
        std::fs::read_to_string(&main).with_context(|| format!("reading {}", main.display()))?;
    let n = text.matches(EC2_SOURCE).count();
    if n != 1 {
        anyhow::bail!(
            "{}: expected exactly one `source = {EC2_SOURCE}` to swap for the local module, seen {n}",
            src.join("main.tf").display()
        );
    }
    std::fs::write(
        &main,
        text.replace(EC2_SOURCE, &format!("\"./{LOCAL_MODULE_DIR}\"")),
    )?;
    std::fs::remove_dir_all(dest.join("modules/ec2-instance"))?;
    let m = dest.join(LOCAL_MODULE_DIR);
    std::fs::create_dir_all(&m)?;
    std::fs::write(
        m.join("main.tf"),
        LOCAL_INSTANCE_TF.replace("@SHARED_DIR@", &shared),
    )?;
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_instance_module_in_a_copy() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let d = tempfile::tempdir().unwrap();
        let out = prepare(
            root,
            &d.path().join("tpl"),
            Path::new("/tmp/harness-shared"),
        )
        .unwrap();
        let main = std::fs::read_to_string(out.join("main.tf")).unwrap();
        assert!(main.contains("\"./modules/local-instance\""), "{main}");
        assert!(!main.contains("ec2-instance"));
        assert!(!out.join("modules/ec2-instance").exists());
        assert!(out.join("modules/bootstrap").is_dir());
        let local = std::fs::read_to_string(out.join("modules/local-instance/main.tf")).unwrap();
        assert!(
            local.contains("default     = \"/tmp/harness-shared\""),
            "{local}"
        );
        // Same inputs as the real module.
        let real =
            std::fs::read_to_string(root.join("templates/modules/ec2-instance/main.tf")).unwrap();
        for line in real
            .lines()
            .filter(|l| l.starts_with("variable \"") || l.starts_with("output \""))
        {
            let head = line.split('{').next().unwrap().trim();
            assert!(local.contains(head), "local module lacks `{head}`");
        }
        // The repository's templates/ is untouched.
        assert!(std::fs::read_to_string(root.join("templates/main.tf"))
            .unwrap()
            .contains("ec2-instance"));
        assert!(prepare(root, &d.path().join("x"), Path::new("/tmp/a\"b")).is_err());
        // The harness finds a workspace's files by the template's own name.
        assert!(
            main.contains(&format!("name           = {INSTANCE_NAME_EXPR}")),
            "templates/main.tf no longer names instances {INSTANCE_NAME_EXPR}; update instance_name()"
        );
        assert_eq!(instance_name("admin", "ws1"), "coder-admin-ws1");
    }

    /// The ec2 tier pushes `templates/` unchanged: the real instance
    /// module, no local stand-in; and the variables are the values file's,
    /// nothing more (the test build's `agent_auth = token` would make the
    /// real template hand the agent token through user-data).
    #[test]
    fn the_pushed_template_is_the_repository_s_as_push_all_pushes_it() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let d = tempfile::tempdir().unwrap();
        let out = pushed(root, &d.path().join("tpl")).unwrap();
        let same = |rel: &str| {
            std::fs::read(out.join(rel)).unwrap()
                == std::fs::read(root.join("templates").join(rel)).unwrap()
        };
        for rel in [
            "main.tf",
            "parameters.tf",
            "variables.tf",
            "modules/ec2-instance/main.tf",
        ] {
            assert!(same(rel), "{rel} differs from templates/{rel}");
        }
        assert!(!out.join(LOCAL_MODULE_DIR).exists());
        let main = std::fs::read_to_string(out.join("main.tf")).unwrap();
        assert_eq!(main.matches(EC2_SOURCE).count(), 1);
        // No *.tfvars the CLI would add to the values file's variables.
        let mut tfvars = vec![];
        for e in walk(&root.join("templates")) {
            let n = e.file_name().unwrap().to_string_lossy().to_string();
            if n.ends_with(".tfvars") || n.ends_with(".tfvars.json") {
                tfvars.push(e);
            }
        }
        assert!(tfvars.is_empty(), "push-all.sh would also send {tfvars:?}");

        for v in crate::template::values::discover_repo(root).unwrap() {
            let vars = push_all_variables(&v);
            let text = std::fs::read_to_string(&v.source).unwrap();
            let file: std::collections::BTreeMap<String, serde_yaml_ng::Value> =
                serde_yaml_ng::from_str(&text).unwrap();
            let want: Vec<(String, String)> = file
                .iter()
                .map(|(k, y)| {
                    let s = match y {
                        serde_yaml_ng::Value::String(s) => s.clone(),
                        serde_yaml_ng::Value::Bool(b) => b.to_string(),
                        serde_yaml_ng::Value::Number(n) => n.to_string(),
                        other => panic!("{}: {k}: not a scalar: {other:?}", v.name),
                    };
                    (k.clone(), s)
                })
                .collect();
            let got: Vec<(String, String)> = vars
                .iter()
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect();
            assert_eq!(
                got,
                want,
                "{}: variables differ from {}",
                v.name,
                v.source.display()
            );
            // The qemu test build's variables are not what push-all.sh sends.
            assert_ne!(
                super::super::stack::variables(&v),
                vars,
                "the test build's variables must not stand for the pushed template's"
            );
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
