//! `coder-import <variant>`: the template as Coder imports and builds it,
//! with real Terraform and the real `coder/coder` provider.
//!
//! What Coder does, read from coder/coder:
//! - template import (`provisionerd/runner/runner.go`, `runTemplateImport`):
//!   `terraform init`, then two dry-run plans, transition `start` and
//!   `stop`, whose metadata carries only the access URL: no workspace, no
//!   owner and **no parameter values**, so every `coder_parameter` is
//!   evaluated from its default (`provider/parameter.go`, `ValidateInput`);
//! - the environment of every run (`provisioner/terraform/provision.go`,
//!   `provisionEnv`): `CODER_AGENT_URL`, `CODER_WORKSPACE_TRANSITION`,
//!   `CODER_WORKSPACE_{NAME,ID,OWNER,OWNER_EMAIL,OWNER_NAME,OWNER_ID,…}`,
//!   `CODER_WORKSPACE_TEMPLATE_{ID,NAME,VERSION}`, `CODER_WORKSPACE_BUILD_ID`,
//!   the agent init scripts `CODER_AGENT_SCRIPT_<os>_<arch>`
//!   (`provisionersdk.AgentScriptEnv`) and one
//!   `CODER_PARAMETER_<hex(sha256(name))>` per parameter value
//!   (terraform-provider-coder `provider/parameter.go`,
//!   `ParameterEnvironmentVariable`);
//! - `data.coder_workspace.transition`/`start_count` come from
//!   `CODER_WORKSPACE_TRANSITION` (terraform-provider-coder `provider/workspace.go`).
//!
//! The AWS provider cannot be built here, so the plans run on the template
//! **test build** ([`crate::control::coder::template::prepare`]: `module
//! "instance"` swapped for the local instance module), with the
//! `provider "aws"` block and the `aws` requirement removed and any root
//! `data "aws_*"` source replaced by a named stub (a double for AWS; see
//! [`strip_aws`]). A second run, a workspace build as Coder does it (all
//! parameter values set, `CODER_WORKSPACE_BUILD_ID` set), applies the test
//! build for `start` then `stop`: the local module's `running` must follow
//! the transition, and the user-data it receives must be byte-for-byte what
//! `harness render` prints for the same parameter values, agent auth and
//! init script (the init script is the provider's expansion of our
//! stand-in `CODER_AGENT_SCRIPT_*`, the token is empty with
//! `aws-instance-identity`, so nothing is left out of the comparison).
//! Then builds with a reserved and a malformed `agent_user` must be
//! refused with an error under 1 KB that names the rule
//! ([`AGENT_USER_REFUSALS`]).
//!
//! The REAL template, with `hashicorp/aws` from a filesystem mirror or else
//! the registry (skipped with the reason when neither has it), is also
//! `terraform validate`d and,
//! when it has no AWS data source (which would need the AWS API), planned for
//! import with the AWS provider configured to make no API call (dummy keys,
//! every `skip_*` on): `coder-import-aws <variant>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::report::{Report, Status, Target};
use crate::template::provider_mirror::{self, CliConfig, AWS, CODER};
use crate::template::terraform::{Terraform, TerraformError};
use crate::template::variant::Variant;

/// Gate/lint check name of the import + build rows.
pub const CHECK: &str = "coder-import";
/// Gate/lint check name of the real-template rows (needs `hashicorp/aws`).
pub const CHECK_AWS: &str = "coder-import-aws";
/// The access URL passed as `CODER_AGENT_URL` (never contacted).
pub const ACCESS_URL: &str = "http://coder.harness.invalid:3000";
/// Stand-in for Coder's agent init script (`CODER_AGENT_SCRIPT_<os>_<arch>`),
/// with the two placeholders the provider expands (`provider/agent.go`).
pub const AGENT_SCRIPT: &str =
    "#!/bin/sh\n# harness stand-in for the Coder agent init script\necho \"agent for ${ACCESS_URL} auth ${AUTH_TYPE}\"\n";
/// Workspace owner and name of the build run.
pub const OWNER: &str = "harness";
pub const WORKSPACE: &str = "import-check";
/// The file the test build's AWS stubs go into.
pub const AWS_STUB_FILE: &str = "harness_aws_stubs.tf";

/// The environment variable the coder provider reads a parameter value from.
pub fn parameter_env(name: &str) -> String {
    format!(
        "CODER_PARAMETER_{}",
        hex::encode(Sha256::digest(name.as_bytes()))
    )
}

/// The init script the provider produces from [`AGENT_SCRIPT`]
/// (`${ACCESS_URL}` → the access URL's root, `${AUTH_TYPE}` → `auth`).
pub fn expected_init_script(auth: &str) -> String {
    AGENT_SCRIPT
        .replace("${ACCESS_URL}", &format!("{ACCESS_URL}/"))
        .replace("${AUTH_TYPE}", auth)
}

/// Who a workspace build is for: the `CODER_WORKSPACE_*` metadata Coder
/// passes, and the access URL.
#[derive(Debug, Clone)]
pub struct BuildMeta {
    pub access_url: String,
    pub owner: String,
    pub workspace: String,
    pub workspace_id: String,
    pub owner_id: String,
    pub build_id: String,
}

impl Default for BuildMeta {
    fn default() -> Self {
        BuildMeta {
            access_url: ACCESS_URL.into(),
            owner: OWNER.into(),
            workspace: WORKSPACE.into(),
            workspace_id: "6f7e1c0a-0000-4000-8000-00000000a001".into(),
            owner_id: "6f7e1c0a-0000-4000-8000-00000000a002".into(),
            build_id: "6f7e1c0a-0000-4000-8000-00000000a004".into(),
        }
    }
}

/// `CODER_*` environment of one run. `build` = a workspace build (owner,
/// workspace, template and build ids, parameter values); otherwise a
/// template import (only the access URL and the transition).
pub fn coder_env(
    transition: &str,
    build: Option<&BTreeMap<String, String>>,
) -> Vec<(String, String)> {
    build_env(transition, &BuildMeta::default(), build, &|_, _| {
        AGENT_SCRIPT.to_string()
    })
}

/// [`coder_env`] for the workspace `meta`, with `agent_script(os, arch)` as
/// each `CODER_AGENT_SCRIPT_<os>_<arch>` (Coder's are per architecture).
pub fn build_env(
    transition: &str,
    meta: &BuildMeta,
    build: Option<&BTreeMap<String, String>>,
    agent_script: &dyn Fn(&str, &str) -> String,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("CODER_AGENT_URL".to_string(), meta.access_url.clone()),
        (
            "CODER_WORKSPACE_TRANSITION".to_string(),
            transition.to_string(),
        ),
    ];
    for os in ["linux", "windows", "darwin"] {
        for arch in ["amd64", "arm64", "armv7"] {
            env.push((
                format!("CODER_AGENT_SCRIPT_{os}_{arch}"),
                agent_script(os, arch),
            ));
        }
    }
    let owner_name = if meta.owner == OWNER {
        "Harness Import Check".to_string()
    } else {
        meta.owner.clone()
    };
    let owner_email = format!("{}@example.invalid", meta.owner);
    let fields: [(&str, &str); 11] = [
        ("CODER_WORKSPACE_NAME", &meta.workspace),
        ("CODER_WORKSPACE_ID", &meta.workspace_id),
        ("CODER_WORKSPACE_OWNER", &meta.owner),
        ("CODER_WORKSPACE_OWNER_NAME", &owner_name),
        ("CODER_WORKSPACE_OWNER_EMAIL", &owner_email),
        ("CODER_WORKSPACE_OWNER_ID", &meta.owner_id),
        (
            "CODER_WORKSPACE_TEMPLATE_ID",
            "6f7e1c0a-0000-4000-8000-00000000a003",
        ),
        ("CODER_WORKSPACE_TEMPLATE_NAME", "harness"),
        ("CODER_WORKSPACE_TEMPLATE_VERSION", "import-check"),
        ("CODER_WORKSPACE_BUILD_ID", &meta.build_id),
        ("CODER_WORKSPACE_OWNER_LOGIN_TYPE", "password"),
    ];
    match build {
        Some(params) => {
            env.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            env.extend(params.iter().map(|(k, v)| (parameter_env(k), v.clone())));
        }
        // Import: Coder still sets these, empty.
        None => env.extend(fields.iter().map(|(k, _)| (k.to_string(), String::new()))),
    }
    env
}

/// Condense terraform's error output into one line per `Error:` block:
/// `<address or file:line>: <summary>: <first detail line>`.
pub fn summarize(stderr: &str) -> String {
    let mut out = vec![];
    let lines: Vec<&str> = stderr
        .lines()
        .map(|l| l.trim_start_matches(['│', '╷', '╵', ' ']).trim_end())
        .collect();
    let mut i = 0;
    while i < lines.len() {
        if let Some(summary) = lines[i].strip_prefix("Error: ") {
            let mut at = String::new();
            let mut detail = String::new();
            let mut j = i + 1;
            while j < lines.len() && !lines[j].starts_with("Error: ") {
                let l = lines[j];
                if let Some(w) = l.strip_prefix("with ") {
                    at = w.trim_end_matches(',').to_string();
                } else if l.starts_with("on ") && at.is_empty() {
                    at = l.trim_end_matches(':').to_string();
                } else if !l.is_empty()
                    && !l.starts_with("on ")
                    && !l.contains(" | ")
                    && !l.starts_with(char::is_numeric)
                    && !l.trim_start().starts_with(|c: char| c.is_ascii_digit())
                    && detail.is_empty()
                {
                    detail = l.trim().to_string();
                }
                j += 1;
            }
            let mut line = if at.is_empty() {
                summary.to_string()
            } else {
                format!("{at}: {summary}")
            };
            if !detail.is_empty() {
                line.push_str(": ");
                line.push_str(&detail);
            }
            out.push(line);
            i = j;
        } else {
            i += 1;
        }
    }
    out.join("\n")
}

/// A failed terraform run as one message: the summarized errors, then the
/// whole output.
pub fn tf_error(what: &str, e: &TerraformError) -> String {
    let s = summarize(&e.stderr);
    format!(
        "{what} failed: {}\n--- terraform {} in {} ({}):\n{}{}",
        if s.is_empty() { "see output below" } else { &s },
        e.args,
        e.dir.display(),
        e.status,
        e.stderr,
        e.stdout
    )
}

/// Top-level blocks of a `terraform fmt`-formatted file: (first line, last line).
fn top_blocks(lines: &[&str]) -> Vec<(usize, usize)> {
    let mut v = vec![];
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if !l.starts_with([' ', '\t', '#', '/', '}']) && l.trim_end().ends_with('{') {
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].starts_with('}'))
                .unwrap_or(lines.len() - 1);
            v.push((i, end));
            i = end + 1;
        } else {
            if !l.starts_with([' ', '\t', '#', '/', '}']) && l.trim_end().ends_with('}') {
                v.push((i, i));
            }
            i += 1;
        }
    }
    v
}

fn block_head(line: &str) -> Vec<String> {
    // `data "aws_ami" "nixos" {` → ["data", "aws_ami", "nixos"]
    line.trim_end()
        .trim_end_matches('{')
        .split_whitespace()
        .map(|w| w.trim_matches('"').to_string())
        .collect()
}

/// Make the test build at `dir` plannable without the AWS provider: drop
/// `provider "aws"` blocks and the `aws` entry of `required_providers`,
/// and replace each root `data "aws_*"` block by a local value of the same
/// shape (one object, a list for `count`, a map for `for_each`) with fixed
/// attributes, rewriting `data.aws_X.N` references to it. Fails when
/// anything AWS is left (a resource in the root module, say), naming it.
pub fn strip_aws(dir: &Path) -> anyhow::Result<()> {
    let re_ref = regex::Regex::new(r"\bdata\.(aws_[a-z0-9_]+)\.([A-Za-z_][A-Za-z0-9_-]*)")?;
    let mut stubs = vec![];
    let mut files = tf_files(dir)?;
    files.sort();
    let mut texts = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f)?;
        let lines: Vec<&str> = text.lines().collect();
        let mut drop = vec![false; lines.len()];
        for (a, b) in top_blocks(&lines) {
            let head = block_head(lines[a]);
            match head.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["provider", "aws", ..] => drop[a..=b].iter_mut().for_each(|d| *d = true),
                ["data", t, n, ..] if t.starts_with("aws_") => {
                    let attr = |k: &str| {
                        lines[a + 1..b].iter().find_map(|l| {
                            let l2 = l.strip_prefix("  ")?;
                            if l2.starts_with(' ') {
                                return None;
                            }
                            let (key, val) = l2.split_once('=')?;
                            (key.trim() == k).then(|| val.trim().to_string())
                        })
                    };
                    stubs.push((
                        t.to_string(),
                        n.to_string(),
                        attr("count"),
                        attr("for_each"),
                    ));
                    drop[a..=b].iter_mut().for_each(|d| *d = true);
                }
                ["terraform"] => {
                    // `aws = {` … `}` inside required_providers.
                    let mut j = a + 1;
                    while j < b {
                        let t = lines[j].trim_start();
                        if t.starts_with("aws ") || t.starts_with("aws=") {
                            let indent = lines[j].len() - t.len();
                            let end = if t.trim_end().ends_with('{') {
                                (j + 1..b)
                                    .find(|&k| {
                                        lines[k].trim_start().starts_with('}')
                                            && lines[k].len() - lines[k].trim_start().len()
                                                == indent
                                    })
                                    .unwrap_or(j)
                            } else {
                                j
                            };
                            drop[j..=end].iter_mut().for_each(|d| *d = true);
                            j = end + 1;
                        } else {
                            j += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        let kept: String = lines
            .iter()
            .zip(&drop)
            .filter(|(_, d)| !**d)
            .map(|(l, _)| format!("{l}\n"))
            .collect();
        texts.insert(f.clone(), kept);
    }
    for (f, text) in &texts {
        let text = re_ref.replace_all(text, "local.harness_aws_stub_${1}_${2}");
        std::fs::write(f, text.as_ref())?;
    }
    if !stubs.is_empty() {
        let mut s = String::from(
            "# TEST BUILD ONLY (written by the harness): a double for the AWS data\n# sources of the real template, which need the AWS API.\nlocals {\n",
        );
        for (t, n, count, for_each) in &stubs {
            let obj = format!(
                "{{ id = \"harness-stub-{t}-{n}\", arn = \"arn:aws:harness:stub\", image_id = \"ami-00000000000000000\", name = \"harness-stub\", value = \"harness-stub\", architecture = \"x86_64\" }}"
            );
            let value = match (count, for_each) {
                (Some(c), _) => format!("[for i in range({c}) : {obj}]"),
                (None, Some(fe)) => format!("{{ for k, v in {fe} : k => {obj} }}"),
                _ => obj,
            };
            s.push_str(&format!("  harness_aws_stub_{t}_{n} = {value}\n"));
        }
        s.push_str("}\n");
        std::fs::write(dir.join(AWS_STUB_FILE), s)?;
    }
    // Nothing AWS may be left anywhere in the test build.
    let mut left = vec![];
    for f in all_tf_files(dir)? {
        let text = std::fs::read_to_string(&f)?;
        let body: hcl::Body =
            hcl::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        for b in body.blocks() {
            let l0 = b.labels().first().map(|l| l.as_str()).unwrap_or("");
            let what = match b.identifier() {
                "provider" if l0 == "aws" => Some("provider \"aws\"".to_string()),
                "resource" | "data" if l0.starts_with("aws_") => {
                    Some(format!("{} \"{l0}\"", b.identifier()))
                }
                "terraform" => b
                    .body()
                    .blocks()
                    .filter(|x| x.identifier() == "required_providers")
                    .any(|rp| rp.body().attributes().any(|a| a.key() == "aws"))
                    .then(|| "required_providers.aws".to_string()),
                _ => None,
            };
            if let Some(w) = what {
                left.push(format!(
                    "{w} in {}",
                    f.strip_prefix(dir).unwrap_or(&f).display()
                ));
            }
        }
    }
    anyhow::ensure!(
        left.is_empty(),
        "the template test build still needs the AWS provider after swapping module \"instance\": {}",
        left.join(", ")
    );
    Ok(())
}

fn tf_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tf"))
        .collect())
}

fn all_tf_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v = tf_files(dir)?;
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        let n = e.file_name();
        if p.is_dir() && n != ".terraform" && n != "tests" {
            v.extend(all_tf_files(&p)?);
        }
    }
    Ok(v)
}

/// Parameter values of the build run: each parameter's default (values
/// file, then `variables.tf`), except an empty `flake_uri`, which a user
/// must fill in at workspace creation ([`crate::template::render::FLAKE_URI_PLACEHOLDER`]).
pub fn build_parameters(
    root: &Path,
    variant: &Variant,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in crate::template::render::parameter_defaults(root, variant)? {
        let s = match v {
            Value::String(s) => s,
            Value::Null => continue,
            other => other.to_string(),
        };
        out.insert(k, s);
    }
    if out.get("flake_uri").is_none_or(|s| s.is_empty()) {
        out.insert(
            "flake_uri".into(),
            crate::template::render::FLAKE_URI_PLACEHOLDER.into(),
        );
    }
    Ok(out)
}

/// A prepared session: terraform + CLI config + a copy of the template.
pub struct Session {
    pub tf: Terraform,
    pub cfg: CliConfig,
    /// The copy of the template (root module) Terraform runs in.
    pub dir: PathBuf,
    /// Terraform's plugin cache and its lock, held for the whole session,
    /// when a provider comes from the registry (see [`plugin_cache`]).
    plugin_cache: Option<(PathBuf, std::fs::File)>,
}

/// The shared plugin cache, when `sources` are not all in a filesystem
/// mirror: registry downloads (hashicorp/aws is ~600 MB) are kept across
/// runs.  Terraform's plugin cache is not safe for concurrent use: one
/// `terraform init` re-extracting a provider into it removes the directory
/// another session's `.terraform` links to (CI saw "failed to create
/// directory … file exists" from two inits, then "fork/exec …
/// terraform-provider-coder: no such file or directory" from a plan while
/// another init ran).  So a session that uses the cache holds its lock
/// from init to the end; mirrored providers need no cache at all (init
/// copies them from the mirror), so the usual run takes no lock.
/// `dir` is the cache (`provider_mirror::writable_cache`; tests give a
/// temporary one).
async fn plugin_cache(
    cfg: &CliConfig,
    sources: &[&str],
    dir: PathBuf,
) -> Option<(PathBuf, std::fs::File)> {
    if sources.iter().all(|s| cfg.mirrored.contains_key(*s)) {
        return None;
    }
    std::fs::create_dir_all(&dir).ok()?;
    let lock_path = dir.with_extension("lock");
    let lock = tokio::task::spawn_blocking(move || {
        crate::repo::lock_exclusive(&lock_path, || {
            eprintln!(
                "coder-import: waiting for Terraform's plugin cache ({}), used by another run",
                lock_path.display()
            )
        })
    })
    .await
    .ok()?
    .ok()?;
    Some((dir, lock))
}

impl Session {
    /// `terraform <args>` in the copy, with the CLI config, the plugin cache
    /// when one is used, and `coder` (every inherited `CODER_*` cleared).
    pub async fn run(
        &self,
        args: &[&str],
        coder: &[(String, String)],
    ) -> Result<crate::template::terraform::Output, TerraformError> {
        let mut env = self.cfg.env();
        if let Some((dir, _)) = &self.plugin_cache {
            env.push(("TF_PLUGIN_CACHE_DIR".into(), dir.display().to_string()));
        }
        env.extend(coder.iter().cloned());
        self.tf.run_env(&self.dir, args, &env, &["CODER_"]).await
    }
}

/// The reason `terraform init` could not get the coder provider, when that
/// is a skip (no mirror holds it) rather than a failure.
pub fn init_skip_reason(cfg: &CliConfig, e: &TerraformError) -> Option<String> {
    let missing: Vec<&str> = [CODER, AWS]
        .into_iter()
        .filter(|s| !cfg.mirrored.contains_key(*s))
        .filter(|s| {
            let short = s.trim_start_matches("registry.terraform.io/");
            e.stderr.contains(short) || e.stderr.contains(s)
        })
        .collect();
    let network = e
        .stderr
        .contains("Failed to query available provider packages")
        || e.stderr.contains("could not connect")
        || e.stderr.contains("Failed to install provider")
        || e.stderr.contains("registry.terraform.io");
    (!missing.is_empty() && network).then(|| {
        let mut why = format!(
            "{} is in no filesystem mirror (looked in {}) and the registry gave: {}",
            missing.join(", "),
            provider_mirror::mirror_dirs()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            summarize(&e.stderr).lines().next().unwrap_or("no answer")
        );
        if missing.contains(&CODER) {
            match cfg.build_failure() {
                Some(f) => why.push_str(&format!("; ci/build-coder-provider.sh failed: {f}")),
                None => why.push_str("; build it with ci/build-coder-provider.sh"),
            }
        }
        why
    })
}

/// A session on a copy of `root`'s template: the REAL template (`real`,
/// needs `hashicorp/aws`) or the test build, with the variant's values as
/// Coder passes them.
pub async fn session(root: &Path, variant: &Variant, real: bool) -> anyhow::Result<Session> {
    let tf = Terraform::new()?;
    let sources: &[&str] = if real { &[CODER, AWS] } else { &[CODER] };
    let cfg = provider_mirror::write_cli_config(&tf.tmp_dir().join("cli"), sources)?;
    let dir = tf.tmp_dir().join("template");
    if real {
        crate::template::terraform::copy_tree(&root.join("templates"), &dir)?;
    } else {
        let shared = tf.tmp_dir().join("shared");
        std::fs::create_dir_all(&shared)?;
        crate::control::coder::template::prepare(root, &dir, &shared)?;
        strip_aws(&dir)?;
    }
    // Coder passes the values file's variables (coder templates push --variables-file).
    std::fs::write(
        dir.join("harness-variables.auto.tfvars.json"),
        serde_json::to_string_pretty(&variant.values)?,
    )?;
    let cache = provider_mirror::writable_cache(root, "terraform-plugin-cache");
    let plugin_cache = plugin_cache(&cfg, sources, cache).await;
    Ok(Session {
        tf,
        cfg,
        dir,
        plugin_cache,
    })
}

/// Init + the two import plans (start, stop) with no parameter values.
async fn import_plans(s: &Session, what: &str) -> Result<(), Status> {
    if let Err(e) = s
        .run(
            &["init", "-input=false", "-backend=false", "-no-color"],
            &[],
        )
        .await
    {
        return Err(match init_skip_reason(&s.cfg, &e) {
            Some(why) => Status::Skipped(why),
            None => Status::Failed(tf_error(&format!("terraform init of the {what}"), &e)),
        });
    }
    for transition in ["start", "stop"] {
        if let Err(e) = s
            .run(
                &["plan", "-input=false", "-no-color", "-lock=false"],
                &coder_env(transition, None),
            )
            .await
        {
            return Err(Status::Failed(tf_error(
                &format!("import plan ({transition}, no parameter values) of the {what}"),
                &e,
            )));
        }
    }
    Ok(())
}

fn read_state_agent(state: &Value) -> Option<(String, String, String)> {
    let res = state["values"]["root_module"]["resources"].as_array()?;
    let a = res
        .iter()
        .find(|r| r["address"] == "coder_agent.main")?
        .get("values")?;
    Some((
        a["auth"].as_str()?.to_string(),
        a["init_script"].as_str()?.to_string(),
        a["token"].as_str().unwrap_or("").to_string(),
    ))
}

/// The workspace build: apply start, compare, apply stop.
async fn build_runs(root: &Path, variant: &Variant, s: &Session) -> Result<String, String> {
    let params = build_parameters(root, variant).map_err(|e| format!("{e:#}"))?;
    let shared = s.tf.tmp_dir().join("shared");
    let inst = shared.join(crate::control::coder::template::instance_name(
        OWNER, WORKSPACE,
    ));
    let read = |f: &str| std::fs::read_to_string(inst.join(f));
    let apply = [
        "apply",
        "-auto-approve",
        "-input=false",
        "-no-color",
        "-lock=false",
    ];
    s.run(&apply, &coder_env("start", Some(&params)))
        .await
        .map_err(|e| {
            tf_error(
                "workspace build (start, parameters set) of the test build",
                &e,
            )
        })?;
    let running = read("running").map_err(|e| {
        format!(
            "the start build wrote no {}: {e}",
            inst.join("running").display()
        )
    })?;
    if running.trim() != "true" {
        return Err(format!(
            "start build: the instance module got running = {:?}, expected true (data.coder_workspace.me.transition must drive it)",
            running.trim()
        ));
    }
    let user_data =
        read("user-data").map_err(|e| format!("the start build wrote no user-data: {e}"))?;
    let show = s
        .run(&["show", "-json", "-no-color"], &[])
        .await
        .map_err(|e| tf_error("terraform show -json", &e))?;
    let state: Value =
        serde_json::from_str(&show.stdout).map_err(|e| format!("terraform show -json: {e}"))?;
    let (auth, init_script, token) = read_state_agent(&state).ok_or(
        "the state after the start build has no coder_agent.main with auth and init_script",
    )?;
    if init_script != expected_init_script(&auth) {
        return Err(format!(
            "coder_agent.main.init_script is {init_script:?}; expected the provider's expansion of CODER_AGENT_SCRIPT_*: {:?}",
            expected_init_script(&auth)
        ));
    }
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let spec = crate::template::render::module_variables(root).map_err(|e| format!("{e:#}"))?;
    for (k, v) in &params {
        if spec.contains_key(k) {
            vars.insert(k.clone(), v.clone());
        }
    }
    vars.insert("agent_auth".into(), auth.clone());
    vars.insert("init_script".into(), init_script);
    vars.insert(
        "agent_token".into(),
        if auth == "token" {
            token
        } else {
            String::new()
        },
    );
    let rendered = crate::template::render::render_user_data(root, variant, &vars)
        .await
        .map_err(|e| format!("harness render with the build's inputs failed: {e:#}"))?;
    if rendered != user_data {
        let at = rendered
            .bytes()
            .zip(user_data.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(rendered.len().min(user_data.len()));
        return Err(format!(
            "the user-data the template passes to module \"instance\" ({} bytes) differs from `harness render` ({} bytes) at byte {at}; inputs: {}",
            user_data.len(),
            rendered.len(),
            vars.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    s.run(&apply, &coder_env("stop", Some(&params)))
        .await
        .map_err(|e| {
            tf_error(
                "workspace build (stop, parameters set) of the test build",
                &e,
            )
        })?;
    let running = read("running").map_err(|e| format!("after the stop build: {e}"))?;
    if running.trim() != "false" {
        return Err(format!(
            "stop build: the instance module got running = {:?}, expected false",
            running.trim()
        ));
    }
    Ok(format!(
        "import plans (start, stop) and builds (start: running, user-data == harness render; stop: stopped); providers: {}",
        s.cfg.describe(&[CODER])
    ))
}

/// `agent_user` values a user may enter that the workspace build must
/// refuse, each with words its error must contain: `root` (a reserved name:
/// the bootstrap module's validation names the rule) and a name that is no
/// Linux user name (the parameter's regex, checked by the coder provider).
pub const AGENT_USER_REFUSALS: &[(&str, &[&str])] = &[
    ("root", &["reserved", "root"]),
    ("Not A Name", &["Linux user name", "Not A Name"]),
];

/// The most a refused `agent_user` may print. terraform-provider-coder
/// appends the whole validation regex to the parameter's error
/// (`provider/parameter.go`, `fmt.Errorf("%s (value %q does not match %q)",
/// …)`), so a long regex (the 42 KB complement of the reserved names this
/// template once used: a 43,227-byte error for `root`) floods the build log.
pub const MAX_ERROR_BYTES: usize = 1024;

/// A workspace build with each of [`AGENT_USER_REFUSALS`] as `agent_user`:
/// its plan must fail, with a short error naming the rule.
async fn refused_agent_users(root: &Path, variant: &Variant, s: &Session) -> Result<(), String> {
    let params = build_parameters(root, variant).map_err(|e| format!("{e:#}"))?;
    for (value, words) in AGENT_USER_REFUSALS {
        let mut p = params.clone();
        p.insert("agent_user".into(), value.to_string());
        let e = match s
            .run(
                &["plan", "-input=false", "-no-color", "-lock=false"],
                &coder_env("start", Some(&p)),
            )
            .await
        {
            Ok(_) => {
                return Err(format!(
                "a workspace build with agent_user = {value:?} planned; expected it to be refused"
            ))
            }
            Err(e) => e,
        };
        let err = e.stderr.trim();
        if err.len() > MAX_ERROR_BYTES {
            let head: String = err.chars().take(300).collect();
            return Err(format!(
                "agent_user = {value:?}: the build's error is {} bytes, expected at most {MAX_ERROR_BYTES} (a long validation regex is printed whole by the coder provider); it starts: {head}",
                err.len()
            ));
        }
        let missing: Vec<&str> = words.iter().copied().filter(|w| !err.contains(w)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "agent_user = {value:?}: expected the error to name the rule ({missing:?}), seen: {err}"
            ));
        }
    }
    Ok(())
}

/// `coder-import <variant>` on the test build: import plans, the builds,
/// and the refusal of bad `agent_user` values.
pub async fn check_test_build(root: &Path, variant: &Variant) -> Status {
    let s = match session(root, variant, false).await {
        Ok(s) => s,
        Err(e) => return Status::Failed(format!("preparing the template test build: {e:#}")),
    };
    if let Err(st) = import_plans(&s, "template test build").await {
        return st;
    }
    if let Err(e) = build_runs(root, variant, &s).await {
        return Status::Failed(e);
    }
    match refused_agent_users(root, variant, &s).await {
        Ok(()) => Status::Passed,
        Err(e) => Status::Failed(e),
    }
}

/// `coder-import-aws <variant>`: validate (and, without AWS data sources,
/// import-plan) the REAL template with `hashicorp/aws` from a mirror or the
/// registry.
pub async fn check_real_template(root: &Path, variant: &Variant) -> Status {
    let s = match session(root, variant, true).await {
        Ok(s) => s,
        Err(e) => return Status::Failed(format!("copying the template: {e:#}")),
    };
    if let Err(e) = s
        .run(
            &["init", "-input=false", "-backend=false", "-no-color"],
            &[],
        )
        .await
    {
        return match init_skip_reason(&s.cfg, &e) {
            Some(why) => Status::Skipped(why),
            None => Status::Failed(tf_error("terraform init of the real template", &e)),
        };
    }
    if let Err(e) = s.run(&["validate", "-no-color"], &[]).await {
        return Status::Failed(tf_error("terraform validate of the real template", &e));
    }
    let has_aws_data = all_tf_files(&s.dir)
        .unwrap_or_default()
        .iter()
        .any(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains("data \"aws_")));
    if has_aws_data {
        return Status::Passed;
    }
    // No AWS API call: dummy keys and every skip_* (an override file merges
    // into the template's own provider block).
    let over = "provider \"aws\" {\n  access_key                  = \"harness-no-credentials\"\n  secret_key                  = \"harness-no-credentials\"\n  skip_credentials_validation = true\n  skip_requesting_account_id  = true\n  skip_metadata_api_check     = true\n  skip_region_validation      = true\n}\n";
    if let Err(e) = std::fs::write(s.dir.join("harness_override.tf"), over) {
        return Status::Failed(format!("writing the AWS override: {e}"));
    }
    match import_plans(&s, "real template").await {
        Ok(()) => Status::Passed,
        Err(st) => st,
    }
}

/// Key of a cached verdict: everything the check reads (the template files
/// except its `terraform test` files, the variant's values, the providers in
/// the mirrors, the terraform version and this file's own source).
fn cache_key(root: &Path, variant: &Variant, check: &str) -> Option<String> {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(check.as_bytes());
    field(include_str!("coder_import.rs").as_bytes());
    field(variant.name.as_bytes());
    field(serde_json::to_string(&variant.values).ok()?.as_bytes());
    let mut files = walk(&root.join("templates"));
    files.sort();
    for f in files {
        if f.to_string_lossy().ends_with(".tftest.hcl") {
            continue;
        }
        field(f.strip_prefix(root).ok()?.to_string_lossy().as_bytes());
        field(&std::fs::read(&f).ok()?);
    }
    for m in provider_mirror::mirror_dirs() {
        for src in [CODER, AWS] {
            for v in provider_mirror::versions_in(&m, src) {
                let dir = m.join(src).join(&v).join(provider_mirror::platform());
                for e in std::fs::read_dir(&dir).ok()?.flatten() {
                    let md = e.metadata().ok()?;
                    field(e.path().to_string_lossy().as_bytes());
                    field(&md.len().to_le_bytes());
                    let mt = md
                        .modified()
                        .ok()?
                        .duration_since(std::time::UNIX_EPOCH)
                        .ok()?;
                    field(&mt.as_nanos().to_le_bytes());
                }
            }
        }
    }
    let tf = std::process::Command::new(crate::tools::find("terraform").ok()?)
        .arg("version")
        .output()
        .ok()?;
    field(&tf.stdout);
    Some(hex::encode(h.finalize()))
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            if e.file_name() != "tests" && e.file_name() != ".terraform" {
                v.extend(walk(&p));
            }
        } else {
            v.push(p);
        }
    }
    v
}

/// Run `check` unless a passed or failed verdict for the same inputs is
/// cached under `${HARNESS_CACHE:-/var/cache/harness}/coder-import-verdicts/`
/// (else `target/coder-import-verdicts/`); skips are never cached. The key
/// holds paths relative to the repository, so copies of it share verdicts.
async fn cached<F, Fut>(root: &Path, variant: &Variant, check: &str, f: F) -> Status
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Status>,
{
    let dir = provider_mirror::writable_cache(root, "coder-import-verdicts");
    let key = cache_key(root, variant, check);
    if let Some(k) = &key {
        if let Ok(text) = std::fs::read_to_string(dir.join(k)) {
            if let Ok(st) = serde_json::from_str::<CachedStatus>(&text) {
                return st.into();
            }
        }
    }
    let st = f().await;
    if let (Some(k), Some(c)) = (key, CachedStatus::from_status(&st)) {
        let _ = std::fs::create_dir_all(&dir).and_then(|_| {
            std::fs::write(dir.join(k), serde_json::to_string(&c).unwrap_or_default())
        });
    }
    st
}

#[derive(serde::Serialize, serde::Deserialize)]
enum CachedStatus {
    Passed,
    Failed(String),
}

impl CachedStatus {
    fn from_status(s: &Status) -> Option<Self> {
        match s {
            Status::Passed => Some(CachedStatus::Passed),
            Status::Failed(r) => Some(CachedStatus::Failed(r.clone())),
            Status::Skipped(_) | Status::Warned(_) => None,
        }
    }
}

impl From<CachedStatus> for Status {
    fn from(c: CachedStatus) -> Status {
        match c {
            CachedStatus::Passed => Status::Passed,
            CachedStatus::Failed(r) => {
                Status::Failed(format!("{r}\n(cached verdict for identical inputs)"))
            }
        }
    }
}

/// Append the `coder-import` and `coder-import-aws` rows of every variant.
pub async fn run(root: &Path, report: &mut Report) {
    let (variants, _) = crate::lint::load_variants(root);
    if variants.is_empty() {
        report.push(
            "*",
            CHECK,
            Status::Skipped("no variant loaded (see the values row)".into()),
            Target::Static,
            std::time::Duration::ZERO,
        );
    }
    for v in &variants {
        eprintln!(
            "gate: {CHECK} {} (terraform init/plan/apply with the coder provider)…",
            v.name
        );
        let t = Instant::now();
        let st = cached(root, v, CHECK, || check_test_build(root, v)).await;
        report.push(&v.name, CHECK, st, Target::Static, t.elapsed());
        let t = Instant::now();
        let st = cached(root, v, CHECK_AWS, || check_real_template(root, v)).await;
        report.push(&v.name, CHECK_AWS, st, Target::Static, t.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_plugin_cache_is_used_only_for_registry_providers_and_held_exclusively() {
        let mirrored = CliConfig {
            path: PathBuf::from("/nonexistent/cli.tfrc"),
            mirrored: BTreeMap::from([(CODER.to_string(), PathBuf::from("/m"))]),
        };
        // A temporary cache: never the machine's (root's after
        // ci/setup-debian.sh; the tests may run as another user).
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("terraform-plugin-cache");
        // Every provider from a mirror: no shared cache, no lock (the
        // race CI hit cannot happen).
        assert!(plugin_cache(&mirrored, &[CODER], cache.clone())
            .await
            .is_none());
        // hashicorp/aws from the registry: the cache, held until dropped.
        let (dir, _held) = plugin_cache(&mirrored, &[CODER, AWS], cache)
            .await
            .expect("a registry provider uses the plugin cache");
        assert!(dir.ends_with("terraform-plugin-cache"));
        let other = std::fs::File::open(dir.with_extension("lock")).unwrap();
        assert!(
            matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            "expected the plugin cache lock to be held by the session"
        );
    }

    #[test]
    fn parameter_env_is_the_providers_sha256_name() {
        // sha256("flake_uri"), as provider.ParameterEnvironmentVariable computes it.
        let want = format!(
            "CODER_PARAMETER_{}",
            hex::encode(Sha256::digest(b"flake_uri"))
        );
        assert_eq!(parameter_env("flake_uri"), want);
        assert_eq!(
            parameter_env("flake_uri").len(),
            "CODER_PARAMETER_".len() + 64
        );
    }

    #[test]
    fn import_env_has_no_parameters_and_build_env_has_all() {
        let imp = coder_env("start", None);
        assert!(imp.iter().all(|(k, _)| !k.starts_with("CODER_PARAMETER_")));
        assert!(imp.contains(&("CODER_WORKSPACE_BUILD_ID".into(), String::new())));
        let p = BTreeMap::from([("flake_uri".to_string(), "github:a/b#c".to_string())]);
        let b = coder_env("stop", Some(&p));
        assert!(b.contains(&(parameter_env("flake_uri"), "github:a/b#c".into())));
        assert!(b.contains(&("CODER_WORKSPACE_TRANSITION".into(), "stop".into())));
    }

    #[test]
    fn summarize_names_the_address_and_the_providers_error() {
        let stderr = "\nPlanning failed.\n\n╷\n│ Error: Invalid parameter default value according to 'validation' block\n│ \n│   with data.coder_parameter.flake_uri,\n│   on parameters.tf line 8, in data \"coder_parameter\" \"flake_uri\":\n│    8:   default      = var.default_flake_uri\n│ \n│ Enter a flake reference (value \"\" does not match \"^x$\")\n╵\n";
        let s = summarize(stderr);
        assert_eq!(
            s,
            "data.coder_parameter.flake_uri: Invalid parameter default value according to 'validation' block: Enter a flake reference (value \"\" does not match \"^x$\")"
        );
    }

    #[test]
    fn strip_aws_removes_the_provider_and_stubs_data_sources() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("main.tf"),
            "terraform {\n  required_providers {\n    coder = {\n      source = \"coder/coder\"\n    }\n    aws = {\n      source  = \"hashicorp/aws\"\n      version = \">= 5.0\"\n    }\n  }\n}\n\nprovider \"aws\" {\n  region = \"us-east-1\"\n}\n\ndata \"aws_ami\" \"nixos\" {\n  for_each    = toset([\"a\"])\n  most_recent = true\n}\n\nlocals {\n  ami = data.aws_ami.nixos[\"a\"].id\n}\n",
        )
        .unwrap();
        strip_aws(d.path()).unwrap();
        let main = std::fs::read_to_string(d.path().join("main.tf")).unwrap();
        assert!(!main.contains("aws ="), "{main}");
        assert!(!main.contains("provider \"aws\""), "{main}");
        assert!(main.contains("coder = {"), "{main}");
        assert!(
            main.contains("local.harness_aws_stub_aws_ami_nixos[\"a\"].id"),
            "{main}"
        );
        let stub = std::fs::read_to_string(d.path().join(AWS_STUB_FILE)).unwrap();
        assert!(stub.contains("for k, v in toset([\"a\"])"), "{stub}");
        // An AWS resource in the root module cannot be stubbed: named error.
        std::fs::write(
            d.path().join("extra.tf"),
            "resource \"aws_eip\" \"x\" {\n  domain = \"vpc\"\n}\n",
        )
        .unwrap();
        let e = strip_aws(d.path()).unwrap_err().to_string();
        assert!(e.contains("resource \"aws_eip\" in extra.tf"), "{e}");
    }
}
