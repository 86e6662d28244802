//! `harness lint`: values vs `templates/variables.tf`, AMI coverage, user-data size, fmt, nix parse, shellcheck.
