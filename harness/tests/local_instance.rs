//! The e2e tier's shared-dir contract, with real Terraform: the template
//! test build's local instance module (`harness/e2e/local-instance`), fed
//! the user-data of the real bootstrap module (token auth) as in
//! `templates/main.tf`, writes `user-data` and `running` where
//! `CoderWorkspace` reads them, and a stop build flips `running`.
//! Only the Coder provider is missing here (it cannot be downloaded), so
//! the agent token and init script are fixed strings.

use std::path::Path;

use harness::control::coder::template::{instance_name, LOCAL_INSTANCE_TF};
use harness::control::coder::workspace::read_desired;
use harness::template::terraform::Terraform;

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// How the bootstrap module carries the token (base64 of agent.env).
/// Whether the user-data carries `token` in its agent.env payload.
fn carries_token(user_data: &str, token: &str) -> bool {
    let want = format!("CODER_AGENT_TOKEN={token}\n");
    harness::template::render::payloads(user_data)
        .iter()
        .any(|p| p == want.as_bytes())
}

fn write_vars(dir: &Path, token: &str, running: bool) {
    let v = serde_json::json!({
        "token": token,
        "running": running,
    });
    std::fs::write(dir.join("terraform.tfvars.json"), v.to_string()).unwrap();
}

#[tokio::test]
async fn local_module_writes_what_the_workspace_reads() {
    let tf = match Terraform::new() {
        Ok(t) => t,
        Err(e) => panic!("terraform is required (ci/setup-debian.sh installs it): {e:#}"),
    };
    let shared = tempfile::tempdir().unwrap();
    let work = tf.work_dir();
    let module = tf.tmp_dir().join("local-instance");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(
        module.join("main.tf"),
        LOCAL_INSTANCE_TF.replace("@SHARED_DIR@", &shared.path().display().to_string()),
    )
    .unwrap();
    let bootstrap = root().join("templates/modules/bootstrap");
    std::fs::write(
        work.join("main.tf"),
        format!(
            r##"
variable "token" {{ type = string }}
variable "running" {{ type = bool }}
module "bootstrap" {{
  source      = "{bootstrap}"
  agent_user  = "dev"
  flake_uri   = "path:/var/lib/harness/fixtures#good"
  agent_auth  = "token"
  agent_token = var.token
  init_script = "#!/bin/sh\necho coder agent init\n"
}}
module "instance" {{
  source         = "{module}"
  name           = "{name}"
  nixos_release  = "26.05"
  arch           = "x86_64"
  instance_type  = "t3.large"
  user_data      = module.bootstrap.user_data
  market_options = []
  root_disk_size = 40
  home_disk_size = 20
  running        = var.running
}}
output "user_data" {{
  value     = module.bootstrap.user_data
  sensitive = true
}}
"##,
            bootstrap = bootstrap.display(),
            module = module.display(),
            name = instance_name("admin", "ws1"),
        ),
    )
    .unwrap();
    tf.init(&work).await.expect("terraform init");
    let dir = shared.path().join("coder-admin-ws1");

    // Start build.
    write_vars(&work, "token-build-1", true);
    tf.apply(&work).await.expect("apply (start)");
    let rendered = tf.output_raw(&work, "user_data").await.unwrap();
    let d = read_desired(&dir).unwrap();
    assert!(d.running);
    assert_eq!(
        String::from_utf8(d.user_data.clone()).unwrap(),
        rendered,
        "the shared file holds exactly the bootstrap module's user-data"
    );
    assert!(
        carries_token(&rendered, "token-build-1"),
        "token auth user-data"
    );

    // Stop build: same user-data, running=false.
    write_vars(&work, "token-build-1", false);
    tf.apply(&work).await.expect("apply (stop)");
    assert!(!read_desired(&dir).unwrap().running);

    // The next start build has a new agent token: the file follows it.
    write_vars(&work, "token-build-2", true);
    tf.apply(&work).await.expect("apply (start again)");
    let d = read_desired(&dir).unwrap();
    assert!(d.running);
    let ud = String::from_utf8(d.user_data).unwrap();
    assert!(
        carries_token(&ud, "token-build-2") && !carries_token(&ud, "token-build-1"),
        "{ud}"
    );
}
