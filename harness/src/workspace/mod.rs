//! One way to start a workspace per tier.  `contract`: the template's
//! REAL rendered user-data on the contract guest (a double of the NixOS
//! AMI), with Coder's init script and agent played by named stand-ins.

pub mod contract;
