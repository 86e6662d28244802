# nixos-vm: NixOS test images (EC2 image + test-only QEMU glue) and the flake
# fixtures the harness switches to. flake.lock pins nixos-25.05 at
# b2a3852b (rev/narHash/lastModified taken from public lock files; nix reads
# it offline, the narHash is checked on the first online fetch).
{
  description = "NixOS EC2 test images and fixtures for the Coder template harness";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems f;
      fixture = name: system: import (./fixtures + "/${name}") { inherit nixpkgs system; };
      fixtureName = name: system: if system == "x86_64-linux" then name else "${name}-aarch64";
      image = system: nixpkgs.lib.nixosSystem {
        inherit system;
        modules = [
          # The AMI builder (defines amazonImage.* and system.build.amazonImage;
          # it imports virtualisation/amazon-image.nix, the EC2 runtime config).
          "${nixpkgs}/nixos/maintainers/scripts/ec2/amazon-image.nix"
          ./qemu-glue.nix
          # qcow2 instead of the AMI's VHD: same content, cheap QEMU overlays.
          { amazonImage.format = "qcow2"; }
          # Pre-seed the store with the fixtures' closure so switching works offline.
          { system.extraDependencies = [ self.nixosConfigurations.${fixtureName "good" system}.config.system.build.toplevel ]; }
        ];
      };
    in {
      packages = forAll (system: {
        ec2-image = (image system).config.system.build.amazonImage;
      });

      # <fixture> is x86_64-linux, <fixture>-aarch64 the same for aarch64-linux
      # (flake_uri = path:…/nixos-vm#good or #good-aarch64; see `harness e2e --plan`).
      nixosConfigurations = nixpkgs.lib.listToAttrs (nixpkgs.lib.concatMap (name: [
        { inherit name; value = fixture name "x86_64-linux"; }
        { name = "${name}-aarch64"; value = fixture name "aarch64-linux"; }
      ]) [ "good" "broken" "broken-build" ]);

      # Evaluate the template's bootstrap module (single source, by relative path).
      checks = forAll (system: {
        bootstrap-eval = (nixpkgs.lib.nixosSystem {
          inherit system;
          modules = [ ../templates/modules/bootstrap/bootstrap.nix ];
        }).config.system.build.toplevel;
      });
    };
}
