//! Every stand-in for Coder the contract tier uses, named as doubles:
//! - [`init_script`]: the stand-in for `coder_agent.init_script`;
//! - [`agent_api`]: the Coder agent API double, which serves the agent
//!   stand-in (`coder-agent-standin.sh`) as `/bin/coder-linux-<arch>`,
//!   hands it the template's real startup script and env, and records what
//!   it reports.
//!
//! A pass that relies on them proves the template's boot flow on the
//! contract guest, never Coder or its agent.

pub mod agent_api;
pub mod init_script;

#[cfg(test)]
mod tests;
