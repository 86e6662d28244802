//! The four workspace checks (home mount, agent user, log streaming, SSH
//! fallback) as library code.  Each returns a [`Verdict`] with evidence:
//! what was expected, what was seen, and the commands and outputs that
//! showed it.  The e2e steps of every tier call these.

pub mod agent_user;
pub mod home_mount;
pub mod log_streaming;
pub mod ssh_fallback;
mod verdict;

pub use verdict::{Evidence, Verdict};
