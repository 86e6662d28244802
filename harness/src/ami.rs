//! The NixOS AMI table (`templates/nixos-amis.json`): region × arch → AMI id, shared by Terraform and the EC2 backend.
