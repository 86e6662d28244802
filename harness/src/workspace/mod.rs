//! One way to start a workspace per tier: [`real`] (a real Coder
//! workspace on the NixOS image in QEMU or the NixOS AMI on EC2),
//! [`contract`] (the template's REAL rendered user-data on the contract
//! guest, a double of the NixOS AMI, with Coder's init script and agent
//! played by named stand-ins); and [`twin`], the whole template
//! applied by real Terraform and the real providers against the moto double
//! of AWS (no guest). [`fixture_flake`]: the test flake a real workspace
//! switches to, per backend.

pub mod contract;
pub mod fixture_flake;
pub mod real;
pub mod twin;
