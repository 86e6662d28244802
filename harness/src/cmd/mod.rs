//! One file per `harness` subcommand: its clap arguments and its `run`.

pub mod bench;
pub mod boot;
pub mod e2e;
pub mod gate;
pub mod image;
pub mod lint;
pub mod policy;
pub mod relay;
pub mod render;
pub mod report;
pub mod sweep;
pub mod variants;
