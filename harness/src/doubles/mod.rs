//! Every stand-in, named as a double (a pass against one proves the
//! harness or the template's boot flow, never what it stands in for):
//! - `coder_api` (tests only): a Coder REST API replay server for the
//!   client in `control::coder`;
//! - [`moto`]: the AWS double of the twin tier (moto plus the EC2 spot
//!   behaviours moto lacks, from AWS's documentation); a twin pass proves
//!   what the real Terraform providers send and keep, never what AWS does;
//! - [`http`]: the loopback server and token header they all share;
//! - [`init_script`]: the stand-in for `coder_agent.init_script`;
//! - [`agent_api`]: the Coder agent API double, which serves the agent
//!   stand-in (`coder-agent-standin.sh`) as `/bin/coder-linux-<arch>`,
//!   hands it the template's real startup script and env, and records what
//!   it reports.
//!
//! A pass that relies on the contract-tier ones ([`init_script`],
//! [`agent_api`]) proves the template's boot flow on the contract guest,
//! never Coder or its agent.

pub mod agent_api;
#[cfg(test)]
pub mod coder_api;
pub mod http;
pub mod init_script;
pub mod moto;

#[cfg(test)]
mod tests;
