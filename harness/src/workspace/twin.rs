//! The twin tier's workspace: the WHOLE template (root module, the
//! variant's values, every parameter) applied by real Terraform with the
//! real `hashicorp/aws` and `coder/coder` providers, as Coder's provisioner
//! applies it (the coder provider's workspace environment of
//! [`crate::template::coder_import`] for each transition), against the moto
//! double ([`crate::doubles::moto`]) standing in for AWS.
//!
//! Only the provider's endpoints and dummy credentials are added (an
//! `*_override.tf` merged into the template's own `provider "aws"` block);
//! nothing of the template is swapped.  Each build is one
//! `terraform apply -json`, whose planned changes are kept
//! ([`BuildRecord::changes`]) so a step can say exactly what a build
//! replaced; what the double holds afterwards is read through the one
//! observation path, [`crate::machine::ec2::observe`].
//!
//! A twin pass proves what the real providers send and keep; moto is the
//! weaker peer for everything EC2 itself decides (capacity, quotas, error
//! texts, interruptions: see the double's module doc).

pub mod mutate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

use crate::template::coder_import::{self, BuildMeta, Session};
use crate::template::variant::Variant;

/// The workspace's owner and name in every twin build.
pub const OWNER: &str = "alice";
pub const WORKSPACE: &str = "twin";
/// The access URL the coder provider sees (never contacted).
pub const ACCESS_URL: &str = "http://coder.harness.invalid:3000";
/// The IAM role the double creates for the `iam_role_name` parameter.
pub const ROLE: &str = "harness-twin-role";
/// The override file the twin adds to its copy of the template.
pub const OVERRIDE_FILE: &str = "harness_twin_override.tf";

/// Why a twin workspace could not be prepared.
#[derive(Debug)]
pub enum Prepare {
    /// A provider is missing here (the reason names which and where it looked).
    Skip(String),
    Failed(String),
}

/// One planned change of a build (`terraform apply -json`, `planned_change`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    pub address: String,
    /// `create`, `update`, `delete`, `replace`, `read`, `noop`, …
    pub action: String,
    /// Why Terraform chose it (`replace_because_cannot_update`,
    /// `replace_by_triggers`, …), when it says.
    pub reason: Option<String>,
}

impl std::fmt::Display for PlannedChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.action, self.address)?;
        if let Some(r) = &self.reason {
            write!(f, " ({r})")?;
        }
        Ok(())
    }
}

/// One build: transition, what it planned, how long it took, its log.
#[derive(Debug, Clone)]
pub struct BuildRecord {
    pub what: String,
    pub transition: String,
    pub changes: Vec<PlannedChange>,
    pub seconds: f64,
    pub log: PathBuf,
}

impl BuildRecord {
    /// Changes that replace or delete something.
    pub fn replaced(&self) -> Vec<&PlannedChange> {
        self.changes
            .iter()
            .filter(|c| matches!(c.action.as_str(), "replace" | "delete"))
            .collect()
    }
}

/// The terraform JSON UI stream of one run: planned changes and error
/// diagnostics, each as `address: summary: detail`.
pub fn parse_ui(stdout: &str) -> (Vec<PlannedChange>, Vec<String>) {
    let mut changes = vec![];
    let mut errors = vec![];
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match v["type"].as_str() {
            Some("planned_change") => {
                let c = &v["change"];
                changes.push(PlannedChange {
                    address: c["resource"]["addr"].as_str().unwrap_or("?").to_string(),
                    action: c["action"].as_str().unwrap_or("?").to_string(),
                    reason: c["reason"].as_str().map(str::to_string),
                });
            }
            Some("diagnostic") if v["@level"] == "error" => {
                let d = &v["diagnostic"];
                let mut s = String::new();
                if let Some(a) = d["address"].as_str() {
                    s.push_str(a);
                    s.push_str(": ");
                }
                s.push_str(d["summary"].as_str().unwrap_or("error"));
                if let Some(det) = d["detail"]
                    .as_str()
                    .and_then(|t| t.lines().find(|l| !l.trim().is_empty()))
                {
                    s.push_str(": ");
                    s.push_str(det.trim());
                }
                errors.push(s);
            }
            _ => {}
        }
    }
    (changes, errors)
}

/// The agent init script the twin hands the coder provider as
/// `CODER_AGENT_SCRIPT_<os>_<arch>`: the contract tier's stand-in
/// ([`crate::doubles::init_script`]) with the provider's own placeholders,
/// so the provider's expansion is exactly what the contract tier renders
/// (the provider replaces every `${ACCESS_URL}` and `${AUTH_TYPE}`, so the
/// stand-in must not hold those texts elsewhere: a test checks it).
pub fn agent_script(_os: &str, arch: &str) -> String {
    crate::doubles::init_script::TEMPLATE
        .replace("@ACCESS_URL@", "${ACCESS_URL}")
        .replace("@AUTH_TYPE@", "${AUTH_TYPE}")
        .replace("@ARCH@", arch)
}

/// A twin workspace: a copy of the template, its providers, its parameters
/// and the builds so far.
pub struct TwinWorkspace {
    pub variant: Variant,
    pub meta: BuildMeta,
    /// Parameter values of the next build (`CODER_PARAMETER_*`).
    pub params: BTreeMap<String, String>,
    pub region: String,
    pub builds: Vec<BuildRecord>,
    pub artifacts: PathBuf,
    session: Session,
}

impl std::fmt::Debug for TwinWorkspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwinWorkspace")
            .field("variant", &self.variant.name)
            .field("params", &self.params)
            .field("dir", &self.session.dir)
            .finish()
    }
}

/// `provider "aws"` additions pointing every service the template uses at
/// `endpoint`, with dummy keys: nothing leaves 127.0.0.1.
pub fn provider_override(endpoint: &str) -> String {
    format!(
        "# Written by the harness (twin tier): the template's own provider \"aws\"\n\
         # block, pointed at the moto double. Nothing else of the template changes.\n\
         provider \"aws\" {{\n  access_key                  = \"{k}\"\n  secret_key                  = \"{s}\"\n  skip_credentials_validation = true\n  skip_requesting_account_id  = true\n  skip_metadata_api_check     = true\n  endpoints {{\n    ec2 = \"{endpoint}\"\n    iam = \"{endpoint}\"\n    sts = \"{endpoint}\"\n  }}\n}}\n",
        k = crate::doubles::moto::ACCESS_KEY,
        s = crate::doubles::moto::SECRET_KEY,
    )
}

impl TwinWorkspace {
    /// Copy `root/templates` (the repository or a mutated copy), point its
    /// AWS provider at `endpoint`, `terraform init` with the providers from
    /// the mirrors (or the registry); a missing provider is a skip.
    pub async fn prepare(
        root: &Path,
        variant: &Variant,
        endpoint: &str,
        artifacts: &Path,
    ) -> Result<Self, Prepare> {
        let session = coder_import::session(root, variant, true)
            .await
            .map_err(|e| Prepare::Failed(format!("copying the template: {e:#}")))?;
        std::fs::write(session.dir.join(OVERRIDE_FILE), provider_override(endpoint))
            .map_err(|e| Prepare::Failed(format!("writing the provider override: {e}")))?;
        if let Err(e) = session
            .run(
                &["init", "-input=false", "-backend=false", "-no-color"],
                &[],
            )
            .await
        {
            return Err(match coder_import::init_skip_reason(&session.cfg, &e) {
                Some(why) => Prepare::Skip(why),
                None => Prepare::Failed(coder_import::tf_error(
                    "terraform init of the real template",
                    &e,
                )),
            });
        }
        let mut params = coder_import::build_parameters(root, variant)
            .map_err(|e| Prepare::Failed(format!("parameter defaults: {e:#}")))?;
        // The contract tier's "good" fixture flake, so the user-data can be
        // compared with what that tier boots for the same parameters.
        params.insert(
            "flake_uri".into(),
            crate::workspace::real::flake_uri("good"),
        );
        let region = params
            .get("region")
            .cloned()
            .unwrap_or_else(|| "us-east-1".into());
        std::fs::create_dir_all(artifacts).ok();
        Ok(TwinWorkspace {
            variant: variant.clone(),
            meta: BuildMeta {
                access_url: ACCESS_URL.into(),
                owner: OWNER.into(),
                workspace: WORKSPACE.into(),
                ..BuildMeta::default()
            },
            params,
            region,
            builds: vec![],
            artifacts: artifacts.to_path_buf(),
            session,
        })
    }

    /// Build as Coder user `owner` (default [`OWNER`]): what the template
    /// tags `coder_owner`.
    pub fn owned_by(&mut self, owner: &str) {
        self.meta.owner = owner.to_string();
    }

    /// Where each provider came from (mirror or registry).
    pub fn providers(&self) -> String {
        self.session.cfg.describe(&[
            crate::template::provider_mirror::CODER,
            crate::template::provider_mirror::AWS,
        ])
    }

    /// The tags the template puts on everything of this workspace
    /// (`local.tags` in templates/main.tf).
    pub fn owner_tags(&self) -> BTreeMap<String, String> {
        [
            ("Coder_Provisioned", "true"),
            ("coder_owner", self.meta.owner.as_str()),
            ("coder_workspace", self.meta.workspace.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The agent auth this variant builds with (`agent_auth`, default
    /// `aws-instance-identity`).
    pub fn agent_auth(&self) -> String {
        self.variant
            .values
            .get("agent_auth")
            .and_then(Value::as_str)
            .unwrap_or("aws-instance-identity")
            .to_string()
    }

    /// A workspace build for `transition` (`start`, `stop`), as Coder runs
    /// it: one `terraform apply` with the workspace's `CODER_*`
    /// environment.  The error is Terraform's errors, one per line, then
    /// where the whole log is.
    pub async fn build(&mut self, what: &str, transition: &str) -> Result<BuildRecord, String> {
        let args = [
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-json",
            "-lock=false",
        ];
        self.run(what, transition, &args).await
    }

    /// Coder's delete build: `terraform apply -destroy`, transition `destroy`.
    pub async fn destroy(&mut self) -> Result<BuildRecord, String> {
        let args = [
            "apply",
            "-destroy",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-json",
            "-lock=false",
        ];
        self.run("delete", "destroy", &args).await
    }

    async fn run(
        &mut self,
        what: &str,
        transition: &str,
        args: &[&str],
    ) -> Result<BuildRecord, String> {
        let env =
            coder_import::build_env(transition, &self.meta, Some(&self.params), &agent_script);
        let n = self.builds.len() + 1;
        let log = self
            .artifacts
            .join(format!("build-{n:02}-{}.jsonl", crate::report::slug(what)));
        let t = Instant::now();
        let out = self.session.run(args, &env).await;
        let seconds = t.elapsed().as_secs_f64();
        let (stdout, stderr, ok) = match &out {
            Ok(o) => (o.stdout.clone(), o.stderr.clone(), true),
            Err(e) => (e.stdout.clone(), e.stderr.clone(), false),
        };
        let _ = std::fs::write(&log, format!("{stdout}{stderr}"));
        let (changes, errors) = parse_ui(&stdout);
        let rec = BuildRecord {
            what: what.to_string(),
            transition: transition.to_string(),
            changes,
            seconds,
            log: log.clone(),
        };
        self.builds.push(rec.clone());
        if ok {
            return Ok(rec);
        }
        let mut msg = if errors.is_empty() {
            coder_import::summarize(&stderr)
        } else {
            errors.join("\n")
        };
        if msg.trim().is_empty() {
            msg = stderr.lines().take(5).collect::<Vec<_>>().join("\n");
        }
        Err(format!(
            "{what} build ({transition}) failed: {msg}\n(terraform log: {})",
            log.display()
        ))
    }
}

/// A `data "coder_parameter"` users may change after creation (`mutable`
/// true, or an expression: counted as mutable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableParameter {
    pub name: String,
    /// Only present on spot variants (`count = var.is_spot ? 1 : 0`).
    pub spot_only: bool,
}

/// Every mutable parameter of `root/templates/*.tf`, so a new one is
/// covered by the twin (or fails it: [`change_for`] must know it).
pub fn mutable_parameters(root: &Path) -> anyhow::Result<Vec<MutableParameter>> {
    let dir = root.join("templates");
    let mut out = vec![];
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    for f in files {
        let body: hcl::Body = hcl::parse(&std::fs::read_to_string(&f)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        for b in body.blocks().filter(|b| {
            b.identifier() == "data"
                && b.labels().first().map(|l| l.as_str()) == Some("coder_parameter")
        }) {
            let attr = |k: &str| {
                b.body()
                    .attributes()
                    .find(|a| a.key() == k)
                    .map(|a| a.expr().clone())
            };
            let mutable = !matches!(attr("mutable"), None | Some(hcl::Expression::Bool(false)));
            if !mutable {
                continue;
            }
            let name = match attr("name") {
                Some(hcl::Expression::String(s)) => s,
                _ => b
                    .labels()
                    .get(1)
                    .map(|l| l.as_str().to_string())
                    .unwrap_or_default(),
            };
            let spot_only = attr("count")
                .map(|c| {
                    hcl::format::to_string(&c)
                        .unwrap_or_default()
                        .contains("is_spot")
                })
                .unwrap_or(false);
            out.push(MutableParameter { name, spot_only });
        }
    }
    Ok(out)
}

/// Resource types whose identity is the instance's: replacing the instance
/// replaces (or re-points) them too.
pub const INSTANCE_AND_DEPENDENTS: [&str; 6] = [
    "aws_instance",
    "aws_volume_attachment",
    "aws_ec2_instance_state",
    "aws_ec2_tag",
    "coder_agent_instance",
    "coder_metadata",
];

/// A change of one mutable parameter: the new value, and which resource
/// types the change may replace (nothing else may be replaced or deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamChange {
    pub name: String,
    pub value: String,
    pub may_replace: Vec<&'static str>,
    /// One line: what the parameter means for the workspace.
    pub meaning: String,
}

/// Another type `templates/instance-types.json` offers for `arch` than
/// `current` (the first in name order): what a type change picks, on the
/// twin and on the ec2 tier alike.
pub fn other_instance_type(
    root: &Path,
    arch: crate::template::variant::Arch,
    current: &str,
) -> anyhow::Result<String> {
    let types: Value = serde_json::from_str(&std::fs::read_to_string(
        root.join("templates/instance-types.json"),
    )?)?;
    types[arch.as_str()]
        .as_object()
        .and_then(|o| o.keys().find(|k| k.as_str() != current).cloned())
        .ok_or_else(|| {
            anyhow::anyhow!("instance-types.json offers no other {arch} type than {current}")
        })
}

/// The change the twin makes to `p`, from its current `value`; an unknown
/// parameter is an error (a new mutable parameter needs its expectation).
pub fn change_for(
    root: &Path,
    variant: &Variant,
    p: &MutableParameter,
    value: &str,
) -> anyhow::Result<ParamChange> {
    let spot = variant.is_spot;
    let instance: Vec<&'static str> = if spot {
        INSTANCE_AND_DEPENDENTS.to_vec()
    } else {
        vec![]
    };
    let num = |d: i64| -> anyhow::Result<String> {
        Ok((value
            .parse::<i64>()
            .map_err(|e| anyhow::anyhow!("{}={value:?}: {e}", p.name))?
            + d)
            .to_string())
    };
    let c = match p.name.as_str() {
        "instance_type" => {
            let other = other_instance_type(root, variant.arch, value)?;
            ParamChange {
                name: p.name.clone(),
                value: other,
                may_replace: instance,
                meaning: if spot {
                    "a Spot Instance's type cannot change (EC2 user guide): the instance is replaced, its home volume kept".into()
                } else {
                    "the instance is stopped, modified and started in place".into()
                },
            }
        }
        "spot_price" => ParamChange {
            name: p.name.clone(),
            value: if value == "0.05" { "0.06".into() } else { "0.05".into() },
            may_replace: instance,
            meaning: "a new maximum price is a new Spot request: the instance is replaced, its home volume kept".into(),
        },
        "root_disk_size" => ParamChange {
            name: p.name.clone(),
            value: num(8)?,
            may_replace: vec![],
            meaning: "the root volume grows in place (ModifyVolume)".into(),
        },
        "home_disk_size" => ParamChange {
            name: p.name.clone(),
            value: num(5)?,
            may_replace: vec![],
            meaning: "the home volume grows in place (ModifyVolume)".into(),
        },
        "iam_role_name" => ParamChange {
            name: p.name.clone(),
            value: if value == ROLE { String::new() } else { ROLE.into() },
            may_replace: vec![],
            meaning: "an instance profile for the role is created and associated in place".into(),
        },
        "flake_uri" => ParamChange {
            name: p.name.clone(),
            value: crate::workspace::real::flake_uri(if value.ends_with("#broken") { "good" } else { "broken" }),
            may_replace: vec![],
            meaning: "the agent's startup script switches to the new flake; nothing on AWS changes".into(),
        },
        other => anyhow::bail!(
            "mutable parameter `{other}` has no twin expectation: say in harness/src/workspace/twin.rs (change_for) what a change of it may replace"
        ),
    };
    Ok(c)
}

/// The replacements a build made that `allowed` resource types do not
/// cover (empty: only what the change means was replaced).  Coder's own
/// resources (`coder_*`) are not judged: most of `coder_agent`'s arguments
/// (its `env` with the flake, say) force a new agent in
/// terraform-provider-coder, and Coder records an agent per build anyway;
/// what a user can lose lives in the AWS resources.
pub fn unexpected_replacements<'a>(
    rec: &'a BuildRecord,
    allowed: &[&str],
) -> Vec<&'a PlannedChange> {
    rec.replaced()
        .into_iter()
        .filter(|c| !c.address.starts_with("coder_") && !c.address.contains(".coder_"))
        .filter(|c| {
            let ty = c
                .address
                .split('.')
                .find(|seg| {
                    seg.starts_with("aws_")
                        || seg.starts_with("coder_")
                        || seg.starts_with("terraform_")
                })
                .unwrap_or("")
                .split('[')
                .next()
                .unwrap_or("");
            !allowed.contains(&ty)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .into()
    }

    #[test]
    fn the_ui_stream_gives_changes_and_errors() {
        let out = r#"{"@level":"info","type":"version"}
{"@level":"info","type":"planned_change","change":{"resource":{"addr":"module.instance.aws_instance.this"},"action":"replace","reason":"replace_by_triggers"}}
{"@level":"info","type":"planned_change","change":{"resource":{"addr":"module.instance.aws_ebs_volume.home"},"action":"update"}}
{"@level":"error","type":"diagnostic","diagnostic":{"severity":"error","summary":"Missing required argument","detail":"The argument \"availability_zone\" is required, but no definition was found.","address":"module.instance.aws_ebs_volume.home"}}
not json
"#;
        let (c, e) = parse_ui(out);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0].to_string(),
            "replace module.instance.aws_instance.this (replace_by_triggers)"
        );
        assert_eq!(
            e,
            vec!["module.instance.aws_ebs_volume.home: Missing required argument: The argument \"availability_zone\" is required, but no definition was found."]
        );
        let rec = BuildRecord {
            what: "x".into(),
            transition: "start".into(),
            changes: c,
            seconds: 0.0,
            log: "l".into(),
        };
        assert!(unexpected_replacements(&rec, &INSTANCE_AND_DEPENDENTS).is_empty());
        assert_eq!(unexpected_replacements(&rec, &[]).len(), 1);
        let coder = BuildRecord {
            changes: vec![PlannedChange {
                address: "coder_agent.main".into(),
                action: "replace".into(),
                reason: None,
            }],
            ..rec.clone()
        };
        assert!(unexpected_replacements(&coder, &[]).is_empty());
        let coder = BuildRecord {
            changes: vec![PlannedChange {
                address: "coder_agent.main".into(),
                action: "replace".into(),
                reason: None,
            }],
            ..rec.clone()
        };
        assert!(unexpected_replacements(&coder, &[]).is_empty());
    }

    #[test]
    fn every_mutable_parameter_of_the_template_has_an_expectation() {
        let root = root();
        let ps = mutable_parameters(&root).unwrap();
        let names: Vec<&str> = ps.iter().map(|p| p.name.as_str()).collect();
        for want in [
            "instance_type",
            "root_disk_size",
            "home_disk_size",
            "flake_uri",
        ] {
            assert!(names.contains(&want), "{names:?}");
        }
        assert!(
            !names.contains(&"agent_user") && !names.contains(&"region"),
            "{names:?}"
        );
        assert!(
            ps.iter().any(|p| p.name == "spot_price" && p.spot_only),
            "{ps:?}"
        );
        for v in crate::template::values::discover_repo(&root).unwrap() {
            for p in &ps {
                let c = change_for(&root, &v, p, "20").unwrap();
                assert_ne!(c.value, "20", "{c:?}");
            }
        }
        let e = change_for(
            &root,
            &crate::template::values::discover_repo(&root).unwrap()[0],
            &MutableParameter {
                name: "new_knob".into(),
                spot_only: false,
            },
            "",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`new_knob` has no twin expectation"), "{e}");
    }

    #[test]
    fn the_agent_script_expands_to_the_contract_stand_in() {
        let s = agent_script("linux", "arm64");
        let expanded = s
            .replace("${ACCESS_URL}", "http://x:1/")
            .replace("${AUTH_TYPE}", "aws-instance-identity");
        assert_eq!(
            expanded,
            crate::doubles::init_script::render(
                "http://x:1/",
                crate::template::variant::Arch::Aarch64,
                "aws-instance-identity"
            )
            .unwrap()
        );
        assert!(provider_override("http://127.0.0.1:9").contains("ec2 = \"http://127.0.0.1:9\""));
        // Nothing else in the stand-in looks like the provider's placeholders.
        for p in ["${ACCESS_URL}", "${AUTH_TYPE}"] {
            assert!(!crate::doubles::init_script::TEMPLATE.contains(p), "{p}");
        }
    }
}
