# The fixture flakes of the EC2 tier. A workspace on EC2 boots the official
# NixOS AMI, which has no /var/lib/harness/fixtures (that exists only in the
# QEMU test image), so its startup script fetches this flake over the
# network: `nixos-rebuild switch --flake <HARNESS_EC2_FIXTURE_FLAKE>#<fixture>-<arch>`
# (harness::workspace::real::ec2_fixture_flake). The nightly passes
# `github:<owner>/<repo>/<commit>?dir=nixos-vm/ec2`, which an instance can
# fetch when the repository is public; for a private repository see
# docs/ec2.md ("Fixture flakes on EC2"). The fixtures are nixos-vm's, against
# the same nixpkgs (flake.lock: the same node as nixos-vm/flake.lock, checked
# by harness::image::nixos::release).
{
  description = "EC2 fixture flakes for the Coder template harness";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs = { self, nixpkgs }:
    let
      fixtures = [ "good" "broken" "broken-build" ];
      arches = { x86_64 = "x86_64-linux"; aarch64 = "aarch64-linux"; };
      one = name: arch: {
        name = "${name}-${arch}";
        value = import (../fixtures + "/${name}") { inherit nixpkgs; system = arches.${arch}; };
      };
    in {
      # Every fixture for both arches: good-x86_64, broken-aarch64, ...
      # (never `nix flake check`ed: broken must fail to evaluate).
      nixosConfigurations = builtins.listToAttrs
        (builtins.concatMap (name: map (one name) (builtins.attrNames arches)) fixtures);
    };
}
