//! `harness e2e`: the full e2e tier (NixOS image × real Coder × QEMU).
//! `harness e2e --plan [--json]` prints, without running anything, what
//! the run would do: the image each architecture needs (flake attribute and
//! exact `nix build` command, or the prebuilt image from
//! `HARNESS_IMAGE_<ARCH>`), the containers (image, network mode, env), the
//! template test build per variant, and each scenario × variant workspace
//! with its parameters. Without `--plan` it runs the scenarios: the same
//! runner (`crate::e2e`) as `cargo test --features e2e` and `harness gate`,
//! with cucumber's own options after `--` (e.g. `harness e2e -- --name home`).

use std::path::Path;

use serde_json::{json, Value};

use crate::control::coder::container::{self, ContainerSpec};
use crate::image::nixos;
use crate::template::variant::{Arch, Variant};

/// Arguments of `harness e2e`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print what the e2e run would build, start and create; run nothing.
    #[arg(long)]
    pub plan: bool,
    /// With --plan: print the plan as JSON.
    #[arg(long, requires = "plan")]
    pub json: bool,
    /// cucumber's options for the run (`--name REGEX`, `--tags EXPR`, `-v`).
    #[arg(last = true)]
    pub cucumber: Vec<String>,
}

/// One `@nixos` scenario outline of `features/*.feature`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedScenario {
    pub feature: String,
    pub name: String,
    /// `good`, `broken` or `broken-build` (from "with the <x> test flake").
    pub flake: String,
    /// From `and agent user "<x>"`, if the scenario sets one.
    pub agent_user: Option<String>,
    /// The outline expands over `<spot-variant>` (spot variants only).
    pub spot_only: bool,
    /// Tagged `@ec2`: runs on the ec2 tier only (an instance type change).
    pub ec2_only: bool,
}

/// Scan feature text for `@nixos` scenario outlines (feature- or
/// scenario-level tag) and what their `Given` step asks for.
pub fn nixos_scenarios(file: &str, text: &str) -> Vec<PlannedScenario> {
    let mut out = Vec::new();
    let mut feature_nixos = false;
    let mut pending_tags: Vec<String> = Vec::new();
    let mut current: Option<(PlannedScenario, bool)> = None;
    let flake_re = regex::Regex::new(r#"with the ([a-z-]+) test flake"#).unwrap();
    let user_re = regex::Regex::new(r#"agent user "([^"]+)""#).unwrap();
    let flush = |cur: &mut Option<(PlannedScenario, bool)>, out: &mut Vec<PlannedScenario>| {
        if let Some((s, nixos)) = cur.take() {
            if nixos {
                out.push(s);
            }
        }
    };
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('@') {
            pending_tags.extend(t.split_whitespace().map(String::from));
        } else if t.starts_with("Feature:") {
            feature_nixos = pending_tags.iter().any(|x| x == "@nixos");
            pending_tags.clear();
        } else if let Some(name) = t
            .strip_prefix("Scenario Outline:")
            .or_else(|| t.strip_prefix("Scenario:"))
        {
            flush(&mut current, &mut out);
            let nixos = feature_nixos || pending_tags.iter().any(|x| x == "@nixos");
            let ec2_only = pending_tags.iter().any(|x| x == "@ec2");
            pending_tags.clear();
            let name = name.trim();
            let spot_only = name.contains("<spot-variant>");
            let name = name
                .rsplit_once(" (<")
                .map(|(n, _)| n)
                .unwrap_or(name)
                .to_string();
            current = Some((
                PlannedScenario {
                    feature: file.to_string(),
                    name,
                    flake: "good".into(),
                    agent_user: None,
                    spot_only,
                    ec2_only,
                },
                nixos,
            ));
        } else if let Some((s, _)) = current.as_mut() {
            if let Some(c) = flake_re.captures(t) {
                s.flake = c[1].to_string();
            }
            if let Some(c) = user_re.captures(t) {
                s.agent_user = Some(c[1].to_string());
            }
        } else if !t.is_empty() && !t.starts_with('#') {
            pending_tags.clear();
        }
    }
    flush(&mut current, &mut out);
    out
}

fn container_json(c: &ContainerSpec) -> Value {
    json!({
        "image": c.reference(),
        "network": c.network,
        "env": c.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "cmd": c.cmd,
        "bind_mounts": c.mounts,
    })
}

/// The whole plan as JSON (the text form is printed from it).
pub fn plan(root: &Path, variants: &[Variant], scenarios: &[PlannedScenario]) -> Value {
    let out_dir = crate::repo::target_dir(root).join("e2e");
    let shared = out_dir.join("user-data");
    let flake = root.join("nixos-vm").display().to_string();
    let mut arches: Vec<Arch> = variants.iter().map(|v| v.arch).collect();
    arches.sort();
    arches.dedup();
    let extra = nixos::extra_args_from_env();
    let images: Vec<Value> = arches
        .iter()
        .map(|&a| {
            let prebuilt = std::env::var_os(nixos::env_var(a));
            json!({
                "arch": a.as_str(),
                "attribute": format!("{flake}#{}", nixos::attribute(a)),
                "command": nixos::command_line(&flake, &nixos::attribute(a), &extra),
                "prebuilt": prebuilt.map(|p| p.to_string_lossy().to_string()),
                "prebuilt_env": nixos::env_var(a),
            })
        })
        .collect();
    // Ports are picked at run time; the plan shows placeholders.
    let containers = [
        container::postgres_spec(0),
        container::coder_spec(0, 0, Some(&shared), &container::AccessUrl::QemuGuest, None),
    ];
    let templates: Vec<Value> = variants
        .iter()
        .map(|v| {
            json!({
                "variant": v.name,
                "arch": v.arch.as_str(),
                "market": v.market(),
                "source": root.join("templates"),
                "copy": out_dir.join("templates").join(&v.name),
                "swap": {
                    "module": "instance",
                    "from": "./modules/ec2-instance",
                    "to": "./modules/local-instance (harness/e2e/local-instance: writes user_data to the shared dir, no AWS)",
                    "shared_dir": shared,
                },
                "variables": v.values,
            })
        })
        .collect();
    let mut workspaces = Vec::new();
    for s in scenarios {
        for v in variants.iter().filter(|v| v.is_spot || !s.spot_only) {
            let user = s
                .agent_user
                .clone()
                .or_else(|| v.value_str("default_agent_user").map(String::from))
                .unwrap_or_else(|| "coder".into());
            workspaces.push(json!({
                "feature": s.feature,
                "scenario": s.name,
                "variant": v.name,
                "arch": v.arch.as_str(),
                "image": format!("{flake}#{}", nixos::attribute(v.arch)),
                "parameters": {
                    "flake_uri": crate::workspace::real::flake_uri(&s.flake),
                    "agent_user": user,
                },
            }));
        }
    }
    json!({
        "coder_version": crate::control::coder::CODER_VERSION,
        "access_url": container::access_url(0).replace(":0", ":<port>"),
        "images": images,
        "containers": containers.iter().map(container_json).collect::<Vec<_>>(),
        "templates": templates,
        "workspaces": workspaces,
    })
}

fn print_text(p: &Value) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    println!("e2e plan (nothing is run)");
    println!();
    println!("images (one per architecture):");
    for i in p["images"].as_array().into_iter().flatten() {
        println!("  {}: {}", s(&i["arch"]), s(&i["attribute"]));
        match i["prebuilt"].as_str() {
            Some(pre) => println!("    prebuilt: {pre} (from {})", s(&i["prebuilt_env"])),
            None => println!("    build:    {}", s(&i["command"])),
        }
    }
    println!();
    println!(
        "containers (Coder {}, access URL from the guest {}):",
        s(&p["coder_version"]),
        s(&p["access_url"])
    );
    for c in p["containers"].as_array().into_iter().flatten() {
        println!("  {} (network {})", s(&c["image"]), s(&c["network"]));
        for e in c["env"].as_array().into_iter().flatten() {
            println!("    env {}", s(e));
        }
        let cmd: Vec<String> = c["cmd"].as_array().into_iter().flatten().map(s).collect();
        if !cmd.is_empty() {
            println!("    cmd {}", cmd.join(" "));
        }
        for m in c["bind_mounts"].as_array().into_iter().flatten() {
            println!("    bind {}", s(m));
        }
    }
    println!("  (ports 0 = a free 127.0.0.1 port chosen at run time)");
    println!();
    println!("template test builds (pushed to Coder):");
    for t in p["templates"].as_array().into_iter().flatten() {
        println!(
            "  {} ({}, {}): {} -> {}",
            s(&t["variant"]),
            s(&t["arch"]),
            s(&t["market"]),
            s(&t["source"]),
            s(&t["copy"])
        );
        println!(
            "    module \"instance\": {} swapped for {}; shared dir {}",
            s(&t["swap"]["from"]),
            s(&t["swap"]["to"]),
            s(&t["swap"]["shared_dir"])
        );
        println!("    variables: {}", t["variables"]);
    }
    println!();
    println!("workspaces (scenario x variant):");
    for w in p["workspaces"].as_array().into_iter().flatten() {
        println!(
            "  {} [{}] image {}",
            s(&w["scenario"]),
            s(&w["variant"]),
            s(&w["image"])
        );
        println!(
            "    flake_uri={} agent_user={}",
            s(&w["parameters"]["flake_uri"]),
            s(&w["parameters"]["agent_user"])
        );
    }
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    if !args.plan {
        return run_scenarios(args.cucumber).await;
    }
    let root = crate::repo::root()?;
    let variants = crate::template::values::discover_repo(&root)?;
    let mut scenarios = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(root.join("features"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "feature"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        scenarios.extend(nixos_scenarios(&name, &text));
    }
    // The plan is the QEMU tier's (NixOS images): `@ec2` scenarios run on
    // the ec2 tier only (the runner leaves them out on QEMU alike).
    scenarios.retain(|s| !s.ec2_only);
    let p = plan(&root, &variants, &scenarios);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print_text(&p);
    }
    Ok(0)
}

#[cfg(feature = "e2e")]
async fn run_scenarios(cucumber: Vec<String>) -> anyhow::Result<i32> {
    let mut argv = vec!["harness e2e".to_string()];
    argv.extend(cucumber);
    let opts = crate::e2e::Options::from_env(std::env::current_exe()?, argv)?;
    Ok(crate::e2e::run(opts).await)
}

#[cfg(not(feature = "e2e"))]
async fn run_scenarios(_cucumber: Vec<String>) -> anyhow::Result<i32> {
    anyhow::bail!("this harness was built without the `e2e` feature (the cucumber runner); rebuild with default features")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_nixos_scenarios() {
        let text = r#"@nixos @qemu
Feature: A workspace
  Some text.

  Scenario Outline: the agent runs as the workspace user (<variant>)
    Given a workspace from template "<variant>" with the good test flake
    Then x

  Scenario Outline: a non-default agent user is honoured (<variant>)
    Given a workspace from template "<variant>" with the good test flake and agent user "dev"

  Scenario Outline: a broken flake still gives an SSH shell (<variant>)
    Given a workspace from template "<variant>" with the broken test flake

  Scenario Outline: spot comes back (<spot-variant>)
    Given a workspace from template "<spot-variant>" with the good test flake

  @ec2
  Scenario Outline: type change (<variant>)
    Given a workspace from template "<variant>" with the good test flake
"#;
        let s = nixos_scenarios("w.feature", text);
        assert_eq!(s.len(), 5);
        assert!(s[3].spot_only && !s[0].spot_only);
        assert!(s[4].ec2_only && !s[3].ec2_only);
        assert_eq!(s[0].name, "the agent runs as the workspace user");
        assert_eq!(s[1].agent_user.as_deref(), Some("dev"));
        assert_eq!(s[2].flake, "broken");
        let fixture = "@qemu @contract\nFeature: f\n  Scenario: x\n    Given y\n";
        assert!(nixos_scenarios("f.feature", fixture).is_empty());
        let tagged = "@qemu\nFeature: f\n  @nixos\n  Scenario: x\n    Given y\n  Scenario: z\n";
        let s = nixos_scenarios("f.feature", tagged);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "x");
        assert_eq!(
            crate::workspace::real::flake_uri("broken"),
            "path:/var/lib/harness/fixtures#broken"
        );
    }
}
