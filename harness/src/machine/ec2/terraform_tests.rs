//! Running `terraform test` on modules that need the hashicorp/aws provider
//! (`templates/modules/ec2-instance`, whose tests use `mock_provider "aws"`:
//! the real provider's schema, no AWS calls).  The provider binary comes
//! from a filesystem mirror (`HARNESS_TF_AWS_MIRROR`, default
//! `/opt/tf-plugins`, laid out as `registry.terraform.io/hashicorp/aws/<version>/<os>_<arch>/`);
//! where it is absent those modules are skipped with that reason.

use std::path::{Path, PathBuf};

/// Filesystem mirror holding hashicorp/aws.
pub const ENV_AWS_MIRROR: &str = "HARNESS_TF_AWS_MIRROR";
pub const DEFAULT_AWS_MIRROR: &str = "/opt/tf-plugins";
const AWS_SOURCE: &str = "registry.terraform.io/hashicorp/aws";

fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{}_{arch}", std::env::consts::OS)
}

/// The mirror directory if it holds hashicorp/aws for this platform, else
/// why not (naming the path and the variable).
pub fn aws_mirror() -> Result<PathBuf, String> {
    let dir = std::env::var_os(ENV_AWS_MIRROR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_AWS_MIRROR));
    let provider = dir.join(AWS_SOURCE);
    let has_binary = std::fs::read_dir(&provider)
        .map(|versions| {
            versions.flatten().any(|v| {
                std::fs::read_dir(v.path().join(platform()))
                    .map(|files| {
                        files.flatten().any(|f| {
                            f.file_name()
                                .to_string_lossy()
                                .starts_with("terraform-provider-aws")
                        })
                    })
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false);
    if has_binary {
        Ok(dir)
    } else {
        Err(format!(
            "needs provider hashicorp/aws: expected its {} binary in a filesystem mirror at {} ({ENV_AWS_MIRROR}), \
             seen none; install terraform-provider-aws there (registry.terraform.io/hashicorp/aws/<version>/{}/)",
            platform(),
            provider.display(),
            platform()
        ))
    }
}

/// A Terraform CLI configuration installing hashicorp/aws from `mirror`
/// only (never from the network).
pub fn cli_config(mirror: &Path) -> String {
    let path = mirror
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{path}\"\n    include = [\"{AWS_SOURCE}\"]\n  }}\n  direct {{\n    exclude = [\"{AWS_SOURCE}\"]\n  }}\n}}\n"
    )
}

/// Write [`cli_config`] into `dir`; the file's path (for `TF_CLI_CONFIG_FILE`).
pub fn write_cli_config(dir: &Path, mirror: &Path) -> std::io::Result<PathBuf> {
    let f = dir.join("aws-mirror.tfrc");
    std::fs::write(&f, cli_config(mirror))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_mirror_is_a_reason_naming_the_path() {
        let d = tempfile::tempdir().unwrap();
        // Not set through the environment (tests run in parallel): the
        // reason names the default or the configured path.
        let why = aws_mirror().err().unwrap_or_default();
        if !why.is_empty() {
            assert!(
                why.contains("hashicorp/aws") && why.contains(ENV_AWS_MIRROR),
                "{why}"
            );
        }
        let f = write_cli_config(d.path(), Path::new("/opt/x")).unwrap();
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.contains("path    = \"/opt/x\"") && text.contains("exclude"),
            "{text}"
        );
    }
}
