//! Rendering a variant's user-data with real Terraform from the
//! provider-free bootstrap module (`templates/modules/bootstrap`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::variant::Variant;

/// Placeholder used for the agent token when none is passed.
pub const TOKEN_PLACEHOLDER: &str = "HARNESS_PLACEHOLDER_AGENT_TOKEN";
/// Placeholder used for the Coder agent init script when none is passed.
pub const INIT_SCRIPT_PLACEHOLDER: &str =
    "#!/bin/sh\necho HARNESS_PLACEHOLDER_INIT_SCRIPT >&2\nexit 1\n";

/// The user-data real Terraform renders for `variant` from the bootstrap
/// module under `root/templates`, with `vars` overriding parameter values
/// (`flake_uri`, `agent_user`, `agent_auth`, `agent_token`, `init_script`, …).
pub async fn render_user_data(
    root: &Path,
    variant: &Variant,
    vars: &BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let _ = (root, variant, vars);
    anyhow::bail!("render_user_data is not implemented yet")
}
