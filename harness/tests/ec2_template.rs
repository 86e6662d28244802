//! `templates/modules/ec2-instance`'s `terraform test` (a MOCKED aws
//! provider: the real provider's schema, no AWS calls) passes on the module
//! and fails on copies that re-introduce each defect it guards against.
//! Needs the hashicorp/aws provider binary in a filesystem mirror
//! (`HARNESS_TF_AWS_MIRROR`, default /opt/tf-plugins); without it each test
//! prints why and returns (harness gate reports the same as a skip).

use std::path::{Path, PathBuf};

use harness::machine::ec2::terraform_tests::{aws_mirror, write_cli_config};
use harness::template::terraform::Terraform;

fn mirror() -> Option<PathBuf> {
    match aws_mirror() {
        Ok(p) => Some(p),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// Copy templates/ to a temp dir, apply `mutate` to the ec2-instance
/// module's main.tf, run its terraform tests; Ok(output) or Err(text).
async fn run(mirror: &Path, mutate: impl Fn(&str) -> String) -> Result<String, String> {
    let root = harness::repo::root().unwrap();
    let copy = tempfile::tempdir().unwrap();
    harness::template::terraform::copy_tree(&root.join("templates"), copy.path()).unwrap();
    let main = copy.path().join("modules/ec2-instance/main.tf");
    let text = std::fs::read_to_string(&main).unwrap();
    let mutated = mutate(&text);
    std::fs::write(&main, &mutated).unwrap();
    let mut tf = Terraform::new().unwrap();
    let cfg = write_cli_config(tf.tmp_dir(), mirror).unwrap();
    tf.set_env("TF_CLI_CONFIG_FILE", cfg);
    tf.test(copy.path(), &copy.path().join("modules/ec2-instance"))
        .await
        .map(|o| o.stdout)
        .map_err(|e| format!("{e:#}"))
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "mutation anchor `{from}` must occur once in ec2-instance/main.tf"
    );
    text.replacen(from, to, 1)
}

#[tokio::test]
async fn the_module_passes_its_mocked_provider_tests() {
    let Some(m) = mirror() else { return };
    let out = run(&m, str::to_string).await.unwrap();
    assert!(
        out.contains("Success!") && out.contains("0 failed"),
        "{out}"
    );
}

#[tokio::test]
async fn volume_tags_on_the_instance_fail_the_tests() {
    let Some(m) = mirror() else { return };
    // The old design: the root volume tagged through volume_tags.
    let e = run(&m, |t| {
        replace_once(
            &replace_once(t, "    tags        = local.root_tags\n", ""),
            "  tags = local.instance_tags\n\n  lifecycle {\n    # A newer",
            "  tags        = local.instance_tags\n  volume_tags = var.tags\n\n  lifecycle {\n    # A newer",
        )
    })
    .await
    .unwrap_err();
    assert!(e.contains("volume_tags"), "{e}");
}

#[tokio::test]
async fn detaching_without_stopping_fails_the_tests() {
    let Some(m) = mirror() else { return };
    let e = run(&m, |t| {
        replace_once(t, "  stop_instance_before_detaching = true\n", "")
    })
    .await
    .unwrap_err();
    assert!(e.contains("can hang"), "{e}");
}

#[tokio::test]
async fn instance_tags_hidden_from_imds_fail_the_tests() {
    let Some(m) = mirror() else { return };
    // Without tags in IMDS the guest cannot read coder_transition.
    let e = run(&m, |t| {
        replace_once(
            t,
            "    instance_metadata_tags = \"enabled\"\n",
            "    instance_metadata_tags = \"disabled\"\n",
        )
    })
    .await
    .unwrap_err();
    assert!(e.contains("coder_transition"), "{e}");
}

#[tokio::test]
async fn a_zone_that_moves_fails_the_tests() {
    let Some(m) = mirror() else { return };
    // The zone re-decided on every build instead of pinned once.
    let e = run(&m, |t| {
        replace_once(t, "    ignore_changes = [input]\n", "")
    })
    .await
    .unwrap_err();
    assert!(e.contains("never moves"), "{e}");
}

#[tokio::test]
async fn a_spot_type_change_in_place_fails_the_tests() {
    let Some(m) = mirror() else { return };
    let e = run(&m, |t| {
        replace_once(
            t,
            "  input = local.is_spot ? var.instance_type : \"on-demand\"\n",
            "  input = \"on-demand\"\n",
        )
    })
    .await
    .unwrap_err();
    assert!(
        e.contains("a spot instance's type change replaces it"),
        "{e}"
    );
}

#[tokio::test]
async fn an_ami_from_another_account_fails_the_tests() {
    let Some(m) = mirror() else { return };
    let e = run(&m, |t| {
        replace_once(
            t,
            "nixos_owner = \"427812963091\"",
            "nixos_owner = \"123456789012\"",
        )
    })
    .await
    .unwrap_err();
    assert!(e.contains("NixOS project's account"), "{e}");
}
