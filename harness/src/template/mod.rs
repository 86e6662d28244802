//! The template box: `values/*.yml` → [`variant`] → user-data rendered
//! with real Terraform ([`render`], driving the binary through
//! [`terraform`]), the NixOS AMI the template resolves ([`ami`]), and the
//! template as Coder sees it: the real `coder/coder`
//! Terraform provider (built from the Go module proxy into a filesystem
//! mirror, see `ci/build-coder-provider.sh`) and the `coder-import
//! <variant>` check; and the IAM policy Coder's provisioner needs for the
//! template's resources ([`iam`]).

pub mod ami;
pub mod coder_import;
pub mod iam;
pub mod provider_mirror;
pub mod render;
pub mod terraform;
pub mod values;
pub mod variant;
