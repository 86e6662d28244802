//! The contract tier: a variant's workspace on the contract guest (a
//! double of the NixOS AMI built by `image::contract`) running exactly the
//! user-data the template renders, with Coder's init script and agent
//! played by the stand-ins in [`crate::doubles`].

pub mod render;
