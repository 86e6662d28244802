//! Without the coder provider (empty mirror, registry unreachable) the
//! `coder-import` row is skipped, never passed, and the reason names the
//! provider, the mirrors looked in, the registry's answer and why
//! `ci/build-coder-provider.sh` failed. Its own test binary: it sets
//! process-wide environment.

use std::path::Path;

use harness::report::Status;

#[tokio::test]
async fn no_mirror_and_no_registry_is_a_skip_with_the_exact_reason() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let d = tempfile::tempdir().unwrap();
    let mirror = d.path().join("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    std::fs::write(
        mirror.join(harness::template::provider_mirror::BUILD_FAILED_FILE),
        "go mod download github.com/coder/terraform-provider-coder/v2@v2.20.0 failed: proxy said 503\n",
    )
    .unwrap();
    // Process-wide, and this binary runs only this test.
    std::env::set_var("HARNESS_TF_MIRROR", &mirror);
    std::env::set_var("HARNESS_TF_EXTRA_MIRRORS", "");
    std::env::set_var("HARNESS_CACHE", d.path().join("cache"));
    // The registry is unreachable, also where a network exists.
    std::env::set_var("HTTPS_PROXY", "http://127.0.0.1:9");
    std::env::set_var("HTTP_PROXY", "http://127.0.0.1:9");
    std::env::remove_var("NO_PROXY");
    let v = harness::template::values::find(root, "aws-nixos").unwrap();
    match harness::template::coder_import::check_test_build(root, &v).await {
        Status::Skipped(r) => {
            println!("SKIPPED as expected: {r}");
            assert!(
                r.contains("registry.terraform.io/coder/coder is in no filesystem mirror")
                    && r.contains(&mirror.display().to_string())
                    && r.contains("proxy said 503"),
                "{r}"
            );
        }
        other => panic!("expected a skip, got {other:?}"),
    }
}
