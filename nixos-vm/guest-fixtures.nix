# TEST-ONLY (never part of the real template): what the NixOS test image
# adds so that the e2e scenarios run without network inside the guest.
#
# - The fixture flakes at /var/lib/harness/fixtures (a writable copy: nix
#   writes flake.lock next to flake.nix on first use). Their nixpkgs input
#   is `path:<guestNixpkgs>`, a store path already in the image.
# - The bootstrap's `nixos-rebuild switch -I nixos-config=...` runs under
#   amazon-init, which exports NIX_PATH=nixpkgs=<root's channel> (nixpkgs
#   nixos/modules/virtualisation/amazon-init.nix); an exported NIX_PATH
#   overrides nix.conf's nix-path, so setting nix-path here would change
#   nothing for it. As on EC2, the bootstrap therefore evaluates against the
#   image's channel, which the image builder copies from the nixpkgs the
#   image was evaluated with (make-disk-image.nix `channelSources`:
#   `cleanSource pkgs.path` plus `.version-suffix`), i.e. from
#   guestNixpkgs, and so evaluates to the same systems as the seed below.
#   The harness proves that per scenario over the probe shell (a
#   `--dry-run` of the bootstrap system and of the good fixture must list
#   nothing to build or fetch; harness/src/real_workspace/offline.rs).
# - No substituters (qemu-glue.nix), and QEMU's network is restricted: the
#   store is pre-seeded with what the switches need (`seed`: the bootstrap
#   systems, the good fixture's system, the inputs of broken-build's
#   deliberately failing derivation), plus the nixpkgs source and the
#   fixture flake themselves.
{ fixtures, guestNixpkgs, seed }:
{ ... }:
{
  system.activationScripts.harnessFixtures = ''
    if [ ! -e /var/lib/harness/fixtures/flake.nix ]; then
      mkdir -p /var/lib/harness
      cp -rT ${fixtures} /var/lib/harness/fixtures
      chmod -R u+w /var/lib/harness/fixtures
    fi
  '';
  # `nixpkgs#...` in a probe shell resolves offline to the same source.
  nix.registry.nixpkgs.to = { type = "path"; path = "${guestNixpkgs}"; };
  system.extraDependencies = seed ++ [ guestNixpkgs fixtures ];
}
