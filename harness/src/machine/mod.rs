//! The machine box: one booted workspace machine behind the [`instance`]
//! trait, on QEMU ([`qemu`], with the emulated metadata service [`imds`])
//! or on EC2 ([`ec2`]), and the ways into it: root [`probe`]s and [`ssh`] as the user.
//! Which one a scenario boots is [`backend`].

pub mod backend;
pub mod ec2;
pub mod imds;
pub mod instance;
pub mod probe;
pub mod qemu;
pub mod ssh;
