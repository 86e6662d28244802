//! Guest images: the Debian fixture guest, NixOS images via `nix build`, or a user-supplied path.
