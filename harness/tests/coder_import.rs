//! `coder-import <variant>` and `checkov` against scratch copies of the
//! repository's `templates/` (the real one is never touched): a good copy
//! passes, and each re-introduced defect fails with a message naming it.
//! Needs the coder provider (ci/build-coder-provider.sh) or registry access,
//! and checkov; without them the rows are skipped, which these tests report
//! as SKIPPED and `HARNESS_STRICT=1` turns into a failure.

use std::path::{Path, PathBuf};

use harness::lint::checkov;
use harness::report::Status;
use harness::template::coder_import;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A scratch repository: a copy of `templates/` and one values file
/// (`aws-nixos.yml`) plus `extra` values lines.
fn scratch(extra: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    harness::template::terraform::copy_tree(&repo().join("templates"), &d.path().join("templates"))
        .unwrap();
    std::fs::create_dir_all(d.path().join("values")).unwrap();
    let base = std::fs::read_to_string(repo().join("values/aws-nixos.yml")).unwrap();
    std::fs::write(
        d.path().join("values/aws-nixos.yml"),
        format!("{base}{extra}"),
    )
    .unwrap();
    d
}

/// A known-good flake default, so the baseline passes whatever the
/// repository's `flake_uri` parameter looks like.
const GOOD_FLAKE: &str = "default_flake_uri: github:example/dotfiles#workspace\n";

/// Replace the top-level block starting with `head` in `file` by `block`
/// (terraform fmt layout: the block ends at the first `}` in column 0).
fn replace_block(file: &Path, head: &str, block: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let start = text
        .find(head)
        .unwrap_or_else(|| panic!("{} has no `{head}`", file.display()));
    let end = start + text[start..].find("\n}\n").unwrap() + 3;
    std::fs::write(file, format!("{}{block}{}", &text[..start], &text[end..])).unwrap();
}

fn variant(root: &Path) -> harness::template::variant::Variant {
    harness::template::values::find(root, "aws-nixos").unwrap()
}

/// `Some(reason)` for a failure; `None` (and a printed SKIPPED, or a panic
/// under HARNESS_STRICT=1) when the check could not run here.
fn failure(st: Status, what: &str) -> Option<String> {
    match st {
        Status::Failed(r) => {
            println!(
                "{what}: failed as expected:\n{}",
                r.lines().take(3).collect::<Vec<_>>().join("\n")
            );
            Some(r)
        }
        Status::Passed | Status::Warned(_) => {
            panic!("{what}: expected a failure, the check passed")
        }
        Status::Skipped(r) => {
            assert!(
                !std::env::var("HARNESS_STRICT").is_ok_and(|v| v == "1"),
                "{what}: skipped under HARNESS_STRICT=1: {r}"
            );
            println!("SKIPPED {what}: {r}");
            None
        }
    }
}

fn passed(st: Status, what: &str) -> bool {
    match st {
        Status::Passed => true,
        Status::Warned(w) => panic!("{what}: expected a clean pass, warned: {w}"),
        Status::Failed(r) => panic!("{what}: expected a pass, failed:\n{r}"),
        Status::Skipped(r) => {
            assert!(
                !std::env::var("HARNESS_STRICT").is_ok_and(|v| v == "1"),
                "{what}: skipped under HARNESS_STRICT=1: {r}"
            );
            println!("SKIPPED {what}: {r}");
            false
        }
    }
}

#[tokio::test]
async fn a_good_copy_imports_builds_start_and_stop_and_matches_harness_render() {
    let d = scratch(GOOD_FLAKE);
    let v = variant(d.path());
    passed(
        coder_import::check_test_build(d.path(), &v).await,
        "coder-import on a good copy",
    );
    passed(
        coder_import::check_real_template(d.path(), &v).await,
        "coder-import-aws on a good copy",
    );
}

#[tokio::test]
async fn an_empty_flake_uri_default_fails_import_naming_the_parameter() {
    // The defect: default "" with a validation regex that rejects "".
    let d = scratch("");
    replace_block(
        &d.path().join("templates/parameters.tf"),
        "data \"coder_parameter\" \"flake_uri\" {",
        "data \"coder_parameter\" \"flake_uri\" {\n  name    = \"flake_uri\"\n  type    = \"string\"\n  default = \"\"\n  mutable = true\n  validation {\n    regex = \"^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9._~/:@%+=?&#-]+$\"\n    error = \"Enter a flake reference like github:owner/repo#host.\"\n  }\n}\n",
    );
    let v = variant(d.path());
    if let Some(r) = failure(
        coder_import::check_test_build(d.path(), &v).await,
        "empty flake_uri default",
    ) {
        let first = r.lines().next().unwrap_or("");
        assert!(
            first.contains("import plan (start, no parameter values)")
                && first.contains("data.coder_parameter.flake_uri")
                && first.contains("Invalid parameter default value"),
            "{r}"
        );
    }
}

#[tokio::test]
async fn an_unknown_coder_agent_attribute_fails_import() {
    let d = scratch(GOOD_FLAKE);
    let agent = d.path().join("templates/agent.tf");
    let text = std::fs::read_to_string(&agent).unwrap().replace(
        "resource \"coder_agent\" \"main\" {\n",
        "resource \"coder_agent\" \"main\" {\n  harness_no_such_attribute = true\n",
    );
    std::fs::write(&agent, text).unwrap();
    let v = variant(d.path());
    if let Some(r) = failure(
        coder_import::check_test_build(d.path(), &v).await,
        "unknown coder_agent attribute",
    ) {
        let first = r.lines().next().unwrap_or("");
        assert!(
            first.contains("Unsupported argument") && first.contains("agent.tf"),
            "{r}"
        );
        assert!(r.contains("harness_no_such_attribute"), "{r}");
    }
}

#[tokio::test]
async fn a_parameter_default_outside_its_options_fails_import() {
    let d = scratch(GOOD_FLAKE);
    let params = d.path().join("templates/parameters.tf");
    let mut text = std::fs::read_to_string(&params).unwrap();
    text.push_str("\ndata \"coder_parameter\" \"harness_size\" {\n  name    = \"harness_size\"\n  type    = \"string\"\n  default = \"huge\"\n  option {\n    name  = \"Small\"\n    value = \"small\"\n  }\n  option {\n    name  = \"Large\"\n    value = \"large\"\n  }\n}\n");
    std::fs::write(&params, text).unwrap();
    let v = variant(d.path());
    if let Some(r) = failure(
        coder_import::check_test_build(d.path(), &v).await,
        "parameter default not among options",
    ) {
        let first = r.lines().next().unwrap_or("");
        assert!(
            first.contains("data.coder_parameter.harness_size") && first.contains("huge"),
            "{r}"
        );
    }
}

#[tokio::test]
async fn checkov_passes_the_template_and_fails_imdsv1_and_unencrypted_volumes() {
    let d = scratch("");
    if !passed(
        checkov::check(d.path()).await,
        "checkov on a copy of templates/",
    ) {
        return;
    }
    let ec2 = d.path().join("templates/modules/ec2-instance/main.tf");
    let good = std::fs::read_to_string(&ec2).unwrap();
    // IMDSv1 allowed again (any `terraform fmt` alignment).
    let tokens = regex::Regex::new(r#"http_tokens(\s+)= "required""#).unwrap();
    assert!(
        tokens.is_match(&good),
        "the module changed; update this test"
    );
    std::fs::write(
        &ec2,
        tokens
            .replace_all(&good, r#"http_tokens$1= "optional""#)
            .as_ref(),
    )
    .unwrap();
    let r = failure(
        checkov::check(d.path()).await,
        "checkov with http_tokens optional",
    )
    .unwrap();
    assert!(
        r.contains("CKV_AWS_79") && r.contains("aws_instance.this"),
        "{r}"
    );
    // Unencrypted volumes.
    std::fs::write(
        &ec2,
        good.replace("encrypted         = true", "encrypted         = false"),
    )
    .unwrap();
    let r = failure(
        checkov::check(d.path()).await,
        "checkov with an unencrypted volume",
    )
    .unwrap();
    assert!(
        r.contains("CKV_AWS_3") && r.contains("aws_ebs_volume.home"),
        "{r}"
    );
}

#[tokio::test]
async fn the_build_fails_when_stop_does_not_stop_or_user_data_differs_from_render() {
    // Instance state no longer driven by the transition.
    let d = scratch(GOOD_FLAKE);
    let main = d.path().join("templates/main.tf");
    let text = std::fs::read_to_string(&main).unwrap();
    let running = "running        = data.coder_workspace.me.transition == \"start\"";
    assert!(text.contains(running), "main.tf changed; update this test");
    std::fs::write(&main, text.replace(running, "running        = true")).unwrap();
    let v = variant(d.path());
    if let Some(r) = failure(
        coder_import::check_test_build(d.path(), &v).await,
        "running not driven by the transition",
    ) {
        assert!(
            r.contains("stop build") && r.contains("expected false"),
            "{r}"
        );
    }
    // The instance gets user-data other than what harness render prints.
    let d = scratch(GOOD_FLAKE);
    let main = d.path().join("templates/main.tf");
    let text = std::fs::read_to_string(&main).unwrap();
    let ud = "user_data      = module.bootstrap.user_data";
    assert!(text.contains(ud), "main.tf changed; update this test");
    std::fs::write(
        &main,
        text.replace(
            ud,
            "user_data      = \"${module.bootstrap.user_data}# tampered\\n\"",
        ),
    )
    .unwrap();
    if let Some(r) = failure(
        coder_import::check_test_build(d.path(), &v).await,
        "user-data differs from harness render",
    ) {
        assert!(r.contains("differs from `harness render`"), "{r}");
    }
}

/// Issue 20 item 6: the coder provider prints a parameter's whole regex in
/// its error, so the old 42 KB complement regex turned `agent_user=root`
/// into a 43 KB error; and a reserved name must be refused by the build.
#[tokio::test]
async fn a_long_agent_user_regex_or_no_reserved_check_fails_the_build_check() {
    // A regex as long as the old generated one (an alternation of names).
    let d = scratch(GOOD_FLAKE);
    let params = d.path().join("templates/parameters.tf");
    let text = std::fs::read_to_string(&params).unwrap();
    let short = "regex = \"^[a-z_][a-z0-9_-]{0,31}$\"";
    assert!(
        text.contains(short),
        "parameters.tf changed; update this test"
    );
    let mut names: Vec<String> = (0..2000).map(|n| format!("user{n}")).collect();
    names.push("coder".into()); // the default must still validate
    let long = format!("regex = \"^(?:{})$\"", names.join("|"));
    std::fs::write(&params, text.replace(short, &long)).unwrap();
    let v = variant(d.path());
    if let Some(r) = failure(
        coder_import::check_test_build(d.path(), &v).await,
        "a long agent_user regex",
    ) {
        assert!(
            r.contains("the build's error is") && r.contains("expected at most 1024"),
            "{r}"
        );
    }
    // The bootstrap module no longer refuses reserved names.
    let d = scratch(GOOD_FLAKE);
    let main = d.path().join("templates/modules/bootstrap/main.tf");
    let text = std::fs::read_to_string(&main).unwrap();
    let cond = "condition     = !contains(local.reserved_users, var.agent_user)";
    assert!(
        text.contains(cond),
        "bootstrap/main.tf changed; update this test"
    );
    std::fs::write(
        &main,
        text.replace(cond, "condition     = var.agent_user != \"\""),
    )
    .unwrap();
    if let Some(r) = failure(
        coder_import::check_test_build(d.path(), &v).await,
        "reserved agent_user not refused",
    ) {
        assert!(
            r.contains("agent_user = \"root\" planned; expected it to be refused"),
            "{r}"
        );
    }
}

#[test]
fn the_provider_build_refuses_agpl_busl_and_unknown_licences() {
    let d = tempfile::tempdir().unwrap();
    let classify = |name: &str, text: &str| {
        let f = d.path().join(name);
        std::fs::write(&f, text).unwrap();
        let o = std::process::Command::new("bash")
            .arg(repo().join("ci/build-coder-provider.sh"))
            .arg("--classify-licence")
            .arg(&f)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let agpl = "                    GNU AFFERO GENERAL PUBLIC LICENSE\n                       Version 3, 19 November 2007\n";
    assert_eq!(classify("agpl", agpl), "FORBIDDEN");
    assert_eq!(
        classify("busl", "Business Source License 1.1\n\nParameters\n"),
        "FORBIDDEN"
    );
    // The MPL 2.0 body names the AGPL as a "Secondary License": still MPL.
    let mpl = format!(
        "Mozilla Public License Version 2.0\n==================================\n{}1.12. \"Secondary License\"\n    means either the GNU General Public License, Version 2.0, the GNU\n    Lesser General Public License, Version 2.1, the GNU Affero General\n    Public License, Version 3.0, or any later versions of those\n    licenses.\n",
        "1. Definitions\n--------------\n\n".repeat(8)
    );
    assert_eq!(classify("mpl", &mpl), "MPL-2.0");
    assert_eq!(
        classify(
            "mit",
            "MIT License\n\nPermission is hereby granted, free of charge, to any person\n"
        ),
        "MIT"
    );
    assert_eq!(
        classify("none", "Copyright 2026 Someone. All rights reserved.\n"),
        "unknown"
    );
}

#[tokio::test]
async fn a_root_aws_data_source_is_stubbed_in_the_test_build() {
    // The shape an AMI lookup takes in main.tf: the test build must still
    // plan and build without the AWS provider.
    let d = scratch(GOOD_FLAKE);
    let main = d.path().join("templates/main.tf");
    let text = std::fs::read_to_string(&main).unwrap();
    // The template resolves its AMI inside modules/ec2-instance now; a
    // template author may still add a root lookup like this one.
    let text = text
        + "\ndata \"aws_ami\" \"nixos\" {\n  for_each    = toset([var.arch])\n  most_recent = true\n  owners      = [\"427812963091\"]\n  filter {\n    name   = \"architecture\"\n    values = [each.key == \"aarch64\" ? \"arm64\" : \"x86_64\"]\n  }\n}\n\noutput \"harness_root_ami\" {\n  value = data.aws_ami.nixos[var.arch].id\n}\n";
    std::fs::write(&main, text).unwrap();
    let v = variant(d.path());
    passed(
        coder_import::check_test_build(d.path(), &v).await,
        "coder-import with a root data \"aws_ami\"",
    );
}
