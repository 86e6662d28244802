//! Release harness for the NixOS-on-EC2 Coder templates.
//!
//! Data flows one way:
//! `values` → `variant` → `render` (user-data) → `instance` (QEMU or EC2)
//! → `probe` → `checks` → `report`.

pub mod ami;
pub mod backend;
pub mod bench;
pub mod checks;
pub mod cli;
pub mod cmd;
pub mod control;
pub mod doubles;
pub mod ec2;
pub mod image;
pub mod lint;
pub mod machine;
pub mod real_workspace;
pub mod repo;
pub mod report;
pub mod scenarios;
pub mod template;
pub mod tools;
pub mod workspace;

// Old paths kept for `harness/src/ec2/*` and `harness/tests/e2e.rs`
// (owned by another change in flight); new code uses the box's path.
pub use machine::{instance, probe, qemu, ssh};
pub use template::variant;
