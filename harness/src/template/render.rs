//! Rendering a variant's user-data with real Terraform from the
//! provider-free bootstrap module (`templates/modules/bootstrap`).
//!
//! A throwaway root module (JSON syntax, generated with serde) calls the
//! bootstrap module by absolute path; every value reaches Terraform through
//! a `*.auto.tfvars.json` file, never through string interpolation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hcl::{Body, Expression};
use serde_json::{json, Value};

use crate::lint::variables::{self, is_expression, VarSpec};
use crate::template::terraform::Terraform;
use crate::template::variant::Variant;

/// Placeholder used for the agent token when none is passed.
pub const TOKEN_PLACEHOLDER: &str = "HARNESS_PLACEHOLDER_AGENT_TOKEN";
/// Placeholder flake used when neither `--var flake_uri` nor a non-empty
/// default (`default_flake_uri`) provides one (Coder would ask the user).
pub const FLAKE_URI_PLACEHOLDER: &str = "github:example/placeholder#workspace";
/// Placeholder used for the Coder agent init script when none is passed.
pub const INIT_SCRIPT_PLACEHOLDER: &str =
    "#!/bin/sh\necho HARNESS_PLACEHOLDER_INIT_SCRIPT >&2\nexit 1\n";

/// The bootstrap module of the repository at `root`.
pub fn bootstrap_dir(root: &Path) -> PathBuf {
    root.join("templates/modules/bootstrap")
}

/// Every output of the bootstrap module, rendered by real Terraform.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The inputs passed to the module (after defaults and overrides).
    pub inputs: BTreeMap<String, Value>,
    /// `terraform output -json` values, by output name.
    pub outputs: BTreeMap<String, Value>,
}

impl Rendered {
    /// A string output (`user_data`, `startup_script`, `bootstrap_nix`).
    pub fn string(&self, name: &str) -> anyhow::Result<&str> {
        self.outputs
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the bootstrap module has no string output `{name}` (outputs: {})",
                    self.outputs.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })
    }
}

/// The user-data real Terraform renders for `variant` from the bootstrap
/// module under `root/templates`, with `vars` overriding parameter values
/// (`flake_uri`, `agent_user`, `agent_auth`, `agent_token`, `init_script`, …).
pub async fn render_user_data(
    root: &Path,
    variant: &Variant,
    vars: &BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let r = render_all(root, variant, vars).await?;
    Ok(r.string("user_data")?.to_string())
}

/// Render every output of the bootstrap module for `variant`.
pub async fn render_all(
    root: &Path,
    variant: &Variant,
    vars: &BTreeMap<String, String>,
) -> anyhow::Result<Rendered> {
    let module = bootstrap_dir(root);
    let inputs = module_inputs(root, variant, vars)?;
    let outputs = module_outputs(&module)?;
    let tf = Terraform::new()?;
    let w = tf.work_dir();
    let module_abs = std::fs::canonicalize(&module)?;
    let mut root_module = json!({
        "variable": {},
        "module": {"bootstrap": {"source": module_abs.to_string_lossy()}},
        "output": {},
    });
    for name in inputs.keys() {
        root_module["variable"][name] = json!({});
        root_module["module"]["bootstrap"][name] = json!(format!("${{var.{name}}}"));
    }
    for name in &outputs {
        root_module["output"][name] =
            json!({"value": format!("${{module.bootstrap.{name}}}"), "sensitive": true});
    }
    if inputs.is_empty() {
        root_module.as_object_mut().unwrap().remove("variable");
    }
    std::fs::write(
        w.join("main.tf.json"),
        serde_json::to_string_pretty(&root_module)?,
    )?;
    std::fs::write(
        w.join("harness.auto.tfvars.json"),
        serde_json::to_string_pretty(&inputs)?,
    )?;
    tf.init(&w).await?;
    tf.apply(&w).await?;
    let out = tf.output_json(&w).await?;
    let outputs = out
        .as_object()
        .map(|o| o.clone().into_iter().collect())
        .unwrap_or_default();
    Ok(Rendered { inputs, outputs })
}

/// The bootstrap module's input variables.
pub fn module_variables(root: &Path) -> anyhow::Result<BTreeMap<String, VarSpec>> {
    let dir = bootstrap_dir(root);
    anyhow::ensure!(
        dir.is_dir(),
        "{}: the bootstrap module is missing",
        dir.display()
    );
    variables::parse_module(&dir)
}

/// Names of the module's `output` blocks.
fn module_outputs(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = vec![];
    for f in tf_files(dir)? {
        let body: Body = hcl::parse(&std::fs::read_to_string(&f)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        for b in body.blocks().filter(|b| b.identifier() == "output") {
            if let Some(l) = b.labels().first() {
                names.push(l.as_str().to_string());
            }
        }
    }
    Ok(names)
}

fn tf_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    v.sort();
    Ok(v)
}

/// `coder_parameter` defaults in `templates/*.tf`, by parameter (block) name
/// and by its `name` attribute.  `var.x` defaults resolve against the
/// variant's values, then `variables.tf` defaults.
pub fn parameter_defaults(
    root: &Path,
    variant: &Variant,
) -> anyhow::Result<BTreeMap<String, Value>> {
    let dir = root.join("templates");
    let template_vars = variables::parse_module(&dir).unwrap_or_default();
    let mut out = BTreeMap::new();
    for f in tf_files(&dir)? {
        let body: Body = hcl::parse(&std::fs::read_to_string(&f)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        for b in body.blocks().filter(|b| {
            b.identifier() == "data"
                && b.labels().first().map(|l| l.as_str()) == Some("coder_parameter")
        }) {
            let Some(label) = b.labels().get(1).map(|l| l.as_str().to_string()) else {
                continue;
            };
            let attr = |k: &str| {
                b.body()
                    .attributes()
                    .find(|a| a.key() == k)
                    .map(|a| a.expr().clone())
            };
            let Some(def) = attr("default") else { continue };
            let value = match &def {
                Expression::Traversal(_) | Expression::Variable(_) => {
                    let src = hcl::format::to_string(&def).unwrap_or_default();
                    match src.trim().strip_prefix("var.") {
                        Some(v) => variant
                            .values
                            .get(v)
                            .cloned()
                            .or_else(|| template_vars.get(v).and_then(|s| s.default.clone())),
                        None => None,
                    }
                }
                e => Some(variables::to_json(e)),
            };
            let Some(value) = value.filter(|v| is_expression(v).is_none()) else {
                continue;
            };
            if let Some(Expression::String(n)) = attr("name") {
                out.insert(n, value.clone());
            }
            out.insert(label, value);
        }
    }
    Ok(out)
}

/// The module inputs: `vars` overrides, else the variant's values, else the
/// parameter defaults, else the placeholders; unknown `vars` are an error.
pub fn module_inputs(
    root: &Path,
    variant: &Variant,
    vars: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, Value>> {
    let spec = module_variables(root)?;
    let unknown: Vec<_> = vars.keys().filter(|k| !spec.contains_key(*k)).collect();
    if !unknown.is_empty() {
        anyhow::bail!(
            "unknown --var {}: the bootstrap module ({}) takes: {}",
            unknown
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            bootstrap_dir(root).display(),
            spec.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let params = parameter_defaults(root, variant)?;
    let template_vars = variables::parse_module(&root.join("templates")).unwrap_or_default();
    let mut inputs = BTreeMap::new();
    for name in spec.keys() {
        let v = if let Some(v) = vars.get(name) {
            Some(Value::String(v.clone()))
        } else if let Some(v) = variant.values.get(name) {
            Some(v.clone())
        } else if let Some(v) = params.get(name) {
            Some(v.clone())
        } else if let Some(v) = variant.values.get(&format!("default_{name}")) {
            // Convention: template variable `default_X` is parameter X's default.
            Some(v.clone())
        } else if let Some(v) = template_vars
            .get(&format!("default_{name}"))
            .and_then(|s| s.default.clone())
        {
            Some(v)
        } else if name == "agent_token" {
            Some(json!(TOKEN_PLACEHOLDER))
        } else if name == "init_script" {
            Some(json!(INIT_SCRIPT_PLACEHOLDER))
        } else {
            None
        };
        let v = match v {
            Some(Value::String(s)) if s.is_empty() && name == "flake_uri" => {
                Some(json!(FLAKE_URI_PLACEHOLDER))
            }
            None if name == "flake_uri" => Some(json!(FLAKE_URI_PLACEHOLDER)),
            v => v,
        };
        if let Some(v) = v {
            inputs.insert(name.clone(), v);
        }
    }
    Ok(inputs)
}

/// Every single-quoted base64 word in a rendered user-data, decoded, and
/// gunzipped when it is gzip (the module's `base64gzip` payloads): the
/// values the script writes to disk, for tests and inspection.
pub fn payloads(user_data: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    use std::io::Read as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    user_data
        .split('\'')
        .filter(|w| w.len() >= 4)
        .filter_map(|w| b64.decode(w).ok())
        .map(|raw| {
            if raw.starts_with(&[0x1f, 0x8b]) {
                let mut out = vec![];
                match flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out) {
                    Ok(_) => out,
                    Err(_) => raw,
                }
            } else {
                raw
            }
        })
        .collect()
}

/// Parse `name=value` (from `--var`).
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected name=value, got `{s}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, Variant) {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("templates");
        std::fs::create_dir_all(t.join("modules/bootstrap")).unwrap();
        std::fs::write(
            t.join("variables.tf"),
            "variable \"default_agent_user\" {\n  default = \"coder\"\n}\nvariable \"default_flake_uri\" {\n  default = \"\"\n}\n",
        )
        .unwrap();
        std::fs::write(
            t.join("parameters.tf"),
            "data \"coder_parameter\" \"agent_user\" {\n  name    = \"agent_user\"\n  default = var.default_agent_user\n}\ndata \"coder_parameter\" \"disk\" {\n  name    = \"disk\"\n  default = 40\n}\n",
        )
        .unwrap();
        std::fs::write(
            t.join("modules/bootstrap/main.tf"),
            [
                "agent_user",
                "flake_uri",
                "agent_token",
                "init_script",
                "disk",
                "is_spot",
            ]
            .map(|v| format!("variable \"{v}\" {{}}\n"))
            .concat(),
        )
        .unwrap();
        let v = Variant {
            name: "v".into(),
            arch: crate::template::variant::Arch::X86_64,
            is_spot: true,
            values: [
                ("is_spot".to_string(), json!(true)),
                ("default_agent_user".to_string(), json!("ops")),
            ]
            .into_iter()
            .collect(),
            source: d.path().join("values/v.yml"),
        };
        (d, v)
    }

    #[test]
    fn inputs_follow_the_documented_precedence() {
        let (d, v) = fixture();
        let i = module_inputs(d.path(), &v, &BTreeMap::new()).unwrap();
        assert_eq!(
            i["agent_user"],
            json!("ops"),
            "parameter default var.x → values"
        );
        assert_eq!(i["disk"], json!(40), "literal parameter default");
        assert_eq!(i["is_spot"], json!(true), "values key of the same name");
        assert_eq!(
            i["flake_uri"],
            json!(FLAKE_URI_PLACEHOLDER),
            "empty → placeholder"
        );
        assert_eq!(i["agent_token"], json!(TOKEN_PLACEHOLDER));
        assert_eq!(i["init_script"], json!(INIT_SCRIPT_PLACEHOLDER));
        let vars = BTreeMap::from([("agent_user".to_string(), "alice".to_string())]);
        assert_eq!(
            module_inputs(d.path(), &v, &vars).unwrap()["agent_user"],
            json!("alice")
        );
        let vars = BTreeMap::from([("nope".to_string(), "x".to_string())]);
        let e = module_inputs(d.path(), &v, &vars).unwrap_err().to_string();
        assert!(
            e.contains("`nope`") && e.contains("agent_user, disk"),
            "{e}"
        );
    }

    #[test]
    fn payloads_are_decoded_and_gunzipped() {
        use base64::Engine as _;
        use std::io::Write as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(b"CODER_AGENT_TOKEN=t\n").unwrap();
        let ud = format!(
            "#!/bin/sh\nlog() {{ printf 'x: %s' \"$*\"; }}\nunpack '{}' a\nu=$(printf '%s' '{}' | base64 -d)\n",
            b64.encode(gz.finish().unwrap()),
            b64.encode("alice")
        );
        let p: Vec<String> = payloads(&ud)
            .into_iter()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        assert!(p.contains(&"CODER_AGENT_TOKEN=t\n".to_string()), "{p:?}");
        assert!(p.contains(&"alice".to_string()), "{p:?}");
    }

    #[test]
    fn parse_var_needs_name_and_equals() {
        assert_eq!(parse_var("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_var("a=").unwrap(), ("a".into(), "".into()));
        assert!(parse_var("a").is_err());
        assert!(parse_var("=b").is_err());
    }
}
