//! Host tests of the doubles: the API double's endpoints over HTTP, and the
//! init-script and agent stand-ins run on the host against it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use super::agent_api::{AgentApiDouble, AgentManifest, AGENT_STANDIN};
use super::init_script;
use crate::control::ControlPlane;
use crate::template::variant::Arch;

const TOKEN: &str = "agent-token-1234";

fn manifest(script: &str) -> AgentManifest {
    AgentManifest {
        startup_script: script.into(),
        env: BTreeMap::from([("FLAKE_URI".to_string(), "path:/x#it's".to_string())]),
        directory: String::new(),
    }
}

#[tokio::test]
async fn api_double_serves_the_standin_manifest_and_records_reports() {
    let d = AgentApiDouble::start(TOKEN, manifest("echo hi\n"))
        .await
        .unwrap();
    let c = reqwest::Client::new();
    let base = d.host_url();
    for arch in ["amd64", "arm64"] {
        let r = c
            .get(format!("{base}bin/coder-linux-{arch}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), AGENT_STANDIN);
    }
    let r = c
        .get(format!("{base}bin/coder-linux-riscv64"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Token auth on every agent endpoint.
    let r = c
        .get(format!("{base}api/v2/workspaceagents/me/manifest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{base}harness-double/agent/env"))
        .header("Coder-Session-Token", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(d.unauthorized(), 2);

    let m: serde_json::Value = c
        .get(format!("{base}api/v2/workspaceagents/me/manifest"))
        .header("Coder-Session-Token", TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["environment_variables"]["FLAKE_URI"], "path:/x#it's");
    assert_eq!(m["scripts"][0]["script"], "echo hi\n");
    assert_eq!(m["scripts"][0]["run_on_start"], true);
    let env = c
        .get(format!("{base}harness-double/agent/env"))
        .header("Coder-Session-Token", TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(env, "export FLAKE_URI='path:/x#it'\\''s'\n");

    let r = c
        .patch(format!("{base}api/v2/workspaceagents/me/logs"))
        .header("Coder-Session-Token", TOKEN)
        .json(&serde_json::json!({"log_source_id": "s", "logs": [{"output": "json line", "level": "error"}]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = c
        .post(format!("{base}harness-double/agent/log"))
        .header("Coder-Session-Token", TOKEN)
        .body("text line 1\ntext line 2\n")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = c
        .post(format!("{base}api/v2/workspaceagents/me/report-lifecycle"))
        .header("Coder-Session-Token", TOKEN)
        .json(&serde_json::json!({"state": "ready"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .post(format!("{base}api/v2/workspaceagents/me/report-lifecycle"))
        .header("Coder-Session-Token", TOKEN)
        .json(&serde_json::json!({"nope": 1}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "not a PostLifecycleRequest");
    let logs = d.logs().await.unwrap();
    let out: Vec<&str> = logs.iter().map(|l| l.output.as_str()).collect();
    assert_eq!(out, ["json line", "text line 1", "text line 2"]);
    assert_eq!(logs[0].level, "error");
    assert_eq!(d.lifecycle().await.unwrap()[0].state, "ready");
    assert!(d.agent_connected().await.unwrap());
    assert!(d.describe().contains("double"));
    assert!(d.summary().contains("ready"), "{}", d.summary());
    d.clear_reports();
    assert!(d.logs().await.unwrap().is_empty());
    assert!(!d.agent_connected().await.unwrap());
    assert_eq!(
        d.guest_access_url(),
        format!("http://169.0.0.2:{}/", d.port())
    );
}

/// The stand-in's exec poll is a long poll: a poll that came before the
/// command is held open and answered with it (an immediate 204 would make
/// the stand-in poll again and again).
#[tokio::test]
async fn the_exec_poll_is_held_open_until_a_command_comes() {
    let d = AgentApiDouble::start(TOKEN, manifest("true\n"))
        .await
        .unwrap();
    let c = reqwest::Client::new();
    let base = d.host_url();
    let r = c
        .get(format!("{base}harness-double/agent/exec"))
        .header("Coder-Session-Token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        204,
        "without ?wait= an empty queue answers at once"
    );
    d.clear_reports();
    let poll = {
        let (c, url) = (c.clone(), format!("{base}harness-double/agent/exec?wait=5"));
        tokio::spawn(async move {
            let r = c
                .get(url)
                .header("Coder-Session-Token", TOKEN)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        })
    };
    // The poll has reached the double (it marks the agent seen) before the
    // command is queued.
    while !d.agent_connected().await.unwrap() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = async {
        let (status, job) = poll.await.unwrap();
        assert_eq!(status, 200, "the held poll gets the command: {job:?}");
        let (id, cmd) = job.split_once('\n').unwrap();
        assert_eq!(cmd, "echo hi");
        let r = c
            .post(format!(
                "{base}harness-double/agent/exec-result?id={id}&status=0"
            ))
            .header("Coder-Session-Token", TOKEN)
            .body("hi\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    };
    let (out, ()) = tokio::join!(d.agent_ssh("echo hi", Duration::from_secs(20)), answer);
    let out = out.unwrap().unwrap();
    assert_eq!((out.status, out.stdout.as_str()), (0, "hi\n"));
}

#[test]
fn env_keys_must_be_variable_names() {
    let bad = BTreeMap::from([("A B".to_string(), "x".to_string())]);
    let e = super::agent_api::env_script(&bad).unwrap_err().to_string();
    assert!(e.contains("\"A B\""), "{e}");
}

#[test]
fn init_script_renders_the_coder_contract() {
    let s = init_script::render("http://169.0.0.2:1234/", Arch::Aarch64, "token").unwrap();
    assert!(s.starts_with("#!/usr/bin/env sh\n"));
    assert!(s.contains("BINARY_URL='http://169.0.0.2:1234/bin/coder-linux-arm64'"));
    assert!(s.contains("export CODER_AGENT_AUTH='token'"));
    assert!(s.contains("exec ./\"$BINARY_NAME\" agent"));
    assert!(!s.contains('@'), "every placeholder is substituted:\n{s}");
    let e = init_script::render("http://x:1", Arch::X86_64, "token")
        .unwrap_err()
        .to_string();
    assert!(e.contains("must end with `/`"), "{e}");
    assert!(init_script::render("http://x'/", Arch::X86_64, "token").is_err());
}

#[test]
fn standins_pass_shellcheck() {
    let sc =
        crate::tools::find("shellcheck").expect("shellcheck is needed: apt-get install shellcheck");
    let d = tempfile::tempdir().unwrap();
    let init = init_script::render("http://169.0.0.2:1/", Arch::X86_64, "token").unwrap();
    for (name, text) in [("init.sh", init.as_str()), ("agent.sh", AGENT_STANDIN)] {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        let out = std::process::Command::new(&sc)
            .args(["-s", "sh"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The init-script stand-in running on the host, in its own process group
/// (killed on drop: the agent stand-in never exits by itself).
struct Running {
    child: tokio::process::Child,
    out: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Running {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling the process group we created.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
    }
}

/// Run the init script with `path` as PATH and `token` in the environment.
fn run_init(url: &str, token: &str, path: &str) -> Running {
    run_init_auth(url, "token", &[("CODER_AGENT_TOKEN", token)], path)
}

/// Run the init script for `auth` with `env` added.
fn run_init_auth(url: &str, auth: &str, env: &[(&str, &str)], path: &str) -> Running {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("init.sh");
    std::fs::write(
        &script,
        init_script::render(url, Arch::X86_64, auth).unwrap(),
    )
    .unwrap();
    let out = tmp.path().join("out.log");
    let f = std::fs::File::create(&out).unwrap();
    let child = tokio::process::Command::new("/bin/sh")
        .arg(&script)
        .env_clear()
        .env("PATH", path)
        .env("TMPDIR", tmp.path())
        .env("HOME", tmp.path())
        .envs(env.iter().copied())
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Running {
        child,
        out,
        _tmp: tmp,
    }
}

async fn wait_until<F: Fn() -> bool>(what: &str, r: &Running, f: F) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen; script output:\n{}", r.output());
}

const HOST_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[tokio::test]
async fn init_and_agent_standins_run_the_startup_script_and_stream_its_output() {
    let gate = tempfile::tempdir().unwrap();
    let go = gate.path().join("go");
    // The script prints a line, then waits until the test has seen that
    // line at the double: streaming is proved by order, not by timing.
    let script = format!(
        "#!/usr/bin/env bash\necho \"first line flake=$FLAKE_URI\"\necho to-stderr >&2\nwhile [ ! -e {g} ]; do sleep 0.1; done\necho last line\n[ -z \"${{CODER_AGENT_TOKEN:-}}\" ] || echo token leaked\n",
        g = go.display()
    );
    let d = AgentApiDouble::start(TOKEN, manifest(&script))
        .await
        .unwrap();
    let r = run_init(&d.host_url(), TOKEN, HOST_PATH);
    let has = |s: &str| {
        let logs = futures::executor::block_on(d.logs()).unwrap();
        logs.iter().any(|l| l.output.contains(s))
    };
    wait_until("the first line reaching the double", &r, || {
        has("first line flake=path:/x#it's")
    })
    .await;
    assert!(
        !has("last line"),
        "the last line cannot have been sent before the gate opened"
    );
    let lc = d.lifecycle().await.unwrap();
    assert_eq!(
        lc.iter().map(|l| l.state.as_str()).collect::<Vec<_>>(),
        ["starting"],
        "still starting while the script runs"
    );
    std::fs::write(&go, "").unwrap();
    wait_until("lifecycle ready", &r, || {
        futures::executor::block_on(d.lifecycle())
            .unwrap()
            .iter()
            .any(|l| l.state == "ready")
    })
    .await;
    assert!(has("to-stderr") && has("last line"), "{}", d.summary());
    assert!(!has("token leaked"));
    assert_eq!(d.downloads(), ["coder-linux-amd64"]);
    let hellos = d.hellos();
    assert_eq!(hellos.len(), 1);
    let me = std::process::Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        hellos[0].field("uid"),
        Some(String::from_utf8_lossy(&me.stdout).trim()),
        "the agent runs as whoever started it"
    );
    assert_eq!(d.unauthorized(), 0);
    assert!(d.agent_connected().await.unwrap());
    // A shell through the agent (the double's `coder ssh`), as its user.
    let out = d
        .agent_ssh(
            "id -u; echo \"flake=${FLAKE_URI:-unset}\"; exit 7",
            Duration::from_secs(30),
        )
        .await
        .expect("the double has an agent path")
        .unwrap();
    assert_eq!(out.status, 7, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            String::from_utf8_lossy(&me.stdout).trim(),
            "flake=path:/x#it's"
        ],
        "as the agent's user, with coder_agent.env"
    );
}

#[tokio::test]
async fn a_failing_startup_script_ends_in_start_error_and_the_agent_stays() {
    let d = AgentApiDouble::start(TOKEN, manifest("echo about to fail\nexit 3\n"))
        .await
        .unwrap();
    let r = run_init(&d.host_url(), TOKEN, HOST_PATH);
    wait_until("lifecycle start_error", &r, || {
        futures::executor::block_on(d.lifecycle())
            .unwrap()
            .iter()
            .any(|l| l.state == "start_error")
    })
    .await;
    assert!(
        r.output().contains("startup script exited 3"),
        "{}",
        r.output()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        d.agent_connected().await.unwrap(),
        "the agent keeps running"
    );
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_nothing_runs() {
    let d = AgentApiDouble::start(TOKEN, manifest("echo must not run\n"))
        .await
        .unwrap();
    let r = run_init(&d.host_url(), "not-the-token", HOST_PATH);
    wait_until("a refused request", &r, || d.unauthorized() > 0).await;
    assert!(d.lifecycle().await.unwrap().is_empty());
    assert!(d.logs().await.unwrap().is_empty());
    let e = d
        .agent_ssh("true", Duration::from_millis(500))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(e.contains("did not run `true`"), "{e}");
}

/// A PATH directory with only the named host tools (symlinks).
fn tool_dir(tools: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for t in tools {
        let p = crate::tools::find(t).unwrap_or_else(|_| panic!("{t} on the host"));
        std::os::unix::fs::symlink(&p, d.path().join(t)).unwrap();
    }
    d
}

#[tokio::test]
async fn the_init_script_needs_a_download_tool_on_path() {
    let d = AgentApiDouble::start(TOKEN, manifest("true\n"))
        .await
        .unwrap();
    // sh and mktemp, but no curl, wget or busybox: the unit's PATH lacks
    // the tool the init script needs.
    let tools = tool_dir(&["sh", "mktemp", "sleep"]);
    let r = run_init(&d.host_url(), TOKEN, &tools.path().display().to_string());
    wait_until("the init script naming the missing tool", &r, || {
        r.output().contains("no download tool found")
    })
    .await;
    assert!(d.downloads().is_empty());
}

/// `aws-instance-identity`: the agent stand-in gets an IMDSv2 token, the
/// identity document and its signature from the IMDS double (signed by the
/// test key) and trades them for its session token at the API double,
/// which trusts that key and knows the workspace's instance; a document of
/// another instance gets nothing, and no agent starts.
#[tokio::test]
async fn instance_identity_auth_gets_the_agent_its_token() {
    use crate::machine::imds::{ImdsConfig, ImdsServer};
    let imds = ImdsServer::start(ImdsConfig::example("i-0standin"), None).unwrap();
    let imds_url = format!("http://{}", imds.addr());
    let d = AgentApiDouble::start(TOKEN, manifest("echo identity ok\n"))
        .await
        .unwrap();
    d.expect_instance_identity("i-0standin").unwrap();
    let r = run_init_auth(
        &d.host_url(),
        "aws-instance-identity",
        &[("HARNESS_IMDS_URL", &imds_url)],
        HOST_PATH,
    );
    wait_until("lifecycle ready", &r, || {
        futures::executor::block_on(d.lifecycle())
            .unwrap()
            .iter()
            .any(|l| l.state == "ready")
    })
    .await;
    assert_eq!(d.identity_auths(), ["i-0standin"], "{}", d.summary());
    assert_eq!(d.unauthorized(), 0, "{}", d.summary());
    let paths: Vec<String> = imds.requests().iter().map(|q| q.path.clone()).collect();
    for p in [
        "/latest/api/token",
        "/latest/dynamic/instance-identity/signature",
        "/latest/dynamic/instance-identity/document",
    ] {
        assert!(paths.iter().any(|x| x == p), "{p} not asked: {paths:?}");
    }
    assert!(
        imds.requests()
            .iter()
            .filter(|q| q.path.contains("instance-identity"))
            .all(|q| q.had_valid_token),
        "IMDSv2: every identity request carries the token"
    );
    drop(r);

    // The API double expects another instance: refused, no agent.
    let d = AgentApiDouble::start(TOKEN, manifest("echo never\n"))
        .await
        .unwrap();
    d.expect_instance_identity("i-0someoneelse").unwrap();
    let r = run_init_auth(
        &d.host_url(),
        "aws-instance-identity",
        &[("HARNESS_IMDS_URL", &imds_url)],
        HOST_PATH,
    );
    wait_until("a refusal", &r, || d.summary().contains("refused:")).await;
    assert!(d.summary().contains("i-0someoneelse"), "{}", d.summary());
    assert!(d.hellos().is_empty() && d.identity_auths().is_empty());
}

/// The identity endpoint itself: a forged signature is 401 `Invalid AWS
/// identity.`, as coderd answers.
#[tokio::test]
async fn instance_identity_refuses_a_forged_signature() {
    let d = AgentApiDouble::start(TOKEN, manifest("true\n"))
        .await
        .unwrap();
    d.expect_instance_identity("i-0x").unwrap();
    let c = reqwest::Client::new();
    let url = format!(
        "{}api/v2/workspaceagents/aws-instance-identity",
        d.host_url()
    );
    let doc = r#"{"instanceId":"i-0x"}"#;
    let r = c
        .post(&url)
        .json(&serde_json::json!({"signature": "Zm9yZ2Vk", "document": doc}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Invalid AWS identity."));
    let sig = crate::machine::imds::identity::test_signer()
        .unwrap()
        .sign(doc.as_bytes())
        .unwrap();
    let r = c
        .post(&url)
        .json(&serde_json::json!({"signature": sig, "document": doc}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["session_token"], TOKEN);
}
