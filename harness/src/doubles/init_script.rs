//! STAND-IN for `coder_agent.init_script` (what Coder renders from
//! coder/coder `provisionersdk/scripts/bootstrap_linux.sh`): same contract,
//! written for the harness (`init-script.sh`).  The template's user-data
//! runs it as the agent unit's command; it downloads the agent stand-in
//! from the [`super::agent_api::AgentApiDouble`].

use crate::template::variant::Arch;

/// The stand-in's source with `@ACCESS_URL@`, `@ARCH@`, `@AUTH_TYPE@`.
pub const TEMPLATE: &str = include_str!("init-script.sh");

/// Coder's name for an architecture in `coder-linux-<arch>`
/// (`coder_agent.arch`: `amd64`, `arm64`).
pub fn coder_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::Aarch64 => "arm64",
    }
}

/// The init script for an agent of `arch` with `auth` (`token`, …) that
/// reaches Coder at `access_url` (with a trailing slash, as Coder's
/// `ACCESS_URL` has).
pub fn render(access_url: &str, arch: Arch, auth: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        access_url.ends_with('/'),
        "access URL {access_url:?} must end with `/` (the init script appends `bin/coder-linux-<arch>`)"
    );
    for (what, v) in [("access URL", access_url), ("auth type", auth)] {
        anyhow::ensure!(
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ":/.-_".contains(c)),
            "{what} {v:?}: expected only letters, digits and :/.-_ (it is placed in single quotes)"
        );
    }
    Ok(TEMPLATE
        .replace("@ACCESS_URL@", access_url)
        .replace("@ARCH@", coder_arch(arch))
        .replace("@AUTH_TYPE@", auth))
}
