# TEST-ONLY (never part of the real template): what the NixOS test image
# adds so that the e2e scenarios run without network inside the guest.
#
# - The fixture flakes at /var/lib/harness/fixtures (a writable copy: nix
#   writes flake.lock next to flake.nix on first use).
# - <nixpkgs> and the `nixpkgs` registry entry are the pinned nixpkgs the
#   image was built from, so the bootstrap's `nixos-rebuild switch
#   -I nixos-config=…` evaluates against it.
# - No substituters; the store is pre-seeded with the systems the
#   bootstrap switch and the good fixture switch to (`seed`), and with the
#   nixpkgs source and fixture flake themselves.
{ fixtures, guestNixpkgs, seed }:
{ lib, ... }:
{
  system.activationScripts.harnessFixtures = ''
    if [ ! -e /var/lib/harness/fixtures/flake.nix ]; then
      mkdir -p /var/lib/harness
      cp -rT ${fixtures} /var/lib/harness/fixtures
      chmod -R u+w /var/lib/harness/fixtures
    fi
  '';
  # NIX_PATH for sessions, and nix.conf's nix-path for services such as
  # amazon-init (which runs the bootstrap's nixos-rebuild without NIX_PATH).
  nix.nixPath = [ "nixpkgs=${guestNixpkgs}" ];
  nix.settings.nix-path = lib.mkForce [ "nixpkgs=${guestNixpkgs}" ];
  nix.registry.nixpkgs.to = { type = "path"; path = "${guestNixpkgs}"; };
  nix.settings.substituters = lib.mkForce [ ];
  system.extraDependencies = seed ++ [ guestNixpkgs fixtures ];
}
