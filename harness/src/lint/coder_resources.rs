//! Lint: the Coder resources of `templates/*.tf` (hcl-rs), for the rules
//! Terraform cannot check without the Coder provider:
//! - `coder_agent_instance` ties `coder_agent.main` to
//!   `module.instance.instance_id` (instance-identity auth);
//! - every `coder_metadata` references exactly one output of
//!   `module.instance`, and it is its `resource_id`: Coder attaches metadata
//!   by walking the dependency graph to the closest non-coder resource
//!   (coder/coder `provisioner/terraform/resources.go`), not by
//!   `resource_id`, so a block that mentions two of the module's resources
//!   lands on whichever is closest. One block must be on the instance, one
//!   on the home volume;
//! - `coder_agent.main` has a `connection_timeout` that fits a first boot
//!   (at least [`MIN_CONNECTION_TIMEOUT`] s) and a `troubleshooting_url`
//!   pointing at the README's Debugging section;
//! - a `coder_parameter` that reaches the instance only through the
//!   user-data (`agent_user`) is `mutable = false` while the instance module
//!   ignores `user_data` changes (`lifecycle.ignore_changes`): otherwise a
//!   change is accepted by Coder and never reaches EC2.

use std::path::Path;

use hcl::{Block, Body, Expression};

use super::Finding;

/// Seconds: the bootstrap switch on a first boot takes minutes (agent.tf).
pub const MIN_CONNECTION_TIMEOUT: u64 = 600;

const CHECK: &str = "coder-resources";

fn parse_dir(dir: &Path) -> anyhow::Result<Vec<(std::path::PathBuf, Body)>> {
    let mut out = vec![];
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    for f in files {
        let body: Body = hcl::parse(&std::fs::read_to_string(&f)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        out.push((f, body));
    }
    Ok(out)
}

fn labels(b: &Block) -> Vec<&str> {
    b.labels().iter().map(|l| l.as_str()).collect()
}

fn attr<'a>(b: &'a Block, key: &str) -> Option<&'a Expression> {
    b.body()
        .attributes()
        .find(|a| a.key() == key)
        .map(|a| a.expr())
}

fn src(e: &Expression) -> String {
    hcl::format::to_string(e).unwrap_or_default()
}

/// `module.instance.<output>` names referenced anywhere in `body`.
fn instance_outputs(body: &Body) -> Vec<String> {
    let text = hcl::format::to_string(body).unwrap_or_default();
    let mut out: Vec<String> = text
        .match_indices("module.instance.")
        .map(|(i, m)| {
            text[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

pub fn check(root: &Path) -> Vec<Finding> {
    let dir = root.join("templates");
    let files = match parse_dir(&dir) {
        Ok(f) => f,
        Err(e) => return vec![Finding::new(CHECK, &dir, None, format!("{e:#}"))],
    };
    let mut out = vec![];
    let blocks = || {
        files
            .iter()
            .flat_map(|(f, b)| b.blocks().map(move |x| (f, x)))
    };

    // coder_agent_instance
    let ai = blocks().find(|(_, b)| {
        b.identifier() == "resource" && labels(b).first() == Some(&"coder_agent_instance")
    });
    match ai {
        None => out.push(Finding::new(
            CHECK,
            &dir,
            Some("coder_agent_instance"),
            "no coder_agent_instance: add one with agent_id = coder_agent.main.id and instance_id = module.instance.instance_id",
        )),
        Some((f, b)) => {
            let a = attr(b, "agent_id").map(src).unwrap_or_default();
            let i = attr(b, "instance_id").map(src).unwrap_or_default();
            if a.trim() != "coder_agent.main.id" || i.trim() != "module.instance.instance_id" {
                out.push(Finding::new(
                    CHECK,
                    f,
                    Some("coder_agent_instance"),
                    format!("expected agent_id = coder_agent.main.id and instance_id = module.instance.instance_id, found {a:?} and {i:?}"),
                ));
            }
        }
    }

    // coder_metadata
    let mut on = vec![];
    for (f, b) in blocks().filter(|(_, b)| {
        b.identifier() == "resource" && labels(b).first() == Some(&"coder_metadata")
    }) {
        let name = labels(b).get(1).copied().unwrap_or("?").to_string();
        let key = format!("coder_metadata.{name}");
        let rid = attr(b, "resource_id").map(src).unwrap_or_default();
        let outs = instance_outputs(b.body());
        let rid_out = rid
            .trim()
            .strip_prefix("module.instance.")
            .map(str::to_string);
        match rid_out {
            Some(o) if outs == [o.clone()] => on.push(o),
            _ => out.push(Finding::new(
                CHECK,
                f,
                Some(&key),
                format!(
                    "Coder attaches metadata by dependency, not resource_id: resource_id must be one module.instance output and the block must reference no other (resource_id = {:?}, module.instance outputs referenced: {outs:?})",
                    rid.trim()
                ),
            )),
        }
    }
    for want in ["instance_id", "home_volume_id"] {
        if !on.iter().any(|o| o == want) {
            out.push(Finding::new(
                CHECK,
                &dir,
                Some("coder_metadata"),
                format!("no coder_metadata attached to module.instance.{want}"),
            ));
        }
    }

    // coder_agent.main
    if let Some((f, b)) =
        blocks().find(|(_, b)| b.identifier() == "resource" && labels(b) == ["coder_agent", "main"])
    {
        let t = attr(b, "connection_timeout").map(src);
        let n = t.as_deref().and_then(|t| t.trim().parse::<u64>().ok());
        if n.is_none_or(|n| n < MIN_CONNECTION_TIMEOUT) {
            out.push(Finding::new(
                CHECK,
                f,
                Some("coder_agent.main.connection_timeout"),
                format!(
                    "expected a connection_timeout of at least {MIN_CONNECTION_TIMEOUT} s (a first boot switches NixOS before the agent starts; the provider default is 120 s), found {}",
                    t.unwrap_or_else(|| "none".into())
                ),
            ));
        }
        let url = attr(b, "troubleshooting_url").map(src).unwrap_or_default();
        // The README must have the section; a bare copy of templates/ (no
        // README, as in some tests) is only checked for the fragment.
        let anchor_ok = match std::fs::read_to_string(root.join("README.md")) {
            Ok(readme) => readme.lines().any(|l| l.trim() == "## Debugging"),
            Err(_) => true,
        };
        if !url.contains("#debugging") || !anchor_ok {
            out.push(Finding::new(
                CHECK,
                f,
                Some("coder_agent.main.troubleshooting_url"),
                format!("expected a troubleshooting_url ending in #debugging, the README's `## Debugging` section (README has it: {anchor_ok}), found {url:?}"),
            ));
        }
    } else {
        out.push(Finding::new(
            CHECK,
            &dir,
            Some("coder_agent.main"),
            "no coder_agent.main",
        ));
    }

    // Parameters that reach the instance only through user_data.
    let ignore = regex::Regex::new(r"ignore_changes\s*=\s*\[[^\]]*\buser_data\b").unwrap();
    let ignores_user_data = parse_dir(&dir.join("modules/ec2-instance"))
        .map(|fs| {
            fs.iter()
                .any(|(_, b)| ignore.is_match(&hcl::format::to_string(b).unwrap_or_default()))
        })
        .unwrap_or(false);
    if ignores_user_data {
        for p in user_data_only_parameters(root, &files) {
            let mutable = blocks()
                .find(|(_, b)| {
                    b.identifier() == "data" && labels(b) == ["coder_parameter", p.as_str()]
                })
                .map(|(f, b)| (f, attr(b, "mutable").map(src)));
            if let Some((f, m)) = mutable {
                if m.as_deref().map(str::trim) != Some("false") {
                    out.push(Finding::new(
                        CHECK,
                        f,
                        Some(&format!("coder_parameter.{p}.mutable")),
                        format!("{p} reaches the instance only through user_data, which the ec2-instance module ignores after creation: it must be mutable = false (found {})", m.unwrap_or_else(|| "unset".into())),
                    ));
                }
            }
        }
    }
    out
}

/// Coder imports a template without parameter values, and
/// terraform-provider-coder then validates each parameter's default (empty
/// when unset) against its `validation.regex` (`provider/parameter.go`:
/// the value is the default, then `Validation.Valid`): every variant's
/// defaults must match, or `coder templates push` fails.
pub fn defaults_check(root: &Path, variants: &[crate::template::variant::Variant]) -> Vec<Finding> {
    let dir = root.join("templates");
    let files = match parse_dir(&dir) {
        Ok(f) => f,
        Err(e) => return vec![Finding::new(CHECK, &dir, None, format!("{e:#}"))],
    };
    let mut out = vec![];
    for v in variants {
        let defaults = match crate::template::render::parameter_defaults(root, v) {
            Ok(d) => d,
            Err(e) => {
                out.push(Finding::new(CHECK, &dir, Some(&v.name), format!("{e:#}")));
                continue;
            }
        };
        for (f, body) in &files {
            for b in body.blocks().filter(|b| {
                b.identifier() == "data" && labels(b).first() == Some(&"coder_parameter")
            }) {
                let name = labels(b).get(1).copied().unwrap_or("?");
                let Some(re) = b
                    .body()
                    .blocks()
                    .filter(|x| x.identifier() == "validation")
                    .find_map(|x| attr(x, "regex").and_then(super::agent_user::regex_value))
                else {
                    continue;
                };
                let default = match defaults.get(name) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                match regex::Regex::new(&re) {
                    Err(e) => out.push(Finding::new(CHECK, f, Some(&format!("coder_parameter.{name}")), format!("regex does not compile: {e}"))),
                    Ok(r) if !r.is_match(&default) => out.push(Finding::new(
                        CHECK,
                        f,
                        Some(&format!("coder_parameter.{name}")),
                        format!("variant {}: the default {default:?} does not match the validation regex, so Coder's template import fails (terraform-provider-coder validates the default when no value is given)", v.name),
                    )),
                    Ok(_) => {}
                }
            }
        }
    }
    out
}

/// Parameters used by `module "bootstrap"` inputs that flow into no
/// bootstrap output but `user_data`.
fn user_data_only_parameters(root: &Path, files: &[(std::path::PathBuf, Body)]) -> Vec<String> {
    let Ok(boot) = parse_dir(&root.join("templates/modules/bootstrap")) else {
        return vec![];
    };
    // Variables referenced by the outputs other than user_data.
    let mut elsewhere = String::new();
    for (_, b) in &boot {
        for o in b.blocks().filter(|o| o.identifier() == "output") {
            if labels(o).first() != Some(&"user_data") {
                elsewhere.push_str(&hcl::format::to_string(o.body()).unwrap_or_default());
            }
        }
    }
    let mut out = vec![];
    for (_, body) in files {
        for m in body
            .blocks()
            .filter(|b| b.identifier() == "module" && labels(b) == ["bootstrap"])
        {
            for a in m.body().attributes() {
                let e = src(a.expr());
                let Some(rest) = e.split("data.coder_parameter.").nth(1) else {
                    continue;
                };
                let p: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !elsewhere.contains(&format!("var.{}", a.key())) {
                    out.push(p);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    /// A copy of the repo's templates/ and README with `edit` applied to one file.
    fn mutated(file: &str, from: &str, to: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        crate::template::terraform::copy_tree(
            &repo().join("templates"),
            &t.path().join("templates"),
        )
        .unwrap();
        std::fs::copy(repo().join("README.md"), t.path().join("README.md")).unwrap();
        let p = t.path().join(file);
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains(from), "{file} lacks {from:?}");
        std::fs::write(&p, s.replacen(from, to, 1)).unwrap();
        t
    }

    fn keys(root: &Path) -> Vec<String> {
        check(root)
            .into_iter()
            .map(|f| f.key.unwrap_or_default())
            .collect()
    }

    #[test]
    fn the_repository_passes() {
        let f = check(&repo());
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn parameter_defaults_must_pass_their_own_regex() {
        let variants = crate::lint::load_variants(&repo()).0;
        let f = defaults_check(&repo(), &variants);
        assert!(f.is_empty(), "{f:?}");
        // item 1: the old flake_uri regex, which the empty default fails.
        let t = mutated(
            "templates/parameters.tf",
            "regex = \"^$|^[A-Za-z]",
            "regex = \"^[A-Za-z]",
        );
        std::fs::create_dir_all(t.path().join("values")).unwrap();
        crate::template::terraform::copy_tree(&repo().join("values"), &t.path().join("values"))
            .unwrap();
        let variants = crate::lint::load_variants(t.path()).0;
        let f = defaults_check(t.path(), &variants);
        assert_eq!(f.len(), variants.len(), "{f:?}");
        assert!(
            f[0].key.as_deref() == Some("coder_parameter.flake_uri")
                && f[0].message.contains("\"\""),
            "{f:?}"
        );
    }

    /// Item 8: the e2e tier's test build (local instance module, which
    /// follows user_data changes) offers the same immutable agent_user, so
    /// neither tier can change the user of a running workspace.
    #[test]
    fn the_test_build_keeps_agent_user_immutable() {
        let d = tempfile::tempdir().unwrap();
        let out = crate::control::coder::template::prepare(
            &repo(),
            &d.path().join("tpl"),
            Path::new("/tmp/harness-shared"),
        )
        .unwrap();
        let body: Body =
            hcl::parse(&std::fs::read_to_string(out.join("parameters.tf")).unwrap()).unwrap();
        let p = body
            .blocks()
            .find(|b| b.identifier() == "data" && labels(b) == ["coder_parameter", "agent_user"])
            .unwrap();
        assert_eq!(
            attr(p, "mutable").map(src).as_deref().map(str::trim),
            Some("false")
        );
        // …and the local module has the outputs the metadata attaches to.
        let local = std::fs::read_to_string(out.join("modules/local-instance/main.tf")).unwrap();
        for o in ["instance_id", "home_volume_id"] {
            assert!(local.contains(&format!("output \"{o}\"")), "{o}");
        }
    }

    #[test]
    fn each_defect_is_caught() {
        // item 13: no coder_agent_instance
        let t = mutated(
            "templates/agent.tf",
            "resource \"coder_agent_instance\" \"main\"",
            "resource \"null_thing\" \"main\"",
        );
        assert!(keys(t.path()).contains(&"coder_agent_instance".to_string()));
        // item 9: the old single block on coder_agent.main mentioning the volume
        let t = mutated(
            "templates/main.tf",
            "resource_id = module.instance.instance_id",
            "resource_id = coder_agent.main.id",
        );
        let k = keys(t.path());
        assert!(k.contains(&"coder_metadata.instance".to_string()), "{k:?}");
        let t = mutated(
            "templates/main.tf",
            "value = data.coder_parameter.region.value",
            "value = module.instance.home_volume_id",
        );
        assert!(keys(t.path()).contains(&"coder_metadata.instance".to_string()));
        // item 10: the provider default, and no troubleshooting link
        let t = mutated(
            "templates/agent.tf",
            "connection_timeout = 1800",
            "connection_timeout = 120",
        );
        assert!(keys(t.path()).contains(&"coder_agent.main.connection_timeout".to_string()));
        let t = mutated("templates/agent.tf", "#debugging", "#setup");
        assert!(keys(t.path()).contains(&"coder_agent.main.troubleshooting_url".to_string()));
        // item 8: agent_user mutable while user_data changes are ignored
        let t = mutated(
            "templates/parameters.tf",
            "mutable = false",
            "mutable = true",
        );
        assert!(keys(t.path()).contains(&"coder_parameter.agent_user.mutable".to_string()));
    }
}
