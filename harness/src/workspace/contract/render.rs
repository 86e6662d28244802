//! What the template hands a contract-tier workspace, rendered by REAL
//! Terraform from the template's own bootstrap module: the user-data
//! (`module.bootstrap.user_data`, which `templates/main.tf` passes to the
//! instance unchanged), the agent's `startup_script` and `env`
//! (`module.bootstrap.startup_script` / `agent_env`, which
//! `templates/agent.tf` puts in `coder_agent`).  Coder's parts are stand-ins:
//! `agent_auth = "token"` with a fresh token (the QEMU test build) or
//! `"aws-instance-identity"` (what EC2 workspaces use: the agent stand-in
//! trades the IMDS double's signed identity document for the token), and
//! the init-script stand-in pointing at the agent API double's access URL
//! as the guest sees it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::doubles::init_script;
use crate::template::variant::Variant;

/// The fixture flakes the contract guest (like the NixOS test image)
/// carries under [`crate::workspace::real::GUEST_FIXTURES`].
pub const FIXTURES: [&str; 6] = [
    "good",
    "broken",
    "broken-build",
    "no-home",
    "home-other-device",
    "activation-aborts",
];

/// `coder_agent.auth` of a contract workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AgentAuth {
    /// `token`: the user-data carries the agent token (agent.env).
    #[default]
    Token,
    /// `aws-instance-identity`: no token in the user-data; the agent signs
    /// in with the instance's identity document (IMDS double, test key).
    AwsInstanceIdentity,
}

impl AgentAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentAuth::Token => "token",
            AgentAuth::AwsInstanceIdentity => "aws-instance-identity",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<AgentAuth> {
        match s {
            "token" => Ok(AgentAuth::Token),
            "aws-instance-identity" => Ok(AgentAuth::AwsInstanceIdentity),
            other => anyhow::bail!(
                "unknown agent_auth `{other}`; the template allows token and aws-instance-identity"
            ),
        }
    }
}

/// One rendering for one workspace.
#[derive(Debug, Clone)]
pub struct ContractRender {
    /// The script amazon-init runs (exactly `module.bootstrap.user_data`).
    pub user_data: String,
    /// `coder_agent.startup_script`.
    pub startup_script: String,
    /// `coder_agent.env`.
    pub agent_env: BTreeMap<String, String>,
    /// The agent's token: in the user-data (`token`) or what the API double
    /// hands out for the instance's identity (`aws-instance-identity`).
    pub token: String,
    pub auth: AgentAuth,
    pub flake_uri: String,
    pub agent_user: String,
    /// The module inputs Terraform got (token and init script included).
    pub inputs: BTreeMap<String, Value>,
}

/// The `flake_uri` of fixture flake `fixture` as the guest sees it
/// (`path:/var/lib/harness/fixtures#<fixture>`, the nixos tier's naming).
pub fn fixture_flake_uri(fixture: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        FIXTURES.contains(&fixture),
        "unknown fixture flake `{fixture}`; known: {}",
        FIXTURES.join(", ")
    );
    Ok(crate::workspace::real::flake_uri(fixture))
}

/// A fresh agent token (hex, as Coder's are UUID-like).
pub fn new_token() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    (0..32)
        .map(|_| format!("{:x}", r.random_range(0..16u8)))
        .collect()
}

/// Render `variant` from the templates under `root/templates` (the
/// repository, or a mutated copy) for fixture flake `fixture`, `agent_user`
/// and an agent API double reachable by the guest at `access_url`.
pub async fn render(
    root: &Path,
    variant: &Variant,
    fixture: &str,
    agent_user: &str,
    access_url: &str,
    token: &str,
    auth: AgentAuth,
) -> anyhow::Result<ContractRender> {
    let flake_uri = fixture_flake_uri(fixture)?;
    render_with(
        root, variant, &flake_uri, agent_user, access_url, auth, token,
    )
    .await
}

/// What the contract tier boots for these parameters: [`render`] with any
/// flake reference and agent auth (`token` with `token`, or
/// `aws-instance-identity` with no token in the user-data, as on EC2).  The
/// twin compares the user-data the real providers hand EC2 with this.
pub async fn render_with(
    root: &Path,
    variant: &Variant,
    flake_uri: &str,
    agent_user: &str,
    access_url: &str,
    auth: AgentAuth,
    token: &str,
) -> anyhow::Result<ContractRender> {
    let flake_uri = flake_uri.to_string();
    let init = init_script::render(access_url, variant.arch, auth.as_str())?;
    let user_data_token = match auth {
        AgentAuth::Token => token,
        AgentAuth::AwsInstanceIdentity => "",
    };
    let vars: BTreeMap<String, String> = [
        ("agent_auth", auth.as_str()),
        ("agent_token", user_data_token),
        ("init_script", init.as_str()),
        ("flake_uri", flake_uri.as_str()),
        ("agent_user", agent_user),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = crate::template::render::render_all(root, variant, &vars)
        .await
        .with_context(|| {
            format!(
                "rendering {} from {} with real Terraform",
                variant.name,
                crate::template::render::bootstrap_dir(root).display()
            )
        })?;
    let env = r
        .outputs
        .get("agent_env")
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow::anyhow!("the bootstrap module has no map output `agent_env`"))?
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect();
    Ok(ContractRender {
        user_data: r.string("user_data")?.to_string(),
        startup_script: r.string("startup_script")?.to_string(),
        agent_env: env,
        token: token.to_string(),
        auth,
        flake_uri,
        agent_user: agent_user.to_string(),
        inputs: r.inputs,
    })
}

/// The wiring this rendering relies on, as it reads in `templates/*.tf`:
/// `(file, attribute = expression)`.  If the template stops wiring its
/// instance and agent this way, the contract tier no longer runs what the
/// template renders, and [`check_wiring`] says so.
pub const WIRING: [(&str, &str, &str); 4] = [
    ("main.tf", "user_data", "module.bootstrap.user_data"),
    (
        "agent.tf",
        "startup_script",
        "module.bootstrap.startup_script",
    ),
    ("agent.tf", "env", "module.bootstrap.agent_env"),
    ("main.tf", "init_script", "coder_agent.main.init_script"),
];

/// Check [`WIRING`] in `root/templates`.
pub fn check_wiring(root: &Path) -> anyhow::Result<()> {
    for (file, attr, expr) in WIRING {
        let p = root.join("templates").join(file);
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let found = text.lines().any(|l| {
            let l: String = l.split_whitespace().collect();
            l == format!("{attr}={expr}")
        });
        anyhow::ensure!(
            found,
            "{}: expected `{attr} = {expr}`; the contract tier renders module.bootstrap's outputs and would no longer run what the template renders",
            p.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .into()
    }

    #[test]
    fn the_template_wires_the_bootstrap_outputs_as_the_contract_tier_assumes() {
        check_wiring(&root()).unwrap();
        let d = tempfile::tempdir().unwrap();
        crate::template::terraform::copy_tree(
            &root().join("templates"),
            &d.path().join("templates"),
        )
        .unwrap();
        let agent = d.path().join("templates/agent.tf");
        let t = std::fs::read_to_string(&agent).unwrap();
        std::fs::write(&agent, t.replace("module.bootstrap.agent_env", "{}")).unwrap();
        let e = check_wiring(d.path()).unwrap_err().to_string();
        assert!(e.contains("env = module.bootstrap.agent_env"), "{e}");
    }

    /// Every fixture flake exists in both tiers: the contract guest's
    /// declarations and the nixos tier's NixOS configuration, which the
    /// guest flake lists.
    #[test]
    fn each_fixture_flake_exists_in_both_tiers() {
        let root = root();
        let guest_flake =
            std::fs::read_to_string(root.join("nixos-vm/guest-flake.nix.in")).unwrap();
        for f in FIXTURES {
            for p in [
                format!("harness/contract-guest/fixtures/{f}/declares.json"),
                format!("nixos-vm/fixtures/{f}/default.nix"),
            ] {
                assert!(root.join(&p).is_file(), "fixture flake {f}: {p} missing");
            }
            assert!(
                guest_flake.contains(&format!("\"{f}\"")),
                "nixos-vm/guest-flake.nix.in does not list {f}"
            );
            assert!(
                crate::image::contract::files::sources()
                    .iter()
                    .any(|s| s.place
                        == crate::image::contract::files::Place::Path(
                            Box::leak(
                                format!("var/lib/harness/fixtures/{f}/declares.json")
                                    .into_boxed_str()
                            ),
                            0o644
                        )),
                "the contract image does not ship fixture {f}"
            );
        }
    }

    #[test]
    fn fixtures_are_named() {
        assert_eq!(
            fixture_flake_uri("broken-build").unwrap(),
            "path:/var/lib/harness/fixtures#broken-build"
        );
        let e = fixture_flake_uri("nope").unwrap_err().to_string();
        assert!(
            e.contains("`nope`") && e.contains("good, broken, broken-build, no-home"),
            "{e}"
        );
        assert_eq!(new_token().len(), 32);
        assert_ne!(new_token(), new_token());
    }

    /// Real Terraform over the real bootstrap module: the stand-in init
    /// script, the token and the flake reach the user-data.
    #[tokio::test]
    async fn renders_the_real_module_with_token_auth_and_the_standin() {
        let root = root();
        let v = crate::template::values::find(&root, "aws-nixos-graviton").unwrap();
        let r = render(
            &root,
            &v,
            "good",
            "dev",
            "http://169.0.0.2:4242/",
            "tok123",
            AgentAuth::Token,
        )
        .await
        .unwrap();
        assert!(r.user_data.starts_with("#!"), "{}", r.user_data);
        assert_eq!(
            r.agent_env["FLAKE_URI"],
            "path:/var/lib/harness/fixtures#good"
        );
        assert!(r.startup_script.contains("nixos-rebuild"));
        // The values travel gzip-compressed and base64-encoded (see the
        // module); decode every single-quoted payload and look for them.
        let decoded: Vec<String> = crate::template::render::payloads(&r.user_data)
            .into_iter()
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .collect();
        let all = decoded.join("\n");
        assert!(all.contains("CODER_AGENT_TOKEN=tok123"), "{all}");
        assert!(
            all.contains("http://169.0.0.2:4242/bin/coder-linux-arm64"),
            "{all}"
        );
        assert!(all.contains("\"agent_user\":\"dev\""), "{all}");
        assert_eq!(r.inputs["agent_auth"], "token");
        // Every file the bootstrap switch evaluates is the template's own
        // (the contract guest pins them: bootstrap.declares.json).
        assert!(
            all.contains(
                &std::fs::read_to_string(
                    root.join("templates/modules/bootstrap/configuration.nix")
                )
                .unwrap()
            ),
            "the user-data writes templates/modules/bootstrap/configuration.nix verbatim"
        );
    }

    /// `aws-instance-identity`: no token anywhere in the user-data; the
    /// init script tells the agent to sign in with the instance identity.
    #[tokio::test]
    async fn renders_instance_identity_auth_without_a_token() {
        let root = root();
        let v = crate::template::values::find(&root, "aws-nixos").unwrap();
        let r = render(
            &root,
            &v,
            "good",
            "coder",
            "http://169.0.0.2:4242/",
            "tok456",
            AgentAuth::AwsInstanceIdentity,
        )
        .await
        .unwrap();
        let decoded: Vec<String> = crate::template::render::payloads(&r.user_data)
            .into_iter()
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .collect();
        let all = decoded.join("\n");
        assert!(
            !all.contains("tok456") && !r.user_data.contains("tok456"),
            "{all}"
        );
        assert!(!all.contains("CODER_AGENT_TOKEN="), "{all}");
        assert!(
            all.contains("CODER_AGENT_AUTH='aws-instance-identity'"),
            "{all}"
        );
        assert_eq!(r.inputs["agent_auth"], "aws-instance-identity");
        assert_eq!(AgentAuth::parse("aws-instance-identity").unwrap(), r.auth);
        assert!(AgentAuth::parse("google-instance-identity").is_err());
    }
}
