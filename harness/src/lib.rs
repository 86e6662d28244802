//! Release harness for the NixOS-on-EC2 Coder templates.
//!
//! Data flows one way, one module per box:
//! [`template`] (`values` → `variant` → `render`: user-data from real
//! Terraform) → [`machine`] (an `instance` on QEMU or EC2, reached by
//! `probe` and `ssh`; booting an [`image`]) → [`checks`] → [`report`].
//! Beside the flow: [`lint`] (static checks of the template), [`control`]
//! (the real Coder control plane), [`doubles`] (every stand-in, named as
//! one), [`workspace`] (one way to start each tier: real, contract,
//! fixture),
//! [`cmd`] (one file per subcommand), [`bench`], and `e2e` (the cucumber
//! World, steps and runner, behind the `e2e` feature).

pub mod bench;
pub mod checks;
pub mod cli;
pub mod cmd;
pub mod control;
pub mod doubles;
#[cfg(feature = "e2e")]
pub mod e2e;
pub mod image;
pub mod lint;
pub mod machine;
pub mod repo;
pub mod report;
pub mod scenarios;
pub mod template;
pub mod tools;
pub mod workspace;
